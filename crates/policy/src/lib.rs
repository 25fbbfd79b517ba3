//! The policy engine: parses and validates policy documents (version 1), compiles them into an
//! evaluator that decides each `tools/call`, classifies tools by risk and recommends a policy.
//!
//! This crate is pure: no I/O, no async, no clock. Everything it needs arrives as arguments,
//! so the same decision is reached on every gateway replica and in every test.
#![forbid(unsafe_code)]

pub mod risk;
pub mod tools;

pub use risk::{Risk, RiskClass, RiskLevel, Signal, SignalSource, classify};
pub use tools::{Annotations, ToolDef, ToolListError, parse_tool_list};

//! The policy engine: parses and validates policy documents (version 1), compiles them into an
//! evaluator that decides each `tools/call`, classifies tools by risk and recommends a policy.
//!
//! This crate is pure: no I/O, no async, no clock. Everything it needs arrives as arguments,
//! so the same decision is reached on every gateway replica and in every test.
#![forbid(unsafe_code)]

mod condition;
mod decide;
mod diagnostic;
mod locate;
pub mod model;
mod parse;
mod pointer;
mod recommend;
pub mod risk;
pub mod tools;

pub use decide::{Call, Decision, Denial, LimitCheck, Proceed, Subject};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use locate::{Span, locate};
pub use model::{Action, Approval, DefaultAction, Op, Scope};
pub use parse::MAX_DOCUMENT_BYTES;
pub use pointer::Pointer;
pub use recommend::{Recommendation, recommendation, recommended_policy};
pub use risk::{Risk, RiskClass, RiskLevel, Signal, SignalSource, classify};
pub use tools::{Annotations, ToolDef, ToolListError, parse_tool_list};

/// A validated, compiled policy: ready to decide calls.
#[derive(Debug, Clone)]
pub struct Policy {
    doc: model::Document,
    warnings: Vec<Diagnostic>,
}

impl Policy {
    /// Parses and validates a policy document. With `tools` (the server's tool list), tool
    /// names and condition arguments are also checked against the real tools.
    ///
    /// On failure, every error in the document is returned (with any warnings after them),
    /// each with its JSON Pointer, line and column.
    pub fn parse(text: &str, tools: Option<&[ToolDef]>) -> Result<Policy, Diagnostics> {
        match parse::parse(text, tools) {
            (Some(doc), warnings) => Ok(Policy { doc, warnings }),
            (None, diagnostics) => Err(Diagnostics(diagnostics)),
        }
    }

    /// Findings that do not stop the policy from being used (a rule that can never apply...).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The validated document.
    pub fn document(&self) -> &model::Document {
        &self.doc
    }
}

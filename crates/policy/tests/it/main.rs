//! The policy crate's integration tests: one binary, one module per concern.

mod decide;
mod properties;
mod recommend;
mod risk;
mod support;
mod validate;

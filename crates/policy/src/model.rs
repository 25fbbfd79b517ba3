//! The validated policy, version 1, as DESIGN.md §4 defines it. Values of these types exist only
//! after [`crate::Policy::parse`] accepted a document, so every field here is already checked.

use std::collections::HashMap;
use std::fmt;

use regex::Regex;
use serde_json::Value;

use crate::Pointer;

/// What happens to a tool that `tools` does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    Allow,
    Deny,
}

/// A tool rule's action. `Approve` is also what giving an `approval` object means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
    Approve,
}

/// Who shares a rate-limit counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Grant,
    Identity,
    Server,
    Organisation,
    Session,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Grant,
        Scope::Identity,
        Scope::Server,
        Scope::Organisation,
        Scope::Session,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Grant => "grant",
            Scope::Identity => "identity",
            Scope::Server => "server",
            Scope::Organisation => "organisation",
            Scope::Session => "session",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rate limit: at most `max` calls in any interval of `window_secs` seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub pointer: Pointer,
    pub counter: String,
    pub window_secs: u64,
    pub max: u32,
    pub scope: Scope,
}

/// Holding a call for a human decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Approval {
    /// How long a decision may take before the approval expires.
    pub timeout_secs: u64,
    /// How long the agent's request is held open before it gets a "pending" answer.
    pub wait_secs: u64,
}

impl Approval {
    pub const DEFAULT_TIMEOUT_SECS: u64 = 15 * 60;
    pub const DEFAULT_WAIT_SECS: u64 = 25;
}

impl Default for Approval {
    fn default() -> Self {
        Self {
            timeout_secs: Self::DEFAULT_TIMEOUT_SECS,
            wait_secs: Self::DEFAULT_WAIT_SECS,
        }
    }
}

/// A condition operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    In,
    NotIn,
    Lt,
    Lte,
    Gt,
    Gte,
    Regex,
    Contains,
    Exists,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::NotIn,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::Regex,
        Op::Contains,
        Op::Exists,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Regex => "regex",
            Op::Contains => "contains",
            Op::Exists => "exists",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"path": "args.a.b", "op": OP, "value": V}`.
#[derive(Debug, Clone)]
pub struct Condition {
    pub pointer: Pointer,
    /// The path as written, e.g. `args.device_id`.
    pub path_text: String,
    /// The segments after `args.`.
    pub path: Vec<String>,
    pub op: Op,
    pub value: Value,
    /// Compiled once at validation; the `regex` crate matches in linear time.
    pub(crate) regex: Option<Regex>,
}

/// The rule for one listed tool.
#[derive(Debug, Clone)]
pub struct ToolRule {
    pub pointer: Pointer,
    pub action: Action,
    /// Where the action came from: `/tools/x/action`, `/tools/x/approval` or the rule itself.
    pub action_pointer: Pointer,
    pub message: Option<String>,
    pub require: Vec<Condition>,
    pub deny_if: Vec<Condition>,
    pub limits: Vec<Limit>,
    pub approval: Option<Approval>,
    pub record_arguments: Option<bool>,
}

/// A validated policy document.
#[derive(Debug, Clone)]
pub struct Document {
    pub default: DefaultAction,
    pub on_deny: Option<String>,
    /// Hidden tool names with their pointers; `"*"` hides every tool.
    pub hide: Vec<(String, Pointer)>,
    pub all_tools_limits: Vec<Limit>,
    pub tools: HashMap<String, ToolRule>,
    /// The tool names in document order, for stable listings.
    pub tool_order: Vec<String>,
    pub record_arguments: bool,
}

//! Deciding a `tools/call`. Evaluation order, first denial wins (DESIGN.md §4):
//! hidden → not listed under `default: deny` → `action: deny` → `require` / `deny_if` →
//! limits → approval → forward.

use std::fmt::Write as _;

use serde_json::Value;

use crate::condition::Truth;
use crate::model::{Action, Approval, DefaultAction, Limit, Scope, ToolRule};
use crate::{Pointer, Policy};

/// Who is calling: everything a counter key may be scoped by.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub organisation: &'a str,
    pub server: &'a str,
    pub grant: &'a str,
    pub identity: &'a str,
    /// The MCP session, when the transport has one (the 2026-07-28 revision has none).
    pub session: Option<&'a str>,
}

/// One `tools/call`, as far as the policy needs to read it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub tool: &'a str,
    /// `params.arguments`; `None` when the call has none.
    pub arguments: Option<&'a Value>,
    pub subject: Subject<'a>,
}

/// The policy's answer to a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Forward the call.
    Allow { rule: Pointer },
    /// Answer with `[POLICY DENIED] <message>`.
    Deny(Denial),
    /// Answer with JSON-RPC error -32602 "Unknown tool": for this grant the tool does not exist.
    UnknownTool { rule: Pointer },
    /// Consume every counter in `limits` atomically; if all admit the call, go on with `then`,
    /// otherwise deny with [`LimitCheck::denial`] of the first counter that refused.
    NeedsLimits {
        limits: Vec<LimitCheck>,
        then: Proceed,
    },
    /// Hold the call for a human.
    NeedsApproval { rule: Pointer, approval: Approval },
}

/// What a call does once its limits admitted it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Proceed {
    Allow { rule: Pointer },
    NeedsApproval { rule: Pointer, approval: Approval },
}

impl From<Proceed> for Decision {
    fn from(p: Proceed) -> Self {
        match p {
            Proceed::Allow { rule } => Decision::Allow { rule },
            Proceed::NeedsApproval { rule, approval } => Decision::NeedsApproval { rule, approval },
        }
    }
}

impl Decision {
    /// The rule that made (or, for limits, will make) this decision.
    pub fn rule(&self) -> &Pointer {
        match self {
            Decision::Allow { rule }
            | Decision::UnknownTool { rule }
            | Decision::NeedsApproval { rule, .. } => rule,
            Decision::Deny(d) => &d.rule,
            Decision::NeedsLimits { limits, .. } => &limits[0].rule,
        }
    }

    /// A short name for logs, metrics and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny(_) => "deny",
            Decision::UnknownTool { .. } => "unknown_tool",
            Decision::NeedsLimits { .. } => "needs_limits",
            Decision::NeedsApproval { .. } => "needs_approval",
        }
    }
}

/// A refusal the agent can read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Denial {
    pub rule: Pointer,
    /// What the agent is told after `[POLICY DENIED] `: the policy's own words where it has
    /// them, otherwise `detail`.
    pub message: String,
    /// What exactly failed, for the audit log and for operators.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// One counter a call must consume: at most `max` admitted calls in any `window_secs` interval
/// under `key`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitCheck {
    pub rule: Pointer,
    /// The shared counter's storage key. Every key of one organisation carries the same Redis
    /// Cluster hash tag (`{<organisation>}`), so all counters a call consumes live in one slot
    /// and are checked by one atomic script; two organisations never share a key.
    pub key: String,
    pub counter: String,
    pub scope: Scope,
    pub window_secs: u64,
    pub max: u32,
}

impl LimitCheck {
    /// The denial for a call this counter refused.
    pub fn denial(&self, retry_after_ms: u64) -> Denial {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        Denial {
            rule: self.rule.clone(),
            message: format!(
                "rate limit `{}` reached ({} per {} per {}), retry after {secs} s",
                self.counter,
                self.max,
                window_text(self.window_secs),
                self.scope
            ),
            detail: format!("counter {} is full", self.key),
            retry_after_ms: Some(retry_after_ms),
        }
    }
}

fn window_text(secs: u64) -> String {
    match secs {
        1 => "second".into(),
        60 => "minute".into(),
        3600 => "hour".into(),
        86_400 => "day".into(),
        s => format!("{s} s"),
    }
}

impl Policy {
    /// Decides one `tools/call`. Pure and deterministic: the same policy and call always give
    /// the same decision.
    pub fn decide(&self, call: &Call<'_>) -> Decision {
        let doc = &self.doc;
        if let Some(rule) = self.hidden_by(call.tool) {
            return Decision::UnknownTool { rule: rule.clone() };
        }
        let rule = doc.tools.get(call.tool);
        if rule.is_none() && doc.default == DefaultAction::Deny {
            return Decision::UnknownTool {
                rule: Pointer::root().push("default"),
            };
        }
        if let Some(rule) = rule {
            if rule.action == Action::Deny {
                let detail = format!("`{}` is denied by this server's policy", call.tool);
                return Decision::Deny(self.denial(rule, rule.action_pointer.clone(), detail));
            }
            if let Some(denial) = self.check_conditions(rule, call) {
                return Decision::Deny(denial);
            }
        }

        let then = match rule {
            Some(r) => match (r.action, r.approval) {
                (Action::Approve, Some(approval)) => Proceed::NeedsApproval {
                    rule: r.action_pointer.clone(),
                    approval,
                },
                _ => Proceed::Allow {
                    rule: r.pointer.clone(),
                },
            },
            None => Proceed::Allow {
                rule: Pointer::root().push("default"),
            },
        };

        let tool_limits = rule.map(|r| r.limits.as_slice()).unwrap_or_default();
        if doc.all_tools_limits.is_empty() && tool_limits.is_empty() {
            return then.into();
        }
        let mut limits: Vec<LimitCheck> =
            Vec::with_capacity(doc.all_tools_limits.len() + tool_limits.len());
        for limit in doc.all_tools_limits.iter().chain(tool_limits) {
            let Some(key) = counter_key(limit, &call.subject) else {
                return Decision::Deny(Denial {
                    rule: limit.pointer.clone(),
                    message: format!(
                        "rate limit `{}` counts per MCP session, and this request has no session",
                        limit.counter
                    ),
                    detail: "session-scoped limit on a request without a session".into(),
                    retry_after_ms: None,
                });
            };
            // Two rules naming the same counter in the same scope share it: consume it once.
            if limits.iter().any(|l| l.key == key) {
                continue;
            }
            limits.push(LimitCheck {
                rule: limit.pointer.clone(),
                key,
                counter: limit.counter.clone(),
                scope: limit.scope,
                window_secs: limit.window_secs,
                max: limit.max,
            });
        }
        Decision::NeedsLimits { limits, then }
    }

    /// Whether `tool` appears in `tools/list` for this policy's grants.
    pub fn visible(&self, tool: &str) -> bool {
        self.hidden_by(tool).is_none()
            && (self.doc.default == DefaultAction::Allow || self.doc.tools.contains_key(tool))
    }

    /// Whether argument values (not only their keys) of calls to `tool` go into the audit log.
    pub fn records_arguments(&self, tool: &str) -> bool {
        self.doc
            .tools
            .get(tool)
            .and_then(|r| r.record_arguments)
            .unwrap_or(self.doc.record_arguments)
    }

    fn hidden_by(&self, tool: &str) -> Option<&Pointer> {
        self.doc
            .hide
            .iter()
            .find(|(name, _)| name == "*" || name == tool)
            .map(|(_, p)| p)
    }

    fn check_conditions(&self, rule: &ToolRule, call: &Call<'_>) -> Option<Denial> {
        for cond in &rule.require {
            let detail = match cond.evaluate(call.arguments) {
                Truth::True => continue,
                Truth::False => format!("required condition not met: {}", cond.describe()),
                Truth::Unknown(why) => {
                    format!("required condition {} cannot hold: {why}", cond.describe())
                }
            };
            return Some(self.denial(rule, cond.pointer.clone(), detail));
        }
        for cond in &rule.deny_if {
            let detail = match cond.evaluate(call.arguments) {
                Truth::False => continue,
                Truth::True => format!("denied because {}", cond.describe()),
                Truth::Unknown(why) => {
                    format!(
                        "denied because {} cannot be ruled out: {why}",
                        cond.describe()
                    )
                }
            };
            return Some(self.denial(rule, cond.pointer.clone(), detail));
        }
        None
    }

    fn denial(&self, rule: &ToolRule, pointer: Pointer, detail: String) -> Denial {
        let message = rule
            .message
            .as_ref()
            .or(self.doc.on_deny.as_ref())
            .cloned()
            .unwrap_or_else(|| detail.clone());
        Denial {
            rule: pointer,
            message,
            detail,
            retry_after_ms: None,
        }
    }
}

/// `gh:{<org>}:rl:<scope>:<scope id>:<counter>:<window>`; `None` for a session scope without a session.
fn counter_key(limit: &Limit, subject: &Subject<'_>) -> Option<String> {
    let scope_id = match limit.scope {
        Scope::Grant => subject.grant,
        Scope::Identity => subject.identity,
        Scope::Server => subject.server,
        Scope::Organisation => subject.organisation,
        Scope::Session => subject.session?,
    };
    let mut key = String::with_capacity(64 + scope_id.len() + limit.counter.len());
    key.push_str("gh:{");
    push_escaped(&mut key, subject.organisation);
    key.push_str("}:rl:");
    key.push_str(limit.scope.as_str());
    key.push(':');
    push_escaped(&mut key, scope_id);
    key.push(':');
    key.push_str(&limit.counter);
    let _ = write!(key, ":{}", limit.window_secs);
    Some(key)
}

/// Keeps ids that come from people (identity labels, session ids) from forging another key or
/// a hash tag: anything but `[A-Za-z0-9_.-]` is percent-encoded.
fn push_escaped(out: &mut String, raw: &str) {
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

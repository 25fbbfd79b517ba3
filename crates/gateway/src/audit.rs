//! Audit events: one per MCP request that reached the gateway with a valid grant (DESIGN.md §7).
//!
//! **Durability is issue 6.** Until then the gateway emits each event through [`AuditSink`]:
//! in production [`LogAuditSink`] writes one structured log line per event (which is *not* the
//! durable, hash-chained log DESIGN.md promises), and tests use [`InMemoryAuditSinkForTests`].
//! Issue 6 replaces the log sink with a write-ahead into a Redis stream; the interface stays.

use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// One MCP request with a valid grant, and what the gateway did with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// The request id, also returned to the client as `x-request-id` and present in the logs.
    pub request_id: String,
    pub organisation_id: String,
    pub server_id: String,
    pub grant_id: String,
    pub identity: String,
    /// The upstream session id, when the request belonged to a session.
    pub session: Option<String>,
    /// `POST`, `GET` or `DELETE`.
    pub http_method: String,
    /// The JSON-RPC method (`None` for GET/DELETE, responses and batches).
    pub method: Option<String>,
    pub tool: Option<String>,
    /// The argument *keys* of a `tools/call` (values only where the policy opts in).
    pub argument_keys: Vec<String>,
    /// The argument values, only when the policy's `record_arguments` is on for the tool.
    pub arguments: Option<serde_json::Value>,
    /// `allow`, `deny`, `unknown_tool`, `rate_limited`, `approval_unavailable`,
    /// `limiter_unavailable`, `pass` (not decided on), `rejected` (invalid input).
    pub decision: &'static str,
    /// The rule that decided, as a JSON Pointer into the policy.
    pub rule: Option<String>,
    /// What the agent was told, for denials and rejections.
    pub message: Option<String>,
    pub policy_version: u32,
    /// The upstream's HTTP status, when the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// The `isError` of a JSON `tools/call` result, when the gateway read one.
    pub is_error: Option<bool>,
    pub latency_ms: u64,
    /// The peer address of the connection (the nearest proxy's, behind a load balancer).
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// Where audit events go. Implementations must not block: they are called on the request path.
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    fn record(&self, event: AuditEvent);
}

/// One `INFO` log line per event under the target `gatehouse::audit`. Not durable (issue 6).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogAuditSink;

impl AuditSink for LogAuditSink {
    fn record(&self, event: AuditEvent) {
        match serde_json::to_string(&event) {
            Ok(json) => tracing::info!(target: "gatehouse::audit", event = %json, "audit"),
            Err(e) => {
                tracing::error!(target: "gatehouse::audit", error = %e, "unserialisable audit event")
            }
        }
    }
}

/// Keeps events in memory for tests to read. Never used by the `gatehouse` binary.
#[derive(Debug, Default)]
pub struct InMemoryAuditSinkForTests {
    events: Mutex<Vec<AuditEvent>>,
}

impl InMemoryAuditSinkForTests {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().expect("audit sink lock").clone()
    }
}

impl AuditSink for InMemoryAuditSinkForTests {
    fn record(&self, event: AuditEvent) {
        self.events.lock().expect("audit sink lock").push(event);
    }
}

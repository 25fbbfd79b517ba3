//! The audit event as the gateway reports it (DESIGN.md §7), and its mapping to the row the store
//! keeps.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::audit::{AuditDecision, NewAuditEvent};
use store::{AuditEventId, GrantId, OrgId, ServerId};
use time::OffsetDateTime;
use uuid::Uuid;

/// The message stored for a forwarded call whose outcome never arrived.
pub const UNKNOWN_OUTCOME_MESSAGE: &str =
    "outcome unknown: the call was forwarded but no outcome was recorded";

/// One MCP request with a valid grant, and what the gateway did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the gateway accepted the request (stamped once, at write-ahead: a retried event keeps
    /// it, which is what makes ingestion idempotent).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The gateway's request id as the client and the logs see it (`x-request-id`).
    pub request_id: String,
    pub organisation_id: OrgId,
    pub server_id: ServerId,
    pub grant_id: GrantId,
    pub identity: String,
    /// The upstream session id, when the request belonged to a session.
    pub session: Option<String>,
    /// The JSON-RPC method, or the HTTP method (`GET`, `DELETE`) for requests without one.
    pub method: String,
    pub tool: Option<String>,
    /// From [`crate::audited_arguments`]: an array of keys, or an object of redacted values.
    pub arguments: Value,
    pub decision: AuditDecision,
    /// The rule that decided, as a JSON Pointer into the policy.
    pub rule: Option<String>,
    /// What the agent was told, for denials.
    pub message: Option<String>,
    pub policy_version: Option<i32>,
    pub outcome: Outcome,
    pub client_addr: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// What came back from the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Written ahead of forwarding: the outcome is not known yet.
    Pending,
    /// The call completed (or was never forwarded: a denial has a known outcome with no status).
    Known {
        upstream_status: Option<u16>,
        is_error: Option<bool>,
        latency_us: u64,
    },
    /// The call was forwarded but its outcome never arrived (the gateway replica died after
    /// forwarding): stored after the grace period.
    Unknown,
}

impl AuditRecord {
    /// The id the store keys the event by: the request id itself when it is a UUID, else a UUID
    /// derived from it (SHA-256, so the same request id always maps to the same event id).
    pub fn audit_event_id(&self) -> AuditEventId {
        audit_event_id_for(&self.request_id)
    }

    /// The row the store keeps. A pending outcome is stored as unknown (the ingester only does
    /// that once the grace period is over).
    pub fn to_new_event(&self) -> NewAuditEvent {
        let (upstream_status, is_error, latency_us, message) = match self.outcome {
            Outcome::Known {
                upstream_status,
                is_error,
                latency_us,
            } => (
                upstream_status.map(i32::from),
                is_error,
                Some(i64::try_from(latency_us).unwrap_or(i64::MAX)),
                self.message.clone(),
            ),
            Outcome::Pending | Outcome::Unknown => (
                None,
                None,
                None,
                Some(match &self.message {
                    Some(m) => format!("{m} ({UNKNOWN_OUTCOME_MESSAGE})"),
                    None => UNKNOWN_OUTCOME_MESSAGE.to_owned(),
                }),
            ),
        };
        NewAuditEvent {
            audit_event_id: self.audit_event_id(),
            organisation_id: self.organisation_id,
            occurred_at: self.occurred_at,
            server_id: self.server_id,
            grant_id: self.grant_id,
            identity: strip_nul(&self.identity),
            session_id: self.session.as_deref().map(strip_nul),
            method: strip_nul(&self.method),
            tool_name: self.tool.as_deref().map(strip_nul),
            arguments: strip_nul_json(&self.arguments),
            decision: self.decision,
            rule: self.rule.as_deref().map(strip_nul),
            message: message.as_deref().map(strip_nul),
            policy_version: self.policy_version,
            upstream_status,
            is_error,
            latency_us,
            client_addr: self.client_addr,
            user_agent: self.user_agent.as_deref().map(strip_nul),
        }
    }
}

/// The store's event id for a gateway request id.
pub fn audit_event_id_for(request_id: &str) -> AuditEventId {
    if let Ok(u) = Uuid::parse_str(request_id) {
        return AuditEventId::from_uuid(u);
    }
    let digest = Sha256::digest(format!("gatehouse-request-id:{request_id}").as_bytes());
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    AuditEventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The store's decision for one of the gateway's decision names. Refusals the policy did not make
/// (limiter or approvals unavailable, invalid input) are denials; the message says why.
pub fn decision_from_gateway(name: &str) -> AuditDecision {
    match name {
        "allow" => AuditDecision::Allow,
        "unknown_tool" | "hidden" => AuditDecision::Hidden,
        "rate_limited" => AuditDecision::RateLimited,
        "approval_pending" => AuditDecision::ApprovalPending,
        "approved" => AuditDecision::Approved,
        "upstream_error" => AuditDecision::UpstreamError,
        "pass" | "passthrough" => AuditDecision::Passthrough,
        _ => AuditDecision::Deny,
    }
}

/// Postgres cannot store U+0000 in text or jsonb; the log keeps everything else.
fn strip_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn strip_nul_json(v: &Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(strip_nul(s)),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (strip_nul(k), strip_nul_json(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nul_json).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn sample() -> AuditRecord {
        AuditRecord {
            occurred_at: OffsetDateTime::now_utc(),
            request_id: "req-1".into(),
            organisation_id: OrgId::new(),
            server_id: ServerId::new(),
            grant_id: GrantId::new(),
            identity: "noc-agent".into(),
            session: None,
            method: "tools/call".into(),
            tool: Some("reboot_device".into()),
            arguments: json!(["device_id"]),
            decision: AuditDecision::Allow,
            rule: Some("/tools/reboot_device".into()),
            message: None,
            policy_version: Some(2),
            outcome: Outcome::Pending,
            client_addr: None,
            user_agent: Some("ua\0x".into()),
        }
    }

    #[test]
    fn request_ids_map_to_stable_event_ids() {
        let u = Uuid::new_v4();
        assert_eq!(audit_event_id_for(&u.to_string()).as_uuid(), u);
        assert_eq!(audit_event_id_for("abc"), audit_event_id_for("abc"));
        assert_ne!(audit_event_id_for("abc"), audit_event_id_for("abd"));
    }

    #[test]
    fn outcomes_map_to_columns() {
        let mut r = sample();
        let e = r.to_new_event();
        assert_eq!(e.message.as_deref(), Some(UNKNOWN_OUTCOME_MESSAGE));
        assert_eq!((e.upstream_status, e.latency_us), (None, None));
        assert_eq!(e.user_agent.as_deref(), Some("ua\u{FFFD}x"));
        r.outcome = Outcome::Known {
            upstream_status: Some(200),
            is_error: Some(true),
            latency_us: 1500,
        };
        let e = r.to_new_event();
        assert_eq!(
            (e.upstream_status, e.is_error, e.latency_us, e.message),
            (Some(200), Some(true), Some(1500), None)
        );
    }

    #[test]
    fn gateway_decisions() {
        assert_eq!(decision_from_gateway("pass"), AuditDecision::Passthrough);
        assert_eq!(decision_from_gateway("unknown_tool"), AuditDecision::Hidden);
        assert_eq!(
            decision_from_gateway("limiter_unavailable"),
            AuditDecision::Deny
        );
    }
}

//! The messages the gateway writes itself (DESIGN.md §5): denials and pending approvals as
//! `tools/call` results the model can read, "Unknown tool", upstream failures, protocol errors,
//! and progress notifications that keep an SSE stream alive while a call waits for a human.
//!
//! Each builder returns a [`Reply`]: the JSON bytes for an `application/json` response, the same
//! message framed as one SSE `message` event for when the request is answered on a stream, and
//! the HTTP status to use when the reply is the whole response. Ids are echoed as their exact
//! JSON text.

use http::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::code;
use crate::headers::{HeaderMismatch, Revision};
use crate::message::{Id, MessageError};
use crate::sse;

/// The `_meta` key under which denials and pending approvals carry the gateway's decision.
pub const DECISION_META_KEY: &str = "io.gatehouse/decision";

/// Prefix of the text of a denied call.
pub const DENIED_PREFIX: &str = "[POLICY DENIED]";
/// Prefix of the text of a call waiting for approval.
pub const APPROVAL_PENDING_PREFIX: &str = "[APPROVAL PENDING]";

/// A message the gateway wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    json: Vec<u8>,
    status: StatusCode,
}

impl Reply {
    /// The JSON-RPC message, compact JSON (no raw line breaks).
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The JSON-RPC message, owned.
    pub fn into_json(self) -> Vec<u8> {
        self.json
    }

    /// The message as one SSE event (`event: message`, one `data:` line, blank line).
    pub fn sse_event(&self) -> Vec<u8> {
        // serde_json's compact output is UTF-8 and escapes every control character.
        sse::message_event(std::str::from_utf8(&self.json).expect("serde_json writes UTF-8"))
    }

    /// The HTTP status when this reply is the whole response (`application/json`). Results and
    /// errors about the call itself are `200`, so SDK clients hand them to the caller; errors about
    /// the HTTP request (unreadable body, mismatched headers) are `400`, as the transport says.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// The policy decision a denial or pending approval reports in `_meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The rule that decided, as a JSON Pointer into the policy (`/tools/reboot_device`).
    pub rule: &'a str,
    /// The policy version that decided.
    pub policy_version: u32,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct ResultBody<'a> {
    result: &'a Value,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

const NULL_ID: &str = "null";

fn null_id() -> &'static RawValue {
    serde_json::from_str(NULL_ID).expect("null is JSON")
}

fn write<T: Serialize>(id: Option<Id<'_>>, body: T, status: StatusCode) -> Reply {
    let envelope = Envelope {
        jsonrpc: "2.0",
        id: match id {
            Some(id) => id.as_raw_value(),
            None => null_id(),
        },
        body,
    };
    Reply {
        json: serde_json::to_vec(&envelope).expect("replies serialise"),
        status,
    }
}

fn tool_result(id: Id<'_>, text: String, meta: Value, revision: Revision) -> Reply {
    let mut result = Map::new();
    if revision.has_result_type() {
        result.insert("resultType".into(), "complete".into());
    }
    result.insert("content".into(), json!([{"type": "text", "text": text}]));
    result.insert("isError".into(), true.into());
    result.insert("_meta".into(), json!({ DECISION_META_KEY: meta }));
    write(
        Some(id),
        ResultBody {
            result: &Value::Object(result),
        },
        StatusCode::OK,
    )
}

/// A JSON-RPC error reply; `id` `None` writes `"id": null`.
pub fn error(
    id: Option<Id<'_>>,
    code: i64,
    message: &str,
    data: Option<&Value>,
    status: StatusCode,
) -> Reply {
    write(
        id,
        ErrorBody {
            error: ErrorObject {
                code,
                message,
                data,
            },
        },
        status,
    )
}

/// A denied `tools/call`: a result with `isError: true` and the text `[POLICY DENIED] <message>`,
/// so the model can read why and adapt.
pub fn denied(id: Id<'_>, message: &str, decision: Decision<'_>, revision: Revision) -> Reply {
    tool_result(
        id,
        format!("{DENIED_PREFIX} {message}"),
        json!({
            "outcome": "denied",
            "rule": decision.rule,
            "policy_version": decision.policy_version,
        }),
        revision,
    )
}

/// A `tools/call` refused by a rate limit: `[POLICY DENIED] rate limit <what> reached, retry after
/// N s`, with `retry_after_ms` in `_meta`.
pub fn rate_limited(
    id: Id<'_>,
    what: &str,
    retry_after_ms: u64,
    decision: Decision<'_>,
    revision: Revision,
) -> Reply {
    let seconds = retry_after_ms.div_ceil(1000).max(1);
    tool_result(
        id,
        format!("{DENIED_PREFIX} rate limit {what} reached, retry after {seconds} s"),
        json!({
            "outcome": "rate_limited",
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            "retry_after_ms": retry_after_ms,
        }),
        revision,
    )
}

/// A `tools/call` still waiting for a human when the wait ran out: `[APPROVAL PENDING] approval
/// <approval id> <message>`. The same call retried after approval goes through.
pub fn approval_pending(
    id: Id<'_>,
    approval_id: &str,
    message: &str,
    decision: Decision<'_>,
    revision: Revision,
) -> Reply {
    tool_result(
        id,
        format!("{APPROVAL_PENDING_PREFIX} approval {approval_id} {message}"),
        json!({
            "outcome": "approval_pending",
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            "approval_id": approval_id,
        }),
        revision,
    )
}

/// A hidden or unlisted tool: `-32602` "Unknown tool: NAME", exactly what a server says of a
/// tool it does not have.
pub fn unknown_tool(id: Id<'_>, name: &str) -> Reply {
    error(
        Some(id),
        code::INVALID_PARAMS,
        &format!("Unknown tool: {name}"),
        None,
        StatusCode::OK,
    )
}

/// How the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No connection could be made.
    Unreachable,
    /// No answer within the timeout.
    Timeout,
    /// An HTTP status the transport does not allow for this request (a 5xx, say).
    Status(u16),
    /// A body that is not the MCP the request asked for (not JSON, a broken SSE stream, an
    /// oversized event).
    BadResponse,
}

impl UpstreamFailure {
    fn describe(self) -> (&'static str, String) {
        match self {
            UpstreamFailure::Unreachable => ("unreachable", "could not be reached".into()),
            UpstreamFailure::Timeout => ("timeout", "did not answer in time".into()),
            UpstreamFailure::Status(status) => ("status", format!("answered with HTTP {status}")),
            UpstreamFailure::BadResponse => (
                "bad_response",
                "sent a response that is not valid MCP".into(),
            ),
        }
    }
}

/// The upstream failed: `-32603` with a message that says so and `data` that says how. (MCP
/// reserves -32000..-32019 as legacy and -32020..-32099 for its own codes, so the gateway uses the
/// standard internal error.) `id` is `None` when the failure is not about one request.
pub fn upstream_failed(id: Option<Id<'_>>, failure: UpstreamFailure) -> Reply {
    let (kind, how) = failure.describe();
    let mut data = json!({ "upstream": kind });
    if let UpstreamFailure::Status(status) = failure {
        data["status"] = status.into();
    }
    error(
        id,
        code::INTERNAL_ERROR,
        &format!("The upstream MCP server {how}"),
        Some(&data),
        StatusCode::OK,
    )
}

/// A dependency the decision needs (rate limiter, audit log, configuration) cannot be reached:
/// the call is refused rather than let through unchecked or unrecorded.
pub fn unavailable(id: Option<Id<'_>>, what: &str) -> Reply {
    error(
        id,
        code::INTERNAL_ERROR,
        &format!(
            "Gatehouse cannot reach its {what}; the call was refused and did not reach the upstream"
        ),
        None,
        StatusCode::OK,
    )
}

/// The answer to a body [`crate::message::parse`] refused: `-32700`, `-32600` or `-32602`, with
/// the offending id when it could be read. Parse errors and invalid requests are `400`; invalid
/// params of a readable request are `200`, like any other error of a request.
pub fn message_error(e: &MessageError) -> Reply {
    let status = if e.code() == code::INVALID_PARAMS {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let message = match e.code() {
        code::PARSE_ERROR => format!("Parse error: {e}"),
        code::INVALID_REQUEST => format!("Invalid Request: {e}"),
        _ => format!("Invalid params: {e}"),
    };
    error(e.id(), e.code(), &message, None, status)
}

/// 2026-07-28: headers that disagree with the body: `400` and `-32020`.
pub fn header_mismatch(id: Option<Id<'_>>, mismatch: &HeaderMismatch) -> Reply {
    error(
        id,
        code::HEADER_MISMATCH,
        &mismatch.to_string(),
        None,
        StatusCode::BAD_REQUEST,
    )
}

/// An `MCP-Protocol-Version` the gateway does not support: `400`, and for 2026-07-28 clients
/// `-32022` with the supported versions.
pub fn unsupported_protocol_version(id: Option<Id<'_>>, requested: &str) -> Reply {
    let supported: Vec<&str> = Revision::ALL.iter().map(|r| r.as_str()).collect();
    error(
        id,
        code::UNSUPPORTED_PROTOCOL_VERSION,
        &format!("Unsupported protocol version: {requested}"),
        Some(&json!({ "supported": supported, "requested": requested })),
        StatusCode::BAD_REQUEST,
    )
}

/// A `notifications/progress` for the request that sent `progress_token`: the gateway sends these
/// on the request's SSE stream while the call waits for approval, so the client and every proxy
/// between see the stream is alive (and a client that resets its timeout on progress keeps waiting).
pub fn progress(
    progress_token: Id<'_>,
    progress: u64,
    total: Option<u64>,
    message: Option<&str>,
) -> Reply {
    #[derive(Serialize)]
    struct Notification<'a> {
        jsonrpc: &'static str,
        method: &'static str,
        params: Params<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Params<'a> {
        progress_token: &'a RawValue,
        progress: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
    }
    let notification = Notification {
        jsonrpc: "2.0",
        method: crate::method::NOTIFICATION_PROGRESS,
        params: Params {
            progress_token: progress_token.as_raw_value(),
            progress,
            total,
            message,
        },
    };
    Reply {
        json: serde_json::to_vec(&notification).expect("notifications serialise"),
        status: StatusCode::OK,
    }
}

#[cfg(test)]
mod tests;

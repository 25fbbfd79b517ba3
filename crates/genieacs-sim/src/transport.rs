//! The server side of MCP Streamable HTTP (session era: 2025-03-26, 2025-06-18, 2025-11-25),
//! written by hand over axum and serde_json.
//!
//! Why not `rmcp`: this simulator exists to exercise a proxy, so it must control details that an
//! SDK decides for you: the JSON-or-SSE switch per instance, the exact 400/404/405/406/415
//! statuses and bodies, the `MCP-Protocol-Version` check, a Host/Origin guard with an allow-list,
//! bearer-token auth, and a cheap path that answers `tools/call` without building typed models.
//! The protocol surface a tool server needs is small (a dozen methods, no server→client
//! requests), so the hand-written version is shorter than the configuration it would replace.
//!
//! Order of checks on every request: Host/Origin (403) → bearer token (401) → method
//! (GET 405 unless `--get-streams`) → `Accept` (406) → `Content-Type` (415) → JSON body (400, -32700) → session
//! (400 missing, 404 unknown) → protocol version (400) → dispatch.

use std::borrow::Cow;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::calllog::CallRecord;
use crate::config::ResponseMode;
use crate::tools::{self, ToolOutcome};
use crate::util::{iso8601, now_ms};
use crate::{SimState, resources};

/// Protocol revisions this server speaks, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// The version assumed when a request carries no `MCP-Protocol-Version` header (as the spec says).
const DEFAULT_VERSION: &str = "2025-03-26";

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The fixed result of every tool call in cheap mode.
const CHEAP_RESULT: &str =
    r#"{"content":[{"type":"text","text":"{\"ok\":true}"}],"isError":false}"#;

pub(crate) fn router(state: SimState) -> Router {
    Router::new()
        .route(
            "/mcp",
            post(handle_post).delete(handle_delete).get(handle_get),
        )
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

// ---- HTTP-level errors ------------------------------------------------------------------------

/// A JSON-RPC error object with `id: null`, the body the TypeScript SDK's server sends with
/// transport-level statuses, so clients can show a message whatever the status.
fn http_error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": null});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Host/Origin guard and bearer-token check, in front of every method on `/mcp`.
async fn guard(State(state): State<SimState>, req: Request, next: Next) -> Response {
    let config = state.config();
    let headers = req.headers();
    let allowed = |host: &str| {
        config
            .allowed_hosts
            .iter()
            .any(|a| a == "*" || a.trim_matches(['[', ']']).eq_ignore_ascii_case(host))
    };
    // A missing Host (HTTP/1.0) has nothing to rebind, so only a present, untrusted one is refused.
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !allowed(host_name(host)) {
            return http_error(
                StatusCode::FORBIDDEN,
                -32000,
                &format!("Forbidden: untrusted Host header: {host}"),
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let name = origin.split_once("://").map(|(_, rest)| host_name(rest));
        if !name.is_some_and(allowed) {
            return http_error(
                StatusCode::FORBIDDEN,
                -32000,
                &format!("Forbidden: untrusted Origin header: {origin}"),
            );
        }
    }
    if let Some(token) = &config.auth_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        if !presented.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
            let mut resp = http_error(
                StatusCode::UNAUTHORIZED,
                -32000,
                "Unauthorized: a valid bearer token is required",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"genieacs-sim\""),
            );
            return resp;
        }
    }
    next.run(req).await
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `::1`; drops any path after the authority.
fn host_name(authority: &str) -> &str {
    let authority = authority.split('/').next().unwrap_or("");
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- GET and DELETE -----------------------------------------------------------------------------

/// The real server offers no server→client stream; the spec allows 405 here. With
/// `--get-streams` a session may open one: it is primed with an SSE comment, carries a keep-alive
/// comment every 15 s and nothing else, and lasts until the client goes away (for measuring what
/// open streams cost a proxy).
async fn handle_get(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if !state.config().get_streams {
        let mut resp = http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            -32000,
            "Method not allowed: this server offers no GET stream",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
        return resp;
    }
    let accept = header_str(&headers, header::ACCEPT.as_str()).unwrap_or("");
    if !accept
        .split(',')
        .any(|part| part.split(';').next().unwrap_or("").trim() == "text/event-stream")
    {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            -32000,
            "Not Acceptable: Client must accept text/event-stream",
        );
    }
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32000,
            "Bad Request: Mcp-Session-Id header is required",
        );
    };
    if !state.has_session(id) {
        return http_error(StatusCode::NOT_FOUND, -32001, "Session not found");
    }
    let comments = futures_util::stream::unfold(true, |first| async move {
        if !first {
            tokio::time::sleep(std::time::Duration::from_secs(15)).await;
        }
        let comment: &'static [u8] = if first {
            b": open\n\n"
        } else {
            b": keep-alive\n\n"
        };
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from_static(comment)),
            false,
        ))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(comments),
    )
        .into_response()
}

async fn handle_delete(State(state): State<SimState>, headers: HeaderMap) -> Response {
    let Some(id) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) else {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32000,
            "Bad Request: Mcp-Session-Id header is required",
        );
    };
    if state.end_session(id) {
        StatusCode::OK.into_response()
    } else {
        http_error(StatusCode::NOT_FOUND, -32001, "Session not found")
    }
}

// ---- POST ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Incoming<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    name: Cow<'a, str>,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

/// What a request produced: a raw JSON result, or a JSON-RPC error.
enum Reply {
    Result(Cow<'static, str>),
    Error(i64, String),
}

async fn handle_post(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let accept = header_str(&headers, header::ACCEPT.as_str()).unwrap_or("*/*");
    let takes = |ty: &str| {
        let family = format!("{}/*", ty.split('/').next().unwrap_or(""));
        accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or("").trim())
            .any(|m| m == ty || m == "*/*" || m == family)
    };
    let (takes_json, takes_sse) = (takes("application/json"), takes("text/event-stream"));
    if !takes_json && !takes_sse {
        return http_error(
            StatusCode::NOT_ACCEPTABLE,
            -32000,
            "Not Acceptable: Client must accept application/json or text/event-stream",
        );
    }
    let sse = !takes_json || (state.config().response_mode == ResponseMode::Sse && takes_sse);

    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        return http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32000,
            "Unsupported Media Type: Content-Type must be application/json",
        );
    }

    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: JSON-RPC batches are not supported",
        );
    }
    let msg: Incoming<'_> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(_) => return http_error(StatusCode::BAD_REQUEST, -32700, "Parse error"),
    };
    if msg.jsonrpc.as_deref() != Some("2.0") {
        return http_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "Invalid Request: jsonrpc must be \"2.0\"",
        );
    }

    let is_initialize = msg.method.as_deref() == Some("initialize");
    let session = if is_initialize {
        None
    } else {
        let Some(id) = header_str(&headers, SESSION_HEADER) else {
            return http_error(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            );
        };
        if !state.has_session(id) {
            return http_error(StatusCode::NOT_FOUND, -32001, "Session not found");
        }
        let version = header_str(&headers, VERSION_HEADER).unwrap_or(DEFAULT_VERSION);
        if !SUPPORTED_VERSIONS.contains(&version) {
            return http_error(
                StatusCode::BAD_REQUEST,
                -32000,
                &format!(
                    "Bad Request: Unsupported protocol version: {version} (supported versions: {})",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            );
        }
        Some(id)
    };

    let (id, method) = match (msg.id, msg.method) {
        // Notifications, and responses to requests we never send, are accepted and ignored.
        (None, Some(_)) if !is_initialize => return StatusCode::ACCEPTED.into_response(),
        (Some(_) | None, None) if msg.result.is_some() || msg.error.is_some() => {
            return StatusCode::ACCEPTED.into_response();
        }
        (Some(id), Some(method)) => (id, method),
        _ => return http_error(StatusCode::BAD_REQUEST, -32600, "Invalid Request"),
    };

    let mut new_session = None;
    let reply = match &*method {
        "initialize" => {
            let (reply, sid) = initialize(&state, msg.params);
            new_session = Some(sid);
            reply
        }
        "ping" => Reply::Result(Cow::Borrowed("{}")),
        "tools/list" => Reply::Result(Cow::Owned(state.tools_list().to_owned())),
        "tools/call" => call_tool(&state, session.unwrap_or_default(), id, msg.params).await,
        "resources/list" => Reply::Result(Cow::Owned(resources::list_result().to_string())),
        "resources/templates/list" => {
            Reply::Result(Cow::Owned(resources::templates_result().to_string()))
        }
        "resources/read" => read_resource(&state, msg.params),
        other => Reply::Error(-32601, format!("Method not found: {other}")),
    };

    let payload = match reply {
        Reply::Result(result) => {
            format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get())
        }
        Reply::Error(code, message) => format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
            id.get(),
            json!({"code": code, "message": message})
        ),
    };
    let mut resp = if sse {
        let mut s = String::with_capacity(payload.len() + 24);
        s.push_str("event: message\ndata: ");
        s.push_str(&payload);
        s.push_str("\n\n");
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from(s),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(payload),
        )
            .into_response()
    };
    if let Some(sid) = new_session
        && let Ok(v) = HeaderValue::from_str(&sid)
    {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn initialize(state: &SimState, params: Option<&RawValue>) -> (Reply, String) {
    let requested = params
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .and_then(|p| {
            p.get("protocolVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    // Answer with the client's version when we speak it, else with our newest (the client decides).
    let version = requested
        .as_deref()
        .and_then(|r| SUPPORTED_VERSIONS.iter().find(|v| **v == r))
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0]);
    let sid = state.new_session(version);
    let result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": false},
            "resources": {"subscribe": false, "listChanged": false},
        },
        "serverInfo": {
            "name": "GenieACS MCP Bridge",
            "title": "GenieACS MCP Bridge (Gatehouse simulator)",
            "version": concat!("sim-", env!("CARGO_PKG_VERSION")),
        },
        "instructions": "Simulated GenieACS ACS. Find devices with search_devices or genieacs://devices/list; device ids look like 00236A-SmartRG585-SMRT00236a42.",
    });
    (Reply::Result(Cow::Owned(result.to_string())), sid)
}

fn read_resource(state: &SimState, params: Option<&RawValue>) -> Reply {
    let uri = params
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned));
    let Some(uri) = uri else {
        return Reply::Error(-32602, "Invalid params: uri is required".into());
    };
    let limit = state.config().device_limit;
    match state.with_acs(|acs| resources::read(acs, &uri, limit)) {
        Some(v) => Reply::Result(Cow::Owned(v.to_string())),
        None => Reply::Error(-32002, format!("Resource not found: {uri}")),
    }
}

async fn call_tool(
    state: &SimState,
    session: &str,
    id: &RawValue,
    params: Option<&RawValue>,
) -> Reply {
    let Some(params) = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok())
    else {
        return Reply::Error(-32602, "Invalid params: name is required".into());
    };
    let tool = tools::find(&params.name);
    let config = state.config();
    let log = state.call_log();
    let seq = log.next_seq();

    let parsed_args = || -> Option<Map<String, Value>> {
        match params.arguments {
            None => Some(Map::new()),
            Some(raw) => serde_json::from_str(raw.get()).ok(),
        }
    };
    let record = |is_error: bool| {
        if log.wants_records() {
            log.push(CallRecord {
                seq,
                timestamp: iso8601(now_ms()),
                session_id: session.to_owned(),
                request_id: serde_json::from_str(id.get()).unwrap_or(Value::Null),
                tool: params.name.to_string(),
                arguments: params
                    .arguments
                    .and_then(|a| serde_json::from_str(a.get()).ok())
                    .unwrap_or(Value::Null),
                is_error,
            });
        }
    };

    let Some(tool) = tool else {
        record(true);
        return Reply::Error(-32602, format!("Unknown tool: {}", params.name));
    };
    if let Some(delay) = config.latency_for(tool.name) {
        tokio::time::sleep(delay).await;
    }
    if state.injected_failure(tool.name) {
        record(true);
        let outcome =
            ToolOutcome::error("ACS error 503: Injected failure (genieacs-sim --failure-rate)");
        return Reply::Result(Cow::Owned(outcome.to_result().to_string()));
    }
    if config.cheap {
        record(false);
        return Reply::Result(Cow::Borrowed(CHEAP_RESULT));
    }
    let Some(args) = parsed_args() else {
        record(true);
        return Reply::Error(-32602, "Invalid params: arguments must be an object".into());
    };
    let outcome = state.with_acs(|acs| tools::call(acs, tool, &args));
    record(outcome.is_error);
    Reply::Result(Cow::Owned(outcome.to_result().to_string()))
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("evil.example/path"), "evil.example");
    }
}

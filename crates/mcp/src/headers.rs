//! Protocol revisions and HTTP headers: which revision a request speaks, the 2026-07-28 rule that
//! mirrored headers must agree with the body, and which headers cross the gateway.
//!
//! The gateway decides on the body. A 2026-07-28 request whose `Mcp-Method`, `Mcp-Name` or
//! `Mcp-Param-*` headers disagree with the body is refused ([`check_mirrored_headers`],
//! [`check_param_headers`]): otherwise the policy would judge one tool while something routing on
//! headers (a load balancer, the upstream's own middleware) acted on another.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::message::{Kind, Message};

/// `MCP-Protocol-Version` (2025-06-18 and later).
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Session-Id` (2025-03-26 to 2025-11-25).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `Mcp-Method` (2026-07-28).
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (2026-07-28): `params.name` or `params.uri`.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Last-Event-ID`: resuming an SSE stream (session era).
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// The prefix of the 2026-07-28 headers that mirror tool arguments (`Mcp-Param-{Name}`).
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// A protocol revision the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    /// HTTP+SSE transport (deprecated); listed so its version string is recognised.
    V2024_11_05,
    /// Streamable HTTP introduced; sessions; JSON-RPC batches allowed.
    V2025_03_26,
    /// `MCP-Protocol-Version` header; batches removed; elicitation.
    V2025_06_18,
    /// Priming SSE events and server-closed streams resumed with `Last-Event-ID`; tasks.
    V2025_11_25,
    /// Stateless: no sessions, no `initialize`, no GET streams; `Mcp-Method`/`Mcp-Name` headers;
    /// `resultType` in results.
    V2026_07_28,
}

impl Revision {
    /// Every known revision, oldest first.
    pub const ALL: [Revision; 5] = [
        Revision::V2024_11_05,
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    /// What a session-era server assumes when a request has no `MCP-Protocol-Version` header.
    pub const DEFAULT_WITHOUT_HEADER: Revision = Revision::V2025_03_26;

    /// Parses a version string exactly (`2025-06-18`).
    pub fn parse(text: &str) -> Option<Revision> {
        Revision::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The version string.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2024_11_05 => "2024-11-05",
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Sessions (`Mcp-Session-Id`), `initialize`, GET streams, DELETE and `Last-Event-ID`.
    pub fn has_sessions(self) -> bool {
        self < Revision::V2026_07_28
    }

    /// A POST body may be a JSON array of messages.
    pub fn allows_batches(self) -> bool {
        self == Revision::V2025_03_26
    }

    /// `Mcp-Method` on every request and `Mcp-Name` where it applies must match the body.
    pub fn mirrors_headers(self) -> bool {
        self >= Revision::V2026_07_28
    }

    /// Results carry `resultType` (`"complete"`, `"input_required"`).
    pub fn has_result_type(self) -> bool {
        self >= Revision::V2026_07_28
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `MCP-Protocol-Version` of a request: `Ok(None)` when absent (a session-era server then
/// assumes [`Revision::DEFAULT_WITHOUT_HEADER`]; a 2026-07-28 request must carry it).
pub fn protocol_version(headers: &HeaderMap) -> Result<Option<Revision>, UnsupportedVersion> {
    let mut values = headers.get_all(MCP_PROTOCOL_VERSION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    if values.next().is_some() {
        return Err(UnsupportedVersion(format!("{text} (header repeated)")));
    }
    Revision::parse(&text)
        .map(Some)
        .ok_or_else(|| UnsupportedVersion(text.into_owned()))
}

/// An `MCP-Protocol-Version` the gateway does not know: answer `400` (2026-07-28: with
/// `-32022` and the supported versions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol version: {0}")]
pub struct UnsupportedVersion(pub String);

/// Mirrored headers that disagree with the body, are missing, repeated or malformed. Answer
/// `400 Bad Request` with JSON-RPC error `-32020` (`reply::header_mismatch`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Header mismatch: {0}")]
pub struct HeaderMismatch(pub String);

/// 2026-07-28: checks `MCP-Protocol-Version` against the body's
/// `_meta["io.modelcontextprotocol/protocolVersion"]` (when the body has one), `Mcp-Method`
/// against `method` and, for `tools/call`, `resources/read` and `prompts/get`, `Mcp-Name` against
/// `params.name` / `params.uri` (decoding `=?base64?…?=`). Only requests are checked: the revision
/// defines no header rules for notifications.
pub fn check_mirrored_headers(
    headers: &HeaderMap,
    message: &Message<'_>,
) -> Result<(), HeaderMismatch> {
    let Kind::Request(request) = &message.kind else {
        return Ok(());
    };
    if let Some(body_version) = &request.params.protocol_version {
        let header = single(headers, &MCP_PROTOCOL_VERSION)?
            .ok_or_else(|| HeaderMismatch("MCP-Protocol-Version header is missing".into()))?;
        if header != body_version.as_ref() {
            return Err(HeaderMismatch(format!(
                "MCP-Protocol-Version header value '{header}' does not match body value '{body_version}'"
            )));
        }
    }
    let method = single(headers, &MCP_METHOD)?
        .ok_or_else(|| HeaderMismatch("Mcp-Method header is missing".into()))?;
    if method != request.method {
        return Err(HeaderMismatch(format!(
            "Mcp-Method header value '{method}' does not match body value '{}'",
            request.method
        )));
    }
    if let Some(body_name) = request.params.target.mcp_name() {
        let header = single(headers, &MCP_NAME)?
            .ok_or_else(|| HeaderMismatch("Mcp-Name header is missing".into()))?;
        let decoded = decode_value(header)
            .ok_or_else(|| HeaderMismatch("Mcp-Name header has an invalid base64 value".into()))?;
        if decoded != body_name {
            return Err(HeaderMismatch(format!(
                "Mcp-Name header value '{header}' does not match body value '{}'",
                encode_value(body_name)
            )));
        }
    }
    Ok(())
}

/// The one value of a header as text: `None` when absent; an error when repeated or not
/// visible ASCII, space and tab.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, HeaderMismatch> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeaderMismatch(format!("{name} header is repeated")));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| HeaderMismatch(format!("{name} header contains invalid characters")))
}

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// Decodes a `Mcp-Name` / `Mcp-Param-*` value: `=?base64?…?=` (standard alphabet, padded, UTF-8
/// inside) or the plain value. `None` for a sentinel that does not decode.
pub fn decode_value(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|v| v.strip_suffix(SENTINEL_SUFFIX))
    {
        Some(encoded) => {
            let bytes = BASE64.decode(encoded).ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(value)),
    }
}

/// Encodes a value the way a client must: plain when it is visible ASCII and spaces without
/// leading or trailing whitespace and does not look like the sentinel; `=?base64?…?=` otherwise.
pub fn encode_value(value: &str) -> Cow<'_, str> {
    let looks_encoded = value.starts_with(SENTINEL_PREFIX) && value.ends_with(SENTINEL_SUFFIX);
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !looks_encoded;
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!(
            "{SENTINEL_PREFIX}{}{SENTINEL_SUFFIX}",
            BASE64.encode(value)
        ))
    }
}

/// 2026-07-28: checks the `Mcp-Param-{Name}` headers of a `tools/call` against its arguments, for
/// the parameters the tool's `inputSchema` marks with `x-mcp-header` (reachable from the root
/// through `properties` only). A marked argument that is present (and not `null`) needs its header
/// with the same value (strings as-is, integers compared numerically, booleans `true`/`false`);
/// a header for an absent argument is a mismatch too.
pub fn check_param_headers(
    headers: &HeaderMap,
    input_schema: &Value,
    arguments: Option<&Value>,
) -> Result<(), HeaderMismatch> {
    let mut marked = Vec::new();
    collect_marked(input_schema, &mut Vec::new(), &mut marked, 0);
    for (header_name, path) in marked {
        let name = format!("{MCP_PARAM_PREFIX}{}", header_name.to_ascii_lowercase());
        let Ok(name) = HeaderName::try_from(name) else {
            continue; // Not a valid header name: the tool definition is invalid, not this call.
        };
        let value = arguments
            .and_then(|args| path.iter().try_fold(args, |v, key| v.get(*key)))
            .filter(|v| !v.is_null());
        let header = single(headers, &name)?;
        match (value, header) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(HeaderMismatch(format!(
                    "{name} header is present but the argument is absent"
                )));
            }
            (Some(_), None) => return Err(HeaderMismatch(format!("{name} header is missing"))),
            (Some(value), Some(header)) => {
                let decoded = decode_value(header).ok_or_else(|| {
                    HeaderMismatch(format!("{name} header has an invalid base64 value"))
                })?;
                if !param_matches(value, &decoded) {
                    return Err(HeaderMismatch(format!(
                        "{name} header value '{header}' does not match the body value"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Whether `input_schema` marks any parameter with `x-mcp-header` (see [`check_param_headers`]).
pub fn mirrors_params(input_schema: &Value) -> bool {
    let mut marked = Vec::new();
    collect_marked(input_schema, &mut Vec::new(), &mut marked, 0);
    !marked.is_empty()
}

/// Refuses `Mcp-Param-*` headers that `input_schema` does not declare (no property marked with
/// that `x-mcp-header`), or any such header when the tool's schema is unknown (`None`): a header
/// the gateway cannot compare with the body is one that something routing on headers could act on
/// while the policy judged the body.
pub fn check_undeclared_param_headers(
    headers: &HeaderMap,
    input_schema: Option<&Value>,
) -> Result<(), HeaderMismatch> {
    let mut marked = Vec::new();
    if let Some(schema) = input_schema {
        collect_marked(schema, &mut Vec::new(), &mut marked, 0);
    }
    for name in headers.keys() {
        let Some(param) = name.as_str().strip_prefix(MCP_PARAM_PREFIX) else {
            continue;
        };
        if !marked
            .iter()
            .any(|(declared, _)| declared.eq_ignore_ascii_case(param))
        {
            return Err(HeaderMismatch(match input_schema {
                Some(_) => format!("{name} header is not declared by the tool's input schema"),
                None => {
                    format!("{name} header cannot be checked: the tool's input schema is not known")
                }
            }));
        }
    }
    Ok(())
}

fn param_matches(value: &Value, header: &str) -> bool {
    match value {
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        // Integers compare numerically ("42.0" matches 42), as the specification recommends.
        Value::Number(n) => match (n.as_i64(), header.parse::<i64>(), header.parse::<f64>()) {
            (Some(i), Ok(h), _) => i == h,
            (Some(i), Err(_), Ok(h)) => h.fract() == 0.0 && h.abs() < 9.0e15 && h as i64 == i,
            _ => false,
        },
        _ => false,
    }
}

/// Collects `(x-mcp-header value, property path)` for properties reachable through `properties`.
fn collect_marked<'s>(
    schema: &'s Value,
    path: &mut Vec<&'s str>,
    out: &mut Vec<(&'s str, Vec<&'s str>)>,
    depth: usize,
) {
    // Schemas come from the upstream: bound the walk.
    if depth > 32 {
        return;
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, property) in properties {
        path.push(key);
        if let Some(name) = property.get("x-mcp-header").and_then(Value::as_str) {
            out.push((name, path.clone()));
        }
        collect_marked(property, path, out, depth + 1);
        path.pop();
    }
}

/// What the gateway does with one header of a request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Forward it unchanged.
    Forward,
    /// `Mcp-Session-Id`: requests carry the sealed id, which the gateway opens and replaces with
    /// the upstream's; responses carry the upstream's, which the gateway seals.
    Session,
    /// Never forward it.
    Drop,
}

/// Headers defined as hop-by-hop (RFC 9110 §7.6.1), never forwarded in either direction; so are
/// the headers a `Connection` header names ([`connection_named`]).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// What happens to a client's request header on its way upstream. An allow-list: MCP's own
/// headers and content negotiation pass; everything else stays at the gateway, because a client
/// header the upstream would honour is a credential or a routing hint the policy never saw
/// (`Authorization` carries the grant token, `Cookie` the client's cookies; `Host` and `Origin`
/// are the gateway's; `Accept-Encoding` is dropped so the responses the gateway must read arrive
/// uncompressed; `Content-Length` is recomputed by whoever frames the body).
pub fn request_header(name: &HeaderName) -> Disposition {
    if *name == MCP_SESSION_ID {
        return Disposition::Session;
    }
    let forwarded = *name == header::ACCEPT
        || *name == header::CONTENT_TYPE
        || *name == header::USER_AGENT
        || *name == MCP_PROTOCOL_VERSION
        || *name == LAST_EVENT_ID
        || *name == MCP_METHOD
        || *name == MCP_NAME
        || name.as_str().starts_with(MCP_PARAM_PREFIX)
        || matches!(name.as_str(), "traceparent" | "tracestate" | "baggage");
    if forwarded {
        Disposition::Forward
    } else {
        Disposition::Drop
    }
}

/// What happens to an upstream's response header on its way to the client. Also an allow-list:
/// `WWW-Authenticate` is dropped (an upstream's challenge concerns the gateway's credentials and
/// would send the client to the upstream's authorization server), so are `Set-Cookie` and the
/// framing headers. `Content-Encoding` passes because the bytes pass unchanged; the gateway must
/// not try to read an encoded body.
pub fn response_header(name: &HeaderName) -> Disposition {
    if *name == MCP_SESSION_ID {
        return Disposition::Session;
    }
    let forwarded = *name == header::CONTENT_TYPE
        || *name == header::CONTENT_ENCODING
        || *name == header::CACHE_CONTROL
        || *name == header::RETRY_AFTER
        || *name == MCP_PROTOCOL_VERSION
        || name.as_str() == "x-accel-buffering";
    if forwarded {
        Disposition::Forward
    } else {
        Disposition::Drop
    }
}

/// The header names listed in `Connection` (hop-by-hop by declaration), lower-cased.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::try_from(token.trim()).ok())
        .collect()
}

/// The client's headers to send upstream: [`request_header`]'s `Forward` ones, minus anything
/// named in `Connection`. The session id is left out: the gateway adds the unsealed one.
pub fn forwardable_request_headers(headers: &HeaderMap) -> HeaderMap {
    filter(headers, request_header)
}

/// The upstream's headers to send the client: [`response_header`]'s `Forward` ones, minus
/// anything named in `Connection`. The session id is left out: the gateway adds the sealed one.
pub fn forwardable_response_headers(headers: &HeaderMap) -> HeaderMap {
    filter(headers, response_header)
}

fn filter(headers: &HeaderMap, disposition: fn(&HeaderName) -> Disposition) -> HeaderMap {
    let named = connection_named(headers);
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if disposition(name) == Disposition::Forward && !named.contains(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// A header value from text the gateway wrote (a sealed session id, say); `None` if it has
/// characters a header value cannot carry.
pub fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

#[cfg(test)]
mod tests;

//! The request path of `/mcp/{server_id}`, in order: Host/Origin guard → grant token → the
//! token's server → sealed session → body (bounded) → protocol headers → classification →
//! decision (`tools/call`) → forward → the upstream's answer (sealed session id, filtered
//! `tools/list`, upstream failures as JSON-RPC errors) → audit event and metrics.
//!
//! Only what a decision needs is parsed; the bytes forwarded are the client's, and the bytes
//! returned are the upstream's (except a filtered `tools/list` result, cut from the original).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use axum::body::Body as HttpBody;
use std::net::{IpAddr, SocketAddr};

use axum::Extension;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use limits::{Outcome, Reservation};
use mcp::headers::{MCP_METHOD, MCP_NAME, MCP_PARAM_PREFIX, MCP_SESSION_ID, Revision};
use mcp::message::{Body, Id, Kind, OwnedId};
use mcp::method;
use mcp::reply::{self, Reply, UpstreamFailure};
use mcp::session::{Binding, Session, SessionError};
use policy::{Call, Decision, LimitCheck, Pointer, Proceed, Subject};
use tracing::Instrument as _;

use crate::budget::{self, Held, Spent};
use crate::cache::{GrantView, Lookup};
use crate::event::{AdmitError, Record, Stamp};
use crate::streams::Slot;
use crate::{Gateway, GatewayError};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Per-request context.
#[derive(Debug)]
struct Ctx {
    stamp: Stamp,
    /// Present once the grant is known: every such request gets exactly one audit event.
    record: Option<Record>,
    /// The write-ahead of a forwarded request (or of a limited call, written in the limiter's
    /// round trip), waiting for its outcome.
    ticket: Option<audit::Ticket>,
    /// Whether the request left for the upstream.
    forwarded: bool,
    /// The JSON-RPC id of a request, for an answer the gateway writes in its place.
    rpc_id: Option<OwnedId>,
}

impl Ctx {
    fn decide(&mut self, decision: &'static str, rule: Option<&Pointer>, message: Option<String>) {
        if let Some(r) = &mut self.record {
            r.decision = decision;
            r.rule = rule.map(|p| p.as_str().to_owned());
            r.message = message;
        }
    }

    fn upstream_status(&mut self, status: StatusCode) {
        if let Some(r) = &mut self.record {
            r.upstream_status = Some(status.as_u16());
        }
    }
}

/// The axum handler for POST, GET and DELETE.
pub(crate) async fn handle(
    State(gw): State<Gateway>,
    Path(server_id): Path<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    headers: HeaderMap,
    body: HttpBody,
) -> Response {
    let request_id = request_id(&headers);
    let span = tracing::info_span!("mcp", request_id = %request_id, http_method = %method, server = %server_id);
    let mut ctx = Ctx {
        stamp: Stamp {
            request_id,
            occurred_at: OffsetDateTime::now_utc(),
            started: Instant::now(),
            http_method: method.clone(),
            client_addr: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        },
        record: None,
        ticket: None,
        forwarded: false,
        rpc_id: None,
    };
    let client_ip = ctx.stamp.client_addr;
    let response = async {
        let response = match serve(
            &gw, &mut ctx, &server_id, client_ip, &method, &headers, body,
        )
        .await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::info!(error = %e, "request refused");
                gw.inner.metrics.decision(e.kind());
                if let Some(r) = &mut ctx.record {
                    r.decision = "rejected";
                    r.message = Some(e.to_string());
                }
                e.into_response()
            }
        };
        finish_audit(&gw, &mut ctx, response).await
    }
    .instrument(span)
    .await;
    let mut response = response;
    gw.inner
        .metrics
        .request(method.as_str(), response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&ctx.stamp.request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Closes the request's audit event: the outcome of a forwarded request is appended (off the
/// request path), and any other request's event is recorded before its answer leaves; if that
/// fails, the agent is told the audit log is unavailable instead.
async fn finish_audit(gw: &Gateway, ctx: &mut Ctx, response: Response) -> Response {
    let Some(record) = ctx.record.take() else {
        return response;
    };
    let journal = &gw.inner.journal;
    let recorded = match ctx.ticket.take() {
        Some(ticket) if ctx.forwarded => {
            crate::event::record_outcome(journal, &record, &ctx.stamp, ticket);
            return response;
        }
        Some(ticket) => {
            crate::event::record_unforwarded(journal, &record, &ctx.stamp, ticket).await
        }
        None => crate::event::record_complete(journal, &record, &ctx.stamp).await,
    };
    match recorded {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, "audit log unavailable; the answer is replaced by a refusal");
            gw.inner.metrics.decision("audit_unavailable");
            audit_unavailable(ctx.rpc_id.as_ref())
        }
    }
}

/// "The audit log is unavailable": a JSON-RPC error for a request, 503 for anything else.
fn audit_unavailable(id: Option<&OwnedId>) -> Response {
    let mut response = answer(reply::unavailable(id.map(OwnedId::as_id), "audit log"));
    if id.is_none() {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// The client's `x-request-id` when it is short visible ASCII, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn serve(
    gw: &Gateway,
    ctx: &mut Ctx,
    server_id: &str,
    client_ip: Option<IpAddr>,
    method: &Method,
    headers: &HeaderMap,
    body: HttpBody,
) -> Result<Response, GatewayError> {
    let inner = &gw.inner;
    check_host_and_origin(&inner.settings, headers)?;
    let token = bearer_token(headers).ok_or(GatewayError::MissingToken)?;
    let view = match authenticate(gw, token, client_ip).await? {
        Lookup::Unknown | Lookup::Inactive => {
            if let Some(ip) = client_ip {
                inner.throttle.failed(ip);
            }
            return Err(GatewayError::InvalidToken);
        }
        Lookup::Active(view) => view,
    };
    let same_server = uuid::Uuid::parse_str(server_id).is_ok_and(|u| u.to_string() == view.server);
    if !same_server {
        return Err(GatewayError::WrongServer);
    }
    ctx.record = Some(Record {
        view: view.clone(),
        session: None,
        method: None,
        tool: None,
        arguments: serde_json::Value::Array(Vec::new()),
        decision: "pass",
        rule: None,
        message: None,
        upstream_status: None,
        is_error: None,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    });

    let session = match headers.get(MCP_SESSION_ID) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| SessionError::NotOurs)?;
            let binding = Binding {
                grant_id: &view.grant_id,
                server_id: &view.server,
            };
            let session = mcp::session::open(&inner.session_key, text, binding, now_secs())?;
            if let Some(r) = &mut ctx.record {
                r.session = Some(session.upstream_session_id.clone());
            }
            Some(session)
        }
    };

    match *method {
        Method::POST => post(gw, ctx, &view, headers, body, session.as_ref()).await,
        Method::GET => {
            // A GET opens a stream: its slot is taken before the upstream is asked, and lives as
            // long as the client's response body.
            let slot = inner.streams.open(&view)?;
            forward(
                gw,
                ctx,
                &view,
                Method::GET,
                headers,
                None,
                session.as_ref(),
                Expect::Other { id: None },
                Some(slot),
            )
            .await
        }
        _ => {
            forward(
                gw,
                ctx,
                &view,
                method.clone(),
                headers,
                None,
                session.as_ref(),
                Expect::Other { id: None },
                None,
            )
            .await
        }
    }
}

/// The token's grant: from the cache when it knows the token (as valid, or as unknown, revoked
/// or expired), else from the store, unless the client's address has failed too often lately.
async fn authenticate(
    gw: &Gateway,
    token: &str,
    client_ip: Option<IpAddr>,
) -> Result<Lookup, GatewayError> {
    let inner = &gw.inner;
    let key = store::secret::TokenHash::of(token).0;
    if let Some(known) = inner.cache.peek(&key) {
        return Ok(known);
    }
    if let Some(ip) = client_ip {
        inner
            .throttle
            .check(ip)
            .map_err(GatewayError::TooManyFailures)?;
    }
    inner
        .cache
        .lookup(token, key)
        .await
        .map_err(GatewayError::ConfigUnavailable)
}

fn check_host_and_origin(
    settings: &crate::Settings,
    headers: &HeaderMap,
) -> Result<(), GatewayError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !crate::settings::host_of_authority(host).is_some_and(|h| settings.host_allowed(h)) {
        return Err(GatewayError::HostNotAllowed(
            host.chars().take(200).collect(),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("(not text)");
        if !settings.origin_allowed(text) {
            return Err(GatewayError::OriginNotAllowed(
                text.chars().take(200).collect(),
            ));
        }
    }
    Ok(())
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads the client's body: at most `max_body_bytes`, within `body_timeout`, out of the
/// replica's budget of buffered bytes (held until the request is done).
async fn read_body(gw: &Gateway, body: HttpBody) -> Result<(Bytes, Held), GatewayError> {
    let settings = &gw.inner.settings;
    let max = settings.max_body_bytes;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut held = Held::default();
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| GatewayError::BodyUnreadable)?;
            if buf.len() + chunk.len() > max {
                return Err(GatewayError::BodyTooLarge(max));
            }
            gw.inner
                .budget
                .take(&mut held, chunk.len())
                .map_err(|Spent| GatewayError::Busy)?;
            buf.extend_from_slice(&chunk);
        }
        Ok((buf.freeze(), held))
    };
    tokio::time::timeout(settings.body_timeout, read)
        .await
        .unwrap_or(Err(GatewayError::BodyTimeout(settings.body_timeout)))
}

/// A reply the gateway wrote, as the whole response.
fn answer(reply: Reply) -> Response {
    let status = reply.status();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.into_json(),
    )
        .into_response()
}

/// Refuses a message the gateway cannot accept; it never reaches the upstream.
fn reject(gw: &Gateway, ctx: &mut Ctx, reply: Reply, why: String) -> Response {
    gw.inner.metrics.decision("rejected");
    ctx.decide("rejected", None, Some(why));
    answer(reply)
}

/// Rejects a message the gateway will not forward in this form: 400, JSON-RPC -32600.
fn invalid_request(gw: &Gateway, ctx: &mut Ctx, id: Option<Id<'_>>, why: String) -> Response {
    let reply = reply::error(
        id,
        mcp::code::INVALID_REQUEST,
        &format!("Invalid Request: {why}"),
        None,
        StatusCode::BAD_REQUEST,
    );
    reject(gw, ctx, reply, why)
}

async fn post(
    gw: &Gateway,
    ctx: &mut Ctx,
    view: &Arc<GrantView>,
    headers: &HeaderMap,
    body: HttpBody,
    session: Option<&Session>,
) -> Result<Response, GatewayError> {
    // The body's bytes stay counted in the budget until the request is answered.
    let (bytes, _held) = read_body(gw, body).await?;
    let revision = match mcp::headers::protocol_version(headers) {
        Ok(r) => r.unwrap_or(Revision::DEFAULT_WITHOUT_HEADER),
        Err(e) => {
            let why = e.to_string();
            return Ok(reject(
                gw,
                ctx,
                reply::unsupported_protocol_version(None, &e.0),
                why,
            ));
        }
    };
    let message = match mcp::message::parse(&bytes) {
        Ok(Body::Single(message)) => message,
        Ok(Body::Batch(items)) => {
            if !revision.allows_batches() {
                let why = format!("JSON-RPC batches are not part of MCP {revision}");
                return Ok(invalid_request(gw, ctx, None, why));
            }
            for item in &items {
                match item {
                    Err(e) => return Ok(reject(gw, ctx, reply::message_error(e), e.to_string())),
                    Ok(m)
                        if matches!(m.method(), Some(method::TOOLS_CALL | method::TOOLS_LIST)) =>
                    {
                        // Deciding each element and stitching the upstream's batch answer back
                        // together is not worth it for a revision that only 2025-03-26 has:
                        // such batches are refused rather than let through undecided.
                        let why = "Gatehouse does not accept tools/call or tools/list inside a batch; send them one per request".to_owned();
                        return Ok(invalid_request(gw, ctx, m.id(), why));
                    }
                    Ok(_) => {}
                }
            }
            gw.inner.metrics.decision("pass");
            let body = bytes.clone();
            return forward(
                gw,
                ctx,
                view,
                Method::POST,
                headers,
                Some(body),
                session,
                Expect::Other { id: None },
                None,
            )
            .await;
        }
        Err(e) => return Ok(reject(gw, ctx, reply::message_error(&e), e.to_string())),
    };

    // 2026-07-28 mirrors the method and target into headers; a gateway that decided on the body
    // while the upstream routed on the headers would be bypassed, so any disagreement is refused
    // (also when an older revision's client sends the headers anyway).
    if (revision.mirrors_headers()
        || headers.contains_key(MCP_METHOD)
        || headers.contains_key(MCP_NAME))
        && let Err(mismatch) = mcp::headers::check_mirrored_headers(headers, &message)
    {
        let why = mismatch.to_string();
        return Ok(reject(
            gw,
            ctx,
            reply::header_mismatch(message.id(), &mismatch),
            why,
        ));
    }
    if let Some(call) = message.tool_call()
        && let Err(mismatch) = check_param_headers(view, revision, headers, &call)
    {
        let why = mismatch.to_string();
        return Ok(reject(
            gw,
            ctx,
            reply::header_mismatch(message.id(), &mismatch),
            why,
        ));
    }
    if let Some(r) = &mut ctx.record {
        r.method = message.method().map(str::to_owned);
    }
    let is_request = matches!(message.kind, Kind::Request(_));
    let id = message.id().map(|i| i.to_owned());
    if is_request {
        ctx.rpc_id.clone_from(&id);
    }

    match message.method() {
        Some(method::TOOLS_CALL) if is_request => {
            let Some(call) = message.tool_call() else {
                let why = "tools/call needs params.name".to_owned();
                let reply = reply::error(
                    message.id(),
                    mcp::code::INVALID_PARAMS,
                    &format!("Invalid params: {why}"),
                    None,
                    StatusCode::OK,
                );
                return Ok(reject(gw, ctx, reply, why));
            };
            if let Some(r) = &mut ctx.record {
                r.tool = Some(call.name.to_owned());
                r.arguments = audit::audited_arguments(
                    call.arguments,
                    view.policy.records_arguments(call.name),
                );
            }
            if let Some(refused) = check_pins(gw, ctx, view, call.id, call.name).await {
                return Ok(refused);
            }
            let subject = Subject {
                organisation: &view.organisation,
                server: &view.server,
                grant: &view.grant_id,
                identity: &view.grant.identity,
                session: session.map(|s| s.upstream_session_id.as_str()),
            };
            let decision = view.policy.decide(&Call {
                tool: call.name,
                arguments: call.arguments,
                subject,
            });
            let version = view.policy_version;
            fn meta(rule: &Pointer, policy_version: u32) -> reply::Decision<'_> {
                reply::Decision {
                    rule: rule.as_str(),
                    policy_version,
                }
            }
            let call_id = call.id;
            let tool = call.name.to_owned();
            let held_call = |tool, rule, approval, reservation| HeldCall {
                call_id: call_id.to_owned(),
                tool,
                arguments: call.arguments,
                progress_token: message
                    .params()
                    .and_then(|p| p.progress_token)
                    .map(|t| t.to_owned()),
                rule,
                approval,
                revision,
                bytes: bytes.clone(),
                reservation,
            };
            let (rule, reservation) = match decision {
                Decision::Allow { rule } => (rule, None),
                Decision::Deny(denial) => {
                    gw.inner.metrics.decision("deny");
                    ctx.decide("deny", Some(&denial.rule), Some(denial.message.clone()));
                    return Ok(answer(reply::denied(
                        call_id,
                        &denial.message,
                        meta(&denial.rule, version),
                        revision,
                    )));
                }
                Decision::UnknownTool { rule } => {
                    gw.inner.metrics.decision("unknown_tool");
                    ctx.decide(
                        "unknown_tool",
                        Some(&rule),
                        Some(format!("Unknown tool: {tool}")),
                    );
                    return Ok(answer(reply::unknown_tool(call_id, &tool)));
                }
                Decision::NeedsApproval { rule, approval } => {
                    let held = held_call(tool, rule, approval, None);
                    return hold(gw, ctx, view, headers, session, held).await;
                }
                Decision::NeedsLimits { limits, then } => {
                    let started = Instant::now();
                    let (Proceed::Allow { rule } | Proceed::NeedsApproval { rule, .. }) = &then;
                    let outcome = match &ctx.record {
                        // Written ahead in the limiter's round trip where the journal can.
                        Some(record) => {
                            crate::event::admit(
                                &gw.inner.journal,
                                &gw.inner.limiter,
                                &limits,
                                record,
                                rule,
                                &ctx.stamp,
                                &mut ctx.ticket,
                            )
                            .await
                        }
                        None => gw
                            .inner
                            .limiter
                            .consume(&limits)
                            .await
                            .map_err(AdmitError::Limiter),
                    };
                    gw.inner.metrics.limiter(started.elapsed());
                    match outcome {
                        Err(AdmitError::Audit(e)) => {
                            tracing::error!(error = %e, "audit log unavailable; the request is refused");
                            gw.inner.metrics.decision("audit_unavailable");
                            ctx.decide("audit_unavailable", None, Some(e.to_string()));
                            return Ok(audit_unavailable(ctx.rpc_id.as_ref()));
                        }
                        Err(AdmitError::Limiter(e)) => {
                            tracing::warn!(error = %e, "rate limiter unavailable; the call is refused");
                            gw.inner.metrics.decision("limiter_unavailable");
                            ctx.decide(
                                "limiter_unavailable",
                                Some(&limits[0].rule),
                                Some(e.to_string()),
                            );
                            return Ok(answer(reply::unavailable(Some(call_id), "rate limiter")));
                        }
                        Ok(Outcome::Refused(refusal)) => {
                            let check = &limits[refusal.index];
                            let what = describe_limit(check);
                            gw.inner.metrics.decision("rate_limited");
                            ctx.decide(
                                "rate_limited",
                                Some(&check.rule),
                                Some(format!(
                                    "rate limit {what} reached, retry after {} ms",
                                    refusal.retry_after_ms
                                )),
                            );
                            return Ok(answer(reply::rate_limited(
                                call_id,
                                &what,
                                refusal.retry_after_ms,
                                meta(&check.rule, version),
                                revision,
                            )));
                        }
                        Ok(Outcome::Admitted(reservation)) => match then {
                            Proceed::Allow { rule } => (rule, Some(reservation)),
                            Proceed::NeedsApproval { rule, approval } => {
                                // Kept through the hold; refunded unless the call is forwarded.
                                let held = held_call(tool, rule, approval, Some(reservation));
                                return hold(gw, ctx, view, headers, session, held).await;
                            }
                        },
                    }
                }
            };
            gw.inner.metrics.decision("allow");
            ctx.decide("allow", Some(&rule), None);
            forward(
                gw,
                ctx,
                view,
                Method::POST,
                headers,
                Some(bytes.clone()),
                session,
                Expect::Call {
                    id: call_id.to_owned(),
                    reservation,
                },
                None,
            )
            .await
        }
        Some(method::TOOLS_LIST) if is_request => {
            gw.inner.metrics.decision("pass");
            forward(
                gw,
                ctx,
                view,
                Method::POST,
                headers,
                Some(bytes.clone()),
                session,
                Expect::ToolsList {
                    id: id.expect("a request has an id"),
                },
                None,
            )
            .await
        }
        // A notification cannot be answered, so it cannot be denied either: methods the gateway
        // decides on are accepted only as requests, or a call without an id would skip the policy.
        Some(m @ (method::TOOLS_CALL | "resources/read" | "prompts/get")) if !is_request => {
            let why =
                format!("{m} must be a request with an id; as a notification it cannot be decided");
            Ok(invalid_request(gw, ctx, None, why))
        }
        _ => {
            gw.inner.metrics.decision("pass");
            forward(
                gw,
                ctx,
                view,
                Method::POST,
                headers,
                Some(bytes.clone()),
                session,
                Expect::Other {
                    id: if is_request { id } else { None },
                },
                None,
            )
            .await
        }
    }
}

/// `Mcp-Param-*` headers of a `tools/call`, where the revision mirrors arguments into them (or
/// the client sent some anyway): compared with the arguments the tool's pinned schema marks; a
/// header the schema does not declare, or any when no snapshot is pinned, is refused too, since
/// something routing on headers could act on a value the policy never saw.
fn check_param_headers(
    view: &GrantView,
    revision: Revision,
    headers: &HeaderMap,
    call: &mcp::message::ToolCall<'_>,
) -> Result<(), mcp::headers::HeaderMismatch> {
    static NOT_MIRRORED: serde_json::Value = serde_json::Value::Null;
    let sends_params = headers
        .keys()
        .any(|name| name.as_str().starts_with(MCP_PARAM_PREFIX));
    if !revision.mirrors_headers() && !sends_params {
        return Ok(());
    }
    let schema = view
        .param_schemas
        .as_ref()
        .map(|schemas| schemas.get(call.name).unwrap_or(&NOT_MIRRORED));
    if let Some(schema) = schema {
        mcp::headers::check_param_headers(headers, schema, call.arguments)?;
    }
    mcp::headers::check_undeclared_param_headers(headers, schema)
}

/// A call of a tool whose live definition is not the pinned one is an unknown tool (DESIGN.md §5,
/// §8); one that cannot be checked (the upstream could not be listed) is refused, not forwarded.
async fn check_pins(
    gw: &Gateway,
    ctx: &mut Ctx,
    view: &GrantView,
    id: mcp::Id<'_>,
    tool: &str,
) -> Option<Response> {
    match gw.inner.pinning.check_call(view, tool).await {
        Ok(crate::pinning::CallCheck::Pinned) => None,
        Ok(crate::pinning::CallCheck::Unknown(why)) => {
            gw.inner.metrics.decision("unknown_tool");
            ctx.decide(
                "unknown_tool",
                None,
                Some(format!("Unknown tool: {tool} ({why})")),
            );
            Some(answer(reply::unknown_tool(id, tool)))
        }
        Err(failure) => {
            tracing::warn!(
                ?failure,
                "the upstream's tools could not be listed to check a call"
            );
            Some(upstream_failure(gw, ctx, Some(&id.to_owned()), failure))
        }
    }
}

/// `retry_task_rate` (30 per minute per grant)
fn describe_limit(check: &LimitCheck) -> String {
    let window = match check.window_secs {
        1 => "second".to_owned(),
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        s => format!("{s} s"),
    };
    format!(
        "`{}` ({} per {window} per {})",
        check.counter, check.max, check.scope
    )
}

/// A `tools/call` whose rule needs a human approval, with what forwarding it later takes.
#[derive(Debug)]
struct HeldCall<'a> {
    call_id: OwnedId,
    tool: String,
    arguments: Option<&'a serde_json::Value>,
    /// `params._meta.progressToken`: the client wants progress, so a held call keeps its SSE
    /// stream alive with `notifications/progress`.
    progress_token: Option<OwnedId>,
    rule: Pointer,
    approval: policy::Approval,
    revision: Revision,
    bytes: Bytes,
    /// Rate limits consumed before the hold: refunded unless the call is forwarded.
    reservation: Option<Reservation>,
}

/// An approved call goes through once: the approval of the same call (grant, tool, argument
/// hash) is taken if there is one; otherwise the pending approval is opened (or found) and the
/// request held up to the rule's `approval.wait` (capped by `approval_max_wait`) until a human
/// decides. Any store failure refuses the call: nothing is forwarded without a decision.
///
/// The hold runs in its own task, which owns the request's audit event from then on: if the
/// client goes away meanwhile, the task still records it (`approval_pending`) and refunds.
async fn hold(
    gw: &Gateway,
    ctx: &mut Ctx,
    view: &Arc<GrantView>,
    headers: &HeaderMap,
    session: Option<&Session>,
    mut held: HeldCall<'_>,
) -> Result<Response, GatewayError> {
    let key = crate::approval::CallKey {
        org: view.grant.organisation_id,
        server: view.grant.server_id,
        grant: view.grant.grant_id,
        tool: held.tool.clone(),
        hash: store::approval::arguments_hash(held.arguments),
    };
    match crate::approval::take(gw, &key).await {
        Ok(Some(taken)) => {
            let reservation = held.reservation.take();
            return forward_approved(gw, ctx, view, headers, session, &held, reservation, &taken)
                .await;
        }
        Ok(None) => {}
        Err(e) => return Ok(approval_store_failed(gw, ctx, &mut held, &e).await),
    }
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let redacted = audit::redact(held.arguments.unwrap_or(&empty));
    let opened = match crate::approval::open(
        gw,
        &key,
        &redacted,
        &ctx.stamp.request_id,
        session.map(|s| s.upstream_session_id.as_str()),
        Duration::from_secs(held.approval.timeout_secs),
    )
    .await
    {
        Ok(opened) => opened,
        Err(e) => return Ok(approval_store_failed(gw, ctx, &mut held, &e).await),
    };
    if opened.created {
        crate::webhook::announce(gw, key.org, &opened.approval);
    }
    let wait =
        Duration::from_secs(held.approval.wait_secs).min(gw.inner.settings.approval_max_wait);
    let sse = held.progress_token.is_some() && accepts_event_stream(headers);
    // The task owns the audit event from here on.
    let slot = if sse {
        Some(gw.inner.streams.open(view)?)
    } else {
        None
    };
    let task = HoldTask {
        gw: gw.clone(),
        ctx: Ctx {
            stamp: ctx.stamp.clone(),
            record: ctx.record.take(),
            // A limited call was written ahead in the limiter's round trip: the task completes
            // that entry (forwarded or not), so the call keeps one event.
            ticket: ctx.ticket.take(),
            rpc_id: ctx.rpc_id.clone(),
            forwarded: false,
        },
        view: view.clone(),
        headers: headers.clone(),
        session: session.cloned(),
        call_id: held.call_id,
        tool: held.tool,
        rule: held.rule,
        revision: held.revision,
        bytes: held.bytes,
        reservation: held.reservation,
        key,
        approval: opened.approval,
        wait,
    };
    let Some(slot) = slot else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(
            async move {
                let mut tx = tx;
                let response = task.run(|_| {}, tx.closed()).await;
                let _ = tx.send(response);
            }
            .in_current_span(),
        );
        return rx.await.map_err(|_| {
            GatewayError::ConfigUnavailable(anyhow::anyhow!(
                "the task holding the call ended without an answer"
            ))
        });
    };
    let token = held
        .progress_token
        .expect("an SSE hold has a progress token");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(
        async move {
            let mut sent = 0u64;
            let started = Instant::now();
            let progress = |a: &store::approval::Approval| {
                sent += 1;
                let message = format!(
                    "waiting for a human to decide approval {} ({} s so far)",
                    a.approval_id,
                    started.elapsed().as_secs()
                );
                let event = reply::progress(token.as_id(), sent, None, Some(&message));
                // A full channel means the client is slow: skipping a keep-alive is harmless.
                let _ = tx.try_send(Bytes::from(event.sse_event()));
            };
            let first = format!(
                "waiting for a human to decide approval {}",
                task.approval.approval_id
            );
            let _ = tx.try_send(Bytes::from(
                reply::progress(token.as_id(), 0, None, Some(&first)).sse_event(),
            ));
            let response = task.run(progress, tx.closed()).await;
            pipe_as_events(response, &tx).await;
        }
        .in_current_span(),
    );
    let body = futures_util::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), (rx, slot)))
    });
    let mut response = Response::new(HttpBody::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// A held call, moved into its own task.
#[derive(Debug)]
struct HoldTask {
    gw: Gateway,
    ctx: Ctx,
    view: Arc<GrantView>,
    headers: HeaderMap,
    session: Option<Session>,
    call_id: OwnedId,
    tool: String,
    rule: Pointer,
    revision: Revision,
    bytes: Bytes,
    reservation: Option<Reservation>,
    key: crate::approval::CallKey,
    approval: store::approval::Approval,
    wait: Duration,
}

impl HoldTask {
    /// Waits for the decision, answers accordingly, and records the audit event (also when the
    /// client went away, which `gone` says).
    async fn run(
        mut self,
        tick: impl FnMut(&store::approval::Approval),
        gone: impl std::future::Future<Output = ()>,
    ) -> Response {
        use crate::approval::Verdict;
        let gw = self.gw.clone();
        let mut reservation = self.reservation.take();
        let verdict =
            crate::approval::wait(&gw, &self.key, self.approval.clone(), self.wait, tick, gone)
                .await;
        let gone = matches!(verdict, Verdict::Gone(_));
        let decision = reply::Decision {
            rule: self.rule.as_str(),
            policy_version: self.view.policy_version,
        };
        let id = self.call_id.as_id();
        let tool = &self.tool;
        let response = match verdict {
            Verdict::Approved(taken) => {
                let held = HeldCall {
                    call_id: self.call_id.clone(),
                    tool: self.tool.clone(),
                    arguments: None,
                    progress_token: None,
                    rule: self.rule.clone(),
                    approval: policy::Approval::default(),
                    revision: self.revision,
                    bytes: self.bytes.clone(),
                    reservation: None,
                };
                let forwarded = forward_approved(
                    &gw,
                    &mut self.ctx,
                    &self.view,
                    &self.headers,
                    self.session.as_ref(),
                    &held,
                    reservation.take(),
                    &taken,
                )
                .await;
                match forwarded {
                    Ok(response) => response,
                    Err(e) => {
                        gw.inner.metrics.decision(e.kind());
                        if let Some(r) = &mut self.ctx.record {
                            r.decision = "rejected";
                            r.message = Some(e.to_string());
                        }
                        e.into_response()
                    }
                }
            }
            Verdict::Denied(a) => {
                let who = decided_by(&a);
                let comment = a.comment.as_deref().unwrap_or("no reason given");
                let message = format!(
                    "approval {} for `{tool}` was denied by {who}: {comment}",
                    a.approval_id
                );
                refund_held(&gw, reservation.take()).await;
                gw.inner.metrics.decision("deny");
                self.ctx
                    .decide("deny", Some(&self.rule), Some(message.clone()));
                answer(reply::denied(id, &message, decision, self.revision))
            }
            Verdict::Expired(a) => {
                let message = format!(
                    "approval {} for `{tool}` expired before anyone decided; the call was not forwarded. Call again to ask for a new approval.",
                    a.approval_id
                );
                refund_held(&gw, reservation.take()).await;
                gw.inner.metrics.decision("approval_expired");
                self.ctx
                    .decide("approval_expired", Some(&self.rule), Some(message.clone()));
                answer(reply::denied(id, &message, decision, self.revision))
            }
            Verdict::Pending(a) | Verdict::Gone(a) => {
                let approval_id = a.approval_id.to_string();
                let expires = a
                    .expires_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let message = format!(
                    "is waiting for a human to approve `{tool}`; no one decided within {} s, and the call was not forwarded. Call again with the same arguments once it is approved (it runs once per approval); it expires at {expires} if no one decides.",
                    self.wait.as_secs()
                );
                refund_held(&gw, reservation.take()).await;
                gw.inner.metrics.decision("approval_pending");
                let audit_message = if gone {
                    format!(
                        "approval {approval_id} pending; the client went away while the call was held"
                    )
                } else {
                    format!("approval {approval_id} pending; no decision within the wait")
                };
                self.ctx
                    .decide("approval_pending", Some(&self.rule), Some(audit_message));
                answer(reply::approval_pending(
                    id,
                    &approval_id,
                    &message,
                    decision,
                    self.revision,
                ))
            }
            Verdict::Unavailable(e) => {
                tracing::error!(error = %e, "approval store unavailable; the held call is refused");
                refund_held(&gw, reservation.take()).await;
                gw.inner.metrics.decision("approval_unavailable");
                self.ctx.decide(
                    "approval_unavailable",
                    Some(&self.rule),
                    Some(e.to_string()),
                );
                answer(reply::unavailable(Some(id), "approval store"))
            }
        };
        finish_audit(&gw, &mut self.ctx, response).await
    }
}

async fn refund_held(gw: &Gateway, reservation: Option<Reservation>) {
    if let Some(reservation) = reservation {
        refund(gw, reservation).await;
    }
}

/// Who decided, as the agent and the audit log are told: the person's email, else how.
fn decided_by(a: &store::approval::Approval) -> String {
    match (&a.decided_by_email, a.decided_via.as_deref()) {
        (Some(email), _) => email.clone(),
        (None, Some("cli")) => "an operator (CLI)".into(),
        (None, Some("api")) => "an API key".into(),
        _ => "an approver".into(),
    }
}

/// Forwards a call whose approval this request took (consumed): exactly once.
#[allow(clippy::too_many_arguments)] // the held call's parts, as forward takes them
async fn forward_approved(
    gw: &Gateway,
    ctx: &mut Ctx,
    view: &Arc<GrantView>,
    headers: &HeaderMap,
    session: Option<&Session>,
    held: &HeldCall<'_>,
    reservation: Option<Reservation>,
    taken: &store::approval::Approval,
) -> Result<Response, GatewayError> {
    gw.inner.metrics.decision("approved");
    let comment = taken
        .comment
        .as_deref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    ctx.decide(
        "approved",
        Some(&held.rule),
        Some(format!(
            "approval {} approved by {}{comment}",
            taken.approval_id,
            decided_by(taken)
        )),
    );
    forward(
        gw,
        ctx,
        view,
        Method::POST,
        headers,
        Some(held.bytes.clone()),
        session,
        Expect::Call {
            id: held.call_id.clone(),
            reservation,
        },
        None,
    )
    .await
}

/// The approval store could not be read or written: the call is refused, its limits refunded.
async fn approval_store_failed(
    gw: &Gateway,
    ctx: &mut Ctx,
    held: &mut HeldCall<'_>,
    e: &store::Error,
) -> Response {
    tracing::error!(error = %e, "approval store unavailable; the call is refused");
    if let Some(reservation) = held.reservation.take() {
        refund(gw, reservation).await;
    }
    gw.inner.metrics.decision("approval_unavailable");
    ctx.decide(
        "approval_unavailable",
        Some(&held.rule),
        Some(e.to_string()),
    );
    answer(reply::unavailable(
        Some(held.call_id.as_id()),
        "approval store",
    ))
}

/// Sends a held call's final answer on its SSE stream: an SSE answer (a forwarded call's
/// stream) passes as it is, a JSON one becomes one `message` event.
async fn pipe_as_events(response: Response, tx: &tokio::sync::mpsc::Sender<Bytes>) {
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    let mut body = response.into_body().into_data_stream();
    if is_stream {
        while let Some(Ok(chunk)) = body.next().await {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        return;
    }
    let mut buf = BytesMut::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.extend_from_slice(&chunk);
    }
    let event = match std::str::from_utf8(&buf) {
        Ok(text) if !text.trim().is_empty() => mcp::sse::message_event(text),
        _ => reply::upstream_failed(None, UpstreamFailure::BadResponse).sse_event(),
    };
    let _ = tx.send(Bytes::from(event)).await;
}

async fn refund(gw: &Gateway, reservation: Reservation) {
    if let Err(e) = gw.inner.limiter.refund(reservation).await {
        // The slot stays taken, which errs on the safe side.
        tracing::warn!(error = %e, "could not refund a rate-limit reservation");
    }
}

/// What the gateway must do with the upstream's answer.
#[derive(Debug)]
enum Expect {
    /// A `tools/list` request: filter the result.
    ToolsList { id: OwnedId },
    /// An allowed `tools/call`: holds the limiter's reservation until the upstream has the call.
    Call {
        id: OwnedId,
        reservation: Option<Reservation>,
    },
    /// Anything else; `id` when it is a request (for an upstream-failure reply).
    Other { id: Option<OwnedId> },
}

impl Expect {
    fn id(&self) -> Option<&OwnedId> {
        match self {
            Expect::ToolsList { id } | Expect::Call { id, .. } => Some(id),
            Expect::Other { id } => id.as_ref(),
        }
    }
}

/// The upstream failed: a JSON-RPC error for a request, and for anything else (GET, DELETE,
/// notifications) the same error body with 502/504, since there is no request to answer.
fn upstream_failure(
    gw: &Gateway,
    ctx: &mut Ctx,
    id: Option<&OwnedId>,
    failure: UpstreamFailure,
) -> Response {
    tracing::warn!(?failure, "upstream failed");
    gw.inner.metrics.decision("upstream_failed");
    if let Some(r) = &mut ctx.record {
        r.decision = "upstream_error";
        r.message = Some(format!("upstream failed: {failure:?}"));
    }
    let reply = reply::upstream_failed(id.map(OwnedId::as_id), failure);
    let mut response = answer(reply);
    if id.is_none() {
        *response.status_mut() = match failure {
            UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
    }
    response
}

#[allow(clippy::too_many_arguments)] // one call site per method; a struct would only rename them
async fn forward(
    gw: &Gateway,
    ctx: &mut Ctx,
    view: &Arc<GrantView>,
    method: Method,
    headers: &HeaderMap,
    body: Option<Bytes>,
    session: Option<&Session>,
    mut expect: Expect,
    stream: Option<Slot>,
) -> Result<Response, GatewayError> {
    let inner = &gw.inner;
    let settings = &inner.settings;
    let mut out = mcp::headers::forwardable_request_headers(headers);
    if let Some(value) = session.and_then(|s| mcp::headers::header_value(&s.upstream_session_id)) {
        out.insert(MCP_SESSION_ID, value);
    }
    // The server's own credentials, after the client's headers so they always win.
    for (name, value) in &view.upstream_headers {
        out.insert(name.clone(), value.clone());
    }
    let egress = crate::egress::Egress {
        allow_private: settings.allow_private_upstreams,
    };
    if let Err(why) = egress.check_url(&view.upstream_url) {
        // Never dialled, so the call never reached anyone: its slot is given back.
        if let Expect::Call { reservation, .. } = &mut expect
            && let Some(reservation) = reservation.take()
        {
            refund(gw, reservation).await;
        }
        tracing::warn!(%why, "upstream address refused");
        return Ok(upstream_failure(
            gw,
            ctx,
            expect.id(),
            UpstreamFailure::Unreachable,
        ));
    }
    let mut request = inner
        .http
        .request(method.clone(), view.upstream_url.clone())
        .headers(out);
    if let Some(body) = body {
        request = request.body(body);
    }
    // Nothing leaves for the upstream unless its audit event is written ahead (a limited call's
    // was, in the limiter's round trip).
    if ctx.ticket.is_none()
        && let Some(record) = &mut ctx.record
    {
        match crate::event::write_ahead(&inner.journal, record, &ctx.stamp).await {
            Ok(ticket) => ctx.ticket = Some(ticket),
            Err(e) => {
                if let Expect::Call { reservation, .. } = &mut expect
                    && let Some(reservation) = reservation.take()
                {
                    refund(gw, reservation).await;
                }
                tracing::error!(error = %e, "audit log unavailable; the request is refused");
                inner.metrics.decision("audit_unavailable");
                record.decision = "audit_unavailable";
                record.message = Some(e.to_string());
                return Ok(audit_unavailable(expect.id()));
            }
        }
    }
    let started = Instant::now();
    ctx.forwarded = true;
    let sent = tokio::time::timeout(settings.response_timeout, request.send()).await;
    inner.metrics.upstream(started.elapsed());
    let reservation = match &mut expect {
        Expect::Call { reservation, .. } => reservation.take(),
        _ => None,
    };
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) if e.is_connect() => {
            // No connection, so the upstream never saw the call: its slot is given back.
            if let Some(reservation) = reservation {
                refund(gw, reservation).await;
            }
            tracing::warn!(error = %e, "upstream unreachable");
            return Ok(upstream_failure(
                gw,
                ctx,
                expect.id(),
                UpstreamFailure::Unreachable,
            ));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream request failed");
            let failure = if e.is_timeout() {
                UpstreamFailure::Timeout
            } else {
                UpstreamFailure::BadResponse
            };
            return Ok(upstream_failure(gw, ctx, expect.id(), failure));
        }
        Err(_) => {
            return Ok(upstream_failure(
                gw,
                ctx,
                expect.id(),
                UpstreamFailure::Timeout,
            ));
        }
    };
    // The upstream has the call: the reservation's slot stays consumed.
    drop(reservation);
    let deadline = started + settings.response_timeout;
    let status = response.status();
    ctx.upstream_status(status);
    let mut out_headers = mcp::headers::forwardable_response_headers(response.headers());

    if let Some(upstream_session) = response.headers().get(MCP_SESSION_ID) {
        let binding = Binding {
            grant_id: &view.grant_id,
            server_id: &view.server,
        };
        let sealed = upstream_session
            .to_str()
            .map_err(|_| SessionError::InvalidUpstreamId)
            .and_then(|usid| {
                mcp::session::seal(&inner.session_key, usid, binding, now_secs(), None)
            });
        match sealed.ok().and_then(|s| mcp::headers::header_value(&s)) {
            Some(value) => {
                out_headers.insert(MCP_SESSION_ID, value);
            }
            None => {
                return Ok(upstream_failure(
                    gw,
                    ctx,
                    expect.id(),
                    UpstreamFailure::BadResponse,
                ));
            }
        }
    }

    // An upstream 401/403 is about the gateway's credentials, and a 5xx about the upstream:
    // neither is the client's to act on, so both become "the upstream failed".
    if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_server_error()
    {
        return Ok(upstream_failure(
            gw,
            ctx,
            expect.id(),
            UpstreamFailure::Status(status.as_u16()),
        ));
    }
    if !status.is_success() {
        // Error bodies are small; read them to tell an unknown session apart.
        let (bytes, held) = match read_upstream(gw, response, deadline).await {
            Ok(read) => read,
            Err(e) => return Ok(unread(gw, ctx, expect.id(), e)),
        };
        // Some servers answer an unknown session with 400; clients re-initialise only on 404.
        let status = if status == StatusCode::BAD_REQUEST
            && session.is_some()
            && String::from_utf8_lossy(&bytes)
                .to_ascii_lowercase()
                .contains("session")
        {
            StatusCode::NOT_FOUND
        } else {
            status
        };
        return Ok(build(
            status,
            out_headers,
            budget::holding(HttpBody::from(bytes), held),
        ));
    }

    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("text/event-stream") {
        // Every stream counts against the replica's and the organisation's caps (a GET took its
        // slot before asking; a POST learns only now that its answer is a stream), and is
        // parsed, filtered, re-checked and bounded in time by `streams`. A request's stream that
        // falls silent longer than the response timeout ends with the request's timeout error.
        let slot = match stream {
            Some(slot) => slot,
            None => inner.streams.open(view)?,
        };
        let request = match &expect {
            Expect::Other { id } => id.clone(),
            Expect::ToolsList { id } | Expect::Call { id, .. } => Some(id.clone()),
        };
        let idle = if request.is_some() {
            settings.response_timeout
        } else {
            settings.stream_idle_timeout
        };
        let body = HttpBody::from_stream(crate::streams::body(
            response,
            crate::streams::Proxied {
                slot,
                request,
                tools_list: matches!(expect, Expect::ToolsList { .. }),
                idle,
                lifetime: settings.stream_max_lifetime,
                max_event_bytes: settings.max_sse_event_bytes,
                pinning: inner.pinning.clone(),
            },
        ));
        let mut out = build(status, out_headers, body);
        // Tell buffering reverse proxies in front of us to pass events as they come.
        out.headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        return Ok(out);
    }
    if content_type.starts_with("application/json") {
        let (bytes, held) = match read_upstream(gw, response, deadline).await {
            Ok(read) => read,
            Err(e) => return Ok(unread(gw, ctx, expect.id(), e)),
        };
        let bytes = match &expect {
            Expect::ToolsList { .. } => {
                let listed = mcp::tools_list::filter(&bytes, |name, definition| {
                    view.policy.visible(name) && crate::pinning::admits(view, name, definition)
                });
                match listed {
                    Ok(filtered) => {
                        inner.pinning.observe(view, &filtered.tools);
                        Bytes::from(filtered.bytes.into_owned())
                    }
                    Err(mcp::tools_list::ToolsListError::ErrorResponse) => bytes,
                    Err(e) => {
                        tracing::warn!(error = %e, "unusable tools/list answer");
                        return Ok(upstream_failure(
                            gw,
                            ctx,
                            expect.id(),
                            UpstreamFailure::BadResponse,
                        ));
                    }
                }
            }
            Expect::Call { .. } | Expect::Other { .. } => {
                if mcp::message::parse(&bytes).is_err() {
                    return Ok(upstream_failure(
                        gw,
                        ctx,
                        expect.id(),
                        UpstreamFailure::BadResponse,
                    ));
                }
                if let (Expect::Call { .. }, Some(r)) = (&expect, &mut ctx.record) {
                    r.is_error = result_is_error(&bytes);
                }
                bytes
            }
        };
        return Ok(build(
            status,
            out_headers,
            budget::holding(HttpBody::from(bytes), held),
        ));
    }
    // 202 Accepted and other bodiless answers pass as they are; anything else that is neither
    // JSON nor SSE is not MCP, and its bytes never reach the client (an upstream URL must not
    // become a way to read arbitrary HTTP resources).
    if (method == Method::POST && expect.id().is_some()) || !content_type.is_empty() {
        return Ok(upstream_failure(
            gw,
            ctx,
            expect.id(),
            UpstreamFailure::BadResponse,
        ));
    }
    let bytes = match read_upstream(gw, response, deadline).await {
        Ok((bytes, _)) if bytes.is_empty() => bytes,
        Ok(_) => {
            return Ok(upstream_failure(
                gw,
                ctx,
                expect.id(),
                UpstreamFailure::BadResponse,
            ));
        }
        Err(e) => return Ok(unread(gw, ctx, expect.id(), e)),
    };
    Ok(build(status, out_headers, HttpBody::from(bytes)))
}

fn build(status: StatusCode, headers: HeaderMap, body: HttpBody) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Why an upstream body the gateway must read was not read.
#[derive(Debug)]
enum Unread {
    Upstream(UpstreamFailure),
    /// The replica's budget of buffered bytes is spent.
    Busy,
}

/// Reads an upstream body the gateway must look at, within the size limit, the deadline and the
/// replica's budget of buffered bytes (held until the client's response has been sent).
async fn read_upstream(
    gw: &Gateway,
    mut response: reqwest::Response,
    deadline: Instant,
) -> Result<(Bytes, Held), Unread> {
    let max = gw.inner.settings.max_response_bytes;
    let read = async {
        let mut held = Held::default();
        let mut buf = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| Unread::Upstream(UpstreamFailure::BadResponse))?
        {
            if buf.len() + chunk.len() > max {
                return Err(Unread::Upstream(UpstreamFailure::BadResponse));
            }
            gw.inner
                .budget
                .take(&mut held, chunk.len())
                .map_err(|Spent| Unread::Busy)?;
            buf.extend_from_slice(&chunk);
        }
        Ok((buf.freeze(), held))
    };
    tokio::time::timeout_at(deadline.into(), read)
        .await
        .unwrap_or(Err(Unread::Upstream(UpstreamFailure::Timeout)))
}

/// The answer for an upstream body that was not read.
fn unread(gw: &Gateway, ctx: &mut Ctx, id: Option<&OwnedId>, why: Unread) -> Response {
    match why {
        Unread::Upstream(failure) => upstream_failure(gw, ctx, id, failure),
        Unread::Busy => {
            tracing::warn!("buffered-bytes budget spent; an upstream answer was dropped");
            gw.inner.metrics.decision("busy");
            if let Some(r) = &mut ctx.record {
                r.message = Some("the gateway's budget of buffered bytes was spent".into());
            }
            let reply = reply::error(
                id.map(OwnedId::as_id),
                mcp::code::INTERNAL_ERROR,
                "Gatehouse is holding too many answers in memory right now and dropped the upstream's answer; retry shortly",
                Some(&serde_json::json!({ "gateway": "busy" })),
                StatusCode::OK,
            );
            let mut response = answer(reply);
            if id.is_none() {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn result_is_error(bytes: &[u8]) -> Option<bool> {
    #[derive(serde::Deserialize)]
    struct Response {
        result: Option<ResultProbe>,
    }
    #[derive(serde::Deserialize)]
    struct ResultProbe {
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    serde_json::from_slice::<Response>(bytes)
        .ok()
        .and_then(|r| r.result)
        .map(|r| r.is_error)
}

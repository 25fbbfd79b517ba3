//! The one error type at the gateway's HTTP boundary: everything that stops a request before a
//! JSON-RPC answer can be given about the message itself. Answers about the message (denials,
//! unknown tools, upstream failures) are `mcp::reply` replies, not errors.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why the gateway refused a request at the HTTP level.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The `Host` header names a host this gateway does not serve. The client sees 403 (the
    /// DNS-rebinding guard of the Streamable HTTP transport).
    #[error("the Host header `{0}` is not one this gateway serves")]
    HostNotAllowed(String),
    /// The `Origin` header is not allowed. The client sees 403.
    #[error("the Origin `{0}` is not allowed")]
    OriginNotAllowed(String),
    /// No `Authorization: Bearer` token. The client sees 401 with `WWW-Authenticate: Bearer`.
    #[error("this endpoint needs `Authorization: Bearer <grant token>`")]
    MissingToken,
    /// A token that is unknown, revoked or expired. The client sees 401 with
    /// `WWW-Authenticate: Bearer error="invalid_token"`; which of the three is not said.
    #[error("the grant token is not valid (unknown, revoked or expired)")]
    InvalidToken,
    /// A valid token used on another server's URL (another organisation's included). The client
    /// sees 403.
    #[error("this grant token is not for this server")]
    WrongServer,
    /// The request body is larger than the configured maximum. The client sees 413.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read from the client. The client sees 400.
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The `Mcp-Session-Id` did not open for this grant and server (not ours, tampered with,
    /// another grant's, expired). The client sees 404, after which MCP clients start a new session.
    #[error("session not found: {0}")]
    Session(#[from] mcp::session::SessionError),
    /// The client took longer than the configured time to send its body. The client sees 408.
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    BodyTimeout(std::time::Duration),
    /// This replica already proxies its maximum of SSE streams. The client sees 503.
    #[error("too many open streams on this gateway replica")]
    TooManyStreams,
    /// The grant's organisation already holds its share of this replica's streams. The client
    /// sees 503.
    #[error("this organisation already has {0} open streams on this gateway replica")]
    TooManyOrgStreams(usize),
    /// Too many invalid tokens came from the client's address; tokens the gateway does not
    /// already know are refused for a while without reading the store. The client sees 429 with
    /// `Retry-After`.
    #[error("too many invalid grant tokens from this address; retry after {} s", retry_secs(*.0))]
    TooManyFailures(std::time::Duration),
    /// The replica holds its maximum of buffered request and answer bytes. The client sees 503
    /// with `Retry-After`.
    #[error("the gateway is holding too many request and answer bytes right now; retry shortly")]
    Busy,
    /// The configuration (grant, server, policy) could not be read or used. The client sees 503;
    /// the cause is logged, never shown (fail closed).
    #[error("the gateway's configuration store is unavailable")]
    ConfigUnavailable(#[source] anyhow::Error),
}

impl GatewayError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            GatewayError::HostNotAllowed(_) | GatewayError::OriginNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            GatewayError::MissingToken | GatewayError::InvalidToken => StatusCode::UNAUTHORIZED,
            // 403, not 404: the token is real, it just does not open this door; saying so helps
            // an operator who pasted the wrong URL, and reveals nothing the token holder lacks.
            GatewayError::WrongServer => StatusCode::FORBIDDEN,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyUnreadable => StatusCode::BAD_REQUEST,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::TooManyFailures(_) => StatusCode::TOO_MANY_REQUESTS,
            // 404 is what the transport prescribes for a session the server does not know:
            // clients re-initialise on it, which is the right outcome for a foreign session id too.
            GatewayError::Session(_) => StatusCode::NOT_FOUND,
            GatewayError::TooManyStreams
            | GatewayError::TooManyOrgStreams(_)
            | GatewayError::Busy
            | GatewayError::ConfigUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short name for metrics and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            GatewayError::HostNotAllowed(_) => "host_not_allowed",
            GatewayError::OriginNotAllowed(_) => "origin_not_allowed",
            GatewayError::MissingToken => "missing_token",
            GatewayError::InvalidToken => "invalid_token",
            GatewayError::WrongServer => "wrong_server",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::BodyUnreadable => "body_unreadable",
            GatewayError::Session(_) => "session_not_found",
            GatewayError::BodyTimeout(_) => "body_timeout",
            GatewayError::TooManyStreams => "too_many_streams",
            GatewayError::TooManyOrgStreams(_) => "too_many_org_streams",
            GatewayError::TooManyFailures(_) => "too_many_token_failures",
            GatewayError::Busy => "busy",
            GatewayError::ConfigUnavailable(_) => "config_unavailable",
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = match self {
            GatewayError::BodyUnreadable => mcp::code::PARSE_ERROR,
            GatewayError::BodyTooLarge(_) | GatewayError::BodyTimeout(_) => {
                mcp::code::INVALID_REQUEST
            }
            _ => mcp::code::INTERNAL_ERROR,
        };
        if let GatewayError::ConfigUnavailable(cause) = &self {
            // Logged once here, inside the request's span; the client gets the generic text.
            tracing::error!(error = format!("{cause:#}"), "configuration unavailable");
        }
        let reply = mcp::reply::error(None, code, &self.to_string(), None, status);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            reply.into_json(),
        )
            .into_response();
        let challenge = match self {
            GatewayError::MissingToken => Some(r#"Bearer realm="gatehouse""#),
            GatewayError::InvalidToken => Some(
                r#"Bearer realm="gatehouse", error="invalid_token", error_description="the grant token is unknown, revoked or expired""#,
            ),
            _ => None,
        };
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        let retry_after = match self {
            GatewayError::TooManyFailures(wait) => Some(retry_secs(wait)),
            GatewayError::Busy => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Whole seconds to wait, at least one.
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

//! Errors of the JSON API as RFC 9457 problem details (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use store::Role;
use utoipa::ToSchema;

use crate::error::Error;

/// The media type of every error answer.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// A problem: what went wrong, in a form programs can branch on (`type`, `status`) and people
/// can read (`title`, `detail`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Problem {
    /// Identifies the kind of problem, e.g. `tag:gatehouse,2026:problem/not-found`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    pub(crate) title: String,
    /// The HTTP status code.
    pub(crate) status: u16,
    /// What happened this time.
    pub(crate) detail: String,
    /// Each finding of a refused policy document, at its place.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) errors: Vec<FieldError>,
}

/// One finding in a request body: where it is (a JSON Pointer, and the line and column of the
/// document as sent) and what is wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FieldError {
    /// JSON Pointer into the document (`""` for the document as a whole).
    pub(crate) pointer: String,
    /// 1-based line in the document as sent.
    pub(crate) line: usize,
    /// 1-based column (in characters) in that line.
    pub(crate) column: usize,
    /// `error` (the document is refused) or `warning` (accepted, but probably not meant).
    pub(crate) severity: String,
    pub(crate) detail: String,
}

impl FieldError {
    pub(crate) fn of(d: &policy::Diagnostic) -> FieldError {
        FieldError {
            pointer: d.pointer.as_str().to_owned(),
            line: d.line,
            column: d.column,
            severity: match d.severity {
                policy::Severity::Error => "error",
                policy::Severity::Warning => "warning",
            }
            .to_owned(),
            detail: d.message.clone(),
        }
    }
}

/// The kinds of problem, each with its status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    BadRequest,
    Invalid,
    PolicyInvalid,
    TooLarge,
    UnsupportedMediaType,
    Upstream,
    Internal,
}

impl Kind {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Kind::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "API key missing or not valid",
            ),
            Kind::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "The API key's role does not allow this",
            ),
            Kind::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Kind::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "Conflicts with what exists",
            ),
            Kind::BadRequest => (StatusCode::BAD_REQUEST, "bad-request", "Malformed request"),
            Kind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid input"),
            Kind::PolicyInvalid => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy-invalid",
                "The policy document is not valid",
            ),
            Kind::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            ),
            Kind::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Kind::Upstream => (
                StatusCode::BAD_GATEWAY,
                "upstream",
                "The upstream MCP server failed",
            ),
            Kind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }
}

/// The prefix of every problem type: a tag URI (RFC 4151), stable and never dereferenced.
pub(crate) const TYPE_PREFIX: &str = "tag:gatehouse,2026:problem/";

impl Problem {
    pub(crate) fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        let (status, slug, title) = kind.parts();
        Problem {
            kind: format!("{TYPE_PREFIX}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn not_found() -> Problem {
        Problem::new(
            Kind::NotFound,
            "There is nothing here, or it belongs to another organisation.",
        )
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> Problem {
        Problem::new(Kind::Invalid, detail)
    }

    /// A policy document refused by the validator, with every finding.
    pub(crate) fn policy(diagnostics: &policy::Diagnostics) -> Problem {
        let n = diagnostics
            .0
            .iter()
            .filter(|d| d.severity == policy::Severity::Error)
            .count();
        let mut p = Problem::new(
            Kind::PolicyInvalid,
            format!(
                "The policy has {n} problem{}; nothing was published.",
                if n == 1 { "" } else { "s" }
            ),
        );
        p.errors = diagnostics.0.iter().map(FieldError::of).collect();
        p
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let body = serde_json::to_vec(&self).expect("a problem serialises");
        let mut response = (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="gatehouse-api", error="invalid_token""#),
            );
        }
        response
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        match e {
            Error::NotFound => Problem::not_found(),
            Error::Forbidden { needed } => forbidden(needed),
            Error::Conflict(m) => Problem::new(Kind::Conflict, m),
            Error::Invalid(m) => Problem::invalid(m),
            Error::TooLarge => Problem::new(
                Kind::TooLarge,
                "The request body is larger than this operation accepts.",
            ),
            Error::Upstream(m) => Problem::new(Kind::Upstream, m),
            // Web-only outcomes; the API authenticates by key and has no forms.
            Error::SignInRequired | Error::NoOrganisation | Error::Csrf => Problem::new(
                Kind::Unauthorized,
                "Send an API key as `Authorization: Bearer gha_…`.",
            ),
            Error::Throttled { .. } => Problem::new(Kind::Internal, "Throttled."),
            Error::Internal(e) => {
                tracing::error!(error = ?e, "API request failed");
                Problem::new(
                    Kind::Internal,
                    "Gatehouse could not complete this request. It has been logged; try again in a moment.",
                )
            }
        }
    }
}

impl From<store::Error> for Problem {
    fn from(e: store::Error) -> Problem {
        match e {
            store::Error::Invalid { field, reason } => {
                Problem::invalid(format!("{field} {reason}"))
            }
            e => Error::from(e).into(),
        }
    }
}

pub(crate) fn forbidden(needed: Role) -> Problem {
    Problem::new(
        Kind::Forbidden,
        format!("This needs an API key with the {needed} role (or a higher one)."),
    )
}

/// The result type of API handlers.
pub(crate) type ApiResult<T> = std::result::Result<T, Problem>;

//! The one error type of the web app and how each kind is answered.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use store::Role;

use crate::views::{ErrorPage, Page, render};

/// Everything a handler can fail with. Each variant's doc says what the browser gets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not signed in: a redirect (303) to the sign-in page.
    #[error("sign in required")]
    SignInRequired,
    /// Signed in, but the role is below what the route needs: 403.
    #[error("this needs the {needed} role")]
    Forbidden { needed: Role },
    /// Signed in, but no longer a member of the organisation the session looks at: 403.
    #[error("not a member of an organisation")]
    NoOrganisation,
    /// A state-changing request without the session's synchroniser token: 403.
    #[error("the form's security token is missing or stale")]
    Csrf,
    /// Unknown id, or another organisation's (indistinguishable on purpose): 404.
    #[error("not found")]
    NotFound,
    /// Breaks a uniqueness rule (a second server with the same name): 409 with the reason.
    #[error("{0}")]
    Conflict(String),
    /// Input refused: 422 with the reason. Forms usually re-render themselves instead.
    #[error("{0}")]
    Invalid(String),
    /// The request body is larger than any form needs: 413.
    #[error("request too large")]
    TooLarge,
    /// Too many failed sign-ins: 429 with Retry-After.
    #[error("too many attempts")]
    Throttled { retry_after_secs: u64 },
    /// The upstream could not be reached or is not an MCP server: 502 with the reason.
    #[error("{0}")]
    Upstream(String),
    /// Anything unexpected (database down, a bug): a generic 500, logged once here.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::NotFound { .. } => Error::NotFound,
            store::Error::Conflict { message, .. } => Error::Conflict(message),
            store::Error::Invalid { field, reason } => Error::Invalid(format!("{field}: {reason}")),
            e @ (store::Error::Secret(_)
            | store::Error::Audit(_)
            | store::Error::Migrate(_)
            | store::Error::Database(_)) => Error::Internal(e.into()),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            Error::SignInRequired => return Redirect::to("/login").into_response(),
            // 403, not 404: the person can see the thing exists (a viewer sees servers), they
            // only may not change it.
            Error::Forbidden { needed } => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                format!("This needs the {needed} role in this organisation. Ask an admin if you need it."),
            ),
            Error::NoOrganisation => (
                StatusCode::FORBIDDEN,
                "No organisation",
                "You are not a member of an organisation any more. Ask an admin to invite you again.".into(),
            ),
            Error::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from a current Gatehouse page (or your session ended). Go back, reload the page and try again.".into(),
            ),
            Error::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it belongs to another organisation.".into(),
            ),
            Error::Conflict(m) => (StatusCode::CONFLICT, "Already exists", m.clone()),
            Error::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input", m.clone()),
            Error::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "What you sent is larger than any form here accepts.".into(),
            ),
            Error::Throttled { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!(
                    "Too many failed sign-ins. Try again in {} minutes.",
                    retry_after_secs.div_ceil(60)
                ),
            ),
            // 502: the fault is the upstream's, not the request's.
            Error::Upstream(m) => (StatusCode::BAD_GATEWAY, "Upstream problem", m.clone()),
            Error::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Gatehouse could not complete this request. It has been logged; try again in a moment.".into(),
                )
            }
        };
        let page = ErrorPage {
            page: Page::bare(title),
            message,
        };
        let mut response = (status, render(&page)).into_response();
        if let Error::Throttled { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// The result type of handlers.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

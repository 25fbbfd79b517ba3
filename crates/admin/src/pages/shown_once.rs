//! What the forms that mint a secret shown once (grant tokens, API keys, invitation links) share:
//! the expiry choice, committing the mint (the page that shows the secret is rendered only after
//! the commit) or rolling it back with what the person can fix, the form shown again with 422, and
//! the notice a list shows after a revocation.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::OrgTx;
use time::Duration;

use crate::error::Result;
use crate::views::render;

/// The lifetime a form's expiry choice (`"never"`, or `"<days>d"` for one of `days`) stands for.
pub(crate) fn lifetime(
    choice: &str,
    days: &[i64],
) -> std::result::Result<Option<Duration>, String> {
    if matches!(choice, "never" | "") {
        return Ok(None);
    }
    days.iter()
        .find(|d| choice == format!("{d}d"))
        .map(|d| Some(Duration::days(*d)))
        .ok_or_else(|| "Choose an expiry from the list.".into())
}

/// The store's answer to a mint in `tx`: committed and returned, so its secret can be shown once;
/// or, for an error `fixable` explains, rolled back with the explanation added to `errors`
/// (`None`). Any other error is returned.
pub(crate) async fn commit_or_refuse<T>(
    tx: OrgTx,
    minted: store::Result<T>,
    errors: &mut Vec<String>,
    fixable: impl FnOnce(&store::Error) -> Option<String>,
) -> Result<Option<T>> {
    match minted {
        Ok(minted) => {
            tx.commit().await?;
            Ok(Some(minted))
        }
        Err(e) => match fixable(&e) {
            Some(message) => {
                tx.rollback().await?;
                errors.push(message);
                Ok(None)
            }
            None => Err(e.into()),
        },
    }
}

/// The form's page again, with its errors: 422.
pub(crate) fn refused(page: &impl Template) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, render(page)).into_response()
}

/// `?done=…` on a list page after an action.
#[derive(Debug, Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

impl DoneQuery {
    /// `text` when the action that led here was `done`.
    pub(crate) fn notice(&self, done: &str, text: &str) -> Option<String> {
        (self.done.as_deref() == Some(done)).then(|| text.to_owned())
    }
}

//! The organisation's webhook for new approvals (admins): where the gateway announces each new
//! approval with a signed `POST`, set or replaced with a new signing secret shown once, or removed.
//! The page explains how a receiver checks the signature, exactly as `gateway::webhook` signs.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use store::approval::ApprovalWebhook;
use store::secret::Redacted;

use crate::AppState;
use crate::auth::{Admin, Member};
use crate::error::Result;
use crate::pages::shown_once::{DoneQuery, commit_or_refuse, refused};
use crate::pages::when;
use crate::views::{Page, render};

/// The longest webhook URL (the store's limit too).
const MAX_URL_CHARS: usize = 2000;

/// A new signing secret: `whsec_` and 32 random bytes in unpadded base64url (43 characters).
pub(crate) fn new_secret() -> Redacted<String> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    Redacted::new(format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Checks a webhook URL: an absolute `http://` or `https://` URL with a host, no credentials in
/// it, at most 2,000 characters. Returns why not.
pub(crate) fn check_url(url: &str) -> std::result::Result<(), String> {
    if url.is_empty() {
        return Err("Enter the URL new approvals are sent to.".into());
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!(
            "The URL can have at most {MAX_URL_CHARS} characters."
        ));
    }
    let parsed =
        url::Url::parse(url).map_err(|e| format!("The URL is not a valid absolute URL ({e})."))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("The URL must start with https:// (or http://).".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("The URL must name a host.".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("Put no credentials in the URL: receivers check the signature instead.".into());
    }
    Ok(())
}

/// The webhook as the page shows it.
#[derive(Debug)]
pub(crate) struct WebhookView {
    url: String,
    enabled: bool,
    updated: String,
}

impl From<ApprovalWebhook> for WebhookView {
    fn from(w: ApprovalWebhook) -> Self {
        WebhookView {
            url: w.url,
            enabled: w.enabled,
            updated: when(w.updated_at),
        }
    }
}

#[derive(Template)]
#[template(path = "webhook.html")]
pub(crate) struct WebhookPage {
    page: Page,
    csrf: String,
    current: Option<WebhookView>,
    /// The URL field, kept across a refused submission.
    url: String,
    errors: Vec<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "webhook_secret.html")]
pub(crate) struct WebhookSecretPage {
    page: Page,
    url: String,
    secret: String,
}

/// The organisation's webhook, without its secret.
pub(crate) async fn current(
    state: &AppState,
    org: store::OrgId,
) -> Result<Option<ApprovalWebhook>> {
    let mut tx = state.store.begin(org).await?;
    let target = store::approval::approval_webhook(&mut tx).await?;
    tx.commit().await?;
    Ok(target.map(|t| t.webhook))
}

async fn webhook_page(
    state: &AppState,
    m: &Member<Admin>,
    url: String,
    errors: Vec<String>,
    notice: Option<String>,
) -> Result<WebhookPage> {
    Ok(WebhookPage {
        page: Page::member("Webhook for new approvals", "approvals", m),
        csrf: m.csrf.clone(),
        current: current(state, m.org).await?.map(WebhookView::from),
        url,
        errors,
        notice,
    })
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Admin>,
    Query(q): Query<DoneQuery>,
) -> Result<Response> {
    let notice = q
        .notice(
            "removed",
            "Webhook removed: new approvals are no longer announced.",
        )
        .or_else(|| q.notice("none", "There was no webhook to remove."));
    Ok(render(
        &webhook_page(&state, &m, String::new(), Vec::new(), notice).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SetForm {
    #[serde(default)]
    url: String,
}

pub(crate) async fn set(
    State(state): State<AppState>,
    m: Member<Admin>,
    Form(f): Form<SetForm>,
) -> Result<Response> {
    let url = f.url.trim();
    let mut errors = Vec::new();
    if let Err(e) = check_url(url) {
        errors.push(e);
    } else {
        let secret = new_secret();
        let mut tx = state.store.begin(m.org).await?;
        let stored =
            store::approval::set_approval_webhook(&mut tx, m.actor(), url, &secret, true).await;
        if let Some(webhook) = commit_or_refuse(tx, stored, &mut errors, |e| match e {
            store::Error::Invalid { field, reason } => {
                Some(format!("Not set: the {field} {reason}."))
            }
            _ => None,
        })
        .await?
        {
            return Ok(render(&WebhookSecretPage {
                page: Page::member("Webhook secret", "approvals", &m),
                url: webhook.url,
                secret: secret.expose().clone(),
            }));
        }
    }
    let url = url.chars().take(MAX_URL_CHARS).collect();
    Ok(refused(&webhook_page(&state, &m, url, errors, None).await?))
}

pub(crate) async fn delete(State(state): State<AppState>, m: Member<Admin>) -> Result<Response> {
    let mut tx = state.store.begin(m.org).await?;
    let removed = store::approval::delete_approval_webhook(&mut tx, m.actor()).await?;
    tx.commit().await?;
    let done = if removed { "removed" } else { "none" };
    Ok(Redirect::to(&format!("/settings/webhook?done={done}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_32_random_bytes_in_base64url() {
        let a = new_secret();
        let b = new_secret();
        let text = a.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(text).unwrap().len(), 32);
        assert_eq!(text.len(), 43);
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn only_plain_http_and_https_urls_with_a_host_are_taken() {
        assert!(check_url("https://hooks.example.com/gatehouse").is_ok());
        assert!(check_url("http://10.0.0.5:8080/approvals").is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "hooks.example.com",
            "https://user:pw@example.com/",
            "javascript:alert(1)",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(2000))).is_err());
    }
}

//! Organisation API keys (admins): the list with prefixes and last use, minting (the key shown
//! once), revocation.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::{ApiKeyId, Role};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::{Admin, Member};
use crate::error::{Error, Result};
use crate::pages::shown_once::{DoneQuery, commit_or_refuse, lifetime, refused};
use crate::pages::{check_len, when};
use crate::views::{Page, render};

/// One key as the list shows it.
#[derive(Debug)]
pub(crate) struct KeyRow {
    id: String,
    name: String,
    role: Role,
    token_prefix: String,
    status: &'static str,
    created: String,
    created_by: String,
    expires: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
pub(crate) struct ApiKeysPage {
    page: Page,
    csrf: String,
    keys: Vec<KeyRow>,
    roles: Vec<Role>,
    name: String,
    errors: Vec<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "api_key_token.html")]
pub(crate) struct ApiKeyTokenPage {
    page: Page,
    name: String,
    role: Role,
    token: String,
    expires: String,
}

async fn keys_page(
    state: &AppState,
    m: &Member<Admin>,
    name: String,
    errors: Vec<String>,
    notice: Option<String>,
) -> Result<ApiKeysPage> {
    let mut tx = state.store.begin(m.org).await?;
    let keys = store::api_key::list_api_keys(&mut tx).await?;
    tx.commit().await?;
    let now = OffsetDateTime::now_utc();
    Ok(ApiKeysPage {
        page: Page::member("API keys", "api-keys", m),
        csrf: m.csrf.clone(),
        keys: keys
            .into_iter()
            .map(|k| KeyRow {
                status: if k.revoked_at.is_some() {
                    "revoked"
                } else if k.is_active(now) {
                    "active"
                } else {
                    "expired"
                },
                id: k.api_key_id.to_string(),
                name: k.name,
                role: k.role,
                token_prefix: k.token_prefix,
                created: when(k.created_at),
                created_by: k.created_by.unwrap_or_default(),
                expires: k.expires_at.map_or_else(|| "never".into(), when),
                last_used: k.last_used_at.map_or_else(|| "never".into(), when),
            })
            .collect(),
        roles: Role::ALL.to_vec(),
        name,
        errors,
        notice,
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Admin>,
    Query(q): Query<DoneQuery>,
) -> Result<Response> {
    let notice = q.notice("revoked", "API key revoked: it stopped working.");
    Ok(render(
        &keys_page(&state, &m, String::new(), Vec::new(), notice).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct MintForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    expires: String,
}

/// The expiries the form offers, in days (or never).
const LIFETIME_DAYS: [i64; 3] = [30, 90, 365];

pub(crate) async fn mint(
    State(state): State<AppState>,
    m: Member<Admin>,
    Form(f): Form<MintForm>,
) -> Result<Response> {
    let mut errors = Vec::new();
    check_len("Name", &f.name, 1, 200, &mut errors);
    let role = f.role.parse::<Role>().map_err(|_| {
        errors.push("Choose a role from the list.".into());
    });
    let expires = lifetime(&f.expires, &LIFETIME_DAYS).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if let (true, Ok(role)) = (errors.is_empty(), role) {
        let mut tx = state.store.begin(m.org).await?;
        let expires_at = expires.map(|d| OffsetDateTime::now_utc() + d);
        let minted =
            store::api_key::mint_api_key(&mut tx, m.actor(), &f.name, role, expires_at).await;
        if let Some(minted) = commit_or_refuse(tx, minted, &mut errors, |e| match e {
            store::Error::Conflict { message, .. } => Some(format!("Not minted: {message}.")),
            _ => None,
        })
        .await?
        {
            return Ok(render(&ApiKeyTokenPage {
                page: Page::member(format!("API key {}", minted.api_key.name), "api-keys", &m),
                name: minted.api_key.name,
                role: minted.api_key.role,
                token: minted.token.expose().clone(),
                expires: minted
                    .api_key
                    .expires_at
                    .map_or_else(|| "never".into(), when),
            }));
        }
    }
    let name = f.name.chars().take(200).collect();
    Ok(refused(&keys_page(&state, &m, name, errors, None).await?))
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path(key): Path<String>,
) -> Result<Response> {
    let key: ApiKeyId = key.parse().map_err(|_| Error::NotFound)?;
    let mut tx = state.store.begin(m.org).await?;
    store::api_key::revoke_api_key(&mut tx, m.actor(), key).await?;
    tx.commit().await?;
    Ok(Redirect::to("/api-keys?done=revoked").into_response())
}

//! Organisation API keys (admins): the list with prefixes and last use, minting (the key shown
//! once), revocation.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::{ApiKeyId, Role};
use time::{Duration, OffsetDateTime};

use crate::AppState;
use crate::auth::{Admin, Member};
use crate::error::{Error, Result};
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

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    done: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Admin>,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let notice = (q.done.as_deref() == Some("revoked"))
        .then(|| "API key revoked: it stopped working.".to_owned());
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

fn lifetime(choice: &str) -> std::result::Result<Option<Duration>, String> {
    Ok(Some(match choice {
        "never" | "" => return Ok(None),
        "30d" => Duration::days(30),
        "90d" => Duration::days(90),
        "365d" => Duration::days(365),
        _ => return Err("Choose an expiry from the list.".into()),
    }))
}

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
    let expires = lifetime(&f.expires).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if let (true, Ok(role)) = (errors.is_empty(), role) {
        let mut tx = state.store.begin(m.org).await?;
        let expires_at = expires.map(|d| OffsetDateTime::now_utc() + d);
        match store::api_key::mint_api_key(&mut tx, m.actor(), &f.name, role, expires_at).await {
            Ok(minted) => {
                tx.commit().await?;
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
            Err(store::Error::Conflict { message, .. }) => {
                tx.rollback().await?;
                errors.push(format!("Not minted: {message}."));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let name = f.name.chars().take(200).collect();
    let page = keys_page(&state, &m, name, errors, None).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response())
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

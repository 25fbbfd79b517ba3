//! Grants: mint (the token shown once), rotate, revoke.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use store::grant::{Grant, MintedGrant, NewGrant};
use store::{GrantId, ServerId};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::{Admin, Member};
use crate::error::{Error, Result};
use crate::pages::check_len;
use crate::pages::servers::{proxy_url, server_id, server_page};
use crate::pages::shown_once::{commit_or_refuse, lifetime, refused};
use crate::views::{GrantTokenPage, Page, render};

#[derive(Debug, Deserialize)]
pub(crate) struct MintForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    policy: String,
    #[serde(default)]
    expires: String,
}

/// The expiries the form offers, in days (or never).
const LIFETIME_DAYS: [i64; 5] = [1, 7, 30, 90, 365];

pub(crate) async fn mint(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path(server): Path<String>,
    Form(f): Form<MintForm>,
) -> Result<Response> {
    let id = server_id(&server)?;
    let mut errors = Vec::new();
    check_len("Label", &f.label, 1, 200, &mut errors);
    check_len("Identity", &f.identity, 0, 200, &mut errors);
    check_len("Policy", &f.policy, 1, 63, &mut errors);
    let expires = lifetime(&f.expires, &LIFETIME_DAYS).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    if errors.is_empty() {
        let mut tx = state.store.begin(m.org).await?;
        let new = NewGrant {
            server: id,
            policy_name: f.policy.trim().to_owned(),
            label: f.label.trim().to_owned(),
            identity: Some(f.identity.trim())
                .filter(|i| !i.is_empty())
                .map(str::to_owned),
            expires_at: expires.map(|d| OffsetDateTime::now_utc() + d),
        };
        // The server must be this organisation's: an unknown id is a 404, not a form error.
        store::server::server_by_id(&mut tx, id).await?;
        let minted = store::grant::mint_grant(&mut tx, m.actor(), &new).await;
        if let Some(minted) = commit_or_refuse(tx, minted, &mut errors, |e| match e {
            store::Error::NotFound { what } => Some(format!("No such {what}.")),
            store::Error::Invalid { field, reason } => Some(format!("The {field} {reason}.")),
            _ => None,
        })
        .await?
        {
            return token_page(&state, &m, id, minted, false).await;
        }
    }
    Ok(refused(&server_page(&state, &m, id, None, errors).await?))
}

/// The name a client config gives the server: its name, as a lowercase slug.
pub(crate) fn config_key(name: &str) -> String {
    let slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-').to_owned();
    if slug.is_empty() {
        "gatehouse".into()
    } else {
        slug
    }
}

async fn token_page(
    state: &AppState,
    m: &Member<Admin>,
    id: ServerId,
    minted: MintedGrant,
    rotated: bool,
) -> Result<Response> {
    let mut tx = state.store.begin(m.org).await?;
    let server = store::server::server_by_id(&mut tx, id).await?;
    tx.commit().await?;
    let proxy = proxy_url(state, id);
    let token = minted.token.expose().clone();
    let snippet = serde_json::to_string_pretty(&json!({
        "mcpServers": {
            config_key(&server.name): {
                "url": proxy,
                "headers": { "Authorization": format!("Bearer {token}") }
            }
        }
    }))
    .map_err(anyhow::Error::from)?;
    Ok(render(&GrantTokenPage {
        page: Page::member(format!("Grant for {}", minted.grant.label), "servers", m),
        server_id: id.to_string(),
        server_name: server.name,
        label: minted.grant.label,
        identity: minted.grant.identity,
        token,
        proxy_url: proxy,
        snippet,
        rotated,
    }))
}

/// A grant of this organisation that belongs to this server; anything else is not found.
async fn grant_of_server(
    state: &AppState,
    m: &Member<Admin>,
    server: &str,
    grant: &str,
) -> Result<(ServerId, Grant)> {
    let id = server_id(server)?;
    let grant: GrantId = grant.parse().map_err(|_| Error::NotFound)?;
    let mut tx = state.store.begin(m.org).await?;
    let g = store::grant::grant_by_id(&mut tx, grant).await?;
    tx.commit().await?;
    if g.server_id != id {
        return Err(Error::NotFound);
    }
    Ok((id, g))
}

pub(crate) async fn rotate(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path((server, grant)): Path<(String, String)>,
) -> Result<Response> {
    let (id, g) = grant_of_server(&state, &m, &server, &grant).await?;
    let mut tx = state.store.begin(m.org).await?;
    let minted = store::grant::rotate_grant(&mut tx, m.actor(), g.grant_id).await?;
    tx.commit().await?;
    token_page(&state, &m, id, minted, true).await
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    m: Member<Admin>,
    Path((server, grant)): Path<(String, String)>,
) -> Result<Response> {
    let (id, g) = grant_of_server(&state, &m, &server, &grant).await?;
    let mut tx = state.store.begin(m.org).await?;
    store::grant::revoke_grant(&mut tx, m.actor(), g.grant_id).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/servers/{id}?done=revoked")).into_response())
}

//! Who is calling the API: an organisation API key sent as `Authorization: Bearer gha_…`.
//!
//! Handlers take an [`ApiKey<R>`] with the same role bounds as the web app's `Member<R>`
//! (`Viewer`, `PolicyManager`, `Admin` from `crate::auth`), so one operation cannot need one role
//! on the web and another through the API without it showing in the signatures. The API never
//! reads cookies: a browser's session cannot be used to call it, so it needs no CSRF token.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use store::{Actor, ApiKeyId, OrgId};
use time::OffsetDateTime;

use crate::AppState;
use crate::api::problem::{Kind, Problem, forbidden};
use crate::auth::MinRole;

/// A caller holding a live API key of an organisation, with at least role `R`.
#[derive(Debug)]
pub(crate) struct ApiKey<R> {
    pub(crate) key: ApiKeyId,
    pub(crate) org: OrgId,
    _bound: PhantomData<R>,
}

impl<R> ApiKey<R> {
    pub(crate) fn actor(&self) -> Actor {
        Actor::ApiKey(self.key)
    }
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(Kind::Unauthorized, detail)
}

impl<R: MinRole> FromRequestParts<AppState> for ApiKey<R> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("Send an API key as `Authorization: Bearer gha_…`."))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| unauthorized("The Authorization header must be `Bearer gha_…`."))?;
        let key = state
            .store
            .api_key_by_token(token)
            .await?
            .ok_or_else(|| unauthorized("This is not an API key of any organisation."))?;
        let now = OffsetDateTime::now_utc();
        if key.revoked_at.is_some() {
            return Err(unauthorized("This API key was revoked."));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(unauthorized("This API key has expired."));
        }
        if key.role < R::ROLE {
            return Err(forbidden(R::ROLE));
        }
        let mut tx = state.store.begin(key.organisation_id).await?;
        store::api_key::touch_api_key_last_used(&mut tx, key.api_key_id).await?;
        tx.commit().await?;
        Ok(ApiKey {
            key: key.api_key_id,
            org: key.organisation_id,
            _bound: PhantomData,
        })
    }
}

//! Organisation API keys for the admin API: minted by admins, shown once, stored as a hash, scoped
//! to one role, revocable, optionally expiring.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::secret::{NewToken, Redacted, TokenHash, TokenKind};
use crate::{Actor, ApiKeyId, Error, OrgId, OrgTx, Result, Role, Store, token};

/// An API key as admins see it: never the key, only its first characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub api_key_id: ApiKeyId,
    pub name: String,
    pub role: Role,
    pub token_prefix: String,
    /// The email of the admin who minted it, when that person still exists.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl ApiKey {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        token::is_live(self.revoked_at, self.expires_at, now)
    }
}

/// A key together with its secret, which exists only in this value: show it once.
#[derive(Debug, Clone)]
pub struct MintedApiKey {
    pub api_key: ApiKey,
    pub token: Redacted<String>,
}

/// Mints an API key acting with `role` in the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn mint_api_key(
    tx: &mut OrgTx,
    actor: Actor,
    name: &str,
    role: Role,
    expires_at: Option<OffsetDateTime>,
) -> Result<MintedApiKey> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(Error::invalid("name", "must be 1 to 200 characters"));
    }
    if expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(Error::invalid("expiry", "must be in the future"));
    }
    let token = NewToken::generate(TokenKind::ApiKey);
    let row = sqlx::query!(
        r#"
        insert into api_key (organisation_id, name, role, token_hash, token_prefix, created_by, expires_at)
        values ($1, $2, $3::text::member_role, $4, $5, $6, $7)
        returning api_key_id, created_at
        "#,
        tx.org().as_uuid(),
        name,
        role.as_str(),
        &token.hash.0[..],
        token.display_prefix,
        actor.user(),
        expires_at,
    )
    .fetch_one(tx.conn())
    .await?;
    let id = ApiKeyId::from_uuid(row.api_key_id);
    record_admin_event(
        tx,
        actor,
        "api_key.mint",
        Some(id.as_uuid()),
        json!({ "name": name, "role": role.as_str(), "token_prefix": token.display_prefix,
                "expires_at": expires_at.map(OffsetDateTime::unix_timestamp) }),
    )
    .await?;
    Ok(MintedApiKey {
        api_key: api_key_by_id(tx, id).await?,
        token: token.token,
    })
}

/// One API key of the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn api_key_by_id(tx: &mut OrgTx, key: ApiKeyId) -> Result<ApiKey> {
    let r = sqlx::query!(
        r#"
        select k.api_key_id, k.name, k.role::text as "role!", k.token_prefix, u.email as "created_by?",
               k.expires_at, k.revoked_at, k.last_used_at, k.created_at
        from api_key k
        left join app_user u on u.app_user_id = k.created_by
        where k.organisation_id = $1 and k.api_key_id = $2
        "#,
        tx.org().as_uuid(),
        key.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("API key")?;
    Ok(ApiKey {
        api_key_id: ApiKeyId::from_uuid(r.api_key_id),
        name: r.name,
        role: r.role.parse()?,
        token_prefix: r.token_prefix,
        created_by: r.created_by,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
        created_at: r.created_at,
    })
}

/// Every API key of the transaction's organisation, newest first, revoked ones included.
#[tracing::instrument(skip(tx))]
pub async fn list_api_keys(tx: &mut OrgTx) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query!(
        r#"
        select k.api_key_id, k.name, k.role::text as "role!", k.token_prefix, u.email as "created_by?",
               k.expires_at, k.revoked_at, k.last_used_at, k.created_at
        from api_key k
        left join app_user u on u.app_user_id = k.created_by
        where k.organisation_id = $1
        order by k.created_at desc, k.api_key_id
        "#,
        tx.org().as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ApiKey {
                api_key_id: ApiKeyId::from_uuid(r.api_key_id),
                name: r.name,
                role: r.role.parse()?,
                token_prefix: r.token_prefix,
                created_by: r.created_by,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                last_used_at: r.last_used_at,
                created_at: r.created_at,
            })
        })
        .collect()
}

/// Revokes an API key; it stops working at once. Revoking twice keeps the first time.
#[tracing::instrument(skip(tx))]
pub async fn revoke_api_key(tx: &mut OrgTx, actor: Actor, key: ApiKeyId) -> Result<ApiKey> {
    let revoked_at = sqlx::query_scalar!(
        r#"
        update api_key set revoked_at = coalesce(revoked_at, now())
        where organisation_id = $1 and api_key_id = $2
        returning revoked_at as "revoked_at!"
        "#,
        tx.org().as_uuid(),
        key.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("API key")?;
    record_admin_event(
        tx,
        actor,
        "api_key.revoke",
        Some(key.as_uuid()),
        json!({ "revoked_at": revoked_at.unix_timestamp() }),
    )
    .await?;
    api_key_by_id(tx, key).await
}

/// What a bearer key tells about its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenApiKey {
    pub api_key_id: ApiKeyId,
    pub organisation_id: OrgId,
    pub role: Role,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenApiKey {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        token::is_live(self.revoked_at, self.expires_at, now)
    }
}

impl Store {
    /// The API key a bearer token is, found by the token's hash without knowing the organisation,
    /// through the security-definer function that returns only the exact match. Revoked and
    /// expired keys are returned too (the caller refuses them); `None` for an unknown token.
    #[tracing::instrument(skip_all)]
    pub async fn api_key_by_token(&self, token: &str) -> Result<Option<TokenApiKey>> {
        if !token::may_be(TokenKind::ApiKey, token) {
            return Ok(None);
        }
        let row = self
            .by_token_hash(TokenHash::of(token), async |conn, hash| {
                sqlx::query!(
                    r#"
                    select api_key_id as "api_key_id!", organisation_id as "organisation_id!",
                           role::text as "role!", expires_at, revoked_at
                    from gatehouse_api_key_by_token_hash($1)
                    "#,
                    &hash.0[..],
                )
                .fetch_optional(conn)
                .await
            })
            .await?;
        row.map(|r| {
            Ok(TokenApiKey {
                api_key_id: ApiKeyId::from_uuid(r.api_key_id),
                organisation_id: OrgId::from_uuid(r.organisation_id),
                role: r.role.parse()?,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            })
        })
        .transpose()
    }
}

/// Notes that a key was used; writes at most once a minute per key.
#[tracing::instrument(skip(tx))]
pub async fn touch_api_key_last_used(tx: &mut OrgTx, key: ApiKeyId) -> Result<()> {
    sqlx::query!(
        r#"
        update api_key set last_used_at = now()
        where organisation_id = $1 and api_key_id = $2
          and (last_used_at is null or last_used_at < now() - interval '1 minute')
        "#,
        tx.org().as_uuid(),
        key.as_uuid(),
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

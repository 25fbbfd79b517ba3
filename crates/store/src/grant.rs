//! Grants: bearer tokens for one identity on one server, bound to one of its policies.

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::secret::{NewToken, Redacted, TokenHash, TokenKind};
use crate::{Actor, Error, GrantId, OrgId, OrgTx, PolicyId, Result, ServerId, Store, token};

/// A grant as admins see it: never its token, only the token's first characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub grant_id: GrantId,
    pub server_id: ServerId,
    pub policy_id: PolicyId,
    pub identity: String,
    pub label: String,
    pub token_prefix: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Grant {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        token::is_live(self.revoked_at, self.expires_at, now)
    }
}

/// What minting a grant takes.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub server: ServerId,
    /// The server's policy the grant follows (by name; it must have been published).
    pub policy_name: String,
    pub label: String,
    /// The identity recorded in audit events; the label when not given.
    pub identity: Option<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// A grant together with its token, which exists only in this value: show it once.
#[derive(Debug, Clone)]
pub struct MintedGrant {
    pub grant: Grant,
    pub token: Redacted<String>,
}

fn check_text(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.chars().count() > 200 {
        return Err(Error::invalid(field, "must be 1 to 200 characters"));
    }
    Ok(())
}

/// Mints a grant and its token.
#[tracing::instrument(skip(tx, new), fields(server = %new.server, label = %new.label))]
pub async fn mint_grant(tx: &mut OrgTx, actor: Actor, new: &NewGrant) -> Result<MintedGrant> {
    check_text("label", &new.label)?;
    let identity = new.identity.clone().unwrap_or_else(|| new.label.clone());
    check_text("identity", &identity)?;
    if new
        .expires_at
        .is_some_and(|t| t <= OffsetDateTime::now_utc())
    {
        return Err(Error::invalid("expiry", "must be in the future"));
    }
    let policy = crate::policy::policy_by_name(tx, new.server, &new.policy_name)
        .await
        .map_err(|e| match e {
            Error::NotFound { .. } => Error::NotFound {
                what: "policy (publish one before minting grants for it)",
            },
            e => e,
        })?;
    let token = NewToken::generate(TokenKind::Grant);
    let row = sqlx::query!(
        r#"
        insert into access_grant (organisation_id, server_id, policy_id, identity, label, token_hash,
                                  token_prefix, expires_at, created_by)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        returning access_grant_id, created_at
        "#,
        tx.org().as_uuid(),
        new.server.as_uuid(),
        policy.policy_id.as_uuid(),
        identity,
        new.label,
        &token.hash.0[..],
        token.display_prefix,
        new.expires_at,
        actor.user(),
    )
    .fetch_one(tx.conn())
    .await?;
    let grant = Grant {
        grant_id: GrantId::from_uuid(row.access_grant_id),
        server_id: new.server,
        policy_id: policy.policy_id,
        identity,
        label: new.label.clone(),
        token_prefix: token.display_prefix.clone(),
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        created_at: row.created_at,
    };
    record_admin_event(
        tx,
        actor,
        "grant.mint",
        Some(grant.grant_id.as_uuid()),
        json!({ "server_id": grant.server_id, "policy": policy.name, "label": grant.label,
                "identity": grant.identity, "token_prefix": grant.token_prefix }),
    )
    .await?;
    Ok(MintedGrant {
        grant,
        token: token.token,
    })
}

/// One grant of the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn grant_by_id(tx: &mut OrgTx, grant: GrantId) -> Result<Grant> {
    let r = sqlx::query!(
        r#"
        select access_grant_id, server_id, policy_id, identity, label, token_prefix, expires_at,
               revoked_at, last_used_at, created_at
        from access_grant
        where organisation_id = $1 and access_grant_id = $2
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("grant")?;
    Ok(Grant {
        grant_id: GrantId::from_uuid(r.access_grant_id),
        server_id: ServerId::from_uuid(r.server_id),
        policy_id: PolicyId::from_uuid(r.policy_id),
        identity: r.identity,
        label: r.label,
        token_prefix: r.token_prefix,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
        created_at: r.created_at,
    })
}

/// Revokes a grant. Revoking twice keeps the first revocation time.
#[tracing::instrument(skip(tx))]
pub async fn revoke_grant(tx: &mut OrgTx, actor: Actor, grant: GrantId) -> Result<Grant> {
    let updated = sqlx::query_scalar!(
        r#"
        update access_grant set revoked_at = coalesce(revoked_at, now()), revoked_by = coalesce(revoked_by, $3)
        where organisation_id = $1 and access_grant_id = $2
        returning revoked_at as "revoked_at!"
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
        actor.user(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("grant")?;
    record_admin_event(
        tx,
        actor,
        "grant.revoke",
        Some(grant.as_uuid()),
        json!({ "revoked_at": updated.unix_timestamp() }),
    )
    .await?;
    grant_by_id(tx, grant).await
}

/// Replaces a live grant's token: the old token stops working at once, the grant keeps its id.
#[tracing::instrument(skip(tx))]
pub async fn rotate_grant(tx: &mut OrgTx, actor: Actor, grant: GrantId) -> Result<MintedGrant> {
    let token = NewToken::generate(TokenKind::Grant);
    sqlx::query_scalar!(
        r#"
        update access_grant set token_hash = $3, token_prefix = $4, rotated_at = now()
        where organisation_id = $1 and access_grant_id = $2 and revoked_at is null
        returning access_grant_id
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
        &token.hash.0[..],
        token.display_prefix,
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("live grant")?;
    record_admin_event(
        tx,
        actor,
        "grant.rotate",
        Some(grant.as_uuid()),
        json!({ "token_prefix": token.display_prefix }),
    )
    .await?;
    Ok(MintedGrant {
        grant: grant_by_id(tx, grant).await?,
        token: token.token,
    })
}

/// What the gateway learns from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub grant_id: GrantId,
    pub organisation_id: OrgId,
    pub server_id: ServerId,
    pub policy_id: PolicyId,
    pub identity: String,
    pub label: String,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenGrant {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        token::is_live(self.revoked_at, self.expires_at, now)
    }
}

impl Store {
    /// The grant a bearer token belongs to, found by the token's hash without knowing the
    /// organisation. Runs as the restricted role through a security-definer function that returns
    /// only the one exact match, so it cannot be turned into a listing of other organisations' grants.
    /// Returns revoked and expired grants too (the caller answers 401 for them) and `None` for an
    /// unknown token.
    #[tracing::instrument(skip_all)]
    pub async fn grant_by_token_hash(&self, hash: TokenHash) -> Result<Option<TokenGrant>> {
        let row = self
            .by_token_hash(hash, async |conn, hash| {
                sqlx::query!(
                    r#"
                    select access_grant_id as "access_grant_id!", organisation_id as "organisation_id!",
                           server_id as "server_id!", policy_id as "policy_id!", identity as "identity!",
                           label as "label!", expires_at, revoked_at
                    from gatehouse_grant_by_token_hash($1)
                    "#,
                    &hash.0[..],
                )
                .fetch_optional(conn)
                .await
            })
            .await?;
        Ok(row.map(|r| TokenGrant {
            grant_id: GrantId::from_uuid(r.access_grant_id),
            organisation_id: OrgId::from_uuid(r.organisation_id),
            server_id: ServerId::from_uuid(r.server_id),
            policy_id: PolicyId::from_uuid(r.policy_id),
            identity: r.identity,
            label: r.label,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }))
    }

    /// [`Store::grant_by_token_hash`] for a token as presented in `Authorization: Bearer`.
    pub async fn grant_by_token(&self, token: &str) -> Result<Option<TokenGrant>> {
        if !token::may_be(TokenKind::Grant, token) {
            return Ok(None);
        }
        self.grant_by_token_hash(TokenHash::of(token)).await
    }
}

/// Notes that a grant was used; the gateway calls this at most once a minute per grant.
#[tracing::instrument(skip(tx))]
pub async fn touch_grant_last_used(tx: &mut OrgTx, grant: GrantId) -> Result<()> {
    sqlx::query!(
        r#"
        update access_grant set last_used_at = now()
        where organisation_id = $1 and access_grant_id = $2
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Every grant of a server, newest first, revoked ones included.
#[tracing::instrument(skip(tx))]
pub async fn list_grants(tx: &mut OrgTx, server: ServerId) -> Result<Vec<Grant>> {
    let rows = sqlx::query!(
        r#"
        select access_grant_id, server_id, policy_id, identity, label, token_prefix, expires_at,
               revoked_at, last_used_at, created_at
        from access_grant
        where organisation_id = $1 and server_id = $2
        order by created_at desc, access_grant_id
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Grant {
            grant_id: GrantId::from_uuid(r.access_grant_id),
            server_id: ServerId::from_uuid(r.server_id),
            policy_id: PolicyId::from_uuid(r.policy_id),
            identity: r.identity,
            label: r.label,
            token_prefix: r.token_prefix,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
            created_at: r.created_at,
        })
        .collect())
}

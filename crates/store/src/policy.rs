//! Named policies of a server and their immutable versions.
//!
//! This crate stores documents; it does not judge them. Callers validate a document with the
//! `policy` crate before publishing it.

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::{Actor, Error, OrgTx, PolicyId, Result, ServerId};

/// The name every server's first policy gets unless told otherwise.
pub const DEFAULT_POLICY_NAME: &str = "default";
/// The largest document accepted, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// A policy and the version grants bound to it follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub policy_id: PolicyId,
    pub server_id: ServerId,
    pub name: String,
    pub current_version: Option<i32>,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    pub policy_id: PolicyId,
    pub name: String,
    pub version: i32,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Checks a policy name: lowercase letters, digits, `-` and `_`, at most 63 characters.
pub fn validate_policy_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "policy name",
            "use 1 to 63 lowercase letters, digits, `-` or `_`",
        ))
    }
}

/// Publishes `source` as the next version of the server's policy `name` (creating the policy on
/// its first version), makes it current, and records who did it. The policy row is locked, so two
/// concurrent publishers get consecutive versions.
#[tracing::instrument(skip(tx, source, comment))]
pub async fn publish_policy_version(
    tx: &mut OrgTx,
    actor: Actor,
    server: ServerId,
    name: &str,
    source: &str,
    comment: Option<&str>,
) -> Result<PolicyVersion> {
    validate_policy_name(name)?;
    if source.len() > MAX_POLICY_BYTES {
        return Err(Error::invalid(
            "policy",
            format!("larger than {MAX_POLICY_BYTES} bytes"),
        ));
    }
    let org = tx.org().as_uuid();
    // Fails with NotFound, not a foreign-key error, when the server is not this organisation's.
    crate::server::server_by_id(tx, server).await?;
    sqlx::query!(
        r#"
        insert into policy (organisation_id, server_id, name) values ($1, $2, $3)
        on conflict (server_id, name) do nothing
        "#,
        org,
        server.as_uuid(),
        name,
    )
    .execute(tx.conn())
    .await?;
    let policy = sqlx::query!(
        r#"
        select policy_id, current_version from policy
        where organisation_id = $1 and server_id = $2 and name = $3
        for update
        "#,
        org,
        server.as_uuid(),
        name,
    )
    .fetch_one(tx.conn())
    .await?;
    let version = policy.current_version.unwrap_or(0) + 1;
    let source_hash: [u8; 32] = Sha256::digest(source.as_bytes()).into();
    let created_at = sqlx::query_scalar!(
        r#"
        insert into policy_version (organisation_id, policy_id, version, source, source_hash,
                                    published_by, published_via, comment)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        returning created_at
        "#,
        org,
        policy.policy_id,
        version,
        source,
        &source_hash[..],
        actor.user(),
        actor.via(),
        comment,
    )
    .fetch_one(tx.conn())
    .await?;
    sqlx::query!(
        "update policy set current_version = $2 where organisation_id = $1 and policy_id = $3",
        org,
        version,
        policy.policy_id,
    )
    .execute(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "policy.publish",
        Some(policy.policy_id),
        json!({ "server_id": server, "name": name, "version": version, "comment": comment }),
    )
    .await?;
    Ok(PolicyVersion {
        policy_id: PolicyId::from_uuid(policy.policy_id),
        name: name.to_owned(),
        version,
        source: source.to_owned(),
        created_at,
    })
}

/// A server's policy by name.
#[tracing::instrument(skip(tx))]
pub async fn policy_by_name(tx: &mut OrgTx, server: ServerId, name: &str) -> Result<Policy> {
    let row = sqlx::query!(
        r#"
        select policy_id, server_id, name, current_version from policy
        where organisation_id = $1 and server_id = $2 and name = $3
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
        name,
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("policy")?;
    Ok(Policy {
        policy_id: PolicyId::from_uuid(row.policy_id),
        server_id: ServerId::from_uuid(row.server_id),
        name: row.name,
        current_version: row.current_version,
    })
}

/// A policy by its id (an audit event reaches its policy through its grant).
#[tracing::instrument(skip(tx))]
pub async fn policy_by_id(tx: &mut OrgTx, policy: PolicyId) -> Result<Policy> {
    let row = sqlx::query!(
        r#"
        select policy_id, server_id, name, current_version from policy
        where organisation_id = $1 and policy_id = $2
        "#,
        tx.org().as_uuid(),
        policy.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("policy")?;
    Ok(Policy {
        policy_id: PolicyId::from_uuid(row.policy_id),
        server_id: ServerId::from_uuid(row.server_id),
        name: row.name,
        current_version: row.current_version,
    })
}

/// The version a policy's grants follow now; `NotFound` before the first publish.
#[tracing::instrument(skip(tx))]
pub async fn current_policy_version(tx: &mut OrgTx, policy: PolicyId) -> Result<PolicyVersion> {
    let row = sqlx::query!(
        r#"
        select p.policy_id, p.name, v.version, v.source, v.created_at
        from policy p
        join policy_version v on v.policy_id = p.policy_id and v.version = p.current_version
        where p.organisation_id = $1 and v.organisation_id = $1 and p.policy_id = $2
        "#,
        tx.org().as_uuid(),
        policy.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("policy version")?;
    Ok(PolicyVersion {
        policy_id: PolicyId::from_uuid(row.policy_id),
        name: row.name,
        version: row.version,
        source: row.source,
        created_at: row.created_at,
    })
}

/// One published version of a policy; `NotFound` for a version that was never published.
#[tracing::instrument(skip(tx))]
pub async fn policy_version(
    tx: &mut OrgTx,
    policy: PolicyId,
    version: i32,
) -> Result<PolicyVersion> {
    let row = sqlx::query!(
        r#"
        select p.policy_id, p.name, v.version, v.source, v.created_at
        from policy p
        join policy_version v on v.policy_id = p.policy_id
        where p.organisation_id = $1 and v.organisation_id = $1 and p.policy_id = $2 and v.version = $3
        "#,
        tx.org().as_uuid(),
        policy.as_uuid(),
        version,
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("policy version")?;
    Ok(PolicyVersion {
        policy_id: PolicyId::from_uuid(row.policy_id),
        name: row.name,
        version: row.version,
        source: row.source,
        created_at: row.created_at,
    })
}

/// Every policy of a server, by name.
#[tracing::instrument(skip(tx))]
pub async fn list_policies(tx: &mut OrgTx, server: ServerId) -> Result<Vec<Policy>> {
    let rows = sqlx::query!(
        r#"
        select policy_id, server_id, name, current_version from policy
        where organisation_id = $1 and server_id = $2
        order by name
        "#,
        tx.org().as_uuid(),
        server.as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Policy {
            policy_id: PolicyId::from_uuid(row.policy_id),
            server_id: ServerId::from_uuid(row.server_id),
            name: row.name,
            current_version: row.current_version,
        })
        .collect())
}

/// One published version as the history lists it (without its document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionSummary {
    pub version: i32,
    pub published_via: String,
    /// The email of who published it, when a person did (and still exists).
    pub published_by: Option<String>,
    pub comment: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Every published version of a policy, newest first.
#[tracing::instrument(skip(tx))]
pub async fn list_policy_versions(tx: &mut OrgTx, policy: PolicyId) -> Result<Vec<VersionSummary>> {
    let rows = sqlx::query!(
        r#"
        select v.version, v.published_via, u.email as "published_by?", v.comment, v.created_at
        from policy_version v
        left join app_user u on u.app_user_id = v.published_by
        where v.organisation_id = $1 and v.policy_id = $2
        order by v.version desc
        "#,
        tx.org().as_uuid(),
        policy.as_uuid(),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| VersionSummary {
            version: r.version,
            published_via: r.published_via,
            published_by: r.published_by,
            comment: r.comment,
            created_at: r.created_at,
        })
        .collect())
}

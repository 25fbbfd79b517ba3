//! Approvals: `tools/call`s held for a human with role ≥ `policy_manager` (DESIGN.md §4, §5).
//!
//! The life of one approval:
//!
//! 1. The gateway meets a call whose rule needs approval and [`open_approval`]s it: a new pending
//!    row, or the open one of the same call (same grant, tool and [`arguments_hash`]) when a retry
//!    finds it, so identical calls never pile up (the `approval_open_unique` index).
//! 2. A person (web, API) or an operator (CLI) [`decide_approval`]s it: approved or denied, with a
//!    comment; an expired or already decided approval cannot be decided again. Every decision is
//!    an admin event in the same transaction.
//! 3. The gateway [`take_approved`]s an approved one for the same call: it becomes `consumed` in
//!    one statement, so one approval lets exactly one call through, however many replicas race.
//! 4. A pending approval no one decided within its timeout, or an approved one no call took
//!    within the same span after its approval, is `expired` (reported as such at once, and
//!    written so by [`expire_stale_approvals`] or when the same call opens a new one).
//!
//! Besides these, [`list_approvals`] (keyset pages of the pending or decided ones),
//! [`pending_approval_count`] (the badge), and the organisation's webhook
//! ([`approval_webhook`], [`set_approval_webhook`], [`delete_approval_webhook`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::admin::record_admin_event;
use crate::error::NotFoundExt;
use crate::secret::{Redacted, Sealed};
use crate::{Actor, ApprovalId, Error, GrantId, OrgTx, Result, ServerId, UserId};

/// Where an approval is in its life. `Expired` is also reported for a pending or approved row
/// whose `expires_at` has passed, before anything wrote so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Consumed,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Consumed => "consumed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "consumed" => ApprovalStatus::Consumed,
            other => return Err(Error::invalid("approval status", other.to_owned())),
        })
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approval as approvers (and the gateway) see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub approval_id: ApprovalId,
    pub server_id: ServerId,
    pub grant_id: GrantId,
    /// The grant's identity (`noc-agent`) and label.
    pub identity: String,
    pub grant_label: String,
    pub tool_name: String,
    /// The call's arguments with secret-looking values redacted: what the approver decides on.
    pub arguments: Value,
    /// The gateway request that opened it (its audit event has the same request id).
    pub request_id: String,
    /// The MCP session the call came in, when it had one.
    pub session_id: Option<String>,
    pub status: ApprovalStatus,
    /// The person who decided (absent for the CLI, an API key, or a deleted account).
    pub decided_by: Option<UserId>,
    pub decided_by_email: Option<String>,
    /// `web`, `api` or `cli`.
    pub decided_via: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    pub comment: Option<String>,
    /// Pending: when it expires undecided. Approved: by when the call must be retried.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub consumed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// SHA-256 of the canonical JSON (keys sorted at every level) of a call's unredacted arguments;
/// absent arguments hash as `{}`, which is what they mean. A retried call must match it exactly.
pub fn arguments_hash(arguments: Option<&Value>) -> [u8; 32] {
    let empty = Value::Object(serde_json::Map::new());
    let canonical = crate::audit::canonical_json(arguments.unwrap_or(&empty));
    Sha256::digest(&canonical).into()
}

/// What the gateway knows of a call it holds.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub grant: GrantId,
    pub server: ServerId,
    pub tool: &'a str,
    /// Shown to approvers: the arguments with secrets redacted (`audit::redact`).
    pub arguments_redacted: &'a Value,
    /// [`arguments_hash`] of the unredacted arguments.
    pub arguments_hash: [u8; 32],
    pub request_id: &'a str,
    pub session_id: Option<&'a str>,
    /// The rule's `approval.timeout`: how long a decision may take.
    pub timeout: Duration,
}

/// An approval [`open_approval`] found or created.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub approval: Approval,
    /// True when this call created it (the gateway announces new ones through the webhook).
    pub created: bool,
}

fn check_tool(tool: &str) -> Result<()> {
    if tool.is_empty() || tool.chars().count() > 200 {
        return Err(Error::invalid("tool", "must be 1 to 200 characters"));
    }
    Ok(())
}

/// Marks pending and approved approvals of one call whose time ran out as expired, so that the
/// call can open a new one.
async fn expire_call(tx: &mut OrgTx, grant: GrantId, tool: &str, hash: &[u8; 32]) -> Result<()> {
    sqlx::query!(
        r#"
        update approval set status = 'expired'
        where organisation_id = $1 and access_grant_id = $2 and tool_name = $3 and arguments_hash = $4
          and status in ('pending', 'approved') and expires_at <= now()
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
        tool,
        &hash[..],
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The open (pending, or approved and not yet taken) approval of this call, or a new pending one
/// expiring after `timeout`. Concurrent openers of the same call get the same approval.
#[tracing::instrument(skip(tx, new), fields(grant = %new.grant, tool = new.tool))]
pub async fn open_approval(tx: &mut OrgTx, new: &NewApproval<'_>) -> Result<Opened> {
    check_tool(new.tool)?;
    let timeout_ms = i64::try_from(new.timeout.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    expire_call(tx, new.grant, new.tool, &new.arguments_hash).await?;
    // A concurrent opener may win the insert and its row be decided before we read it; a few
    // rounds settle it.
    for _ in 0..3 {
        let inserted = sqlx::query_scalar!(
            r#"
            insert into approval (organisation_id, server_id, access_grant_id, tool_name, arguments_redacted,
                                  arguments_hash, request_id, session_id, expires_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9::bigint / 1000.0))
            on conflict (access_grant_id, tool_name, arguments_hash) where status in ('pending', 'approved')
            do nothing
            returning approval_id
            "#,
            tx.org().as_uuid(),
            new.server.as_uuid(),
            new.grant.as_uuid(),
            new.tool,
            new.arguments_redacted,
            &new.arguments_hash[..],
            new.request_id,
            new.session_id,
            timeout_ms,
        )
        .fetch_optional(tx.conn())
        .await?;
        if let Some(id) = inserted {
            return Ok(Opened {
                approval: approval_by_id(tx, ApprovalId::from_uuid(id)).await?,
                created: true,
            });
        }
        let existing = sqlx::query_scalar!(
            r#"
            select approval_id from approval
            where organisation_id = $1 and access_grant_id = $2 and tool_name = $3 and arguments_hash = $4
              and status in ('pending', 'approved')
            "#,
            tx.org().as_uuid(),
            new.grant.as_uuid(),
            new.tool,
            &new.arguments_hash[..],
        )
        .fetch_optional(tx.conn())
        .await?;
        if let Some(id) = existing {
            return Ok(Opened {
                approval: approval_by_id(tx, ApprovalId::from_uuid(id)).await?,
                created: false,
            });
        }
    }
    Err(Error::Conflict {
        constraint: "approval_open_unique".into(),
        message: "the approval of this call changed while it was being opened; retry".into(),
    })
}

struct Row {
    approval_id: Uuid,
    server_id: Uuid,
    access_grant_id: Uuid,
    identity: String,
    grant_label: String,
    tool_name: String,
    arguments_redacted: Value,
    request_id: String,
    session_id: Option<String>,
    status: String,
    decided_by: Option<Uuid>,
    decided_by_email: Option<String>,
    decided_via: Option<String>,
    decided_at: Option<OffsetDateTime>,
    decision_comment: Option<String>,
    expires_at: OffsetDateTime,
    consumed_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
}

impl Row {
    fn into_approval(self) -> Result<Approval> {
        Ok(Approval {
            approval_id: ApprovalId::from_uuid(self.approval_id),
            server_id: ServerId::from_uuid(self.server_id),
            grant_id: GrantId::from_uuid(self.access_grant_id),
            identity: self.identity,
            grant_label: self.grant_label,
            tool_name: self.tool_name,
            arguments: self.arguments_redacted,
            request_id: self.request_id,
            session_id: self.session_id,
            status: ApprovalStatus::parse(&self.status)?,
            decided_by: self.decided_by.map(UserId::from_uuid),
            decided_by_email: self.decided_by_email,
            decided_via: self.decided_via,
            decided_at: self.decided_at,
            comment: self.decision_comment,
            expires_at: self.expires_at,
            consumed_at: self.consumed_at,
            created_at: self.created_at,
        })
    }
}

/// One approval of the transaction's organisation.
#[tracing::instrument(skip(tx))]
pub async fn approval_by_id(tx: &mut OrgTx, id: ApprovalId) -> Result<Approval> {
    sqlx::query_as!(
        Row,
        r#"
        select a.approval_id, a.server_id, a.access_grant_id, g.identity, g.label as grant_label,
               a.tool_name, a.arguments_redacted, a.request_id, a.session_id,
               case when a.status in ('pending', 'approved') and a.expires_at <= now() then 'expired'
                    else a.status::text end as "status!",
               a.decided_by, u.email as "decided_by_email?", a.decided_via, a.decided_at,
               a.decision_comment, a.expires_at, a.consumed_at, a.created_at
        from approval a
        join access_grant g on g.organisation_id = a.organisation_id and g.access_grant_id = a.access_grant_id
        left join app_user u on u.app_user_id = a.decided_by
        where a.organisation_id = $1 and a.approval_id = $2
        "#,
        tx.org().as_uuid(),
        id.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("approval")?
    .into_approval()
}

/// Which half of the approvals page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalFilter {
    /// Waiting for a decision and not expired.
    Pending,
    /// Everything else: approved, denied, consumed, expired.
    Decided,
}

/// Where a page of [`list_approvals`] ends; give it back to get the next page. Its text form
/// (`Display`/`FromStr`) fits a query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalCursor {
    created_at: OffsetDateTime,
    approval_id: ApprovalId,
}

impl fmt::Display for ApprovalCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}",
            self.created_at.unix_timestamp_nanos(),
            self.approval_id
        )
    }
}

impl FromStr for ApprovalCursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", "not a cursor this list gave");
        let (nanos, id) = s.split_once('_').ok_or_else(bad)?;
        let nanos: i128 = nanos.parse().map_err(|_| bad())?;
        Ok(ApprovalCursor {
            created_at: OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?,
            approval_id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// One page of approvals, newest first, and the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalPage {
    pub approvals: Vec<Approval>,
    pub next: Option<ApprovalCursor>,
}

/// The organisation's pending or decided approvals, newest first, `limit` (1 to 500) a page,
/// after `cursor` when given.
#[tracing::instrument(skip(tx))]
pub async fn list_approvals(
    tx: &mut OrgTx,
    filter: ApprovalFilter,
    cursor: Option<ApprovalCursor>,
    limit: i64,
) -> Result<ApprovalPage> {
    let limit = limit.clamp(1, 500);
    let rows = sqlx::query_as!(
        Row,
        r#"
        select a.approval_id, a.server_id, a.access_grant_id, g.identity, g.label as grant_label,
               a.tool_name, a.arguments_redacted, a.request_id, a.session_id,
               case when a.status in ('pending', 'approved') and a.expires_at <= now() then 'expired'
                    else a.status::text end as "status!",
               a.decided_by, u.email as "decided_by_email?", a.decided_via, a.decided_at,
               a.decision_comment, a.expires_at, a.consumed_at, a.created_at
        from approval a
        join access_grant g on g.organisation_id = a.organisation_id and g.access_grant_id = a.access_grant_id
        left join app_user u on u.app_user_id = a.decided_by
        where a.organisation_id = $1
          and ((a.status = 'pending' and a.expires_at > now()) = $2)
          and ($3::timestamptz is null or (a.created_at, a.approval_id) < ($3, $4))
        order by a.created_at desc, a.approval_id desc
        limit $5
        "#,
        tx.org().as_uuid(),
        filter == ApprovalFilter::Pending,
        cursor.map(|c| c.created_at),
        cursor.map(|c| c.approval_id.as_uuid()),
        limit + 1,
    )
    .fetch_all(tx.conn())
    .await?;
    let mut approvals = rows
        .into_iter()
        .map(Row::into_approval)
        .collect::<Result<Vec<_>>>()?;
    let next = if approvals.len() as i64 > limit {
        approvals.truncate(limit as usize);
        approvals.last().map(|a| ApprovalCursor {
            created_at: a.created_at,
            approval_id: a.approval_id,
        })
    } else {
        None
    };
    Ok(ApprovalPage { approvals, next })
}

/// How many approvals wait for a decision (the badge in the admin app).
#[tracing::instrument(skip(tx))]
pub async fn pending_approval_count(tx: &mut OrgTx) -> Result<i64> {
    let count = sqlx::query_scalar!(
        r#"
        select count(*) as "count!" from approval
        where organisation_id = $1 and status = 'pending' and expires_at > now()
        "#,
        tx.org().as_uuid(),
    )
    .fetch_one(tx.conn())
    .await?;
    Ok(count)
}

/// A human's decision on an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// Decides a pending approval. A denial needs a comment (the agent is shown it); an approval may
/// have one. The approved call must then be retried (or still be held) before as long again as
/// the approval's timeout has passed. Refuses, with [`Error::Conflict`] (constraint
/// `approval_decided` or `approval_expired`), an approval already decided or expired.
#[tracing::instrument(skip(tx, comment))]
pub async fn decide_approval(
    tx: &mut OrgTx,
    actor: Actor,
    id: ApprovalId,
    decision: Decision,
    comment: Option<&str>,
) -> Result<Approval> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return Err(Error::invalid(
            "comment",
            "must be at most 2,000 characters",
        ));
    }
    if decision == Decision::Deny && comment.is_none() {
        return Err(Error::invalid(
            "comment",
            "a denial needs a comment; the agent is shown it",
        ));
    }
    let row = sqlx::query!(
        r#"
        select status::text as "status!", expires_at <= now() as "expired!", tool_name,
               access_grant_id, arguments_hash
        from approval
        where organisation_id = $1 and approval_id = $2
        for update
        "#,
        tx.org().as_uuid(),
        id.as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await
    .or_not_found("approval")?;
    match row.status.as_str() {
        "pending" if row.expired => {
            return Err(Error::Conflict {
                constraint: "approval_expired".into(),
                message: format!(
                    "approval {id} expired before anyone decided; the agent must call again for a new one"
                ),
            });
        }
        "pending" => {}
        "expired" => {
            return Err(Error::Conflict {
                constraint: "approval_expired".into(),
                message: format!(
                    "approval {id} expired before anyone decided; the agent must call again for a new one"
                ),
            });
        }
        decided => {
            return Err(Error::Conflict {
                constraint: "approval_decided".into(),
                message: format!("approval {id} was already decided ({decided})"),
            });
        }
    }
    let status = match decision {
        Decision::Approve => "approved",
        Decision::Deny => "denied",
    };
    sqlx::query!(
        r#"
        update approval
        set status = $3::text::approval_status, decided_by = $4, decided_via = $5, decided_at = now(),
            decision_comment = $6,
            expires_at = case when $3 = 'approved' then now() + (expires_at - created_at) else expires_at end
        where organisation_id = $1 and approval_id = $2
        "#,
        tx.org().as_uuid(),
        id.as_uuid(),
        status,
        actor.user(),
        actor.via(),
        comment,
    )
    .execute(tx.conn())
    .await?;
    let approval = approval_by_id(tx, id).await?;
    record_admin_event(
        tx,
        actor,
        match decision {
            Decision::Approve => "approval.approve",
            Decision::Deny => "approval.deny",
        },
        Some(id.as_uuid()),
        json!({
            "tool": approval.tool_name,
            "grant_id": approval.grant_id,
            "identity": approval.identity,
            "server_id": approval.server_id,
            "comment": approval.comment,
        }),
    )
    .await?;
    Ok(approval)
}

/// Takes the approved, unexpired approval of this call, marking it consumed in one statement:
/// of any number of concurrent takers exactly one gets it. `None` when there is none.
#[tracing::instrument(skip(tx, hash))]
pub async fn take_approved(
    tx: &mut OrgTx,
    grant: GrantId,
    tool: &str,
    hash: &[u8; 32],
) -> Result<Option<Approval>> {
    let id = sqlx::query_scalar!(
        r#"
        update approval set status = 'consumed', consumed_at = now()
        where organisation_id = $1 and access_grant_id = $2 and tool_name = $3 and arguments_hash = $4
          and status = 'approved' and expires_at > now()
        returning approval_id
        "#,
        tx.org().as_uuid(),
        grant.as_uuid(),
        tool,
        &hash[..],
    )
    .fetch_optional(tx.conn())
    .await?;
    match id {
        Some(id) => Ok(Some(approval_by_id(tx, ApprovalId::from_uuid(id)).await?)),
        None => Ok(None),
    }
}

/// Writes `expired` on every pending or approved approval of the organisation whose time ran
/// out; returns how many. (Reads already report them as expired; this keeps the table honest.)
#[tracing::instrument(skip(tx))]
pub async fn expire_stale_approvals(tx: &mut OrgTx) -> Result<u64> {
    let done = sqlx::query!(
        r#"
        update approval set status = 'expired'
        where organisation_id = $1 and status in ('pending', 'approved') and expires_at <= now()
        "#,
        tx.org().as_uuid(),
    )
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

/// The organisation's webhook for new approvals, as admins see it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovalWebhook {
    pub url: String,
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The webhook with its signing secret, for the gateway that calls it.
#[derive(Debug, Clone)]
pub struct ApprovalWebhookTarget {
    pub webhook: ApprovalWebhook,
    pub secret: Redacted<Vec<u8>>,
}

/// The associated data that binds a sealed webhook secret to its organisation.
fn webhook_context(tx: &OrgTx) -> Vec<u8> {
    format!("approval-webhook:{}", tx.org()).into_bytes()
}

fn validate_webhook_url(url: &str) -> Result<()> {
    if url.len() > 2000 || !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::invalid(
            "url",
            "must be an http:// or https:// URL of at most 2,000 characters",
        ));
    }
    Ok(())
}

/// The organisation's webhook and its secret in clear, when one is set.
#[tracing::instrument(skip(tx))]
pub async fn approval_webhook(tx: &mut OrgTx) -> Result<Option<ApprovalWebhookTarget>> {
    let row = sqlx::query!(
        r#"
        select url, enabled, updated_at, secret_sealed, secret_key_version
        from approval_webhook where organisation_id = $1
        "#,
        tx.org().as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let secret = tx.keyring().open(
        &Sealed {
            key_version: row.secret_key_version,
            bytes: row.secret_sealed,
        },
        &webhook_context(tx),
    )?;
    Ok(Some(ApprovalWebhookTarget {
        webhook: ApprovalWebhook {
            url: row.url,
            enabled: row.enabled,
            updated_at: row.updated_at,
        },
        secret: Redacted::new(secret.expose().clone()),
    }))
}

/// Sets (creates or replaces) the organisation's webhook: where new approvals are announced and
/// the secret their HMAC-SHA256 signature is keyed with (at least 16 bytes), sealed at rest.
#[tracing::instrument(skip(tx, secret))]
pub async fn set_approval_webhook(
    tx: &mut OrgTx,
    actor: Actor,
    url: &str,
    secret: &Redacted<String>,
    enabled: bool,
) -> Result<ApprovalWebhook> {
    validate_webhook_url(url)?;
    if secret.expose().len() < 16 || secret.expose().len() > 200 {
        return Err(Error::invalid("secret", "must be 16 to 200 bytes"));
    }
    let sealed = tx
        .keyring()
        .seal(secret.expose().as_bytes(), &webhook_context(tx));
    let updated_at = sqlx::query_scalar!(
        r#"
        insert into approval_webhook (organisation_id, url, secret_sealed, secret_key_version, enabled)
        values ($1, $2, $3, $4, $5)
        on conflict (organisation_id) do update
            set url = excluded.url, secret_sealed = excluded.secret_sealed,
                secret_key_version = excluded.secret_key_version, enabled = excluded.enabled
        returning updated_at
        "#,
        tx.org().as_uuid(),
        url,
        &sealed.bytes[..],
        sealed.key_version,
        enabled,
    )
    .fetch_one(tx.conn())
    .await?;
    record_admin_event(
        tx,
        actor,
        "approval_webhook.set",
        None,
        json!({ "url": url, "enabled": enabled }),
    )
    .await?;
    Ok(ApprovalWebhook {
        url: url.to_owned(),
        enabled,
        updated_at,
    })
}

/// Removes the organisation's webhook; `false` when there was none.
#[tracing::instrument(skip(tx))]
pub async fn delete_approval_webhook(tx: &mut OrgTx, actor: Actor) -> Result<bool> {
    let done = sqlx::query!(
        "delete from approval_webhook where organisation_id = $1",
        tx.org().as_uuid(),
    )
    .execute(tx.conn())
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record_admin_event(tx, actor, "approval_webhook.delete", None, json!({})).await?;
    Ok(true)
}

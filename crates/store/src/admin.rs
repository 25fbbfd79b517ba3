//! The admin log: one hash-chained event per control-plane change, written in the same
//! transaction as the change so that a change without its record cannot exist.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{Chain, canonical_json, link_hash, lock_chain_head, store_chain_head};
use crate::{ApiKeyId, OrgTx, Result, UserId};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in person.
    User(UserId),
    /// An admin API key.
    ApiKey(ApiKeyId),
    /// An operator at the command line (`gatehouse ...`), who has the database itself.
    Operator,
    /// The gateway, reporting what it saw (a tool drift).
    Gateway,
}

impl Actor {
    fn label(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::Operator => "cli",
            Actor::Gateway => "gateway",
        }
    }

    pub(crate) fn user(&self) -> Option<Uuid> {
        match self {
            Actor::User(u) => Some(u.as_uuid()),
            _ => None,
        }
    }

    /// How a change was made, as `policy_version.published_via` records it.
    pub(crate) fn via(&self) -> &'static str {
        match self {
            Actor::User(_) => "web",
            Actor::ApiKey(_) => "api",
            // The gateway publishes nothing; were it to, it would be an operator's process.
            Actor::Operator | Actor::Gateway => "cli",
        }
    }
}

/// Appends one event to the organisation's admin chain.
#[tracing::instrument(skip(tx, details))]
pub(crate) async fn record_admin_event(
    tx: &mut OrgTx,
    actor: Actor,
    action: &str,
    target_id: Option<Uuid>,
    details: Value,
) -> Result<()> {
    let org = tx.org();
    let head = lock_chain_head(tx, Chain::Admin).await?;
    let sequence = head.last_sequence + 1;
    let occurred_at = crate::audit::truncate_to_micros(OffsetDateTime::now_utc());
    let admin_event_id = Uuid::new_v4();
    let (actor_user_id, actor_api_key_id) = match actor {
        Actor::User(u) => (Some(u.as_uuid()), None),
        Actor::ApiKey(k) => (None, Some(k.as_uuid())),
        Actor::Operator | Actor::Gateway => (None, None),
    };
    let canonical = canonical_json(&json!([
        "gatehouse-admin-v1",
        admin_event_id,
        org,
        sequence,
        crate::audit::unix_micros(occurred_at),
        actor_user_id,
        actor_api_key_id,
        actor.label(),
        action,
        target_id,
        details,
    ]));
    let hash = link_hash(&head.last_hash, &canonical);
    sqlx::query!(
        r#"
        insert into admin_event (admin_event_id, organisation_id, sequence, prev_hash, hash, occurred_at,
                                 actor_user_id, actor_api_key_id, actor_label, action, target_id, details)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        "#,
        admin_event_id,
        org.as_uuid(),
        sequence,
        &head.last_hash[..],
        &hash[..],
        occurred_at,
        actor_user_id,
        actor_api_key_id,
        actor.label(),
        action,
        target_id,
        details,
    )
    .execute(tx.conn())
    .await?;
    store_chain_head(tx, Chain::Admin, sequence, &hash).await
}

/// One admin event as the admin events page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AdminEvent {
    pub sequence: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// `user`, `api_key` or `cli`.
    pub actor_label: String,
    /// The email of the person who made the change, when a person did (and still exists).
    pub actor_email: Option<String>,
    pub action: String,
    pub target_id: Option<Uuid>,
    pub details: Value,
}

/// The organisation's admin events, newest first, older than `before` (a sequence) when given.
#[tracing::instrument(skip(tx))]
pub async fn list_admin_events(
    tx: &mut OrgTx,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AdminEvent>> {
    let rows = sqlx::query!(
        r#"
        select e.sequence, e.occurred_at, e.actor_label, u.email as "actor_email?", e.action,
               e.target_id, e.details
        from admin_event e
        left join app_user u on u.app_user_id = e.actor_user_id
        where e.organisation_id = $1 and ($2::bigint is null or e.sequence < $2)
        order by e.sequence desc
        limit $3
        "#,
        tx.org().as_uuid(),
        before,
        limit.clamp(1, 500),
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AdminEvent {
            sequence: r.sequence,
            occurred_at: r.occurred_at,
            actor_label: r.actor_label,
            actor_email: r.actor_email,
            action: r.action,
            target_id: r.target_id,
            details: r.details,
        })
        .collect())
}

//! The audit write-ahead kept in Postgres (`audit_outbox`), used when no Redis is configured
//! (single-process `gatehouse up`). The gateway appends a call's event before forwarding it and
//! completes it with the outcome after; the in-process ingester takes complete rows (and pending
//! rows past their grace period), stores their events with [`Store::insert_audit_batch`], and only
//! then removes the rows. The event is opaque JSON here: its shape belongs to the `audit` crate.

use std::time::Duration;

use serde_json::Value;

use crate::{OrgId, Result, Store};

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub event: Value,
    /// `false` while the call's outcome has not been recorded.
    pub complete: bool,
}

impl Store {
    /// Appends an event of `org` (written ahead of forwarding when `complete` is false). Returns
    /// the row's id, which [`Store::audit_outbox_complete`] takes.
    pub async fn audit_outbox_append(
        &self,
        org: OrgId,
        event: &Value,
        complete: bool,
    ) -> Result<i64> {
        let id = sqlx::query_scalar!(
            "insert into audit_outbox (organisation_id, event, complete) values ($1, $2, $3)
             returning audit_outbox_id",
            org.as_uuid(),
            event,
            complete
        )
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Records the outcome of a pending row. `false` when the row is gone: the ingester already
    /// stored its event with an unknown outcome after the grace period.
    pub async fn audit_outbox_complete(&self, id: i64, event: &Value) -> Result<bool> {
        let done = sqlx::query!(
            "update audit_outbox set event = $2, complete = true
             where audit_outbox_id = $1 and not complete",
            id,
            event
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Up to `limit` rows ready to be stored, oldest first: complete ones, and pending ones
    /// written more than `grace` ago by the database's clock. Nothing is removed.
    pub async fn audit_outbox_ready(
        &self,
        grace: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query_as!(
            OutboxEntry,
            "select audit_outbox_id as id, event, complete from audit_outbox
             where complete or written_at < now() - make_interval(secs => $1)
             order by audit_outbox_id
             limit $2",
            grace.as_secs_f64(),
            limit
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Removes rows whose events are stored.
    pub async fn audit_outbox_remove(&self, ids: &[i64]) -> Result<u64> {
        let done = sqlx::query!(
            "delete from audit_outbox where audit_outbox_id = any($1)",
            ids
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Every row of `org`, oldest first (tests and diagnostics read what the gateway wrote).
    pub async fn audit_outbox_of(&self, org: OrgId) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query_as!(
            OutboxEntry,
            "select audit_outbox_id as id, event, complete from audit_outbox
             where organisation_id = $1 order by audit_outbox_id",
            org.as_uuid()
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// How many rows wait to be stored (the backlog metric).
    pub async fn audit_outbox_len(&self) -> Result<i64> {
        let n = sqlx::query_scalar!(r#"select count(*) as "n!" from audit_outbox"#)
            .fetch_one(self.pool())
            .await?;
        Ok(n)
    }
}

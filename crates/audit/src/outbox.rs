//! The ingester of the Postgres write-ahead (`audit_outbox`), for a single-process `gatehouse up`
//! without Redis: the same contract as the stream [`crate::Ingester`] — store complete events, and
//! write-aheads past the grace period as "outcome unknown"; remove a row only after its event
//! committed; storing twice is harmless (idempotent on event id and time).

use std::time::Duration;

use store::Store;

use crate::ingest::{Pacing, Steps, run_steps};
use crate::{AuditRecord, Error, IngestConfig, Outcome, StepReport};

/// Moves events from `audit_outbox` into the hash-chained audit log. Run one per process.
#[derive(Debug)]
pub struct OutboxIngester {
    store: Store,
    grace: Duration,
    batch: i64,
    pacing: Pacing,
}

impl OutboxIngester {
    /// Uses `config`'s batch size, grace period, idle sleep and fill wait (its stream settings do
    /// not apply).
    pub fn new(store: Store, config: &IngestConfig) -> Self {
        OutboxIngester {
            store,
            grace: config.grace,
            batch: i64::try_from(config.batch).unwrap_or(i64::MAX),
            pacing: Pacing::of(config),
        }
    }

    /// Runs until `shutdown` resolves, backing off while Postgres is unavailable.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let pacing = self.pacing;
        run_steps(&mut self, pacing, shutdown).await
    }

    /// Stores one batch of ready rows, then removes them. On `Err` nothing was removed.
    pub async fn step(&mut self) -> Result<StepReport, Error> {
        let rows = self
            .store
            .audit_outbox_ready(self.grace, self.batch)
            .await?;
        let mut report = StepReport {
            read: rows.len() as u64,
            ..StepReport::default()
        };
        if rows.is_empty() {
            return Ok(report);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            match serde_json::from_value::<AuditRecord>(row.event.clone()) {
                Ok(mut record) => {
                    if !row.complete {
                        record.outcome = Outcome::Unknown;
                        report.unknown += 1;
                    }
                    events.push(record.to_new_event());
                }
                Err(e) => {
                    // Never expected: the gateway wrote it. The row stays in the log line.
                    tracing::error!(row = row.id, error = %e, event = %row.event, "audit outbox row is not an event; dropped");
                    report.dead += 1;
                }
            }
        }
        if !events.is_empty() {
            let stored = self.store.insert_audit_batch(&events).await?;
            report.inserted = stored.inserted;
            report.duplicates = stored.duplicates;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        report.acked = self.store.audit_outbox_remove(&ids).await?;
        Ok(report)
    }
}

impl Steps for OutboxIngester {
    async fn step(&mut self) -> Result<StepReport, Error> {
        OutboxIngester::step(self).await
    }
}

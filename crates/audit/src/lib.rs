//! The audit log's durable path (DESIGN.md §7): the event type and what of a call's arguments it
//! keeps ([`redact`]), the gateway's write-ahead ([`Journal`]: Redis streams, or Postgres's
//! outbox without Redis), the ingesters that move events into the store's hash-chained tables
//! ([`Ingester`], [`OutboxIngester`]), and export.
//!
//! It must never let the gateway believe an event is recorded when it may not be: every failure
//! to write ahead is an [`Error`] and the gateway refuses the call. It must never acknowledge a
//! stream entry before the transaction that stored its event committed, and never store an event
//! twice (the store is idempotent on the event's id and time, which an entry keeps across
//! retries). It contains no SQL: storing, verifying and reading go through `store`.
#![forbid(unsafe_code)]

mod error;
mod event;
pub mod export;
mod ingest;
mod journal;
mod outbox;
mod outcomes;
pub mod redact;

pub use error::Error;
pub use event::{
    AuditRecord, Outcome, UNKNOWN_OUTCOME_MESSAGE, audit_event_id_for, decision_from_gateway,
};
pub use ingest::{Fetched, GROUP, IngestConfig, Ingester, ShardShare, StepReport};
pub use journal::{Admission, Journal, StreamConfig, Ticket};
pub use outbox::OutboxIngester;
pub use redact::{audited_arguments, is_secret_key, redact};

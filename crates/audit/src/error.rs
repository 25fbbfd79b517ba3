//! The one error type at the crate's boundary.

use std::time::Duration;

/// Why the durable path failed. For the gateway every variant means "the event may not be
/// recorded": a call written ahead with an error is refused (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached or refused the command. The agent sees "audit log unavailable";
    /// `/readyz` reports Redis as down.
    #[error("audit log unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// Redis did not answer in time; the entry may or may not have been written (an event written
    /// twice is stored once). The agent sees "audit log unavailable".
    #[error("audit log did not answer within {0:?}")]
    Timeout(Duration),
    /// The round trip a write-ahead shared with the rate limiter failed or was not answered in
    /// time ([`crate::Journal::admit_and_write_ahead`]); the entry may or may not have been
    /// written. The agent sees "audit log unavailable".
    #[error("audit log unavailable: the round trip it shares with the rate limiter failed")]
    SharedRoundTrip,
    /// The Redis URL could not be parsed; seen at start-up, naming `REDIS_URL`.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// A setting is out of range; seen at start-up.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// Redis answered something the commands never return.
    #[error("unexpected answer from Redis: {0}")]
    UnexpectedReply(String),
    /// The event could not be serialised (never expected for events built by the gateway).
    #[error("cannot encode audit event: {0}")]
    Encoding(#[source] serde_json::Error),
    /// Writing an export failed (a closed pipe, a full disk).
    #[error("writing the export: {0}")]
    Io(#[source] std::io::Error),
    /// Postgres failed while storing or reading events; the ingester retries without acknowledging.
    #[error("audit store: {0}")]
    Store(#[from] store::Error),
}

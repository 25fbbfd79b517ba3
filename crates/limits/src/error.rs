//! The one error type at the crate's boundary. Every variant means "could not decide": the
//! gateway refuses the call (fail closed), with an error that says the limiter failed — a
//! server-side failure, not a rate-limit denial, since the agent did nothing wrong.

use std::time::Duration;

/// Why the limiter could not decide a call. The caller never forwards a call on any of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached, refused the command, or failed the script. The agent sees
    /// "rate limiter unavailable"; `/readyz` reports Redis as down.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(#[source] ::redis::RedisError),

    /// Redis did not answer within the configured timeout. The slots may or may not have been
    /// taken (the script may have run); the call is refused either way, which errs on the safe
    /// side. The agent sees "rate limiter unavailable".
    #[error("rate limiter did not answer within {0:?}")]
    Timeout(Duration),

    /// The Redis URL could not be parsed. Seen at start-up, naming the bad `REDIS_URL`.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] ::redis::RedisError),

    /// A check the limiter cannot enforce: `max` or window out of bounds, an empty or huge key,
    /// one key twice in a call, too many counters. A bug in the caller (the policy validator
    /// keeps documents within bounds); the agent sees an internal error.
    #[error("invalid limit check #{index}: {reason}")]
    InvalidCheck { index: usize, reason: &'static str },

    /// The in-process limiter already holds its maximum number of live counters, even after
    /// dropping idle ones; it refuses rather than grow without bound. The agent sees
    /// "rate limiter unavailable".
    #[error("the in-process rate limiter holds its maximum of {max} counters")]
    TooManyCounters { max: usize },

    /// The in-process limiter's state was left half-updated by a panic; from then on it cannot
    /// vouch for its counts and refuses every call. The agent sees "rate limiter unavailable".
    #[error("the in-process rate limiter's state is poisoned by an earlier panic")]
    Poisoned,

    /// The script answered something it never returns (another program's script under the
    /// same hash, a proxy in between). The agent sees "rate limiter unavailable".
    #[error("unexpected answer from the rate-limit script: {0}")]
    UnexpectedReply(String),
}

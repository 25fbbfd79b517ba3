//! The sliding-window rate limiter behind `tools/call` limits (DESIGN.md §4).
//!
//! It guarantees: **in any interval of length `window`, at most `max` calls are admitted** for a
//! counter, across every gateway replica that shares the same Redis (or, for [`InProcessLimiter`],
//! within one process). A call that consumes several counters is admitted only if all of them
//! admit it, and then consumes a slot on each, atomically: with Redis in one script run, one round
//! trip. An admitted call holds a [`Reservation`]; if the call never reached the upstream, the
//! caller hands it back with [`Limiter::refund`] and exactly that call's slots are freed.
//!
//! It must never admit a call it could not check: every failure (Redis unreachable, a timeout, an
//! answer it does not understand, a check it cannot enforce) is an [`Error`], and the gateway turns
//! every error into a refusal. A refund that fails leaves the slot taken, which errs the same way.
//! It never reads a replica's clock for shared counters (replicas' clocks disagree; Redis's is the
//! one clock), and never keeps counts that grow with `max`.
//!
//! How (`window.rs` has the arithmetic): each counter is a log of admissions over time, kept as
//! counts per *quantum* of `window / 1000` (one millisecond per second of window). A count is
//! taken to cover its whole quantum, so an admission stays counted until the *end* of its quantum
//! has left the window. That over-counts by at most one quantum (0.1 % of the window: 60 ms of a
//! minute, exact to the millisecond for a one-second window) and never under-counts, so the
//! guarantee holds exactly, while a counter never holds more than 1,001 quanta whatever its `max`.
//! Time is the Redis server's clock (`TIME` inside the script), so replicas with skewed clocks
//! agree; the in-process limiter uses a monotonic clock, injectable for tests ([`ManualClock`]).
//!
//! Redis must run with `maxmemory-policy noeviction` (its default): a counter evicted under
//! memory pressure would forget its admissions.
#![forbid(unsafe_code)]

mod error;
mod in_process;
mod in_redis;
mod window;

pub use error::Error;
pub use in_process::{Clock, InProcessLimiter, ManualClock, MonotonicClock};
pub use in_redis::{RedisConfig, RedisLimiter};
pub use policy::LimitCheck;

/// The largest `max` a counter may have; the policy validator enforces the same bound.
pub const MAX_LIMIT: u32 = 1_000_000;
/// The longest window a counter may have (7 days); the policy validator enforces the same bound.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
/// The most counters one call may consume.
pub const MAX_COUNTERS_PER_CALL: usize = 32;
/// The longest counter key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// A rate limiter: Redis-backed for any number of replicas, or in-process for a single-process
/// `gatehouse up` without Redis. Cheap to clone; clones share state (and connection).
#[derive(Debug, Clone)]
pub enum Limiter {
    Redis(RedisLimiter),
    InProcess(InProcessLimiter),
}

/// The answer to [`Limiter::consume`].
#[derive(Debug)]
#[must_use = "an admitted call holds slots: forward it, or refund the reservation"]
pub enum Outcome {
    /// Every counter admitted the call and one slot was taken on each.
    Admitted(Reservation),
    /// At least one counter is full; nothing was consumed on any counter.
    Refused(Refusal),
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Index into the checks of the counter that refused. When several are full, the one that
    /// stays full longest, so that `retry_after_ms` is a real promise: turn it into the agent's
    /// answer with `checks[index].denial(retry_after_ms)`.
    pub index: usize,
    /// How long until that counter admits a call again (at least 1), if nothing else is admitted
    /// meanwhile: when enough of the oldest admissions have left the window.
    pub retry_after_ms: u64,
}

/// The slots one admitted call holds. Not `Clone`: refunding consumes it, so a slot can be
/// handed back at most once.
#[derive(Debug)]
#[must_use = "keep the reservation until the call reached the upstream, or refund it"]
pub struct Reservation {
    admitted_at_ms: u64,
    /// `(key, window_secs)` of every counter the call consumed.
    counters: Vec<(String, u64)>,
}

impl Reservation {
    /// When the call was admitted, in milliseconds of the limiter's clock: the Redis server's
    /// Unix time for [`RedisLimiter`], the monotonic clock for [`InProcessLimiter`].
    pub fn admitted_at_ms(&self) -> u64 {
        self.admitted_at_ms
    }

    fn new(admitted_at_ms: u64, checks: &[LimitCheck]) -> Self {
        Reservation {
            admitted_at_ms,
            counters: checks
                .iter()
                .map(|c| (c.key.clone(), c.window_secs))
                .collect(),
        }
    }
}

impl Limiter {
    /// Consumes one slot on every counter in `checks` if all of them admit the call, else none.
    ///
    /// Any `Err` means the limiter could not decide: the caller must refuse the call.
    pub async fn consume(&self, checks: &[LimitCheck]) -> Result<Outcome, Error> {
        match self {
            Limiter::Redis(l) => l.consume(checks).await,
            Limiter::InProcess(l) => l.consume(checks),
        }
    }

    /// Gives back the slots of a call that never reached the upstream. Slots whose admission has
    /// already left the window are gone anyway and are not touched.
    pub async fn refund(&self, reservation: Reservation) -> Result<(), Error> {
        match self {
            Limiter::Redis(l) => l.refund(reservation).await,
            Limiter::InProcess(l) => {
                l.refund(reservation);
                Ok(())
            }
        }
    }

    /// A short name for logs and `/readyz`: `redis` or `in-process`.
    pub fn kind(&self) -> &'static str {
        match self {
            Limiter::Redis(_) => "redis",
            Limiter::InProcess(_) => "in-process",
        }
    }
}

impl From<RedisLimiter> for Limiter {
    fn from(l: RedisLimiter) -> Self {
        Limiter::Redis(l)
    }
}

impl From<InProcessLimiter> for Limiter {
    fn from(l: InProcessLimiter) -> Self {
        Limiter::InProcess(l)
    }
}

/// Rejects checks the limiter cannot enforce as asked. The policy validator already keeps
/// documents within these bounds; this guards the limiter against any other caller.
fn validate(checks: &[LimitCheck]) -> Result<(), Error> {
    if checks.len() > MAX_COUNTERS_PER_CALL {
        return Err(Error::InvalidCheck {
            index: MAX_COUNTERS_PER_CALL,
            reason: "more counters in one call than MAX_COUNTERS_PER_CALL",
        });
    }
    for (index, c) in checks.iter().enumerate() {
        let reason = if c.max == 0 || c.max > MAX_LIMIT {
            "max must be from 1 to MAX_LIMIT"
        } else if c.window_secs == 0 || c.window_secs > MAX_WINDOW_SECS {
            "window must be from 1 s to MAX_WINDOW_SECS"
        } else if c.key.is_empty() || c.key.len() > MAX_KEY_BYTES {
            "key must be from 1 to MAX_KEY_BYTES bytes"
        } else if checks[..index].iter().any(|o| o.key == c.key) {
            // Consuming one key twice in a call would take two slots after checking for one.
            "the same key appears twice in one call"
        } else {
            continue;
        };
        return Err(Error::InvalidCheck { index, reason });
    }
    Ok(())
}

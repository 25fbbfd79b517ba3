//! The in-process limiter: the same sliding windows as the Redis one, in this process's memory,
//! for a single-process `gatehouse up` without Redis. Its guarantee holds within one process only.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::window::Counter;
use crate::{Error, LimitCheck, Outcome, Refusal, Reservation, validate};

/// A clock in milliseconds that never goes backwards.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The real clock: milliseconds since the limiter was made, from [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told: for tests and simulations. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn starting_at(ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(ms)))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The sliding-window limiter in this process's memory. Cheap to clone; clones share counters.
///
/// Memory is bounded: a counter holds at most 1,001 quanta (see the crate docs), counters that
/// hold nothing are dropped by a sweep at most once per second of clock time, and beyond
/// `max_counters` live counters new ones are refused with [`Error::TooManyCounters`].
#[derive(Clone)]
pub struct InProcessLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Box<dyn Clock>,
    max_counters: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each counter with the window it was last consumed with (the key names the window, so
    /// it never changes in practice), which the sweep needs.
    counters: HashMap<String, (u64, Counter)>,
    last_sweep_ms: u64,
}

impl fmt::Debug for InProcessLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLimiter")
            .field("max_counters", &self.inner.max_counters)
            .finish_non_exhaustive()
    }
}

/// How many live counters an in-process limiter holds at most by default.
const DEFAULT_MAX_COUNTERS: usize = 100_000;
/// How often (in clock time) idle counters are swept out.
const SWEEP_EVERY_MS: u64 = 1_000;

impl Default for InProcessLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessLimiter {
    /// A limiter on the monotonic clock, holding up to 100,000 live counters.
    pub fn new() -> Self {
        Self::with_clock(MonotonicClock::new(), DEFAULT_MAX_COUNTERS)
    }

    /// A limiter on `clock`, holding up to `max_counters` live counters.
    pub fn with_clock(clock: impl Clock, max_counters: usize) -> Self {
        InProcessLimiter {
            inner: Arc::new(Inner {
                clock: Box::new(clock),
                max_counters,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// How many counters are held now (idle ones included until the next sweep).
    pub fn counters(&self) -> usize {
        self.inner
            .state
            .lock()
            .map(|s| s.counters.len())
            .unwrap_or(0)
    }

    /// Consumes one slot on every counter in `checks` if all admit the call, else none.
    /// Synchronous: it only takes a lock for a few microseconds.
    pub fn consume(&self, checks: &[LimitCheck]) -> Result<Outcome, Error> {
        validate(checks)?;
        let mut state = self.inner.state.lock().map_err(|_| Error::Poisoned)?;
        // Read the clock under the lock, so admissions are recorded in time order.
        let now = self.inner.clock.now_ms();
        state.sweep_if_due(now);

        let new_keys = checks
            .iter()
            .filter(|c| !state.counters.contains_key(&c.key))
            .count();
        if state.counters.len() + new_keys > self.inner.max_counters {
            state.sweep(now);
            if state.counters.len() + new_keys > self.inner.max_counters {
                return Err(Error::TooManyCounters {
                    max: self.inner.max_counters,
                });
            }
        }

        let mut refusal: Option<Refusal> = None;
        for (index, c) in checks.iter().enumerate() {
            let Some((_, counter)) = state.counters.get_mut(&c.key) else {
                continue; // A counter that does not exist yet admits the call.
            };
            counter.trim(now, c.window_secs);
            if let Some(wait) = counter.wait_ms(now, c.window_secs, c.max)
                && refusal.is_none_or(|r| wait > r.retry_after_ms)
            {
                refusal = Some(Refusal {
                    index,
                    retry_after_ms: wait,
                });
            }
        }
        if let Some(r) = refusal {
            return Ok(Outcome::Refused(r));
        }
        for c in checks {
            let (window_secs, counter) = state.counters.entry(c.key.clone()).or_default();
            *window_secs = c.window_secs;
            counter.add(now, c.window_secs);
        }
        Ok(Outcome::Admitted(Reservation::new(now, checks)))
    }

    /// Gives back the slots of a call that never reached the upstream.
    pub fn refund(&self, reservation: Reservation) {
        // A poisoned state refuses every call anyway; there is nothing to give back to.
        let Ok(mut state) = self.inner.state.lock() else {
            return;
        };
        for (key, window_secs) in &reservation.counters {
            if let Some((_, counter)) = state.counters.get_mut(key) {
                counter.give_back(reservation.admitted_at_ms, *window_secs);
            }
        }
    }
}

impl State {
    fn sweep_if_due(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep_ms) >= SWEEP_EVERY_MS {
            self.sweep(now);
        }
    }

    /// Drops every counter whose admissions have all left their window.
    fn sweep(&mut self, now: u64) {
        self.last_sweep_ms = now;
        self.counters.retain(|_, (window_secs, counter)| {
            counter.trim(now, *window_secs);
            !counter.is_empty()
        });
    }
}

//! Helpers shared by the tests: counters of a fresh organisation, the two limiters, and a view
//! of each limiter's clock that tests can wait on.

use std::time::Duration;

use limits::{
    InProcessLimiter, LimitCheck, Limiter, ManualClock, Outcome, RedisConfig, RedisLimiter,
    Refusal, Reservation,
};
use policy::{Pointer, Scope};

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh organisation id: the hash tag of every key a test uses.
pub(crate) fn fresh_org() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A grant-scoped counter of `org`, keyed the way the policy engine keys it.
pub(crate) fn check(org: &str, counter: &str, window_secs: u64, max: u32) -> LimitCheck {
    LimitCheck {
        rule: Pointer::root().push("all_tools").push("limits").push(0),
        key: format!("gh:{{{org}}}:rl:grant:g-1:{counter}:{window_secs}"),
        counter: counter.into(),
        scope: Scope::Grant,
        window_secs,
        max,
    }
}

pub(crate) async fn redis_limiter() -> RedisLimiter {
    RedisLimiter::connect(&redis_url(), RedisConfig::default())
        .await
        .expect("Redis at REDIS_URL answers (scripts/test starts it)")
}

pub(crate) async fn redis_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[track_caller]
pub(crate) fn admitted(outcome: Outcome) -> Reservation {
    match outcome {
        Outcome::Admitted(r) => r,
        Outcome::Refused(r) => panic!("expected the call to be admitted, it was refused: {r:?}"),
    }
}

#[track_caller]
pub(crate) fn refused(outcome: Outcome) -> Refusal {
    match outcome {
        Outcome::Refused(r) => r,
        Outcome::Admitted(r) => panic!("expected the call to be refused, it was admitted: {r:?}"),
    }
}

/// The most timestamps (ms) that fall within any interval of `window_ms` milliseconds.
pub(crate) fn most_in_any_window(timestamps: &[u64], window_ms: u64) -> usize {
    let mut ts = timestamps.to_vec();
    ts.sort_unstable();
    let mut most = 0;
    let mut first = 0;
    for last in 0..ts.len() {
        while ts[last] - ts[first] >= window_ms {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// A limiter and its clock, as the shared scenarios see them.
pub(crate) struct Env {
    pub(crate) limiter: Limiter,
    pub(crate) clock: TestClock,
}

pub(crate) enum TestClock {
    /// The Redis server's clock, which passes for real.
    Redis(redis::aio::MultiplexedConnection),
    /// A clock the test moves by hand.
    Manual(ManualClock),
}

impl Env {
    pub(crate) async fn redis() -> Env {
        Env {
            limiter: redis_limiter().await.into(),
            clock: TestClock::Redis(redis_connection().await),
        }
    }

    pub(crate) fn in_process() -> Env {
        let clock = ManualClock::starting_at(1_000_000);
        Env {
            limiter: InProcessLimiter::with_clock(clock.clone(), 1_000).into(),
            clock: TestClock::Manual(clock),
        }
    }

    pub(crate) async fn consume(&self, checks: &[LimitCheck]) -> Outcome {
        self.limiter.consume(checks).await.expect("limiter answers")
    }

    /// The limiter's time now, in ms.
    pub(crate) async fn now_ms(&mut self) -> u64 {
        match &mut self.clock {
            TestClock::Redis(con) => {
                let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await.unwrap();
                secs * 1000 + micros / 1000
            }
            TestClock::Manual(clock) => limits::Clock::now_ms(clock),
        }
    }

    pub(crate) async fn pass(&self, ms: u64) {
        match &self.clock {
            TestClock::Redis(_) => tokio::time::sleep(Duration::from_millis(ms)).await,
            TestClock::Manual(clock) => clock.advance(ms),
        }
    }

    /// Waits until the limiter's clock is `ms` milliseconds into a second (give or take 10 ms
    /// on a real clock) and returns the time then.
    pub(crate) async fn pass_until_into_second(&mut self, ms: u64) -> u64 {
        let now = self.now_ms().await;
        self.pass((1000 + ms - now % 1000) % 1000).await;
        self.now_ms().await
    }

    pub(crate) fn is_real_time(&self) -> bool {
        matches!(self.clock, TestClock::Redis(_))
    }
}

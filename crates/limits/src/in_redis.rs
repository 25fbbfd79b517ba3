//! The Redis limiter: every counter of a call checked and consumed by one script run
//! (`consume.lua`, sent as EVALSHA), so replicas share counters and a call is one round trip.
//!
//! Redis must not evict keys (`maxmemory-policy noeviction`, the default): an evicted counter
//! would forget admissions. Counters expire by themselves one window after their last admission.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, ConnectionInfo, Script, ScriptInvocation, Value};

use crate::{Error, LimitCheck, Outcome, Refusal, Reservation, validate};

static CONSUME: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("consume.lua")));
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("refund.lua")));

/// Timeouts of the Redis limiter.
#[derive(Debug, Clone, Copy)]
pub struct RedisConfig {
    /// The longest one limiter call (consume, refund, ping) may take, reconnection included.
    /// Past it the call fails with [`Error::Timeout`] and the gateway refuses the request.
    pub call_timeout: Duration,
    /// The longest one attempt to (re)connect may take.
    pub connect_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            call_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
        }
    }
}

/// The Redis-backed limiter. Cheap to clone; clones share one multiplexed connection, which
/// reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    config: RedisConfig,
    /// Which Redis this is (address, database, user), to tell whether a command of another
    /// crate may share this connection ([`RedisLimiter::consume_then`]).
    server: String,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to Redis at `url` and checks that it answers.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, Error> {
        let client = Client::open(url).map_err(Error::InvalidUrl)?;
        let server = server_identity(client.get_connection_info());
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.call_timeout))
            // Reconnection is retried on the next call; a call never waits through backoff
            // longer than its own timeout.
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(Error::Unavailable)?;
        let limiter = RedisLimiter {
            connection,
            config,
            server,
        };
        limiter.ping().await?;
        Ok(limiter)
    }

    /// One PING round trip: for `/readyz`, and as the benchmark's baseline.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut con = self.connection.clone();
        let pong: String = self
            .within_timeout(redis::cmd("PING").query_async(&mut con))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Error::UnexpectedReply(format!("PING answered {pong:?}")))
        }
    }

    /// Consumes one slot on every counter in `checks` if all admit the call, else none: one
    /// script run, one round trip.
    pub async fn consume(&self, checks: &[LimitCheck]) -> Result<Outcome, Error> {
        validate(checks)?;
        if checks.is_empty() {
            return Ok(Outcome::Admitted(Reservation::new(0, checks)));
        }
        let mut invocation = CONSUME.prepare_invoke();
        for c in checks {
            add_keys(&mut invocation, &c.key);
            invocation.arg(c.window_secs).arg(c.max);
        }
        let mut con = self.connection.clone();
        let reply: Vec<i64> = self
            .within_timeout(invocation.invoke_async(&mut con))
            .await?;
        consumed(&reply, checks)
    }

    /// Whether this limiter talks to the Redis that `info` names (same address, database and
    /// user): only then may [`RedisLimiter::consume_then`] carry a command meant for it.
    pub fn same_redis(&self, info: &ConnectionInfo) -> bool {
        self.server == server_identity(info)
    }

    /// [`RedisLimiter::consume`] and `then` in **one round trip**: the script and then `then`,
    /// pipelined on this limiter's connection, so Redis runs them back to back. `then` runs
    /// whatever the script answered (it is not conditional: a caller that must undo it for a
    /// refused call does so itself). Returns the limiter's outcome and `then`'s reply; the reply
    /// is `None` when it was not sent or not answered within the call timeout (it may have run).
    ///
    /// The audit journal uses it to write a call ahead in the limiter's round trip. Only the
    /// first call after Redis lost its scripts costs one more round trip (the script is loaded
    /// and the consume sent again on its own; `then` has already run).
    pub async fn consume_then(
        &self,
        checks: &[LimitCheck],
        then: Cmd,
    ) -> (Result<Outcome, Error>, Option<redis::RedisResult<Value>>) {
        if let Err(e) = validate(checks) {
            return (Err(e), None);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if !checks.is_empty() {
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha.arg(CONSUME.get_hash()).arg(2 * checks.len());
            for c in checks {
                evalsha.arg(&c.key).arg(format!("{}:q", c.key));
            }
            for c in checks {
                evalsha.arg(c.window_secs).arg(c.max);
            }
            pipe.add_command(evalsha);
        }
        pipe.add_command(then);
        let mut con = self.connection.clone();
        let replies: Vec<redis::RedisResult<Value>> =
            match self.within_timeout(pipe.query_async(&mut con)).await {
                Ok(replies) => replies,
                Err(e) => return (Err(e), None),
            };
        let mut replies = replies.into_iter();
        let outcome = if checks.is_empty() {
            Ok(Outcome::Admitted(Reservation::new(0, checks)))
        } else {
            match replies.next() {
                Some(Ok(reply)) => match redis::from_redis_value::<Vec<i64>>(reply) {
                    Ok(reply) => consumed(&reply, checks),
                    Err(e) => Err(Error::UnexpectedReply(e.to_string())),
                },
                Some(Err(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    self.consume(checks).await
                }
                Some(Err(e)) => Err(Error::Unavailable(e)),
                None => Err(Error::UnexpectedReply("no answer to the script".into())),
            }
        };
        (outcome, replies.next())
    }

    /// Gives back the slots of a call that never reached the upstream: one script run.
    /// If it fails, the slots stay taken until they leave their window (the safe side).
    pub async fn refund(&self, reservation: Reservation) -> Result<(), Error> {
        if reservation.counters.is_empty() {
            return Ok(());
        }
        let mut invocation = REFUND.prepare_invoke();
        invocation.arg(reservation.admitted_at_ms);
        for (key, window_secs) in &reservation.counters {
            add_keys(&mut invocation, key);
            invocation.arg(*window_secs);
        }
        let mut con = self.connection.clone();
        let _given: i64 = self
            .within_timeout(invocation.invoke_async(&mut con))
            .await?;
        Ok(())
    }

    async fn within_timeout<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.config.call_timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if e.is_timeout() => Err(Error::Timeout(self.config.call_timeout)),
            Ok(Err(e)) => Err(Error::Unavailable(e)),
            Err(_) => Err(Error::Timeout(self.config.call_timeout)),
        }
    }
}

/// The script's answer: `[1, now]` admitted, `[0, index, wait, _]` refused.
fn consumed(reply: &[i64], checks: &[LimitCheck]) -> Result<Outcome, Error> {
    let unexpected = || Error::UnexpectedReply(format!("{reply:?}"));
    match *reply {
        [1, now] => Ok(Outcome::Admitted(Reservation::new(
            u64::try_from(now).map_err(|_| unexpected())?,
            checks,
        ))),
        [0, index, wait, _] => {
            let index = usize::try_from(index)
                .ok()
                .filter(|&i| i < checks.len())
                .ok_or_else(unexpected)?;
            let retry_after_ms = u64::try_from(wait)
                .ok()
                .filter(|&w| w >= 1)
                .ok_or_else(unexpected)?;
            Ok(Outcome::Refused(Refusal {
                index,
                retry_after_ms,
            }))
        }
        _ => Err(unexpected()),
    }
}

/// What tells two Redis connections apart: address, database and user (never the password).
fn server_identity(info: &ConnectionInfo) -> String {
    let redis = info.redis_settings();
    format!(
        "{:?}/{}/{}",
        info.addr(),
        redis.db(),
        redis.username().unwrap_or_default()
    )
}

/// A counter's two keys: its counts under the key the policy made, and its quanta beside it.
/// The suffix keeps the organisation's hash tag (the same slot) and cannot collide with a policy
/// key, which always ends in the window's digits.
fn add_keys(invocation: &mut ScriptInvocation<'_>, key: &str) {
    invocation.key(key).key(format!("{key}:q"));
}

//! The gateway's side of the durable path: events written ahead of forwarding, and the outcome
//! appended after. Two backends with one contract: Redis shard streams (any number of replicas,
//! moved into Postgres by `gatehouse ingest`), and Postgres's `audit_outbox` table (a
//! single-process `gatehouse up` without Redis, moved by [`crate::OutboxIngester`]).
//!
//! Layout: a small fixed set of shard streams `<prefix>:{<n>}` (`gh:audit:{0}` … `gh:audit:{7}`);
//! an organisation always maps to the same shard, so its events stay in order. Each stream entry
//! is one of
//! - `k=w`: written ahead of forwarding (outcome pending);
//! - `k=o`: the outcome of a write-ahead, with the complete event and `w=<write-ahead entry id>`;
//! - `k=c`: a complete event of a request that was never forwarded (denials, refusals).
//!
//! Every entry carries the whole event as JSON in `e`, so the ingester never has to join entries
//! to store one: it stores `o` and `c` entries as they are, and a `w` entry as "outcome unknown"
//! only once its grace period is over and no `o` acknowledged it.
//!
//! Redis must persist the streams (append-only file, `appendfsync everysec` or `always`) and
//! must not evict (`maxmemory-policy noeviction`): a stream lost with Redis loses the events not
//! yet ingested. That is a deployment setting (compose, Kubernetes), not something this crate can
//! check from a client.

use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};
use serde_json::Value as Json;
use store::Store;
use tokio_util::task::TaskTracker;

use crate::outcomes::{NotQueued, OutcomeQueue};
use crate::{AuditRecord, Error, Outcome};

/// Where the streams are and how long a call may take.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Stream keys are `<prefix>:{<shard>}`; tests use a unique prefix each.
    pub prefix: String,
    /// How many shard streams there are. Gateways and ingesters must agree.
    pub shards: u16,
    /// The longest one Redis call may take, reconnection included; past it the call fails and the
    /// gateway refuses the request.
    pub call_timeout: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            prefix: "gh:audit".into(),
            shards: 8,
            call_timeout: Duration::from_millis(500),
        }
    }
}

impl StreamConfig {
    /// The stream of shard `n`; the braces make it a Redis Cluster hash tag, so each shard is one slot.
    pub fn stream_key(&self, shard: u16) -> String {
        format!("{}:{{{shard}}}", self.prefix)
    }

    /// The shard of an organisation: stable for its id, whatever the process.
    pub fn shard_of(&self, org: store::OrgId) -> u16 {
        let b = org.as_uuid().into_bytes();
        (u16::from_be_bytes([b[14], b[15]])) % self.shards.max(1)
    }

    pub(crate) async fn connect(&self, url: &str) -> Result<ConnectionManager, Error> {
        Ok(self.connect_with_info(url).await?.0)
    }

    async fn connect_with_info(
        &self,
        url: &str,
    ) -> Result<(ConnectionManager, redis::ConnectionInfo), Error> {
        if self.shards == 0 {
            return Err(Error::Config(
                "the number of audit shards must be at least 1".into(),
            ));
        }
        let client = Client::open(url).map_err(Error::InvalidUrl)?;
        let info = client.get_connection_info().clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.call_timeout))
            .set_response_timeout(Some(self.call_timeout))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(Error::Unavailable)?;
        Ok((connection, info))
    }
}

pub(crate) async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.is_timeout() => Err(Error::Timeout(timeout)),
        Ok(Err(e)) => Err(Error::Unavailable(e)),
        Err(_) => Err(Error::Timeout(timeout)),
    }
}

/// The gateway's handle on the durable path. Cheap to clone; clones share one connection (Redis)
/// or one pool (Postgres).
#[derive(Clone)]
pub struct Journal {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// Shard streams in Redis, one multiplexed connection that reconnects by itself.
    Streams {
        connection: ConnectionManager,
        /// The writer of [`Journal::record_outcome_in_background`].
        outcomes: OutcomeQueue,
        config: StreamConfig,
        /// Which Redis the streams are in: a limiter on the same one may carry the write-ahead.
        info: redis::ConnectionInfo,
    },
    /// The `audit_outbox` table in Postgres.
    Outbox {
        store: Store,
        call_timeout: Duration,
        /// The tasks of [`Journal::record_outcome_in_background`], for [`Journal::flush`].
        outcomes: TaskTracker,
    },
    /// Nothing written anywhere: [`Journal::unaudited_benchmark_only`].
    UnauditedBenchmarkOnly,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Streams { config, .. } => f
                .debug_struct("Journal")
                .field("streams", config)
                .finish_non_exhaustive(),
            Backend::Outbox { call_timeout, .. } => f
                .debug_struct("Journal")
                .field("outbox", call_timeout)
                .finish_non_exhaustive(),
            Backend::UnauditedBenchmarkOnly => f.write_str("Journal(unaudited, benchmark only)"),
        }
    }
}

/// Where a write-ahead went.
#[derive(Debug)]
enum Entry {
    Stream(String),
    Outbox(i64),
    Unaudited,
}

/// What [`Journal::admit_and_write_ahead`] did.
#[derive(Debug)]
#[must_use = "an admitted call holds slots, and a ticket needs its outcome"]
pub struct Admission {
    /// The limiter's answer; any `Err` means it could not decide (refuse the call).
    pub outcome: Result<limits::Outcome, limits::Error>,
    /// The write-ahead when it shared the limiter's round trip (whatever the limiter answered);
    /// `None` when it did not, and nothing was written ahead.
    pub ticket: Option<Result<Ticket, Error>>,
}

/// Proof that an event was written ahead; hand it back with its outcome.
#[derive(Debug)]
#[must_use = "record the outcome of a call written ahead, or it is stored as unknown"]
pub struct Ticket {
    record: AuditRecord,
    entry: Entry,
    written_at: Instant,
}

impl Ticket {
    /// The event as written ahead; fields learnt later (the upstream's `isError`, a decision
    /// turned into `upstream_error`) can be set here before [`Journal::record_outcome`].
    pub fn record_mut(&mut self) -> &mut AuditRecord {
        &mut self.record
    }

    pub fn record(&self) -> &AuditRecord {
        &self.record
    }

    /// Time since the write-ahead, the natural latency of the call when nothing better is known.
    pub fn elapsed(&self) -> Duration {
        self.written_at.elapsed()
    }
}

impl Journal {
    /// Connects to Redis at `url`, checks that it answers, and starts the background outcome
    /// writer on the current runtime.
    pub async fn connect(url: &str, config: StreamConfig) -> Result<Self, Error> {
        let (connection, info) = config.connect_with_info(url).await?;
        let journal = Journal {
            backend: Backend::Streams {
                outcomes: OutcomeQueue::start(connection.clone(), config.call_timeout),
                connection,
                config,
                info,
            },
        };
        journal.ping().await?;
        Ok(journal)
    }

    /// The write-ahead in Postgres's `audit_outbox` (no Redis): each call is bounded by
    /// `call_timeout`, like a Redis call.
    pub fn outbox(store: Store, call_timeout: Duration) -> Self {
        Journal {
            backend: Backend::Outbox {
                store,
                call_timeout,
                outcomes: TaskTracker::new(),
            },
        }
    }

    /// A journal that writes nothing and answers every call `Ok`: the gateway with its durable
    /// path switched off, which `cargo xtask bench gateway` measures beside the real one to show
    /// what the durable path costs (issue 6). Never for serving: no product command builds it.
    pub fn unaudited_benchmark_only() -> Self {
        Journal {
            backend: Backend::UnauditedBenchmarkOnly,
        }
    }

    /// One round trip to where the journal writes, for `/readyz`.
    pub async fn ping(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Streams {
                connection, config, ..
            } => {
                let mut con = connection.clone();
                let _: String = within(
                    config.call_timeout,
                    redis::cmd("PING").query_async(&mut con),
                )
                .await?;
            }
            Backend::Outbox {
                store,
                call_timeout,
                ..
            } => bounded(*call_timeout, store.ping()).await?,
            Backend::UnauditedBenchmarkOnly => {}
        }
        Ok(())
    }

    /// Writes `record` ahead of forwarding its call (its outcome is set to pending). Returns only
    /// once the entry is stored; any `Err` means it may not be: the gateway must refuse the call.
    pub async fn write_ahead(&self, mut record: AuditRecord) -> Result<Ticket, Error> {
        record.outcome = Outcome::Pending;
        let entry = match &self.backend {
            Backend::Streams {
                connection, config, ..
            } => Entry::Stream(append(connection, config, &record, "w", None).await?),
            Backend::Outbox {
                store,
                call_timeout,
                ..
            } => {
                let event = encode(&record)?;
                let id = bounded(
                    *call_timeout,
                    store.audit_outbox_append(record.organisation_id, &event, false),
                )
                .await?;
                Entry::Outbox(id)
            }
            Backend::UnauditedBenchmarkOnly => Entry::Unaudited,
        };
        Ok(Ticket {
            record,
            entry,
            written_at: Instant::now(),
        })
    }

    /// Consumes the call's rate limits and writes `record` ahead, in **one round trip** when the
    /// limiter is the Redis the streams are in (DESIGN.md §7's recommendation): the limiter's
    /// script and the `XADD` pipelined on the limiter's connection
    /// ([`limits::RedisLimiter::consume_then`]). The write-ahead is sent whatever the limiter
    /// answers, so a call the limiter refused, or could not decide, holds a ticket too: the
    /// caller must then record its outcome (the refusal, with no upstream status) before
    /// answering, exactly as [`Journal::record`] would, and must refund an admitted reservation
    /// when the write-ahead failed.
    ///
    /// With another pairing (the in-process limiter, the outbox, streams in another Redis) the
    /// limiter runs alone and `ticket` is `None`: the caller writes ahead with
    /// [`Journal::write_ahead`] as for any other request.
    pub async fn admit_and_write_ahead(
        &self,
        limiter: &limits::Limiter,
        checks: &[limits::LimitCheck],
        mut record: AuditRecord,
    ) -> Admission {
        let (Backend::Streams { config, info, .. }, limits::Limiter::Redis(redis_limiter)) =
            (&self.backend, limiter)
        else {
            return Admission {
                outcome: limiter.consume(checks).await,
                ticket: None,
            };
        };
        if !redis_limiter.same_redis(info) {
            return Admission {
                outcome: limiter.consume(checks).await,
                ticket: None,
            };
        }
        record.outcome = Outcome::Pending;
        let xadd = match xadd(config, &record, "w", None) {
            Ok(cmd) => cmd,
            Err(e) => {
                return Admission {
                    outcome: limiter.consume(checks).await,
                    ticket: Some(Err(e)),
                };
            }
        };
        let (outcome, reply) = redis_limiter.consume_then(checks, xadd).await;
        let ticket = match reply {
            Some(Ok(id)) => entry_id(id).map(|id| Ticket {
                record,
                entry: Entry::Stream(id),
                written_at: Instant::now(),
            }),
            Some(Err(e)) => Err(Error::Unavailable(e)),
            None => Err(Error::SharedRoundTrip),
        };
        Admission {
            outcome,
            ticket: Some(ticket),
        }
    }

    /// Appends the outcome of a call written ahead. If this fails the event is still stored,
    /// with an unknown outcome; the caller logs the error and carries on (the call already ran).
    pub async fn record_outcome(&self, ticket: Ticket, outcome: Outcome) -> Result<(), Error> {
        let mut record = ticket.record;
        record.outcome = outcome;
        match (&self.backend, ticket.entry) {
            (
                Backend::Streams {
                    connection, config, ..
                },
                Entry::Stream(w),
            ) => {
                append(connection, config, &record, "o", Some(&w)).await?;
            }
            (
                Backend::Outbox {
                    store,
                    call_timeout,
                    ..
                },
                Entry::Outbox(id),
            ) => {
                let event = encode(&record)?;
                // `false`: the ingester already stored the event as unknown; nothing to add.
                bounded(*call_timeout, store.audit_outbox_complete(id, &event)).await?;
            }
            (Backend::UnauditedBenchmarkOnly, Entry::Unaudited) => {}
            _ => {
                return Err(Error::Config(
                    "an outcome was handed to another journal than its write-ahead's".into(),
                ));
            }
        }
        Ok(())
    }

    /// [`Journal::record_outcome`] off the caller's path, for a call already forwarded: with
    /// Redis streams the outcome is queued for the journal's writer, which appends whatever
    /// queued meanwhile in one pipelined round trip ([`crate::outcomes`]); with the outbox it is
    /// written by a task of its own. Failures are logged, naming the request; the event is then
    /// stored with an unknown outcome after the grace period.
    pub fn record_outcome_in_background(&self, ticket: Ticket, outcome: Outcome) {
        let lost = |request_id: &str, why: &dyn std::fmt::Display| {
            tracing::warn!(%request_id, error = %why, "audit outcome not recorded; the event will be stored with an unknown outcome");
        };
        match (&self.backend, &ticket.entry) {
            (Backend::UnauditedBenchmarkOnly, _) => {}
            (
                Backend::Streams {
                    outcomes, config, ..
                },
                Entry::Stream(w),
            ) => {
                let mut record = ticket.record;
                record.outcome = outcome;
                let queued = xadd(config, &record, "o", Some(w))
                    .map(|cmd| outcomes.push(cmd, record.request_id.clone()));
                match queued {
                    Ok(Ok(())) => {}
                    Err(e) => lost(&record.request_id, &e),
                    Ok(Err(NotQueued::Full)) => lost(
                        &record.request_id,
                        &"the outcome queue is full (Redis is far behind)",
                    ),
                    Ok(Err(NotQueued::Closed)) => {
                        lost(&record.request_id, &"the outcome writer has stopped");
                    }
                }
            }
            (Backend::Outbox { outcomes, .. }, _) => {
                let journal = self.clone();
                outcomes.spawn(async move {
                    let request_id = ticket.record.request_id.clone();
                    if let Err(e) = journal.record_outcome(ticket, outcome).await {
                        lost(&request_id, &e);
                    }
                });
            }
            (Backend::Streams { .. }, _) => lost(
                &ticket.record.request_id,
                &"the outcome was handed to another journal than its write-ahead's",
            ),
        }
    }

    /// Waits, at most `timeout`, until every outcome recorded in the background before the call
    /// has been written (or has failed, and been logged): what a gateway does last when it
    /// stops, so that the calls it answered are not stored with an unknown outcome.
    pub async fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let flushed = async {
            match &self.backend {
                Backend::Streams { outcomes, .. } => outcomes.flush().await,
                Backend::Outbox { outcomes, .. } => {
                    outcomes.close();
                    outcomes.wait().await;
                    outcomes.reopen();
                }
                Backend::UnauditedBenchmarkOnly => {}
            }
        };
        tokio::time::timeout(timeout, flushed)
            .await
            .map_err(|_| Error::Timeout(timeout))
    }

    /// Records the complete event of a request that is not forwarded (a denial, a refusal). The
    /// gateway answers the agent after this returns; on `Err` it answers with an error instead.
    pub async fn record(&self, record: AuditRecord) -> Result<(), Error> {
        match &self.backend {
            Backend::Streams {
                connection, config, ..
            } => {
                append(connection, config, &record, "c", None).await?;
            }
            Backend::Outbox {
                store,
                call_timeout,
                ..
            } => {
                let event = encode(&record)?;
                bounded(
                    *call_timeout,
                    store.audit_outbox_append(record.organisation_id, &event, true),
                )
                .await?;
            }
            Backend::UnauditedBenchmarkOnly => {}
        }
        Ok(())
    }
}

fn encode(record: &AuditRecord) -> Result<Json, Error> {
    serde_json::to_value(record).map_err(Error::Encoding)
}

/// A store call bounded like a Redis call: past `timeout` it fails.
async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = store::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Timeout(timeout)),
    }
}

async fn append(
    connection: &ConnectionManager,
    config: &StreamConfig,
    record: &AuditRecord,
    kind: &str,
    write_ahead: Option<&str>,
) -> Result<String, Error> {
    let cmd = xadd(config, record, kind, write_ahead)?;
    let mut con = connection.clone();
    entry_id(within(config.call_timeout, cmd.query_async(&mut con)).await?)
}

/// The `XADD` of one entry into its organisation's shard stream.
fn xadd(
    config: &StreamConfig,
    record: &AuditRecord,
    kind: &str,
    write_ahead: Option<&str>,
) -> Result<redis::Cmd, Error> {
    let json = serde_json::to_string(record).map_err(Error::Encoding)?;
    let key = config.stream_key(config.shard_of(record.organisation_id));
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&key).arg("*").arg("k").arg(kind).arg("e").arg(json);
    if let Some(w) = write_ahead {
        cmd.arg("w").arg(w);
    }
    Ok(cmd)
}

/// The entry id `XADD` answered.
fn entry_id(id: Value) -> Result<String, Error> {
    match id {
        Value::BulkString(b) => String::from_utf8(b)
            .map_err(|_| Error::UnexpectedReply("XADD answered a non-text id".into())),
        Value::SimpleString(s) => Ok(s),
        other => Err(Error::UnexpectedReply(format!("XADD answered {other:?}"))),
    }
}

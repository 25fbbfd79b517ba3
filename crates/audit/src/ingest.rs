//! The ingester: moves events from the shard streams into Postgres, in batches, idempotently,
//! acknowledging entries only after the batch committed.
//!
//! Several ingesters share the consumer group `ingest`; each reads new entries (`XREADGROUP >`)
//! and claims entries another consumer left pending longer than `claim_idle` (`XAUTOCLAIM`), which
//! covers a consumer that died mid-batch and the write-ahead entries deferred below. Storing is
//! idempotent on (event id, time), so an entry stored twice (a consumer that committed but died
//! before acknowledging, or two consumers racing on a claimed entry) is stored once.
//!
//! A write-ahead entry (`w`) is acknowledged together with its outcome (`o` names it). One whose
//! outcome has not come is left pending; once it is older than the grace period (by the Redis
//! clock: its entry id is Redis's time of writing) it is stored with an unknown outcome. The grace
//! period must exceed the longest a call can take to get its answer's head (upstream timeout plus
//! approval wait): an outcome that arrives later than that finds the event already stored and is
//! dropped as a duplicate.

use std::collections::HashSet;
use std::time::Duration;

use redis::aio::ConnectionManager;
use store::Store;
use store::audit::NewAuditEvent;

use crate::journal::within;
use crate::{AuditRecord, Error, Outcome, StreamConfig};

/// The consumer group every ingester joins.
pub const GROUP: &str = "ingest";

/// The most entry ids one `XACK` or `XDEL` names (about 4.6 KiB of ids).
const ACK_CHUNK: usize = 256;

/// How an ingester reads and when it gives up waiting.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub stream: StreamConfig,
    /// This consumer's name in the group; unique per running ingester (e.g. the host name).
    pub consumer: String,
    /// Which shards this ingester reads.
    pub share: ShardShare,
    /// The most entries read from one shard per step.
    pub batch: usize,
    /// How long a write-ahead waits for its outcome before it is stored as unknown.
    pub grace: Duration,
    /// How long an entry stays pending with a consumer before another may claim it. Longer than
    /// one batch can take to store.
    pub claim_idle: Duration,
    /// How long to sleep when every shard was empty.
    pub idle_sleep: Duration,
    /// How long to let entries gather after a step that read less than a full `batch`: a step's
    /// round trips and its transaction (one WAL flush) then carry many events instead of a few,
    /// which is what keeps the ingester cheap at moderate rates. Events land in Postgres at
    /// most this much later; a step that filled a batch (the ingester is behind) never waits.
    pub fill_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: StreamConfig {
                // Reads of a whole batch take longer than a gateway's call.
                call_timeout: Duration::from_secs(5),
                ..StreamConfig::default()
            },
            consumer: "ingest-1".into(),
            share: ShardShare::ALL,
            batch: 2000,
            grace: Duration::from_secs(120),
            claim_idle: Duration::from_secs(30),
            idle_sleep: Duration::from_millis(50),
            fill_wait: Duration::from_millis(100),
        }
    }
}

/// The shards an ingester reads: those whose number modulo `of` is `index`.
///
/// The ingesters of one process split the shards this way ([`ShardShare::split`]), so they never
/// compete for the same entries: an organisation's write-ahead and its outcome always reach the
/// same ingester (together, in one batch, when the call was quick), each shard is polled once per
/// step between them, and one organisation's batches (which lock its chain head in turn) are never
/// divided between two. Ingesters in different processes each read every shard of their share,
/// competing through the consumer group as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardShare {
    pub index: u16,
    pub of: u16,
}

impl ShardShare {
    /// Every shard.
    pub const ALL: ShardShare = ShardShare { index: 0, of: 1 };

    /// One share each for `workers` ingesters over `shards` shards: at most one per shard, so
    /// none is left without a shard.
    pub fn split(workers: usize, shards: u16) -> Vec<ShardShare> {
        let of = u16::try_from(workers)
            .unwrap_or(u16::MAX)
            .clamp(1, shards.max(1));
        (0..of).map(|index| ShardShare { index, of }).collect()
    }

    /// This share's shards among `shards`.
    pub fn shards(self, shards: u16) -> impl Iterator<Item = u16> {
        (0..shards).filter(move |s| s % self.of.max(1) == self.index)
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Entries read or claimed.
    pub read: u64,
    /// Events newly stored.
    pub inserted: u64,
    /// Events found already stored (retries, late outcomes).
    pub duplicates: u64,
    /// Write-aheads stored with an unknown outcome.
    pub unknown: u64,
    /// Write-aheads left pending for their outcome.
    pub deferred: u64,
    /// Entries acknowledged (and deleted from the stream).
    pub acked: u64,
    /// Entries that could not be read as events, moved to `<prefix>:dead`.
    pub dead: u64,
}

/// Entries read from one shard and not yet acknowledged.
#[derive(Debug, Default)]
pub struct Fetched {
    shard: u16,
    entries: Vec<Entry>,
}

impl Fetched {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The complete events among the entries (outcomes and never-forwarded requests).
    pub fn records(&self) -> Vec<AuditRecord> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind(), Some("o" | "c")))
            .filter_map(Entry::record)
            .collect()
    }
}

#[derive(Debug)]
struct Entry {
    id: String,
    /// In the order they were written; an entry has four at most, so a scan beats a map.
    fields: Vec<(String, String)>,
}

/// One ingester instance.
pub struct Ingester {
    connection: ConnectionManager,
    store: Store,
    config: IngestConfig,
    /// A batch read but not stored (Postgres failed): retried before anything new is read.
    unsettled: Vec<Option<Fetched>>,
    /// Where each shard's next XAUTOCLAIM scan starts.
    claim_cursor: Vec<String>,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

type RawEntries = Vec<(String, Option<Vec<(String, String)>>)>;

impl Ingester {
    /// Connects and makes sure every shard stream and the consumer group exist.
    pub async fn connect(url: &str, store: Store, config: IngestConfig) -> Result<Self, Error> {
        let connection = config.stream.connect(url).await?;
        let shards = usize::from(config.stream.shards);
        let ingester = Ingester {
            connection,
            store,
            unsettled: (0..shards).map(|_| None).collect(),
            claim_cursor: vec!["0-0".into(); shards],
            config,
        };
        ingester.create_groups().await?;
        Ok(ingester)
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    fn shards(&self) -> impl Iterator<Item = u16> + use<> {
        self.config.share.shards(self.config.stream.shards)
    }

    async fn create_groups(&self) -> Result<(), Error> {
        for shard in self.shards() {
            let mut con = self.connection.clone();
            // From "0": entries written before the first ingester started are read too.
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.config.stream.stream_key(shard))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut con)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(Error::Unavailable(e)),
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves: steps over every shard, sleeps when all were empty, and
    /// backs off (keeping what it read) while Redis or Postgres is unavailable.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let pacing = Pacing::of(&self.config);
        run_steps(&mut self, pacing, shutdown).await
    }

    /// One pass over every shard of its share: what is unsettled plus a new batch of every other shard, read in
    /// two pipelined round trips, stored in one transaction and acknowledged in one pipeline.
    pub async fn step(&mut self) -> Result<StepReport, Error> {
        let mut batches: Vec<Fetched> = Vec::new();
        let mut wanted: Vec<u16> = Vec::new();
        for shard in self.shards() {
            match self.unsettled[usize::from(shard)].take() {
                Some(f) => batches.push(f),
                None => wanted.push(shard),
            }
        }
        if !wanted.is_empty() {
            let fetched = match self.fetch_shards(&wanted).await {
                // The stream or its group is gone (a Redis that lost its data, a stream deleted
                // by hand): recreate them so that new entries are read again.
                Err(Error::Unavailable(e)) if is_nogroup(&e) => {
                    tracing::warn!("audit stream group missing; recreating it");
                    match self.create_groups().await {
                        Ok(()) => self.fetch_shards(&wanted).await,
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            match fetched {
                Ok(f) => batches.extend(f),
                Err(e) => {
                    self.keep_unsettled(batches);
                    return Err(e);
                }
            }
        }
        batches.retain(|f| !f.is_empty());
        if batches.is_empty() {
            return Ok(StepReport::default());
        }
        match self.settle_all(&batches).await {
            Ok(report) => Ok(report),
            Err(e) => {
                self.keep_unsettled(batches);
                Err(e)
            }
        }
    }

    fn keep_unsettled(&mut self, batches: Vec<Fetched>) {
        for f in batches {
            let shard = usize::from(f.shard);
            self.unsettled[shard] = Some(f);
        }
    }

    /// Reads one batch of a shard: entries other consumers (or this one) left pending longer than
    /// `claim_idle`, then new entries. Nothing is acknowledged.
    pub async fn fetch(&mut self, shard: u16) -> Result<Fetched, Error> {
        let mut f = self.fetch_shards(&[shard]).await?;
        Ok(f.pop().unwrap_or_default())
    }

    /// [`Ingester::fetch`] for several shards at once: one pipelined `XAUTOCLAIM` per shard, then
    /// one pipelined `XREADGROUP >` for the room each has left. Nothing is acknowledged.
    async fn fetch_shards(&mut self, shards: &[u16]) -> Result<Vec<Fetched>, Error> {
        let timeout = self.config.stream.call_timeout;
        let idle_ms = u64::try_from(self.config.claim_idle.as_millis()).unwrap_or(u64::MAX);
        let keys: Vec<String> = shards
            .iter()
            .map(|s| self.config.stream.stream_key(*s))
            .collect();
        let mut pipe = redis::pipe();
        for (key, shard) in keys.iter().zip(shards) {
            pipe.cmd("XAUTOCLAIM")
                .arg(key)
                .arg(GROUP)
                .arg(&self.config.consumer)
                .arg(idle_ms)
                .arg(self.claim_cursor[usize::from(*shard)].as_str())
                .arg("COUNT")
                .arg(self.config.batch);
        }
        let mut con = self.connection.clone();
        let claims: Vec<(String, RawEntries, Vec<String>)> =
            within(timeout, pipe.query_async(&mut con)).await?;
        let mut out = Vec::with_capacity(shards.len());
        for (shard, (next, claimed, _deleted)) in shards.iter().zip(claims) {
            self.claim_cursor[usize::from(*shard)] = next;
            out.push(Fetched {
                shard: *shard,
                entries: entries(claimed).collect(),
            });
        }
        let mut pipe = redis::pipe();
        let mut reading = Vec::new();
        for (i, f) in out.iter().enumerate() {
            let room = self.config.batch.saturating_sub(f.entries.len());
            if room > 0 {
                pipe.cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(GROUP)
                    .arg(&self.config.consumer)
                    .arg("COUNT")
                    .arg(room)
                    .arg("STREAMS")
                    .arg(&keys[i])
                    .arg(">");
                reading.push(i);
            }
        }
        if !reading.is_empty() {
            let read: Vec<Option<Vec<(String, RawEntries)>>> =
                within(timeout, pipe.query_async(&mut con)).await?;
            for (i, streams) in reading.into_iter().zip(read) {
                for (_, batch) in streams.unwrap_or_default() {
                    out[i].entries.extend(entries(batch));
                }
            }
        }
        Ok(out)
    }

    /// Stores the events of a batch in one `insert_audit_batch`, then acknowledges (and deletes)
    /// every entry it settled. On `Err` nothing was acknowledged.
    pub async fn settle(&mut self, fetched: &Fetched) -> Result<StepReport, Error> {
        self.settle_all(std::slice::from_ref(fetched)).await
    }

    /// [`Ingester::settle`] for batches of several shards: one transaction for all their events,
    /// then one pipeline of `XACK` and `XDEL` per shard. On `Err` nothing was acknowledged.
    async fn settle_all(&mut self, batches: &[Fetched]) -> Result<StepReport, Error> {
        let mut report = StepReport::default();
        let now_ms = self.redis_now_ms().await?;
        let grace_ms = u64::try_from(self.config.grace.as_millis()).unwrap_or(u64::MAX);
        let mut events: Vec<NewAuditEvent> = Vec::new();
        let mut acks: Vec<(u16, Vec<&str>)> = Vec::with_capacity(batches.len());
        let mut dead: Vec<&Entry> = Vec::new();
        for fetched in batches {
            report.read += fetched.entries.len() as u64;
            let dead_before = dead.len();
            let mut ack = Vec::new();
            classify(
                fetched,
                now_ms,
                grace_ms,
                &mut events,
                &mut ack,
                &mut dead,
                &mut report,
            );
            ack.extend(dead[dead_before..].iter().map(|e| e.id.as_str()));
            acks.push((fetched.shard, ack));
        }
        if !events.is_empty() {
            let r = self.store.insert_audit_batch(&events).await?;
            report.inserted = r.inserted;
            report.duplicates = r.duplicates;
        }
        if !dead.is_empty() {
            self.bury(&dead).await?;
            report.dead = dead.len() as u64;
        }
        let mut pipe = redis::pipe();
        for (shard, ack) in &acks {
            if ack.is_empty() {
                continue;
            }
            let key = self.config.stream.stream_key(*shard);
            // In commands of a few KiB: Redis runs each command whole, but reads a pipeline in
            // 16 KiB pieces and serves its other clients (the gateways' limiter calls) between
            // them, so a 2,000-entry batch no longer holds Redis for milliseconds at once.
            for ids in ack.chunks(ACK_CHUNK) {
                pipe.cmd("XACK").arg(&key).arg(GROUP).arg(ids);
                pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
            }
        }
        if acks.iter().any(|(_, a)| !a.is_empty()) {
            let mut con = self.connection.clone();
            let acked: Vec<u64> =
                within(self.config.stream.call_timeout, pipe.query_async(&mut con)).await?;
            report.acked = acked.iter().sum();
        }
        Ok(report)
    }

    /// Keeps entries that are not events where an operator can look at them.
    async fn bury(&self, dead: &[&Entry]) -> Result<(), Error> {
        let key = format!("{}:dead", self.config.stream.prefix);
        let mut pipe = redis::pipe();
        for e in dead {
            tracing::error!(entry = %e.id, "audit stream entry is not an event; moved to {key}");
            pipe.cmd("XADD").arg(&key).arg("*").arg("id").arg(&e.id);
            for (k, v) in &e.fields {
                pipe.arg(k).arg(v);
            }
            pipe.ignore();
        }
        let mut con = self.connection.clone();
        within(
            self.config.stream.call_timeout,
            pipe.query_async::<()>(&mut con),
        )
        .await
    }

    async fn redis_now_ms(&self) -> Result<u64, Error> {
        let mut con = self.connection.clone();
        let (secs, micros): (u64, u64) = within(
            self.config.stream.call_timeout,
            redis::cmd("TIME").query_async(&mut con),
        )
        .await?;
        Ok(secs * 1000 + micros / 1000)
    }
}

impl Steps for Ingester {
    async fn step(&mut self) -> Result<StepReport, Error> {
        Ingester::step(self).await
    }
}

/// Something an ingest loop steps: the Redis ingester or the Postgres outbox's.
pub(crate) trait Steps {
    async fn step(&mut self) -> Result<StepReport, Error>;
}

/// When [`run_steps`] pauses between steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    /// After a step that read nothing.
    pub(crate) idle: Duration,
    /// After a step that read less than `full` entries.
    pub(crate) fill_wait: Duration,
    pub(crate) full: u64,
}

impl Pacing {
    pub(crate) fn of(config: &IngestConfig) -> Pacing {
        Pacing {
            idle: config.idle_sleep,
            fill_wait: config.fill_wait,
            full: u64::try_from(config.batch).unwrap_or(u64::MAX),
        }
    }

    fn after(&self, read: u64) -> Duration {
        if read == 0 {
            self.idle
        } else if read < self.full {
            self.fill_wait
        } else {
            Duration::ZERO
        }
    }
}

/// Steps until `shutdown` resolves, pausing as `pacing` says after each step, and backs off
/// (keeping what was read) while Redis or Postgres is unavailable.
pub(crate) async fn run_steps(
    source: &mut impl Steps,
    pacing: Pacing,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    loop {
        let pause = match source.step().await {
            Ok(report) => {
                backoff = Duration::from_millis(100);
                if report.inserted > 0 || report.unknown > 0 {
                    tracing::debug!(?report, "audit batch stored");
                }
                pacing.after(report.read)
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "audit ingest failed; nothing acknowledged, retrying");
                let b = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                b
            }
        };
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Sorts one shard's entries: the events to store (`o`, `c`, and `w` past the grace period as
/// unknown) with the entries their commit settles, and the entries that are not events.
fn classify<'a>(
    fetched: &'a Fetched,
    now_ms: u64,
    grace_ms: u64,
    events: &mut Vec<NewAuditEvent>,
    ack: &mut Vec<&'a str>,
    dead: &mut Vec<&'a Entry>,
    report: &mut StepReport,
) {
    // Write-aheads whose outcome is in this batch need no event of their own.
    let answered: HashSet<&str> = fetched
        .entries
        .iter()
        .filter(|e| e.kind() == Some("o"))
        .filter_map(|e| e.field("w"))
        .collect();
    for entry in &fetched.entries {
        // A write-ahead whose outcome is here is acknowledged with it, unread.
        if entry.kind() == Some("w") && answered.contains(entry.id.as_str()) {
            continue;
        }
        let Some(record) = entry.record() else {
            dead.push(entry);
            continue;
        };
        match entry.kind() {
            Some("o") => {
                events.push(record.to_new_event());
                ack.push(&entry.id);
                if let Some(w) = entry.field("w") {
                    ack.push(w);
                }
            }
            Some("c") => {
                events.push(record.to_new_event());
                ack.push(&entry.id);
            }
            Some("w") => {
                if entry.age_ms(now_ms) >= grace_ms {
                    let mut r = record;
                    r.outcome = Outcome::Unknown;
                    events.push(r.to_new_event());
                    ack.push(&entry.id);
                    report.unknown += 1;
                } else {
                    report.deferred += 1;
                }
            }
            _ => dead.push(entry),
        }
    }
}

/// Whether Redis answered NOGROUP, to one command or to any command of a pipeline.
fn is_nogroup(e: &redis::RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errs| errs.iter().any(|(_, s)| s.code() == "NOGROUP"))
}

fn entries(raw: RawEntries) -> impl Iterator<Item = Entry> {
    raw.into_iter()
        .filter_map(|(id, fields)| fields.map(|fields| Entry { id, fields }))
}

impl Entry {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
    }

    fn kind(&self) -> Option<&str> {
        self.field("k")
    }

    fn record(&self) -> Option<AuditRecord> {
        serde_json::from_str(self.field("e")?).ok()
    }

    /// Milliseconds since Redis added the entry (its id starts with Redis's time in ms).
    fn age_ms(&self, now_ms: u64) -> u64 {
        let written: u64 = self
            .id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0);
        now_ms.saturating_sub(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_a_split_cover_every_shard_once() {
        for (workers, shards, expected) in [(1, 8, 1), (2, 8, 2), (3, 8, 3), (16, 8, 8), (0, 8, 1)]
        {
            let shares = ShardShare::split(workers, shards);
            assert_eq!(shares.len(), expected, "{workers} workers, {shards} shards");
            let mut seen: Vec<u16> = shares.iter().flat_map(|s| s.shards(shards)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..shards).collect::<Vec<_>>());
            assert!(shares.iter().all(|s| s.shards(shards).count() > 0));
        }
        assert_eq!(ShardShare::ALL.shards(3).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_step_waits_for_more_unless_it_filled_a_batch() {
        let pacing = Pacing::of(&IngestConfig {
            batch: 100,
            idle_sleep: Duration::from_millis(50),
            fill_wait: Duration::from_millis(25),
            ..IngestConfig::default()
        });
        assert_eq!(
            pacing.after(0),
            Duration::from_millis(50),
            "nothing read: idle"
        );
        assert_eq!(
            pacing.after(1),
            Duration::from_millis(25),
            "a few: let more gather"
        );
        assert_eq!(pacing.after(99), Duration::from_millis(25));
        assert_eq!(
            pacing.after(100),
            Duration::ZERO,
            "a full batch: behind, no pause"
        );
        assert_eq!(pacing.after(800), Duration::ZERO);
    }
}

//! `cargo xtask bench audit`: sustained ingest rate from pre-filled Redis streams into Postgres.
//!
//! Each run fills fresh shard streams (a prefix of the run's own) with N calls as the gateway
//! writes them, a write-ahead and an outcome per call through `audit::Journal`, for organisations
//! of the run's own; then times moving every event into Postgres, and checks the result: exactly
//! N events stored (none lost, none twice), every organisation's chain verifies, every stream
//! entry acknowledged. Three ways, interleaved round by round so that they see the same machine:
//! - `baseline`: one ingester stepping shard by shard, a transaction and an ack per shard (the
//!   ingester's loop before it read every shard at once);
//! - `ingest`: `--ingesters` instances of `audit::Ingester` in the consumer group, splitting the
//!   shards between them as `gatehouse ingest --workers` does ([`audit::ShardShare`]), each step one
//!   transaction and one ack pipeline across all shards;
//! - `store only`: the same events, already parsed, through `Store::insert_audit_batch` in batches
//!   of the size an ingester step stores: Postgres's own ceiling for this schema, without Redis.
//!
//! Prints events/s against the 20,000 events/s budget (DESIGN.md §11), the ratio to the baseline,
//! and the load average around each run. The tables are emptied before each run.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use audit::{AuditRecord, IngestConfig, Ingester, Journal, Outcome, ShardShare, StreamConfig};
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::audit::{AuditDecision, NewAuditEvent};
use store::secret::{Keyring, SealingKey};
use store::{Actor, GrantId, OrgId, ServerId, Store};
use time::OffsetDateTime;

const BUDGET_EVENTS_PER_SEC: f64 = 20_000.0;

#[derive(Debug)]
pub(crate) struct Options {
    events: usize,
    orgs: usize,
    ingesters: usize,
    batch: usize,
    shards: u16,
    rounds: usize,
    database: String,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut o = Options {
            events: 300_000,
            orgs: 8,
            ingesters: 2,
            batch: 2_000,
            shards: 8,
            rounds: 2,
            database: "gatehouse_bench_audit".into(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .copied()
                    .with_context(|| format!("{arg} needs a value"))
            };
            match *arg {
                "--events" => o.events = value()?.replace('_', "").parse().context("--events")?,
                "--orgs" => o.orgs = value()?.parse().context("--orgs")?,
                "--ingesters" => o.ingesters = value()?.parse().context("--ingesters")?,
                "--batch" => o.batch = value()?.parse().context("--batch")?,
                "--shards" => o.shards = value()?.parse().context("--shards")?,
                "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
                "--database" => o.database = value()?.to_owned(),
                other => bail!("unknown option {other}"),
            }
        }
        if !o
            .database
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("--database must be lowercase letters, digits and _");
        }
        if o.orgs == 0 || o.ingesters == 0 || o.batch == 0 || o.shards == 0 || o.rounds == 0 {
            bail!("--orgs, --ingesters, --batch, --shards and --rounds must be at least 1");
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Baseline,
    Ingest,
    StoreOnly,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Baseline => "baseline",
            Mode::Ingest => "ingest",
            Mode::StoreOnly => "store only",
        }
    }
}

fn call(org: OrgId, server: ServerId, grant: GrantId, i: usize) -> AuditRecord {
    AuditRecord {
        occurred_at: OffsetDateTime::now_utc(),
        request_id: uuid::Uuid::new_v4().to_string(),
        organisation_id: org,
        server_id: server,
        grant_id: grant,
        identity: "noc-agent".into(),
        session: Some("7f9c2d1e-session".into()),
        method: "tools/call".into(),
        tool: Some(
            if i.is_multiple_of(3) {
                "reboot_device"
            } else {
                "get_parameter"
            }
            .into(),
        ),
        arguments: audit::audited_arguments(
            Some(
                &serde_json::json!({"device_id": format!("00236A-{i}"), "parameter": "Device.DeviceInfo.SoftwareVersion"}),
            ),
            i.is_multiple_of(2),
        ),
        decision: AuditDecision::Allow,
        rule: Some("/tools/get_parameter".into()),
        message: None,
        policy_version: Some(3),
        outcome: Outcome::Pending,
        client_addr: Some("192.0.2.10".parse().expect("an address")),
        user_agent: Some("claude-code/1.0".into()),
    }
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{}", o.database);
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connecting to DATABASE_URL")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            o.database
        )))
        .await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "create database {}",
            o.database
        )))
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    let store = Store::new(pool, Keyring::new(SealingKey::generate(1)));
    store.migrate().await?;
    println!(
        "{} calls per run, {} organisations, {} shards, batch {} entries per shard; ingest with {} ingester(s)",
        o.events, o.orgs, o.shards, o.batch, o.ingesters
    );
    let mut rates: Vec<(Mode, f64)> = Vec::new();
    for round in 1..=o.rounds {
        for mode in [Mode::Baseline, Mode::Ingest, Mode::StoreOnly] {
            let rate = run_once(&o, &store, &redis_url, mode, round).await?;
            rates.push((mode, rate));
        }
    }
    let mean = |m: Mode| {
        let r: Vec<f64> = rates
            .iter()
            .filter(|(k, _)| *k == m)
            .map(|(_, r)| *r)
            .collect();
        r.iter().sum::<f64>() / r.len() as f64
    };
    let (b, i, s) = (
        mean(Mode::Baseline),
        mean(Mode::Ingest),
        mean(Mode::StoreOnly),
    );
    println!(
        "mean over {} rounds: baseline {b:.0}, ingest {i:.0} ({:.2}x the baseline, {:.0} % of store only), store only {s:.0} events/s; \
         ingest is {:.2}x the budget of {BUDGET_EVENTS_PER_SEC:.0} events/s",
        o.rounds,
        i / b,
        100.0 * i / s,
        i / BUDGET_EVENTS_PER_SEC
    );
    store.pool().close().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "drop database {} with (force)",
            o.database
        )))
        .await?;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// One timed run of `mode` on emptied tables; returns its events/s after checking the result.
async fn run_once(
    o: &Options,
    store: &Store,
    redis_url: &str,
    mode: Mode,
    round: usize,
) -> anyhow::Result<f64> {
    store
        .pool()
        .execute("truncate audit_event, audit_hour_count, audit_hour_facet, chain_head")
        .await?;
    let mut orgs = Vec::new();
    for i in 0..o.orgs {
        orgs.push(
            store
                .create_organisation(Actor::Operator, &format!("bench-{round}-{mode:?}-{i}"))
                .await?
                .organisation_id,
        );
    }
    let streams = StreamConfig {
        prefix: format!("bench:audit:{}", uuid::Uuid::new_v4().simple()),
        shards: o.shards,
        call_timeout: Duration::from_secs(5),
    };
    // The ingesters of one `gatehouse ingest` process split the shards between them.
    let ingesters = if mode == Mode::Baseline {
        1
    } else {
        o.ingesters
    };
    let shares = ShardShare::split(ingesters, o.shards);
    let config = |k: usize| IngestConfig {
        stream: streams.clone(),
        consumer: format!("bench-{k}"),
        share: shares[k],
        batch: o.batch,
        ..IngestConfig::default()
    };
    let load_before = load_average();
    let (stored, took) = if mode == Mode::StoreOnly {
        // The events the ingester would store: every call's outcome, as it reads them.
        let (server, grant) = (ServerId::new(), GrantId::new());
        let events: Vec<NewAuditEvent> = (0..o.events)
            .map(|i| {
                let mut r = call(orgs[i % orgs.len()], server, grant, i);
                r.outcome = ok();
                r.to_new_event()
            })
            .collect();
        let step = usize::from(o.shards) * o.batch / 2;
        let started = Instant::now();
        let mut stored = 0;
        for chunk in events.chunks(step) {
            stored += store.insert_audit_batch(chunk).await?.inserted;
        }
        (stored, started.elapsed().as_secs_f64())
    } else {
        fill(redis_url, &streams, &orgs, o.events).await?;
        let started = Instant::now();
        let mut handles = Vec::new();
        for k in 0..shares.len() {
            let mut ingester = Ingester::connect(redis_url, store.clone(), config(k)).await?;
            let shards = o.shards;
            handles.push(tokio::spawn(async move {
                let mut stored = 0_u64;
                loop {
                    let read = if mode == Mode::Baseline {
                        let mut read = 0;
                        for shard in 0..shards {
                            let f = ingester.fetch(shard).await?;
                            if !f.is_empty() {
                                let r = ingester.settle(&f).await?;
                                stored += r.inserted;
                                read += r.read;
                            }
                        }
                        read
                    } else {
                        let r = ingester.step().await?;
                        stored += r.inserted;
                        r.read
                    };
                    if read == 0 {
                        return anyhow::Ok(stored);
                    }
                }
            }));
        }
        let mut stored = 0;
        for h in handles {
            stored += h.await??;
        }
        (stored, started.elapsed().as_secs_f64())
    };
    let load_after = load_average();
    check(store, redis_url, &streams, &orgs, o.events, stored, mode).await?;
    let rate = stored as f64 / took;
    let who = match mode {
        Mode::Baseline => "1 ingester".to_owned(),
        Mode::Ingest => format!("{} ingester(s)", shares.len()),
        Mode::StoreOnly => "insert_audit_batch".to_owned(),
    };
    println!(
        "round {round} {:<10} ({who}): {stored} events in {took:.2} s, {rate:.0} events/s \
         ({:.2}x the budget), load average {load_before} -> {load_after}; chains verified, none lost or twice",
        mode.name(),
        rate / BUDGET_EVENTS_PER_SEC
    );
    Ok(rate)
}

fn ok() -> Outcome {
    Outcome::Known {
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: 2_000,
    }
}

/// Writes `n` calls into the streams as gateways do: a write-ahead, then its outcome.
async fn fill(
    redis_url: &str,
    streams: &StreamConfig,
    orgs: &[OrgId],
    n: usize,
) -> anyhow::Result<()> {
    let journal = Journal::connect(redis_url, streams.clone()).await?;
    let tasks = 64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let journal = journal.clone();
        let orgs = orgs.to_vec();
        handles.push(tokio::spawn(async move {
            let (server, grant) = (ServerId::new(), GrantId::new());
            let mut i = t;
            while i < n {
                let ticket = journal
                    .write_ahead(call(orgs[i % orgs.len()], server, grant, i))
                    .await?;
                journal.record_outcome(ticket, ok()).await?;
                i += tasks;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// Every call stored exactly once, every chain intact, every stream entry acknowledged.
async fn check(
    store: &Store,
    redis_url: &str,
    streams: &StreamConfig,
    orgs: &[OrgId],
    expected: usize,
    reported: u64,
    mode: Mode,
) -> anyhow::Result<()> {
    let expected = expected as i64;
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct (audit_event_id, occurred_at)) from audit_event",
    )
    .fetch_one(store.pool())
    .await?;
    if reported as i64 != expected || rows != expected || distinct != expected {
        bail!(
            "{}: expected {expected} events, reported {reported}, stored {rows} rows of {distinct} distinct events",
            mode.name()
        );
    }
    let mut verified = 0;
    for org in orgs {
        let mut tx = store.begin(*org).await?;
        let report = store::audit::verify_audit_chain(&mut tx).await?;
        tx.rollback().await?;
        if report.problem.is_some() {
            bail!("{}: chain of {org} broken: {report:?}", mode.name());
        }
        verified += report.checked as i64;
    }
    if verified != expected {
        bail!(
            "{}: chains hold {verified} events, expected {expected}",
            mode.name()
        );
    }
    if mode != Mode::StoreOnly {
        let client = redis::Client::open(redis_url)?;
        let mut con = client.get_multiplexed_async_connection().await?;
        for shard in 0..streams.shards {
            let key = streams.stream_key(shard);
            let left: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut con).await?;
            let (pending, ..): (u64, redis::Value, redis::Value, redis::Value) =
                redis::cmd("XPENDING")
                    .arg(&key)
                    .arg(audit::GROUP)
                    .query_async(&mut con)
                    .await?;
            if left != 0 || pending != 0 {
                bail!(
                    "{}: {key} still holds {left} entries, {pending} pending",
                    mode.name()
                );
            }
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut con).await?;
        }
    }
    Ok(())
}

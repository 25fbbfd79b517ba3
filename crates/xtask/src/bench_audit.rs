//! `cargo xtask bench audit`: sustained ingest rate from a pre-filled Redis stream into Postgres.
//!
//! Fills fresh shard streams (a prefix of the run's own) with N calls as the gateway writes them:
//! a write-ahead and an outcome per call, through `audit::Journal`; then times `audit::Ingester`
//! (one or more instances in the consumer group) until every event is stored in a fresh database,
//! and prints events/s against the 20,000 events/s budget (DESIGN.md §11).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use audit::{AuditRecord, IngestConfig, Ingester, Journal, Outcome, StreamConfig};
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::audit::AuditDecision;
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
    database: String,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut o = Options {
            events: 200_000,
            orgs: 8,
            ingesters: 2,
            batch: 2_000,
            shards: 8,
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
        if o.orgs == 0 || o.ingesters == 0 || o.batch == 0 || o.shards == 0 {
            bail!("--orgs, --ingesters, --batch and --shards must be at least 1");
        }
        Ok(o)
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
    let mut orgs = Vec::new();
    for i in 0..o.orgs {
        orgs.push(
            store
                .create_organisation(Actor::Operator, &format!("bench-{i}"))
                .await?
                .organisation_id,
        );
    }

    let streams = StreamConfig {
        prefix: format!("bench:audit:{}", uuid::Uuid::new_v4().simple()),
        shards: o.shards,
        call_timeout: Duration::from_secs(5),
    };
    let journal = Journal::connect(&redis_url, streams.clone()).await?;
    let filled = Instant::now();
    let tasks = 64;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let journal = journal.clone();
        let orgs = orgs.clone();
        let n = o.events;
        handles.push(tokio::spawn(async move {
            let (server, grant) = (ServerId::new(), GrantId::new());
            let mut i = t;
            while i < n {
                let ticket = journal
                    .write_ahead(call(orgs[i % orgs.len()], server, grant, i))
                    .await?;
                journal
                    .record_outcome(
                        ticket,
                        Outcome::Known {
                            upstream_status: Some(200),
                            is_error: Some(false),
                            latency_us: 2_000,
                        },
                    )
                    .await?;
                i += tasks;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "filled {} shard stream(s) with {} calls ({} entries) in {:.1} s",
        o.shards,
        o.events,
        o.events * 2,
        filled.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let mut handles = Vec::new();
    for k in 0..o.ingesters {
        let config = IngestConfig {
            stream: streams.clone(),
            consumer: format!("bench-{k}"),
            batch: o.batch,
            ..IngestConfig::default()
        };
        let mut ingester = Ingester::connect(&redis_url, store.clone(), config).await?;
        handles.push(tokio::spawn(async move {
            let mut stored = 0_u64;
            loop {
                let r = ingester.step().await?;
                stored += r.inserted;
                if r.read == 0 {
                    return anyhow::Ok(stored);
                }
            }
        }));
    }
    let mut stored = 0;
    for h in handles {
        stored += h.await??;
    }
    let took = started.elapsed().as_secs_f64();
    if stored != o.events as u64 {
        bail!("stored {stored} events, expected {}", o.events);
    }
    let rate = stored as f64 / took;
    println!(
        "ingested {stored} events ({} organisations, {} ingester(s), batch {} per shard) in {took:.2} s: \
         {rate:.0} events/s, {:.2}x the budget of {BUDGET_EVENTS_PER_SEC:.0} events/s",
        o.orgs,
        o.ingesters,
        o.batch,
        rate / BUDGET_EVENTS_PER_SEC
    );
    let mut verified = 0;
    for org in &orgs {
        let mut tx = store.begin(*org).await?;
        let report = store::audit::verify_audit_chain(&mut tx).await?;
        tx.rollback().await?;
        if report.problem.is_some() {
            bail!("chain of {org} broken: {report:?}");
        }
        verified += report.checked;
    }
    println!("verified {verified} events' chains");
    store.pool().close().await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "drop database {} with (force)",
            o.database
        )))
        .await?;
    Ok(())
}

//! `cargo xtask bench verify`: the audit chain's verification over a large log, the way the verify
//! page runs it (a background run, a chunk of events per transaction, its progress in one row)
//! against the baseline of one transaction over the whole chain (`gatehouse audit verify`), and
//! what the page itself costs while a run goes on (one row read).
//!
//! Seeds one organisation's chain through the store's own batch insert (the ingester's path) in a
//! fresh database, which it drops at the end.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::audit::{AuditDecision, NewAuditEvent};
use store::audit_verify::VERIFY_CHUNK;
use store::secret::{Keyring, SealingKey};
use store::{Actor, AuditEventId, GrantId, ServerId, Store};
use time::OffsetDateTime;

#[derive(Debug)]
pub(crate) struct Options {
    events: usize,
    database: String,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut o = Options {
            events: 1_000_000,
            database: "gatehouse_bench_verify".into(),
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
        Ok(o)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connecting to DATABASE_URL")?;
    let drop = format!("drop database if exists {} with (force)", o.database);
    admin.execute(sqlx::AssertSqlSafe(drop.clone())).await?;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "create database {}",
            o.database
        )))
        .await?;
    let outcome = measure(&o, &format!("{base}/{}", o.database)).await;
    admin.execute(sqlx::AssertSqlSafe(drop)).await?;
    outcome
}

async fn measure(o: &Options, url: &str) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await?;
    let store = Store::new(pool, Keyring::new(SealingKey::generate(1)));
    store.migrate().await?;
    let org = store
        .create_organisation(Actor::Operator, "bench-verify")
        .await?
        .organisation_id;
    let (server, grant) = (ServerId::new(), GrantId::new());
    let start = OffsetDateTime::now_utc() - time::Duration::hours(1);
    let seeded = Instant::now();
    let mut i = 0;
    while i < o.events {
        let n = 5_000.min(o.events - i);
        let batch: Vec<NewAuditEvent> = (i..i + n)
            .map(|k| NewAuditEvent {
                audit_event_id: AuditEventId::new(),
                organisation_id: org,
                occurred_at: start + time::Duration::microseconds(k as i64 * 3),
                server_id: server,
                grant_id: grant,
                identity: "noc-agent".into(),
                session_id: Some("7f9c2d1e-session".into()),
                method: "tools/call".into(),
                tool_name: Some("get_parameter".into()),
                arguments: serde_json::json!({"device_id": format!("00236A-{k}")}),
                decision: AuditDecision::Allow,
                rule: Some("/tools/get_parameter".into()),
                message: None,
                policy_version: Some(3),
                upstream_status: Some(200),
                is_error: Some(false),
                latency_us: Some(900),
                client_addr: Some("192.0.2.10".parse().expect("an address")),
                user_agent: Some("claude-code/1.0".into()),
            })
            .collect();
        store.insert_audit_batch(&batch).await?;
        i += n;
    }
    println!(
        "seeded {} events in {:.1} s",
        o.events,
        seeded.elapsed().as_secs_f64()
    );

    // Baseline: the whole chain in one transaction.
    let full = Instant::now();
    let mut tx = store.begin(org).await?;
    let report = store::audit::verify_audit_chain(&mut tx).await?;
    tx.rollback().await?;
    let full = full.elapsed();
    if report.problem.is_some() || report.checked != o.events as u64 {
        bail!("the baseline did not verify the chain: {report:?}");
    }

    // The page's way: a run advanced chunk by chunk, the page reading its row meanwhile.
    let run = Instant::now();
    let mut tx = store.begin(org).await?;
    let started = store::audit_verify::start_audit_verification(&mut tx).await?;
    tx.commit().await?;
    let mut chunks = Vec::new();
    let mut page_reads = Vec::new();
    let finished = loop {
        let chunk = Instant::now();
        let mut tx = store.begin(org).await?;
        let v =
            store::audit_verify::continue_audit_verification(&mut tx, started.run_id, VERIFY_CHUNK)
                .await?
                .context("the run went on")?;
        tx.commit().await?;
        chunks.push(chunk.elapsed());
        let read = Instant::now();
        let mut tx = store.begin(org).await?;
        store::audit_verify::audit_verification(&mut tx).await?;
        tx.commit().await?;
        page_reads.push(read.elapsed());
        if v.finished_at.is_some() {
            break v;
        }
    };
    let run = run.elapsed();
    if finished.problem.is_some() || finished.checked != o.events as u64 {
        bail!("the background run did not verify the chain: {finished:?}");
    }
    chunks.sort();
    page_reads.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "one transaction (baseline): {} events in {:.2} s, {:.0} events/s; the page waited all of it",
        o.events,
        full.as_secs_f64(),
        o.events as f64 / full.as_secs_f64()
    );
    println!(
        "background run: {} events in {:.2} s, {:.0} events/s ({:.2}x the baseline's time), {} chunks of {VERIFY_CHUNK}: p50 {:.1} ms, max {:.1} ms per chunk transaction",
        finished.checked,
        run.as_secs_f64(),
        finished.checked as f64 / run.as_secs_f64(),
        run.as_secs_f64() / full.as_secs_f64(),
        chunks.len(),
        ms(p(&chunks, 0.5)),
        ms(p(&chunks, 1.0)),
    );
    println!(
        "the verify page's read during the run: p50 {:.2} ms, p99 {:.2} ms ({:.0}x faster than waiting for the baseline)",
        ms(p(&page_reads, 0.5)),
        ms(p(&page_reads, 0.99)),
        full.as_secs_f64() / p(&page_reads, 0.5).as_secs_f64()
    );
    store.pool().close().await;
    Ok(())
}

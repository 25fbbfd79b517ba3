//! `gatehouse ingest` (the audit ingester) and `gatehouse audit verify | export | retention`.
//! The durable path and the export format live in the `audit` crate; every query is `store`'s.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use store::audit::{AuditDecision, AuditFilter, ChainProblem};
use store::secret::{Keyring, SealingKey};
use store::{Actor, OrgId, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::StoreArgs;
use crate::config::{self, Problems};

/// Where the audit streams are in Redis (gateways and ingesters must agree).
#[derive(Debug, Clone, Args)]
pub(crate) struct StreamArgs {
    /// Prefix of the shard stream keys (`<prefix>:{<n>}`).
    #[arg(
        long,
        env = "GATEHOUSE_AUDIT_STREAM_PREFIX",
        default_value = "gh:audit"
    )]
    stream_prefix: String,
    /// Number of shard streams.
    #[arg(long, env = "GATEHOUSE_AUDIT_SHARDS", default_value_t = 8)]
    shards: u16,
}

impl StreamArgs {
    /// Adds a problem when the settings are unusable.
    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.shards == 0 {
            problems.add("GATEHOUSE_AUDIT_SHARDS", "must be at least 1");
        }
        if self.stream_prefix.trim().is_empty() {
            problems.add("GATEHOUSE_AUDIT_STREAM_PREFIX", "must not be empty");
        }
    }

    pub(crate) fn config(&self, call_timeout: Duration) -> audit::StreamConfig {
        audit::StreamConfig {
            prefix: self.stream_prefix.clone(),
            shards: self.shards,
            call_timeout,
        }
    }
}

/// `gatehouse ingest`.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// Redis URL of the audit streams. Without it, events are read from Postgres's
    /// `audit_outbox`, where a gateway without Redis writes them.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    #[command(flatten)]
    stream: StreamArgs,
    /// This ingester's consumer name in the group; unique per running instance.
    #[arg(long, env = "GATEHOUSE_INGEST_CONSUMER")]
    consumer: Option<String>,
    /// Ingesters run in this process (each its own consumer, `<consumer>-<n>`, reading its own
    /// share of the shards; at most one per shard): Postgres inserts of organisations on
    /// different shards then overlap.
    #[arg(long, env = "GATEHOUSE_INGEST_WORKERS", default_value_t = 2)]
    workers: usize,
    /// The most entries read from one shard per batch.
    #[arg(long, env = "GATEHOUSE_INGEST_BATCH", default_value_t = 2000)]
    batch: usize,
    /// Seconds a write-ahead waits for its outcome before it is stored as unknown. Longer than
    /// the gateway's upstream timeout plus the approval wait.
    #[arg(long, env = "GATEHOUSE_AUDIT_GRACE_SECS", default_value_t = 120)]
    grace_secs: u64,
    /// Seconds an entry stays pending with a consumer before another ingester claims it.
    #[arg(long, env = "GATEHOUSE_INGEST_CLAIM_IDLE_SECS", default_value_t = 30)]
    claim_idle_secs: u64,
    /// Milliseconds to let entries gather after a step that read less than a full batch, so a
    /// transaction carries many events (events reach Postgres at most this much later).
    #[arg(long, env = "GATEHOUSE_INGEST_FILL_WAIT_MS", default_value_t = 100)]
    fill_wait_ms: u64,
    /// Postgres URL of the control-plane database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Csv,
    Jsonl,
}

/// `gatehouse audit verify | export | retention`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditStoreCommand {
    /// Recompute the audit hash chain and name the first altered, inserted or removed event.
    /// Exit code 1 when a chain is broken.
    Verify {
        /// One organisation; all of them when absent.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write an organisation's audit events, oldest first, to standard output.
    Export {
        #[arg(long)]
        org: String,
        /// From this time (RFC 3339 or YYYY-MM-DD, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (RFC 3339 or YYYY-MM-DD, exclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        grant: Option<String>,
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        /// allow, deny, hidden, rate_limited, approval_pending, approved, upstream_error, passthrough.
        #[arg(long)]
        decision: Option<String>,
        /// Case-insensitive text in the event's message.
        #[arg(long)]
        text: Option<String>,
        /// Postgres URL of the control-plane database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Audit retention: set it per organisation, or apply it (a daily job).
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// Keep an organisation's audit events this many days (or everything with --keep-all).
    Set {
        #[arg(long)]
        org: String,
        #[arg(
            long,
            conflicts_with = "keep_all",
            required_unless_present = "keep_all"
        )]
        days: Option<i32>,
        #[arg(long)]
        keep_all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove every organisation's events older than its retention, and drop emptied partitions.
    Apply {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn unused_keyring() -> Keyring {
    Keyring::new(SealingKey::generate(1))
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(problems: &Problems) -> ExitCode {
    for p in &problems.0 {
        eprintln!("error: configuration: {p}");
    }
    ExitCode::from(2)
}

async fn connect(url: String) -> anyhow::Result<Store> {
    Store::connect(&url, unused_keyring())
        .await
        .context("connecting to Postgres")
}

/// Runs `gatehouse ingest` until SIGINT or SIGTERM.
pub(crate) fn run_ingest(args: IngestArgs) -> ExitCode {
    crate::gateway_cmd::init_tracing();
    let mut problems = Problems::default();
    let db = config::database_url(
        &StoreArgs {
            database_url: args.database_url.clone(),
            redis_url: None,
            json: false,
        },
        &mut problems,
    );
    let redis = redis_url(args.redis_url.as_deref(), &mut problems);
    if args.batch == 0 || args.batch > 100_000 {
        problems.add("GATEHOUSE_INGEST_BATCH", "must be between 1 and 100000");
    }
    if args.workers == 0 || args.workers > 64 {
        problems.add("GATEHOUSE_INGEST_WORKERS", "must be between 1 and 64");
    }
    args.stream.check(&mut problems);
    let Some(db) = db else {
        return config_failure(&problems);
    };
    if !problems.0.is_empty() {
        return config_failure(&problems);
    }
    let consumer = args
        .consumer
        .clone()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| format!("ingest-{}", std::process::id()));
    let ingest = Ingest {
        redis,
        workers: args.workers,
        config: audit::IngestConfig {
            stream: args.stream.config(Duration::from_secs(5)),
            consumer,
            // Split between the workers when they start.
            share: audit::ShardShare::ALL,
            batch: args.batch,
            grace: Duration::from_secs(args.grace_secs),
            claim_idle: Duration::from_secs(args.claim_idle_secs.max(1)),
            idle_sleep: Duration::from_millis(50),
            fill_wait: Duration::from_millis(args.fill_wait_ms),
        },
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e)),
    };
    finish(rt.block_on(async move {
        let store = connect(db).await?;
        ingest.run(store, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    }))
}

/// What `gatehouse ingest` (and `gatehouse up`, inside its process) runs.
#[derive(Debug, Clone)]
pub(crate) struct Ingest {
    /// The audit streams' Redis; `None` reads Postgres's `audit_outbox` instead.
    pub(crate) redis: Option<String>,
    /// Stream consumers in this process (the outbox has one).
    pub(crate) workers: usize,
    pub(crate) config: audit::IngestConfig,
}

impl Ingest {
    /// Moves audit events into the store until `shutdown` resolves (or an ingester fails), and
    /// keeps the audit partitions ahead and retention applied, hourly.
    pub(crate) async fn run(
        self,
        store: Store,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        store::audit::ensure_partitions_ahead(store.pool())
            .await
            .context("creating audit partitions")?;
        // Every worker stops at the first shutdown.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        match &self.redis {
            Some(redis) => {
                let shares = audit::ShardShare::split(self.workers, self.config.stream.shards);
                for share in &shares {
                    let mut config = self.config.clone();
                    if shares.len() > 1 {
                        config.consumer = format!("{}-{}", config.consumer, share.index);
                    }
                    config.share = *share;
                    let ingester = audit::Ingester::connect(redis, store.clone(), config)
                        .await
                        .context("connecting to the audit streams")?;
                    tasks.spawn(ingester.run(until_stopped()));
                }
                tracing::info!(
                    "ingesting audit events with {} consumer(s) named {:?}… from {} shard(s) of {:?}, split between them",
                    shares.len(),
                    self.config.consumer,
                    self.config.stream.shards,
                    self.config.stream.prefix
                );
            }
            None => {
                let ingester = audit::OutboxIngester::new(store.clone(), &self.config);
                tasks.spawn(ingester.run(until_stopped()));
                tracing::info!(
                    "REDIS_URL is not set: ingesting audit events from Postgres's audit_outbox"
                );
            }
        }
        let housekeeping = tokio::spawn(housekeeping(store));
        tokio::pin!(shutdown);
        let first = tokio::select! {
            () = &mut shutdown => None,
            Some(done) = tasks.join_next() => Some(done),
        };
        let _ = stop.send(true);
        housekeeping.abort();
        if let Some(done) = first {
            done.context("an ingester panicked")?.context("ingesting")?;
        }
        while let Some(done) = tasks.join_next().await {
            done.context("an ingester panicked")?.context("ingesting")?;
        }
        Ok(())
    }
}

/// Partitions ahead and retention, hourly, beside the ingesters.
async fn housekeeping(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if let Err(e) = store::audit::ensure_partitions_ahead(store.pool()).await {
            tracing::warn!(error = %e, "creating audit partitions");
        }
        match store::audit::apply_audit_retention(store.pool(), OffsetDateTime::now_utc()).await {
            Ok(r) if !r.cuts.is_empty() || !r.dropped_partitions.is_empty() => {
                tracing::info!(report = %json!(r), "audit retention applied");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "applying audit retention"),
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The audit streams' Redis URL, when one is set.
fn redis_url(url: Option<&str>, problems: &mut Problems) -> Option<String> {
    match url.map(str::trim) {
        None | Some("") => None,
        Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
            problems.add("REDIS_URL", "must be a redis:// URL");
            None
        }
        Some(u) => Some(u.to_owned()),
    }
}

/// Runs `gatehouse audit verify | export | retention`.
pub(crate) fn run_audit(command: AuditStoreCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(e)),
    };
    finish(rt.block_on(async move {
        match command {
            AuditStoreCommand::Verify { org, store } => verify(org, store).await,
            AuditStoreCommand::Export {
                org,
                from,
                to,
                format,
                server,
                grant,
                identity,
                tool,
                decision,
                text,
                database_url,
            } => {
                let mut problems = Problems::default();
                let db = config::database_url(
                    &StoreArgs {
                        database_url,
                        redis_url: None,
                        json: false,
                    },
                    &mut problems,
                );
                let Some(db) = db else {
                    return Ok(config_failure(&problems));
                };
                let org: OrgId = org.parse()?;
                let filter = AuditFilter {
                    from: from.as_deref().map(parse_time).transpose()?,
                    to: to.as_deref().map(parse_time).transpose()?,
                    server: server.as_deref().map(str::parse).transpose()?,
                    grant: grant.as_deref().map(str::parse).transpose()?,
                    identity,
                    tool,
                    decision: decision.as_deref().map(AuditDecision::parse).transpose()?,
                    text,
                };
                let store = connect(db).await?;
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
                let format = match format {
                    Format::Csv => audit::export::Format::Csv,
                    Format::Jsonl => audit::export::Format::JsonLines,
                };
                match audit::export::export(&store, org, &filter, format, &mut out).await {
                    Ok(n) => {
                        out.flush().ok();
                        eprintln!("exported {n} event(s)");
                        Ok(ExitCode::SUCCESS)
                    }
                    // A reader that stopped early (`| head`) is not an error.
                    Err(audit::Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            AuditStoreCommand::Retention(RetentionCommand::Set {
                org,
                days,
                keep_all,
                store,
            }) => {
                let store_conn = store_from(&store)?;
                let Some(url) = store_conn else {
                    return Ok(ExitCode::from(2));
                };
                let org: OrgId = org.parse()?;
                let store_ = connect(url).await?;
                let days = if keep_all { None } else { days };
                let mut tx = store_.begin(org).await?;
                store::audit::set_audit_retention(&mut tx, Actor::Operator, days).await?;
                tx.commit().await?;
                let v = json!({ "organisation_id": org, "audit_retention_days": days });
                if store.json {
                    println!("{v}");
                } else {
                    match days {
                        Some(d) => println!("audit events of {org} are kept {d} day(s)"),
                        None => println!("audit events of {org} are kept forever"),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditStoreCommand::Retention(RetentionCommand::Apply { store }) => {
                let Some(url) = store_from(&store)? else {
                    return Ok(ExitCode::from(2));
                };
                let store_ = connect(url).await?;
                let report =
                    store::audit::apply_audit_retention(store_.pool(), OffsetDateTime::now_utc())
                        .await?;
                if store.json {
                    println!("{}", json!(report));
                } else {
                    let removed: i64 = report.cuts.iter().map(|c| c.removed).sum();
                    println!(
                        "removed {removed} event(s) of {} organisation(s); dropped {} partition(s)",
                        report.cuts.len(),
                        report.dropped_partitions.len()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }))
}

fn store_from(args: &StoreArgs) -> anyhow::Result<Option<String>> {
    let mut problems = Problems::default();
    let url = config::database_url(args, &mut problems);
    if url.is_none() {
        config_failure(&problems);
    }
    Ok(url)
}

async fn verify(org: Option<String>, args: StoreArgs) -> anyhow::Result<ExitCode> {
    let Some(url) = store_from(&args)? else {
        return Ok(ExitCode::from(2));
    };
    let store = connect(url).await?;
    let orgs = match org {
        Some(o) => vec![o.parse::<OrgId>()?],
        None => store.organisation_ids().await?,
    };
    let mut broken = false;
    let mut reports = Vec::new();
    for org in orgs {
        let mut tx = store.begin(org).await?;
        let report = store::audit::verify_audit_chain(&mut tx).await?;
        tx.rollback().await?;
        broken |= report.problem.is_some();
        if !args.json {
            match &report.problem {
                None => println!(
                    "{org}: ok, {} event(s) verified{}",
                    report.checked,
                    match report.first_sequence {
                        Some(s) if s > 1 => format!(" from sequence {s} (retention)"),
                        _ => String::new(),
                    }
                ),
                Some(ChainProblem::Altered {
                    sequence,
                    audit_event_id,
                }) => println!(
                    "{org}: BROKEN: event {audit_event_id} (sequence {sequence}) was altered"
                ),
                Some(ChainProblem::Inserted {
                    sequence,
                    audit_event_id,
                }) => println!(
                    "{org}: BROKEN: event {audit_event_id} (sequence {sequence}) was inserted or re-chained"
                ),
                Some(ChainProblem::Removed { from, to }) => {
                    println!("{org}: BROKEN: events with sequence {from} to {to} were removed")
                }
            }
        }
        reports.push(
            json!({ "organisation_id": org, "ok": report.problem.is_none(), "report": report }),
        );
    }
    if args.json {
        println!("{}", json!({ "ok": !broken, "organisations": reports }));
    }
    Ok(if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_time(text: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(text, &format) {
        Ok(d) => Ok(d.midnight().assume_utc()),
        Err(_) => bail!("`{text}` is neither an RFC 3339 time nor a YYYY-MM-DD date"),
    }
}

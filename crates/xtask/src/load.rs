//! `cargo xtask load`: the load and fault harness (issue 9; DESIGN.md §6, §10, §11).
//!
//! In one run, on loopback only, it starts infrastructure of its own — a private PostgreSQL
//! cluster and a private Redis with append-only persistence on free ports (the machine's shared
//! servers are never touched), the GenieACS simulator with a call log, N `gatehouse gateway`
//! replicas behind a round-robin TCP balancer and `gatehouse ingest` — seeds an organisation, a
//! server, policies and grants through the `gatehouse` CLI, and measures:
//!
//! - throughput and p50/p99 latency direct to the upstream, through the balancer alone, and
//!   through the balanced gateways (limiter and audit on), and the latency the gateways add;
//! - RSS per replica idle and with 1,000 open MCP sessions, some holding GET streams;
//! - rate-limit exactness across replicas: bursts of concurrent calls against a limit of M per
//!   window, each of which must admit exactly M;
//! - policy-edit propagation: a version published with the CLI, each replica polled directly until
//!   its decision changes;
//! - fault drills under load (Redis SIGKILL and restart from its AOF, `pg_ctl restart`, an
//!   upstream that stops answering (SIGSTOP), SIGKILL of one replica), each with the answers the
//!   clients got by kind;
//! - and after the ingester drained, whether every call the upstream received (the simulator's
//!   call log) has exactly one audit event in Postgres (`gatehouse audit export`), an unknown
//!   outcome being allowed where the outcome could not be recorded.

mod balancer;
mod client;
mod infra;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::Value;

use crate::bench_gateway::{Figures, Target, measure};
use balancer::Balancer;
use client::{Client, Tally, merge};
use infra::{PrivatePostgres, PrivateRedis, Service, free_port, wait_for_port};

/// Options of `cargo xtask load`.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    replicas: usize,
    seconds: u64,
    rate: u64,
    connections: usize,
    sessions: usize,
    streams: usize,
    limit_max: u32,
    limit_window: u64,
    limit_trials: usize,
    propagation_rounds: usize,
    drill_seconds: u64,
    drill_clients: usize,
    audit_grace_secs: u64,
    debug_build: bool,
    keep: bool,
}

const USAGE: &str = "cargo xtask load [--quick] [--replicas N] [--seconds N] [--rate N] [--connections N] \
[--sessions N] [--streams N] [--limit-max M] [--limit-window SECS] [--limit-trials N] [--propagation-rounds N] \
[--drill-seconds N] [--drill-clients N] [--audit-grace-secs N (or GATEHOUSE_AUDIT_GRACE_SECS)] [--debug-build] [--keep]";

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let grace = match std::env::var("GATEHOUSE_AUDIT_GRACE_SECS") {
            Ok(v) => v
                .trim()
                .parse()
                .context("GATEHOUSE_AUDIT_GRACE_SECS must be a whole number of seconds")?,
            Err(_) => 10,
        };
        let mut o = if args.contains(&"--quick") {
            // A smoke run: every phase, minutes shortened to seconds, on the debug binary CI has.
            Options {
                replicas: 2,
                seconds: 1,
                rate: 200,
                connections: 8,
                sessions: 100,
                streams: 20,
                limit_max: 20,
                limit_window: 10,
                limit_trials: 1,
                propagation_rounds: 2,
                drill_seconds: 4,
                drill_clients: 4,
                audit_grace_secs: grace.min(5),
                debug_build: true,
                keep: false,
            }
        } else {
            Options {
                replicas: 2,
                seconds: 5,
                rate: 500,
                connections: 32,
                sessions: 1000,
                streams: 200,
                limit_max: 50,
                limit_window: 5,
                limit_trials: 3,
                propagation_rounds: 6,
                drill_seconds: 9,
                drill_clients: 16,
                audit_grace_secs: grace,
                debug_build: false,
                keep: false,
            }
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| -> anyhow::Result<u64> {
                it.next()
                    .with_context(|| format!("{name} needs a value"))?
                    .parse()
                    .with_context(|| format!("{name} must be a whole number"))
            };
            match *arg {
                "--quick" => {}
                "--replicas" => o.replicas = value(arg)? as usize,
                "--seconds" => o.seconds = value(arg)?,
                "--rate" => o.rate = value(arg)?,
                "--connections" => o.connections = value(arg)? as usize,
                "--sessions" => o.sessions = value(arg)? as usize,
                "--streams" => o.streams = value(arg)? as usize,
                "--limit-max" => o.limit_max = u32::try_from(value(arg)?)?,
                "--limit-window" => o.limit_window = value(arg)?,
                "--limit-trials" => o.limit_trials = value(arg)? as usize,
                "--propagation-rounds" => o.propagation_rounds = value(arg)? as usize,
                "--drill-seconds" => o.drill_seconds = value(arg)?,
                "--drill-clients" => o.drill_clients = value(arg)? as usize,
                "--audit-grace-secs" => o.audit_grace_secs = value(arg)?,
                "--debug-build" => o.debug_build = true,
                "--keep" => o.keep = true,
                other => bail!("unknown option `{other}`\nusage: {USAGE}"),
            }
        }
        let mut problems = Vec::new();
        if o.replicas < 2 {
            problems.push("--replicas must be at least 2 (one of them is killed in a drill)");
        }
        if o.seconds == 0 || o.rate == 0 || o.connections == 0 {
            problems.push("--seconds, --rate and --connections must be positive");
        }
        if o.streams > o.sessions {
            problems.push("--streams cannot exceed --sessions (each stream belongs to a session)");
        }
        if o.limit_max == 0 || o.limit_window == 0 || o.limit_trials == 0 {
            problems.push("--limit-max, --limit-window and --limit-trials must be positive");
        }
        if o.drill_seconds < 3 || o.drill_clients == 0 {
            problems.push("--drill-seconds must be at least 3 and --drill-clients positive");
        }
        if o.propagation_rounds == 0 {
            problems.push("--propagation-rounds must be positive");
        }
        if !problems.is_empty() {
            bail!("{}\nusage: {USAGE}", problems.join("\n"));
        }
        Ok(o)
    }
}

/// How long a drill's client waits for one answer: well above the gateways' upstream timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateways' upstream timeout in this harness (the upstream-hang drill waits on it).
const UPSTREAM_TIMEOUT_MS: u64 = 2_000;

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let profile = if o.debug_build { "debug" } else { "release" };
    eprintln!("building the gatehouse binary ({profile}) …");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--quiet", "-p", "gatehouse"]);
    if !o.debug_build {
        build.arg("--release");
    }
    if !build.current_dir(&root).status()?.success() {
        bail!("building gatehouse ({profile}) failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let gatehouse = target_dir.join(profile).join("gatehouse");

    let dir = std::env::temp_dir().join(format!("gatehouse-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!("run folder (logs, call log, data): {}", dir.display());
    let outcome = async {
        let mut d = Deployment::start(&o, gatehouse, &dir).await?;
        // Interrupted (Ctrl-C, or `timeout`'s SIGTERM), it still stops what it started: the
        // private PostgreSQL runs detached and would otherwise outlive the harness.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let report = tokio::select! {
            r = d.exercise(&o) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        };
        // Everything stops here, whatever happened, before the report is printed.
        drop(d);
        report
    }
    .await;
    match outcome {
        Ok(report) => {
            report.print(&o);
            if o.keep {
                eprintln!("kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("the run failed; its logs are in {}", dir.display());
            Err(e)
        }
    }
}

/// Everything one run starts. Dropping it stops every process and the private servers.
struct Deployment {
    dir: PathBuf,
    gatehouse: PathBuf,
    secret: String,
    gateways: Vec<Option<Service>>,
    gateway_ports: Vec<u16>,
    ingester: Option<Service>,
    balancer: Balancer,
    sim_balancer: Balancer,
    sim: Service,
    sim_port: u16,
    call_log: PathBuf,
    org: String,
    server: String,
    /// Grant tokens by policy name.
    tokens: BTreeMap<&'static str, String>,
    redis: PrivateRedis,
    pg: PrivatePostgres,
}

const ALLOW_PROBE: &str =
    r#"{"version":"1","default":"deny","record_arguments":true,"tools":{"retry_task":{}}}"#;
const DENY_PROBE: &str = r#"{"version":"1","default":"deny","record_arguments":true,"tools":{"retry_task":{"action":"deny","reason":"propagation probe"}}}"#;

impl Deployment {
    async fn start(o: &Options, gatehouse: PathBuf, dir: &Path) -> anyhow::Result<Deployment> {
        eprintln!("starting a private PostgreSQL and Redis …");
        let pg = tokio::task::block_in_place(|| PrivatePostgres::start(dir))?;
        let redis = PrivateRedis::start(dir).await?;

        let sim_port = free_port()?;
        let call_log = dir.join("upstream-calls.jsonl");
        let mut cmd = Command::new(&gatehouse);
        cmd.args(["demo-upstream", "--cheap", "--get-streams", "--listen"])
            .arg(format!("127.0.0.1:{sim_port}"))
            .arg("--call-log")
            .arg(&call_log);
        let sim = Service::spawn("upstream", cmd, dir)?;
        wait_for_port(sim_port, "the GenieACS simulator", Duration::from_secs(20)).await?;

        let secret: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
            .iter()
            .flat_map(|u| u.into_bytes())
            .collect();
        let secret = base64::engine::general_purpose::STANDARD.encode(&secret);

        let gateway_ports = (0..o.replicas)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let backends: Vec<SocketAddr> = gateway_ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let balancer = Balancer::start(backends).await?;
        let sim_balancer =
            Balancer::start(vec![SocketAddr::from(([127, 0, 0, 1], sim_port))]).await?;

        let mut d = Deployment {
            dir: dir.to_owned(),
            gatehouse,
            secret,
            gateways: Vec::new(),
            gateway_ports,
            ingester: None,
            balancer,
            sim_balancer,
            sim,
            sim_port,
            call_log,
            org: String::new(),
            server: String::new(),
            tokens: BTreeMap::new(),
            redis,
            pg,
        };

        eprintln!("migrating and seeding through the gatehouse CLI …");
        d.cli(&["migrate"])?;
        let org = d.cli(&["org", "create", "load-harness"])?;
        d.org = json_str(&org, "organisation_id")?;
        let sim_url = format!("http://127.0.0.1:{sim_port}/mcp");
        let server = d.cli(&[
            "server",
            "add",
            "--org",
            &d.org.clone(),
            "--name",
            "genieacs",
            "--url",
            &sim_url,
        ])?;
        d.server = json_str(&server, "server_id")?;
        let policies: [(&'static str, String); 3] = [
            (
                "default",
                r#"{"version":"1","default":"deny","record_arguments":true,"tools":{"retry_task":{"limits":[{"counter":"load","window":"minute","max":1000000,"scope":"grant"}]}}}"#.to_owned(),
            ),
            (
                "exact",
                format!(
                    r#"{{"version":"1","default":"deny","record_arguments":true,"tools":{{"retry_task":{{"limits":[{{"counter":"exact","window":{},"max":{},"scope":"grant"}}]}}}}}}"#,
                    o.limit_window, o.limit_max
                ),
            ),
            ("probe", ALLOW_PROBE.to_owned()),
        ];
        for (name, doc) in &policies {
            d.publish(name, doc)?;
            let grant = d.cli(&[
                "grant",
                "mint",
                "--server",
                &d.server.clone(),
                "--label",
                &format!("load-{name}"),
                "--policy",
                name,
            ])?;
            d.tokens.insert(name, json_str(&grant, "token")?);
        }

        eprintln!(
            "starting {} gateway replicas and the ingester …",
            o.replicas
        );
        for i in 0..o.replicas {
            let g = d.spawn_gateway(i)?;
            d.gateways.push(Some(g));
        }
        for i in 0..o.replicas {
            d.wait_ready(i).await?;
        }
        let mut cmd = Command::new(&d.gatehouse);
        cmd.arg("ingest")
            .env("DATABASE_URL", d.pg.url())
            .env("REDIS_URL", d.redis.url())
            .env("GATEHOUSE_INGEST_CONSUMER", "load-harness")
            .env("GATEHOUSE_AUDIT_GRACE_SECS", o.audit_grace_secs.to_string())
            // A write-ahead left waiting for its outcome is looked at again only when it is
            // claimed (XAUTOCLAIM after this idle time), so unknown outcomes land after both.
            .env(
                "GATEHOUSE_INGEST_CLAIM_IDLE_SECS",
                o.audit_grace_secs.to_string(),
            );
        d.ingester = Some(Service::spawn("ingest", cmd, dir)?);
        Ok(d)
    }

    /// Runs a `gatehouse` store command with `--json` against the private servers.
    fn cli(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = self.cli_raw(args, true)?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("gatehouse {} printed no JSON: {out}", args.join(" ")))
    }

    fn cli_raw(&self, args: &[&str], json: bool) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.gatehouse);
        cmd.args(args)
            .env("DATABASE_URL", self.pg.url())
            .env("REDIS_URL", self.redis.url())
            .env("GATEHOUSE_SECRET_KEY", &self.secret);
        if json {
            cmd.arg("--json");
        }
        let out = cmd
            .output()
            .with_context(|| format!("running gatehouse {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "gatehouse {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn publish(&self, policy: &str, doc: &str) -> anyhow::Result<()> {
        let file = self.dir.join(format!("policy-{policy}.json"));
        std::fs::write(&file, doc)?;
        self.cli(&[
            "policy",
            "publish",
            "--server",
            &self.server,
            "--policy",
            policy,
            file.to_str().context("a UTF-8 run folder")?,
        ])
        .map(drop)
    }

    fn spawn_gateway(&self, i: usize) -> anyhow::Result<Service> {
        let port = self.gateway_ports[i];
        let mut cmd = Command::new(&self.gatehouse);
        cmd.args(["gateway", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", self.pg.url())
            .env("REDIS_URL", self.redis.url())
            .env("GATEHOUSE_SECRET_KEY", &self.secret)
            .env("GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS", "true")
            .env(
                "GATEHOUSE_PUBLIC_URL",
                format!("http://{}", self.balancer.addr),
            )
            .env(
                "GATEHOUSE_UPSTREAM_TIMEOUT_MS",
                UPSTREAM_TIMEOUT_MS.to_string(),
            )
            .env("GATEHOUSE_LOG", "warn");
        Service::spawn(&format!("gateway-{}", i + 1), cmd, &self.dir)
    }

    async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let port = self.gateway_ports[i];
        wait_for_port(port, "a gateway replica", Duration::from_secs(30)).await?;
        let url = format!("http://127.0.0.1:{port}/readyz");
        let started = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("gateway replica {} never became ready ({url})", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn proxy_url(&self, base: SocketAddr) -> String {
        format!("http://{base}/mcp/{}", self.server)
    }

    fn balanced(&self, policy: &'static str, tag: &'static str) -> Target {
        Target {
            name: "balancer → gateways",
            url: self.proxy_url(self.balancer.addr),
            token: Some(self.tokens[policy].clone()),
            tag,
        }
    }

    fn rss(&mut self) -> Vec<Option<f64>> {
        self.gateways
            .iter()
            .map(|g| g.as_ref().and_then(|g| g.rss_mib().ok()))
            .collect()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        let mut dead = Vec::new();
        for s in self
            .gateways
            .iter_mut()
            .flatten()
            .chain(self.ingester.iter_mut())
            .chain([&mut self.sim])
        {
            if let Some(status) = s.exited() {
                dead.push(format!("{} exited ({status})", s.name));
            }
        }
        if !dead.is_empty() {
            bail!(
                "{}; see the logs in {}",
                dead.join(", "),
                self.dir.display()
            );
        }
        Ok(())
    }

    async fn exercise(&mut self, o: &Options) -> anyhow::Result<Report> {
        let idle = self.rss();
        eprintln!("measuring throughput and latency …");
        let speed = self.speed(o).await?;
        self.check_alive()?;
        eprintln!(
            "opening {} sessions ({} with GET streams) …",
            o.sessions, o.streams
        );
        let sessions = self.sessions(o).await?;
        eprintln!("checking rate-limit exactness …");
        let limits = self.rate_limits(o).await?;
        eprintln!("measuring policy propagation …");
        let propagation = self.propagation(o).await?;
        self.check_alive()?;
        let mut drills = Vec::new();
        for fault in [
            Fault::RedisRestart,
            Fault::PostgresRestart,
            Fault::UpstreamHang,
            Fault::KillReplica,
        ] {
            eprintln!("drill: {} …", fault.title());
            drills.push(self.drill(o, fault).await?);
        }
        let after_load = self.rss();
        eprintln!("waiting for the audit ingester to drain …");
        let audit = self.audit(o).await?;
        self.check_alive()?;
        Ok(Report {
            idle,
            speed,
            sessions,
            after_load,
            limits,
            propagation,
            drills,
            audit,
        })
    }

    async fn speed(&self, o: &Options) -> anyhow::Result<Vec<(&'static str, Figures)>> {
        let targets = [
            Target {
                name: "direct",
                url: format!("http://127.0.0.1:{}/mcp", self.sim_port),
                token: None,
                tag: "direct-",
            },
            Target {
                name: "balancer → upstream",
                url: format!("http://{}/mcp", self.sim_balancer.addr),
                token: None,
                tag: "lb-",
            },
            self.balanced("default", "gw-"),
        ];
        let mut out = Vec::new();
        for t in &targets {
            out.push((t.name, measure(o.seconds, o.rate, o.connections, t).await?));
        }
        Ok(out)
    }

    async fn sessions(&mut self, o: &Options) -> anyhow::Result<SessionFigures> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()?;
        let target = self.balanced("default", "mem-");
        let mut opened = Vec::with_capacity(o.sessions);
        let mut failed = 0;
        for chunk in (0..o.sessions).collect::<Vec<_>>().chunks(32) {
            let batch = chunk
                .iter()
                .map(|_| crate::bench_gateway::session_headers(&http, &target));
            for r in futures_util::future::join_all(batch).await {
                match r {
                    Ok(h) => opened.push(h),
                    Err(_) => failed += 1,
                }
            }
        }
        let mut streams = Vec::new();
        let mut stream_refused = Tally::new();
        for headers in opened.iter().take(o.streams) {
            // Each stream holds its own connection, through the balancer, so they spread.
            let mut h = headers.clone();
            h.insert("accept", "text/event-stream".parse()?);
            h.remove("content-type");
            let r = reqwest::Client::builder()
                .build()?
                .get(&target.url)
                .headers(h)
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => streams.push(r),
                Ok(r) => {
                    *stream_refused
                        .entry(client::classify(r.status().as_u16(), ""))
                        .or_default() += 1
                }
                Err(_) => *stream_refused.entry("connection_error").or_default() += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = self.rss();
        let stream_count = streams.len();
        drop(streams);
        Ok(SessionFigures {
            opened: opened.len(),
            failed,
            streams: stream_count,
            stream_refused,
            rss,
        })
    }

    async fn rate_limits(&self, o: &Options) -> anyhow::Result<Vec<Trial>> {
        let concurrency = 64;
        let burst = (o.limit_max as usize * 4).max(200);
        let mut clients = Vec::new();
        for _ in 0..concurrency {
            let mut c = Client::new(self.balanced("exact", "rl-"), CLIENT_TIMEOUT)?;
            c.open().await?;
            clients.push(c);
        }
        let mut trials = Vec::new();
        for trial in 0..o.limit_trials {
            if trial > 0 {
                // Every earlier admission must be older than the window.
                tokio::time::sleep(
                    Duration::from_secs(o.limit_window) + Duration::from_millis(300),
                )
                .await;
            }
            let started = Instant::now();
            let per_client = burst.div_ceil(concurrency);
            let tasks: Vec<_> = clients
                .drain(..)
                .enumerate()
                .map(|(c, mut client)| {
                    tokio::spawn(async move {
                        let mut tally = Tally::new();
                        for n in 0..per_client {
                            let kind = client.call(&format!("rl-{trial}-{c}-{n}")).await;
                            *tally.entry(kind).or_default() += 1;
                        }
                        (client, tally)
                    })
                })
                .collect();
            let mut tally = Tally::new();
            for t in tasks {
                let (client, t) = t.await?;
                clients.push(client);
                merge(&mut tally, &t);
            }
            trials.push(Trial {
                sent: per_client * concurrency,
                took: started.elapsed(),
                tally,
            });
        }
        Ok(trials)
    }

    async fn propagation(&self, o: &Options) -> anyhow::Result<Vec<Round>> {
        let mut pollers = Vec::new();
        for port in &self.gateway_ports {
            let target = Target {
                name: "replica",
                url: self.proxy_url(SocketAddr::from(([127, 0, 0, 1], *port))),
                token: Some(self.tokens["probe"].clone()),
                tag: "prop-",
            };
            let mut c = Client::new(target, CLIENT_TIMEOUT)?;
            c.open().await?;
            pollers.push(c);
        }
        let mut rounds = Vec::new();
        for round in 0..o.propagation_rounds {
            let (doc, expect) = if round % 2 == 0 {
                (DENY_PROBE, "denied")
            } else {
                (ALLOW_PROBE, "ok")
            };
            let t0 = Instant::now();
            let tasks: Vec<_> = pollers
                .drain(..)
                .enumerate()
                .map(|(r, mut client)| {
                    tokio::spawn(async move {
                        let mut n = 0;
                        let seen = loop {
                            let kind = client.call(&format!("prop-{round}-{r}-{n}")).await;
                            n += 1;
                            if kind == expect {
                                break Some(t0.elapsed());
                            }
                            if t0.elapsed() > Duration::from_secs(10) {
                                break None;
                            }
                        };
                        (client, seen)
                    })
                })
                .collect();
            tokio::task::block_in_place(|| self.publish("probe", doc))?;
            let cli = t0.elapsed();
            let mut seen = Vec::new();
            for t in tasks {
                let (client, s) = t.await?;
                pollers.push(client);
                seen.push(s);
            }
            rounds.push(Round { cli, seen });
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(rounds)
    }

    async fn drill(&mut self, o: &Options, fault: Fault) -> anyhow::Result<Drill> {
        let deadline = Instant::now() + Duration::from_secs(o.drill_seconds);
        let tag = fault.tag();
        let mut workers = Vec::new();
        for w in 0..o.drill_clients {
            let mut client = Client::new(self.balanced("default", tag), CLIENT_TIMEOUT)?;
            workers.push(tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let kind = client.call(&format!("{tag}-{w}-{n}")).await;
                    *tally.entry(kind).or_default() += 1;
                    n += 1;
                    if kind != "ok" {
                        // An error can come back at once (a refused connection); do not spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                tally
            }));
        }
        tokio::time::sleep(Duration::from_secs(o.drill_seconds) / 3).await;
        let started = Instant::now();
        let note = match fault {
            Fault::RedisRestart => {
                self.redis.crash_and_restart(Duration::from_secs(2)).await?;
                format!(
                    "redis-server SIGKILLed, down 2 s, restarted from its AOF; answering again after {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            }
            Fault::PostgresRestart => {
                tokio::task::block_in_place(|| self.pg.restart())?;
                format!(
                    "pg_ctl stop -m fast, then start: took {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            }
            Fault::UpstreamHang => {
                self.sim.signal("STOP")?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                self.sim.signal("CONT")?;
                format!(
                    "upstream SIGSTOPped for 3 s (gateway upstream timeout {} ms), then SIGCONT",
                    UPSTREAM_TIMEOUT_MS
                )
            }
            Fault::KillReplica => {
                if let Some(mut g) = self.gateways[0].take() {
                    g.kill9();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.gateways[0] = Some(self.spawn_gateway(0)?);
                self.wait_ready(0).await?;
                format!(
                    "replica 1 SIGKILLed, restarted 2 s later, ready after {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            }
        };
        let mut tally = Tally::new();
        for w in workers {
            merge(&mut tally, &w.await?);
        }
        Ok(Drill {
            fault,
            tally,
            note,
            audit: None,
        })
    }

    /// Waits for the ingester, then compares the upstream's call log with the audit events.
    async fn audit(&self, o: &Options) -> anyhow::Result<AuditFigures> {
        let started = Instant::now();
        let patience = Duration::from_secs(2 * o.audit_grace_secs + 15);
        let mut last_progress = Instant::now();
        let mut best = 0;
        loop {
            let check = self.compare_audit()?;
            let matched: usize = check.groups.values().map(|g| g.with_event).sum();
            let calls: usize = check.groups.values().map(|g| g.upstream_calls).sum();
            if matched == calls {
                return Ok(AuditFigures {
                    waited: started.elapsed(),
                    ..check
                });
            }
            if matched > best {
                best = matched;
                last_progress = Instant::now();
            }
            if last_progress.elapsed() > patience {
                return Ok(AuditFigures {
                    waited: started.elapsed(),
                    ..check
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    fn compare_audit(&self) -> anyhow::Result<AuditFigures> {
        let task_of = |v: &Value| -> Option<String> {
            v.get("task_id").and_then(Value::as_str).map(str::to_owned)
        };
        let mut calls: BTreeMap<String, String> = BTreeMap::new();
        let log = std::fs::read_to_string(&self.call_log).unwrap_or_default();
        for line in log.lines() {
            let record: Value = serde_json::from_str(line).context("a call-log line")?;
            if let Some(task) = record.get("arguments").and_then(task_of) {
                let group = group_of(&task).to_owned();
                // Calls sent straight to the upstream have no gateway, hence no audit event.
                if group != "direct" && group != "lb" {
                    calls.insert(task, group);
                }
            }
        }
        let export = self.cli_raw(
            &["audit", "export", "--org", &self.org, "--format", "jsonl"],
            false,
        )?;
        let mut events: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut total = 0;
        for line in export.lines().filter(|l| !l.trim().is_empty()) {
            total += 1;
            let event: Value = serde_json::from_str(line).context("an exported audit line")?;
            if let Some(task) = event.get("arguments").and_then(task_of) {
                let unknown = event
                    .get("message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.contains("outcome unknown"));
                let e = events.entry(task).or_default();
                e.0 += 1;
                e.1 += usize::from(unknown);
            }
        }
        let mut groups: BTreeMap<String, GroupAudit> = BTreeMap::new();
        for (task, group) in &calls {
            let g = groups.entry(group.clone()).or_default();
            g.upstream_calls += 1;
            match events.get(task) {
                None => g.missing += 1,
                Some(&(n, unknown)) => {
                    g.with_event += 1;
                    g.duplicates += n - 1;
                    g.unknown_outcome += unknown;
                }
            }
        }
        let verify = self
            .cli_raw(&["audit", "verify", "--org", &self.org], false)
            .map(|out| out.trim().to_owned())
            .unwrap_or_else(|e| format!("{e:#}"));
        Ok(AuditFigures {
            groups,
            events_total: total,
            verify,
            waited: Duration::ZERO,
        })
    }
}

fn group_of(task: &str) -> &str {
    task.split('-').next().unwrap_or(task)
}

fn json_str(v: &Value, key: &str) -> anyhow::Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no `{key}` in {v}"))
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    RedisRestart,
    PostgresRestart,
    UpstreamHang,
    KillReplica,
}

impl Fault {
    fn title(self) -> &'static str {
        match self {
            Fault::RedisRestart => "Redis restart",
            Fault::PostgresRestart => "Postgres restart",
            Fault::UpstreamHang => "upstream hang",
            Fault::KillReplica => "SIGKILL of a replica",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Fault::RedisRestart => "redis",
            Fault::PostgresRestart => "postgres",
            Fault::UpstreamHang => "hang",
            Fault::KillReplica => "kill",
        }
    }
}

struct SessionFigures {
    opened: usize,
    failed: usize,
    streams: usize,
    stream_refused: Tally,
    rss: Vec<Option<f64>>,
}

struct Trial {
    sent: usize,
    took: Duration,
    tally: Tally,
}

struct Round {
    cli: Duration,
    seen: Vec<Option<Duration>>,
}

struct Drill {
    fault: Fault,
    tally: Tally,
    note: String,
    audit: Option<GroupAudit>,
}

#[derive(Debug, Default, Clone, Copy)]
struct GroupAudit {
    upstream_calls: usize,
    with_event: usize,
    missing: usize,
    duplicates: usize,
    unknown_outcome: usize,
}

struct AuditFigures {
    groups: BTreeMap<String, GroupAudit>,
    events_total: usize,
    verify: String,
    waited: Duration,
}

struct Report {
    idle: Vec<Option<f64>>,
    speed: Vec<(&'static str, Figures)>,
    sessions: SessionFigures,
    after_load: Vec<Option<f64>>,
    limits: Vec<Trial>,
    propagation: Vec<Round>,
    drills: Vec<Drill>,
    audit: AuditFigures,
}

fn mib(v: &[Option<f64>]) -> String {
    v.iter()
        .map(|m| m.map_or_else(|| "     —".to_owned(), |m| format!("{m:6.1}")))
        .collect::<Vec<_>>()
        .join("  ")
}

fn tally_text(t: &Tally) -> String {
    if t.is_empty() {
        return "—".into();
    }
    t.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    fn print(mut self, o: &Options) {
        for d in &mut self.drills {
            d.audit = self.audit.groups.get(d.fault.tag()).copied();
        }
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        println!(
            "\n== cargo xtask load: {} gateway replicas behind a round-robin TCP balancer, loopback, {cores} cores shared with the load generator ==",
            o.replicas
        );

        println!(
            "\n-- tools/call retry_task: latency at {} req/s (open loop), throughput with {} connections (closed loop), {} s each --",
            o.rate, o.connections, o.seconds
        );
        println!(
            "{:<22} {:>10} {:>9} {:>9} {:>7}",
            "target", "req/s", "p50 ms", "p99 ms", "errors"
        );
        for (name, f) in &self.speed {
            println!(
                "{name:<22} {:>10.0} {:>9.3} {:>9.3} {:>7}",
                f.throughput, f.p50_ms, f.p99_ms, f.errors
            );
        }
        if let [(_, direct), (_, lb), (_, gw)] = self.speed[..] {
            println!(
                "added over direct: balancer p50 {:.3} ms, p99 {:.3} ms; balancer + gateways p50 {:.3} ms, p99 {:.3} ms",
                lb.p50_ms - direct.p50_ms,
                lb.p99_ms - direct.p99_ms,
                gw.p50_ms - direct.p50_ms,
                gw.p99_ms - direct.p99_ms
            );
            println!(
                "added by the gateways alone (balanced gateways − balancer → upstream): p50 {:.3} ms, p99 {:.3} ms; throughput {:.2}× the balancer alone",
                gw.p50_ms - lb.p50_ms,
                gw.p99_ms - lb.p99_ms,
                gw.throughput / lb.throughput
            );
        }

        println!(
            "\n-- memory per replica (RSS MiB; budget ≤ 30 idle, ≤ 100 with 1,000 sessions) --"
        );
        println!("idle, before any request          {}", mib(&self.idle));
        let s = &self.sessions;
        println!(
            "{} sessions open, {} GET streams {}",
            s.opened,
            s.streams,
            mib(&s.rss)
        );
        println!(
            "after the drills                  {}",
            mib(&self.after_load)
        );
        if s.failed > 0 || !s.stream_refused.is_empty() {
            println!(
                "  sessions that failed to open: {}; GET streams refused: {}",
                s.failed,
                tally_text(&s.stream_refused)
            );
        }

        println!(
            "\n-- rate-limit exactness: max {} per {} s per grant, bursts through the balancer --",
            o.limit_max, o.limit_window
        );
        for (i, t) in self.limits.iter().enumerate() {
            let admitted = t.tally.get("ok").copied().unwrap_or(0);
            let verdict = if t.took >= Duration::from_secs(o.limit_window) {
                "INCONCLUSIVE (the burst outlasted the window)"
            } else if admitted == u64::from(o.limit_max) {
                "exact"
            } else {
                "NOT EXACT"
            };
            println!(
                "trial {}: {} calls in {} ms, admitted {admitted} (expected {}): {verdict}; answers: {}",
                i + 1,
                t.sent,
                t.took.as_millis(),
                o.limit_max,
                tally_text(&t.tally)
            );
        }

        println!(
            "\n-- policy edit propagation (publish with the CLI, each replica polled directly; budget ≤ 1 s) --"
        );
        let mut worst: Option<Duration> = Some(Duration::ZERO);
        for (i, r) in self.propagation.iter().enumerate() {
            let per: Vec<String> = r
                .seen
                .iter()
                .map(|s| s.map_or("never (10 s)".into(), |d| format!("{} ms", d.as_millis())))
                .collect();
            let max = r
                .seen
                .iter()
                .copied()
                .collect::<Option<Vec<_>>>()
                .and_then(|v| v.into_iter().max());
            worst = match (worst, max) {
                (Some(w), Some(m)) => Some(w.max(m)),
                _ => None,
            };
            println!(
                "round {}: the CLI returned after {} ms; replicas changed after {}",
                i + 1,
                r.cli.as_millis(),
                per.join(", ")
            );
        }
        println!(
            "max over rounds and replicas, from the start of the publish command: {}",
            worst.map_or("a replica never changed".into(), |w| format!(
                "{} ms",
                w.as_millis()
            ))
        );

        println!(
            "\n-- fault drills ({} clients, {} s each, fault at a third) --",
            o.drill_clients, o.drill_seconds
        );
        for d in &self.drills {
            let total: u64 = d.tally.values().sum();
            println!("{}: {}", d.fault.title(), d.note);
            println!("  clients saw ({total} calls): {}", tally_text(&d.tally));
            println!(
                "  audit: {}",
                audit_text(d.audit.as_ref(), matches!(d.fault, Fault::KillReplica))
            );
        }

        println!(
            "\n-- audit: every call the upstream received vs the events in Postgres after the ingester drained (waited {:.0} s, grace {} s) --",
            self.audit.waited.as_secs_f64(),
            o.audit_grace_secs
        );
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>10} {:>9}",
            "group", "upstream", "w/ event", "missing", "duplicate", "unknown"
        );
        for (name, g) in &self.audit.groups {
            println!(
                "{name:<10} {:>9} {:>9} {:>8} {:>10} {:>9}",
                g.upstream_calls, g.with_event, g.missing, g.duplicates, g.unknown_outcome
            );
        }
        let lost: usize = self
            .audit
            .groups
            .values()
            .map(|g| g.missing + g.duplicates)
            .sum();
        println!(
            "events in Postgres: {}; audit events lost or duplicated: {lost}{}",
            self.audit.events_total,
            if lost == 0 { "" } else { " — AUDIT LOST" }
        );
        println!("gatehouse audit verify: {}", self.audit.verify);
    }
}

fn audit_text(g: Option<&GroupAudit>, unknown_allowed: bool) -> String {
    let Some(g) = g else {
        return "the upstream received no call".into();
    };
    let verdict = if g.missing == 0 && g.duplicates == 0 {
        if g.unknown_outcome > 0 && !unknown_allowed {
            "none lost (some outcomes unknown)"
        } else {
            "none lost"
        }
    } else {
        "AUDIT LOST"
    };
    format!(
        "{verdict}: {} upstream calls, {} with an event, {} missing, {} duplicated, {} with unknown outcome",
        g.upstream_calls, g.with_event, g.missing, g.duplicates, g.unknown_outcome
    )
}

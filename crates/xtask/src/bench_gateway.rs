//! `cargo xtask bench gateway`: the gateway budgets of DESIGN.md §11, measured in one run.
//!
//! Five targets answer the same `tools/call retry_task` (the GenieACS simulator in `--cheap` mode):
//! - `direct`: the simulator itself;
//! - `nginx`: Debian's nginx as a plain reverse proxy, `proxy_pass` with nginx's defaults (HTTP/1.0
//!   to the upstream, a new upstream connection per request, responses buffered): the reference
//!   DESIGN.md §11 calibrated its budgets on ("nginx adds about 0.25 ms p50, 0.5 ms p99");
//! - `nginx-ka`: the same nginx tuned as far as a reverse proxy goes (HTTP/1.1 with a pool of kept-alive
//!   upstream connections, no buffering), a stricter reference shown beside it. Both run as many
//!   workers as cores, like the gateway's runtime;
//! - `gateway`: `gatehouse gateway` (release) with everything on: the limiter in Redis (every call
//!   consumes a counter), the audit journal in Redis shard streams (a write-ahead before and an
//!   outcome after every call) and `gatehouse ingest` moving the streams into Postgres meanwhile;
//! - `unaudited`: the same gateway with its durable path off ([`audit::Journal::unaudited_benchmark_only`]),
//!   served by this binary (`xtask bench-serve-unaudited-gateway`, never by `gatehouse`), limiter on:
//!   the difference to `gateway` is what the audit write-ahead costs (issue 6).
//!
//! Latency is measured at a fixed rate (500 req/s, open loop): a pacer thread sends each request at
//! its scheduled time, and each is timed **from that scheduled time** to the end of its answer, so a
//! stall of the client, the proxy or the machine counts against every request it delayed
//! (coordinated omission). Throughput is measured flat out (closed loops on N connections); a
//! gateway slice lasts until the ingester has stored its events, so the gateway's throughput is of
//! calls whose events are stored and the next target's slice starts clear of its ingest. Both
//! run in short slices, target after target in a rotating order, so the load other processes put
//! on the shared machine hits every target alike; the latency each proxy adds is its percentile
//! minus direct's over the same slices. Memory is the gateway's RSS idle (before any request) and
//! with N sessions open (each initialised on its own kept-alive connection).
//!
//! Everything runs on this machine: Postgres at `DATABASE_URL` (a scratch database, dropped
//! afterwards), Redis at `REDIS_URL` (stream keys of the run's own, deleted afterwards). The
//! load generator shares the cores with them, as the budgets assume.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::secret::{Keyring, Redacted, SealingKey};
use store::{Actor, Store};

/// Options of `cargo xtask bench gateway`.
#[derive(Debug)]
pub(crate) struct Options {
    /// Seconds of each measurement per target (latency and throughput each), in slices.
    seconds: u64,
    /// Length of one slice, in seconds.
    slice: u64,
    rate: u64,
    connections: usize,
    sessions: usize,
    nginx_workers: Option<usize>,
    no_limits: bool,
}

const USAGE: &str = "cargo run --release -p xtask -- bench gateway [--seconds N (10)] [--slice N (2)] \
[--rate N (500)] [--connections N (32)] [--sessions N (1000)] [--nginx-workers N (cores)] [--no-limits]";

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut o = Options {
            seconds: 10,
            slice: 2,
            rate: 500,
            connections: 32,
            sessions: 1000,
            nginx_workers: None,
            no_limits: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || -> anyhow::Result<u64> {
                it.next()
                    .with_context(|| format!("{arg} needs a value\nusage: {USAGE}"))?
                    .parse()
                    .with_context(|| format!("{arg} must be a whole number"))
            };
            match *arg {
                "--seconds" => o.seconds = value()?,
                "--slice" => o.slice = value()?,
                "--rate" => o.rate = value()?,
                "--connections" => o.connections = value()? as usize,
                "--sessions" => o.sessions = value()? as usize,
                "--nginx-workers" => o.nginx_workers = Some(value()? as usize),
                "--no-limits" => o.no_limits = true,
                other => bail!("unknown option `{other}`\nusage: {USAGE}"),
            }
        }
        if o.seconds == 0 || o.slice == 0 || o.rate == 0 || o.connections == 0 {
            bail!("--seconds, --slice, --rate and --connections must be positive\nusage: {USAGE}");
        }
        o.slice = o.slice.min(o.seconds);
        Ok(o)
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx's master process: stopped with SIGTERM, so that it takes its workers with it (a SIGKILLed
/// master leaves them running, orphaned), and SIGKILLed only if it has not exited within 5 s.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{what} did not start listening on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One target of the benchmark.
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    /// Prefix of every call's `task_id`, so the upstream's call log tells the targets apart.
    pub(crate) tag: &'static str,
}

/// What one target measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) throughput: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: usize,
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let root = workspace_root();
    eprintln!("building the release gatehouse binary …");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "gatehouse"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p gatehouse failed");
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this xtask is a debug build, so the load generator and the unaudited gateway are \
             unoptimised; run `cargo run --release -p xtask -- bench gateway` for figures"
        );
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let gatehouse = target_dir.join("release/gatehouse");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("nginx is not installed (apt-get install nginx)")?;

    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("gatehouse_bench_gateway_{run_id}");
    let stream_prefix = format!("bench:gw:{run_id}");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connecting to DATABASE_URL")?;
    admin
        .execute(sqlx::AssertSqlSafe(format!("create database {db_name}")))
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let db_url = format!("{base}/{db_name}");
    let infra = Infra {
        gatehouse,
        nginx,
        db_url,
        redis_url: redis_url.clone(),
        stream_prefix: stream_prefix.clone(),
    };
    let result = bench(&o, &infra).await;
    // The run's streams and their consumer group go with it.
    if let Ok(client) = redis::Client::open(redis_url.as_str())
        && let Ok(mut con) = client.get_multiplexed_async_connection().await
    {
        let mut del = redis::cmd("DEL");
        del.arg(stream_keys(&stream_prefix));
        let _: redis::RedisResult<i64> = del.query_async(&mut con).await;
    }
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "drop database {db_name} with (force)"
        )))
        .await?;
    result
}

struct Infra {
    gatehouse: PathBuf,
    nginx: PathBuf,
    db_url: String,
    redis_url: String,
    stream_prefix: String,
}

/// The keys of the run's audit shard streams, named as its gateway and ingester name them.
fn stream_keys(prefix: &str) -> Vec<String> {
    let streams = audit::StreamConfig {
        prefix: prefix.to_owned(),
        ..audit::StreamConfig::default()
    };
    (0..streams.shards).map(|s| streams.stream_key(s)).collect()
}

/// The gateway's place among the targets (`unaudited` follows it).
const GATEWAY: usize = 3;

/// The audit entries of the run the ingester has not stored yet (it deletes each entry once
/// its event committed): the gateway's work still owed after a slice ends.
struct Backlog {
    con: redis::aio::MultiplexedConnection,
    streams: Vec<String>,
}

impl Backlog {
    async fn new(infra: &Infra) -> anyhow::Result<Backlog> {
        let con = redis::Client::open(infra.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("connecting to REDIS_URL")?;
        let streams = stream_keys(&infra.stream_prefix);
        Ok(Backlog { con, streams })
    }

    /// Waits until the ingester has stored every entry written so far; how long that took.
    async fn drain(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let mut pipe = redis::pipe();
            for stream in &self.streams {
                pipe.cmd("XLEN").arg(stream);
            }
            let lengths: Vec<u64> = pipe.query_async(&mut self.con).await?;
            if lengths.iter().all(|&n| n == 0) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the ingester left {lengths:?} entries unstored for 30 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A process (or a group of them) whose CPU time the throughput phase accounts per call.
struct Counted {
    /// Its column in the table.
    name: &'static str,
    pids: Vec<u32>,
    /// Works only for the gateway's calls, and partly after its slices end (the ingester's fill
    /// wait, a batch in flight): all it used over the phase is divided by the gateway's calls.
    gateway_only: bool,
}

impl Counted {
    fn new(name: &'static str, pids: Vec<u32>) -> Self {
        Counted {
            name,
            pids,
            gateway_only: false,
        }
    }

    /// CPU seconds (user + system) it has used so far; a process that is gone counts 0.
    fn cpu(&self) -> f64 {
        self.pids.iter().map(|p| cpu_seconds(*p)).sum()
    }
}

/// [`Counted::cpu`] of each.
fn cpu_of(counted: &[Counted]) -> Vec<f64> {
    counted.iter().map(Counted::cpu).collect()
}

/// CPU seconds (user + system) `pid` has used, from `/proc/<pid>/stat` (in clock ticks of
/// 1/100 s, Linux's `USER_HZ`); 0 if it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The child processes of `pid` (nginx's workers of its master).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The Redis server's pid, if it runs on this machine.
async fn redis_pid(redis_url: &str) -> Option<u32> {
    let client = redis::Client::open(redis_url).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await
        .ok()?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

async fn bench(o: &Options, infra: &Infra) -> anyhow::Result<()> {
    let load_before = load_average();
    // A throwaway deployment secret: 32 random bytes, base64, as GATEHOUSE_SECRET_KEY takes it.
    let secret: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    let key_text = base64::engine::general_purpose::STANDARD.encode(&secret);
    let key = SealingKey::from_base64(1, &key_text).map_err(anyhow::Error::msg)?;
    let store = Store::connect(&infra.db_url, Keyring::new(key)).await?;
    store.migrate().await?;

    let sim_port = free_port()?;
    let sim = Killed(
        Command::new(&infra.gatehouse)
            .args(["demo-upstream", "--cheap", "--listen"])
            .arg(format!("127.0.0.1:{sim_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the simulator")?,
    );
    wait_for_port(sim_port, "the simulator").await?;
    let sim_url = format!("http://127.0.0.1:{sim_port}/mcp");

    // Limits on (unless --no-limits): every call consumes a counter in Redis, never full.
    let policy = if o.no_limits {
        r#"{"version":"1","default":"deny","tools":{"retry_task":{}}}"#
    } else {
        r#"{"version":"1","default":"deny","tools":{"retry_task":{"limits":[{"counter":"bench","window":"minute","max":1000000,"scope":"grant"}]}}}"#
    };
    let org = store
        .create_organisation(Actor::Operator, "bench")
        .await?
        .organisation_id;
    let mut tx = store.begin(org).await?;
    let server = store::server::create_server(
        &mut tx,
        Actor::Operator,
        &store::server::NewServer {
            name: "genieacs".into(),
            upstream_url: sim_url.clone(),
            headers: Redacted::new(Vec::new()),
        },
    )
    .await?
    .server_id;
    store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        server,
        "default",
        policy,
        None,
    )
    .await?;
    let minted = store::grant::mint_grant(
        &mut tx,
        Actor::Operator,
        &store::grant::NewGrant {
            server,
            policy_name: "default".into(),
            label: "bench".into(),
            identity: None,
            expires_at: None,
        },
    )
    .await?;
    tx.commit().await?;
    let token = minted.token.expose().clone();

    let gw_port = free_port()?;
    let mut gateway = Killed(
        Command::new(&infra.gatehouse)
            .args(["gateway", "--listen"])
            .arg(format!("127.0.0.1:{gw_port}"))
            .env("DATABASE_URL", &infra.db_url)
            .env("REDIS_URL", &infra.redis_url)
            .env("GATEHOUSE_SECRET_KEY", &key_text)
            .env("GATEHOUSE_AUDIT_STREAM_PREFIX", &infra.stream_prefix)
            .env("GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS", "true")
            .env(
                "GATEHOUSE_PUBLIC_URL",
                format!("http://127.0.0.1:{gw_port}"),
            )
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the gateway")?,
    );
    let mut ingester = Killed(
        Command::new(&infra.gatehouse)
            .arg("ingest")
            .env("DATABASE_URL", &infra.db_url)
            .env("REDIS_URL", &infra.redis_url)
            .env("GATEHOUSE_SECRET_KEY", &key_text)
            .env("GATEHOUSE_AUDIT_STREAM_PREFIX", &infra.stream_prefix)
            .env("GATEHOUSE_INGEST_CONSUMER", "bench")
            .env("GATEHOUSE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the ingester")?,
    );
    let unaudited_port = free_port()?;
    let mut unaudited = Killed(
        Command::new(std::env::current_exe()?)
            .arg("bench-serve-unaudited-gateway")
            .env("BENCH_LISTEN", format!("127.0.0.1:{unaudited_port}"))
            .env("DATABASE_URL", &infra.db_url)
            .env("REDIS_URL", &infra.redis_url)
            .env("GATEHOUSE_SECRET_KEY", &key_text)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the unaudited gateway")?,
    );
    wait_for_port(gw_port, "the gateway").await?;
    wait_for_port(unaudited_port, "the unaudited gateway").await?;

    let nginx_port = free_port()?;
    let nginx_ka_port = free_port()?;
    let nginx_dir = std::env::temp_dir().join(format!("gatehouse-bench-nginx-{nginx_port}"));
    std::fs::create_dir_all(nginx_dir.join("logs"))?;
    let workers = o
        .nginx_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let conf = format!(
        r#"worker_processes {workers};
error_log {dir}/logs/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream sim {{ server 127.0.0.1:{sim_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://127.0.0.1:{sim_port};
        }}
    }}
    server {{
        listen 127.0.0.1:{nginx_ka_port};
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:{sim_port};
            proxy_buffering off;
        }}
    }}
}}
"#,
        dir = nginx_dir.display()
    );
    let conf_path = nginx_dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let nginx = Nginx(
        Command::new(&infra.nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&nginx_dir)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?,
    );
    wait_for_port(nginx_port, "nginx").await?;
    wait_for_port(nginx_ka_port, "nginx").await?;

    // Idle: listening, connected to Postgres and Redis, no request served yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = (gateway.rss_mib(), unaudited.rss_mib());

    // The order of `targets`, `runs`, `latency` and `flat`; the gateway's is `GATEWAY`.
    let targets = [
        Target {
            name: "direct",
            url: sim_url.clone(),
            token: None,
            tag: "direct-",
        },
        Target {
            name: "nginx",
            url: format!("http://127.0.0.1:{nginx_port}/mcp"),
            token: None,
            tag: "nginx-",
        },
        Target {
            name: "nginx-ka",
            url: format!("http://127.0.0.1:{nginx_ka_port}/mcp"),
            token: None,
            tag: "nginx-ka-",
        },
        Target {
            name: "gateway",
            url: format!("http://127.0.0.1:{gw_port}/mcp/{server}"),
            token: Some(token.clone()),
            tag: "gw-",
        },
        Target {
            name: "unaudited",
            url: format!("http://127.0.0.1:{unaudited_port}/mcp/{server}"),
            token: Some(token),
            tag: "unaudited-",
        },
    ];
    let mut runs = Vec::new();
    for target in &targets {
        runs.push(Runner::new(target).await?);
    }
    eprintln!("warming up …");
    for r in &runs {
        r.warm_up().await;
    }

    let rounds = o.seconds.div_ceil(o.slice);
    let slice = Duration::from_secs(o.slice);
    let mut latency: Vec<Samples> = runs.iter().map(|_| Samples::default()).collect();
    let mut backlog = Backlog::new(infra).await?;
    let histograms_before = scrape_histograms(gw_port).await;
    eprintln!(
        "latency at {} req/s: {rounds} rounds of {} s per target …",
        o.rate, o.slice
    );
    for round in 0..rounds as usize {
        for k in 0..runs.len() {
            let i = (round + k) % runs.len();
            let (took, errors) = runs[i].latency_slice(o.rate, slice).await;
            latency[i].latencies.extend(took);
            latency[i].errors += errors;
            if i == GATEWAY {
                // The next target's slice starts without the gateway's ingest still running.
                backlog.drain().await?;
            }
        }
    }
    let inside = match (histograms_before, scrape_histograms(gw_port).await) {
        (Ok(before), Ok(after)) => Ok(after.since(&before)),
        (Err(e), _) | (_, Err(e)) => Err(format!("{e:#}")),
    };
    let mut flat: Vec<(u64, usize)> = vec![(0, 0); runs.len()];
    // After the warm-up every connection to Postgres the gateway and the ingester keep is open.
    let backends: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
    )
    .fetch_all(store.pool())
    .await?;
    let backends = backends
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    let counted = [
        Counted::new("gateway", vec![gateway.0.id()]),
        Counted::new("unaud.", vec![unaudited.0.id()]),
        Counted::new("nginx", children(nginx.0.id())),
        Counted::new("sim", vec![sim.0.id()]),
        Counted::new("client", vec![std::process::id()]),
        Counted::new(
            "redis",
            redis_pid(&infra.redis_url).await.into_iter().collect(),
        ),
        Counted {
            gateway_only: true,
            ..Counted::new("ingester", vec![ingester.0.id()])
        },
        Counted {
            gateway_only: true,
            ..Counted::new("postgres", backends)
        },
    ];
    let mut cpu = vec![vec![0.0_f64; counted.len()]; runs.len()];
    let mut owed = Duration::ZERO;
    let phase_start = cpu_of(&counted);
    eprintln!(
        "throughput with {} connections: {rounds} rounds of {} s per target …",
        o.connections, o.slice
    );
    for round in 0..rounds as usize {
        for k in 0..runs.len() {
            let i = (round + k) % runs.len();
            let before = cpu_of(&counted);
            let (done, errors) = runs[i].throughput_slice(o.connections, slice).await;
            if i == GATEWAY {
                // Calls count as served once their events are stored: the time the ingester
                // still needs after the slice is the gateway's.
                owed += backlog.drain().await?;
            }
            let after = cpu_of(&counted);
            for (sum, (a, b)) in cpu[i].iter_mut().zip(after.iter().zip(before)) {
                *sum += a - b;
            }
            flat[i].0 += done;
            flat[i].1 += errors;
        }
    }
    // What the ingester and Postgres still do for the gateway's last slice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phase: Vec<f64> = cpu_of(&counted)
        .iter()
        .zip(&phase_start)
        .map(|(end, start)| end - start)
        .collect();
    let load_after_speed = load_average();

    eprintln!("opening {} sessions on each gateway …", o.sessions);
    let mut with_sessions = Vec::new();
    let mut kept = Vec::new();
    for (target, process) in [
        (&targets[GATEWAY], &gateway),
        (&targets[GATEWAY + 1], &unaudited),
    ] {
        let (opened, failed, client) = open_sessions(target, o.sessions).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        with_sessions.push((opened, failed, process.rss_mib()));
        kept.push(client);
    }
    drop(kept);
    let ingester_alive = ingester.alive();
    let gateways_alive = gateway.alive() && unaudited.alive();
    let _ = std::fs::remove_dir_all(&nginx_dir);

    let measured = o.slice * rounds;
    let figures: Vec<Figures> = latency
        .iter_mut()
        .zip(&flat)
        .enumerate()
        .map(|(i, (s, &(done, errors)))| {
            s.latencies.sort();
            let took = measured as f64
                + if i == GATEWAY {
                    owed.as_secs_f64()
                } else {
                    0.0
                };
            Figures {
                throughput: done as f64 / took,
                p50_ms: s.pct(0.50),
                p99_ms: s.pct(0.99),
                errors: s.errors + errors,
            }
        })
        .collect();
    let [direct, nginx, nginx_ka, gw, un] = figures[..] else {
        unreachable!("five targets")
    };

    println!(
        "\n== cargo xtask bench gateway: tools/call retry_task, {} cores shared with the load generator; load average before {load_before}, after the speed phases {load_after_speed}, at the end {} ==",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    println!(
        "latency at {} req/s open loop, timed from each request's scheduled send; throughput flat out with {} connections; \
         {rounds} interleaved slices of {} s per target and phase; nginx {workers} worker(s){}",
        o.rate,
        o.connections,
        o.slice,
        if o.no_limits {
            "; --no-limits: no counter consumed"
        } else {
            ""
        }
    );
    println!(
        "\n{:<10} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "target", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "samples", "errors"
    );
    for ((t, f), s) in targets.iter().zip(&figures).zip(&latency) {
        println!(
            "{:<10} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>8}",
            t.name,
            f.throughput,
            f.p50_ms,
            f.p99_ms,
            s.pct(0.999),
            s.latencies.len(),
            f.errors
        );
    }
    // The upstream alone, on loopback, has a narrow spread on a quiet machine: a wide one means
    // the machine itself stalled (other tenants of the host, timer slack), and p99s then say
    // more about when its stalls fell than about the proxies.
    let spread = direct.p99_ms / direct.p50_ms;
    let noisy = spread > NOISY_SPREAD;
    println!(
        "machine noise: direct's p99 is {spread:.1}× its p50{}",
        if noisy {
            " — a noisy run (quiet runs here: 2–3×); its p99 comparisons are not reliable, run again"
        } else {
            " (quiet)"
        }
    );
    let added = |f: Figures| (f.p50_ms - direct.p50_ms, f.p99_ms - direct.p99_ms);
    let (n50, n99) = added(nginx);
    let (k50, k99) = added(nginx_ka);
    let (g50, g99) = added(gw);
    let (u50, u99) = added(un);
    println!("\nadded over direct (p50 / p99 ms):");
    println!(
        "  nginx      {n50:>7.3} / {n99:>7.3}   (defaults: a new upstream connection per request)"
    );
    println!("  nginx-ka   {k50:>7.3} / {k99:>7.3}   (kept-alive upstream connections)");
    println!("  gateway    {g50:>7.3} / {g99:>7.3}   (limiter + audit journal + ingester)");
    println!("  unaudited  {u50:>7.3} / {u99:>7.3}   (durable path off, limiter on)");
    println!(
        "  the durable path costs {:.3} ms p50, {:.3} ms p99, and {:.0} % of the throughput",
        g50 - u50,
        g99 - u99,
        (1.0 - gw.throughput / un.throughput) * 100.0
    );
    println!(
        "  flat out, the ingester stored the last of each gateway slice's events {:.0} ms after it ended, in all \
         (counted in the gateway's time, so its throughput is of calls whose events are stored)",
        owed.as_secs_f64() * 1000.0
    );
    print_inside(&inside);
    print_cpu(&targets, &flat, &counted, &cpu, &phase);
    let ratio = |g: f64, n: f64| if n > 0.0 { g / n } else { f64::INFINITY };
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("\nbudgets (DESIGN.md §11):");
    let r50 = ratio(g50, n50);
    let r99 = ratio(g99, n99);
    let rt = gw.throughput / nginx.throughput;
    println!(
        "  {}  added latency p50: gateway {g50:.3} ms = {r50:.2}× nginx's {n50:.3} ms (≤ 2×; unaudited {:.2}×; against nginx-ka {:.2}×)",
        verdict(r50 <= 2.0),
        ratio(u50, n50),
        ratio(g50, k50)
    );
    println!(
        "  {}  added latency p99: gateway {g99:.3} ms = {r99:.2}× nginx's {n99:.3} ms (≤ 2×; unaudited {:.2}×; against nginx-ka {:.2}×)",
        verdict(r99 <= 2.0),
        ratio(u99, n99),
        ratio(g99, k99)
    );
    if noisy {
        println!("        (a noisy run: see 'machine noise' above)");
    }
    println!(
        "  {}  throughput: gateway {:.0} req/s = {rt:.2}× nginx's {:.0} (≥ 0.5×; unaudited {:.2}×; against nginx-ka {:.2}×)",
        verdict(rt >= 0.5),
        gw.throughput,
        nginx.throughput,
        un.throughput / nginx.throughput,
        gw.throughput / nginx_ka.throughput
    );
    let mib = |m: Option<f64>| m.map_or_else(|| "?".to_owned(), |m| format!("{m:.1} MiB"));
    println!(
        "  {}  RSS idle: gateway {} (≤ 30 MiB; unaudited {})",
        verdict(idle.0.is_some_and(|m| m <= 30.0)),
        mib(idle.0),
        mib(idle.1)
    );
    let (opened, failed, rss) = with_sessions[0];
    println!(
        "  {}  RSS with {opened} sessions open ({failed} failed), each on its own connection: gateway {} (≤ 100 MiB; unaudited {})",
        verdict(failed == 0 && opened >= o.sessions && rss.is_some_and(|m| m <= 100.0)),
        mib(rss),
        mib(with_sessions[1].2)
    );
    if !ingester_alive || !gateways_alive {
        println!("  a gateway or the ingester exited during the run: the figures are not valid");
    }
    Ok(())
}

/// Above this ratio of direct's p99 to its p50 a run counts as noisy.
const NOISY_SPREAD: f64 = 4.0;

/// The gateway's own latency histograms (`/metrics`): cumulative counts per bucket bound.
#[derive(Debug, Default)]
struct Histograms {
    limiter: Vec<(f64, u64)>,
    upstream: Vec<(f64, u64)>,
}

impl Histograms {
    /// What was observed after `before` was scraped.
    fn since(mut self, before: &Histograms) -> Histograms {
        for (now, then) in [
            (&mut self.limiter, &before.limiter),
            (&mut self.upstream, &before.upstream),
        ] {
            for ((_, n), (_, b)) in now.iter_mut().zip(then) {
                *n = n.saturating_sub(*b);
            }
        }
        self
    }
}

async fn scrape_histograms(port: u16) -> anyhow::Result<Histograms> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .error_for_status()?
        .text()
        .await?;
    let buckets = |name: &str| -> Vec<(f64, u64)> {
        let prefix = format!("gatehouse_gateway_{name}_seconds_bucket{{le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix)?.split_once("\"} "))
            .filter_map(|(le, n)| {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n.trim().parse().ok()?))
            })
            .collect()
    };
    let h = Histograms {
        limiter: buckets("limiter_latency"),
        upstream: buckets("upstream_latency"),
    };
    if h.limiter.is_empty() || h.upstream.is_empty() {
        bail!("the gateway's /metrics has no limiter or upstream latency histogram");
    }
    Ok(h)
}

/// The `q` quantile of cumulative `buckets` in ms, interpolated linearly inside its bucket as
/// Prometheus's `histogram_quantile` does; `None` without observations or past the last bound.
fn quantile_ms(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0);
    for &(le, n) in buckets {
        if n as f64 >= rank {
            if le.is_infinite() {
                return None;
            }
            let within = (rank - lower.1 as f64) / (n - lower.1).max(1) as f64;
            return Some((lower.0 + (le - lower.0) * within) * 1000.0);
        }
        lower = (le, n);
    }
    None
}

/// Where the gateway's own time goes in the latency phase: its two round trips, as its
/// histograms saw them (bucket bounds a factor 2 apart, so the figures are rough).
fn print_inside(inside: &Result<Histograms, String>) {
    println!(
        "\ninside the gateway over the latency phase (its /metrics histograms, factor-2 buckets interpolated):"
    );
    let h = match inside {
        Ok(h) => h,
        Err(e) => {
            println!("  not available: {e}");
            return;
        }
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.3}"));
    for (what, b) in [
        ("limiter round trip (with the write-ahead)", &h.limiter),
        ("upstream until its answer's head", &h.upstream),
    ] {
        println!(
            "  {what:<42} p50 {} ms, p99 {} ms ({} calls)",
            ms(quantile_ms(b, 0.50)),
            ms(quantile_ms(b, 0.99)),
            b.last().map_or(0, |l| l.1)
        );
    }
}

/// CPU per call flat out, by process: each process's CPU during a target's slices divided by the
/// calls those slices served; for a [`Counted::gateway_only`] one, all it used over the phase
/// (`phase`) divided by the gateway's calls.
fn print_cpu(
    targets: &[Target],
    flat: &[(u64, usize)],
    counted: &[Counted],
    cpu: &[Vec<f64>],
    phase: &[f64],
) {
    let found = |name: &str| {
        counted
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.pids.len())
    };
    println!(
        "\nCPU per call flat out (µs, from /proc; Redis: {}; Postgres: {} backend(s) of the bench database):",
        if found("redis") == 0 {
            "not on this machine, not counted"
        } else {
            "the server"
        },
        found("postgres")
    );
    let mut header = format!("  {:<10}", "target");
    for c in counted {
        header.push_str(&format!(" {:>8}", c.name));
    }
    println!("{header} {:>8}", "total");
    for (i, t) in targets.iter().enumerate() {
        let calls = flat[i].0.max(1) as f64;
        let mut row = format!("  {:<10}", t.name);
        let mut total = 0.0;
        for (p, c) in counted.iter().enumerate() {
            let secs = match (c.gateway_only, t.name == "gateway") {
                (false, _) => cpu[i][p],
                (true, true) => phase[p],
                (true, false) => 0.0,
            };
            let us = secs * 1e6 / calls;
            total += us;
            row.push_str(&format!(" {us:>8.0}"));
        }
        println!("{row} {total:>8.0}");
    }
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: usize,
}

impl Samples {
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        self.latencies[i].as_secs_f64() * 1000.0
    }
}

/// Ids of calls, unique over the run.
static NEXT_ID: AtomicU64 = AtomicU64::new(1_000);

/// One target's client, session and call headers.
struct Runner {
    client: reqwest::Client,
    url: Arc<str>,
    headers: Arc<reqwest::header::HeaderMap>,
    tag: &'static str,
}

impl Runner {
    async fn new(target: &Target) -> anyhow::Result<Runner> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()?;
        let headers = Arc::new(session_headers(&client, target).await?);
        Ok(Runner {
            client,
            url: target.url.as_str().into(),
            headers,
            tag: target.tag,
        })
    }

    async fn warm_up(&self) {
        for _ in 0..200 {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            call(&self.client, &self.url, &self.headers, self.tag, id).await;
        }
    }

    /// `rate` req/s for `length`, open loop; each call timed from its scheduled send.
    async fn latency_slice(&self, rate: u64, length: Duration) -> (Vec<Duration>, usize) {
        let (took, errors, _) = open_loop(
            &self.client,
            &self.url,
            &self.headers,
            self.tag,
            rate,
            length,
        )
        .await;
        (took, errors)
    }

    /// Closed loops on `connections` for `length`: calls answered, and how many failed.
    async fn throughput_slice(&self, connections: usize, length: Duration) -> (u64, usize) {
        closed_loop(
            &self.client,
            &self.url,
            &self.headers,
            self.tag,
            connections,
            length,
        )
        .await
    }
}

/// Sends `rate` calls per second for `length` from a pacer thread (the OS timer, not Tokio's
/// millisecond wheel), each at its scheduled instant, and times each from that instant to the end
/// of its answer, so a stall anywhere delays the timings of the calls it held up. Returns the
/// latencies, the failures, and the pacer's worst lateness.
async fn open_loop(
    client: &reqwest::Client,
    url: &Arc<str>,
    headers: &Arc<reqwest::header::HeaderMap>,
    tag: &'static str,
    rate: u64,
    length: Duration,
) -> (Vec<Duration>, usize, Duration) {
    let total = (rate as f64 * length.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = tokio::runtime::Handle::current();
    let (client, url, headers) = (client.clone(), url.clone(), headers.clone());
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(2);
        let mut worst = Duration::ZERO;
        for i in 0..total {
            let scheduled = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            worst = worst.max(Instant::now().saturating_duration_since(scheduled));
            let (client, url, headers, tx) =
                (client.clone(), url.clone(), headers.clone(), tx.clone());
            handle.spawn(async move {
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let ok = call(&client, &url, &headers, tag, id).await;
                let _ = tx.send((ok, scheduled.elapsed()));
            });
        }
        worst
    });
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0;
    for _ in 0..total {
        let Some((ok, took)) = rx.recv().await else {
            break;
        };
        errors += usize::from(!ok);
        latencies.push(took);
    }
    let worst = tokio::task::spawn_blocking(move || pacer.join().unwrap_or_default())
        .await
        .unwrap_or_default();
    (latencies, errors, worst)
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &Arc<str>,
    headers: &Arc<reqwest::header::HeaderMap>,
    tag: &'static str,
    connections: usize,
    length: Duration,
) -> (u64, usize) {
    let deadline = Instant::now() + length;
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, url, headers) = (client.clone(), url.clone(), headers.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut failed = 0usize;
            while Instant::now() < deadline {
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                if !call(&client, &url, &headers, tag, id).await {
                    failed += 1;
                }
                n += 1;
            }
            (n, failed)
        }));
    }
    let mut done = 0u64;
    let mut errors = 0;
    for w in workers {
        if let Ok((n, failed)) = w.await {
            done += n;
            errors += failed;
        }
    }
    (done, errors)
}

/// Opens `n` sessions on `target` at once, each on its own connection, and returns the client
/// holding those connections open.
async fn open_sessions(
    target: &Target,
    n: usize,
) -> anyhow::Result<(usize, usize, reqwest::Client)> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(n)
        .pool_idle_timeout(Duration::from_secs(300))
        .build()?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let client = client.clone();
        let target = Target {
            name: target.name,
            url: target.url.clone(),
            token: target.token.clone(),
            tag: target.tag,
        };
        tasks.push(tokio::spawn(async move {
            session_headers(&client, &target).await.is_ok()
        }));
    }
    let mut opened = 0;
    for t in tasks {
        if t.await.unwrap_or(false) {
            opened += 1;
        }
    }
    Ok((opened, n - opened, client))
}

/// Opens a session on `target` and returns the headers every call carries.
pub(crate) async fn session_headers(
    client: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("content-type", "application/json".parse()?);
    headers.insert("accept", "application/json, text/event-stream".parse()?);
    if let Some(token) = &target.token {
        headers.insert("authorization", format!("Bearer {token}").parse()?);
    }
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
    let response = client
        .post(&target.url)
        .headers(headers.clone())
        .body(init)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{}: initialize answered {}", target.name, response.status());
    }
    let session = response
        .headers()
        .get("mcp-session-id")
        .context("no session id")?
        .clone();
    response.bytes().await?;
    headers.insert("mcp-session-id", session);
    headers.insert("mcp-protocol-version", "2025-11-25".parse()?);
    client
        .post(&target.url)
        .headers(headers.clone())
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await?
        .bytes()
        .await?;
    Ok(headers)
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    tag: &str,
    id: u64,
) -> bool {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"{tag}{id}"}}}}}}"#
    );
    match client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let ok = r.status().is_success();
            match r.bytes().await {
                Ok(b) => ok && !b.windows(15).any(|w| w == b"[POLICY DENIED]"),
                Err(_) => false,
            }
        }
        Err(_) => false,
    }
}

/// Latency at `rate` req/s (open loop, each call timed from its scheduled send) for `seconds`,
/// then throughput with `connections` closed loops for `seconds`: one target on its own (the
/// load harness's phases).
pub(crate) async fn measure(
    seconds: u64,
    rate: u64,
    connections: usize,
    target: &Target,
) -> anyhow::Result<Figures> {
    let runner = Runner::new(target).await?;
    runner.warm_up().await;
    let length = Duration::from_secs(seconds);
    let (took, errors) = runner.latency_slice(rate, length).await;
    let mut samples = Samples {
        latencies: took,
        errors,
    };
    samples.latencies.sort();
    let (done, failed) = runner.throughput_slice(connections, length).await;
    Ok(Figures {
        throughput: done as f64 / seconds as f64,
        p50_ms: samples.pct(0.50),
        p99_ms: samples.pct(0.99),
        errors: samples.errors + failed,
    })
}

/// `xtask bench-serve-unaudited-gateway`: the bench's gateway with its durable path off. Serves
/// `/mcp/{server_id}` on `BENCH_LISTEN` over the store at `DATABASE_URL` and the limiter at
/// `REDIS_URL`, like `gatehouse gateway` with its defaults, but with
/// [`audit::Journal::unaudited_benchmark_only`]: nothing is audited. Only the bench starts it.
pub(crate) fn serve_unaudited() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let listen: std::net::SocketAddr = env("BENCH_LISTEN")?.parse()?;
    let (database_url, redis_url, key_text) = (
        env("DATABASE_URL")?,
        env("REDIS_URL")?,
        env("GATEHOUSE_SECRET_KEY")?,
    );
    // The same runtime as `gatehouse gateway`: one worker per core.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let secret = base64::engine::general_purpose::STANDARD.decode(key_text.trim())?;
        let key = SealingKey::from_base64(1, &key_text).map_err(anyhow::Error::msg)?;
        let store = Store::connect_with_statement_timeout(
            &database_url,
            Keyring::new(key),
            Duration::from_secs(2),
        )
        .await?;
        let limiter: limits::Limiter =
            limits::RedisLimiter::connect(&redis_url, limits::RedisConfig::default())
                .await?
                .into();
        let mut settings = gateway::Settings::local();
        settings.allow_private_upstreams = true;
        let gateway = gateway::Gateway::new(
            settings,
            store,
            limiter,
            mcp::session::SessionKey::derive(&secret),
            audit::Journal::unaudited_benchmark_only(),
            Some(redis::Client::open(redis_url.as_str())?),
        )?;
        gateway.spawn_invalidation_listener();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        gateway::serve(listener, gateway).await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::quantile_ms;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        // 100 observations: 50 up to 0.1 ms, 40 more up to 0.2 ms, the last 10 up to 0.4 ms.
        let b = [
            (0.0001, 50),
            (0.0002, 90),
            (0.0004, 100),
            (f64::INFINITY, 100),
        ];
        let near = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
        assert!(near(quantile_ms(&b, 0.50), 0.1));
        assert!(near(quantile_ms(&b, 0.70), 0.15));
        assert!(near(quantile_ms(&b, 0.99), 0.38));
        assert_eq!(quantile_ms(&[(0.0001, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(quantile_ms(&[(0.0001, 0), (f64::INFINITY, 5)], 0.5), None);
    }
}

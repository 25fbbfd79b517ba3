//! `cargo xtask bench gateway`: `tools/call` against the GenieACS simulator directly, through the
//! gateway (limits and audit on: every call consumes a Redis counter and emits an audit event),
//! and through nginx as a plain reverse proxy, in one run. Prints throughput (flat out, closed
//! loop) and p50/p99 latency at a fixed 500 req/s (open loop, each request timed from its send), then the latency each proxy adds over direct and the ratios DESIGN.md §11
//! budgets: the gateway's added latency ≤ 2× nginx's at p50 and p99, throughput ≥ 0.5× nginx's.
//!
//! Everything runs on this machine: release binaries of `gatehouse` (simulator in `--cheap` mode,
//! gateway), Debian's nginx, Postgres at `DATABASE_URL` (a scratch database, dropped afterwards),
//! Redis at `REDIS_URL`. The load generator shares the cores with them, as the budgets assume.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::secret::{Keyring, Redacted, SealingKey};
use store::{Actor, Store};

/// Options of `cargo xtask bench gateway`.
#[derive(Debug)]
pub(crate) struct Options {
    seconds: u64,
    rate: u64,
    connections: usize,
    no_limits: bool,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Options> {
        let mut o = Options {
            seconds: 10,
            rate: 500,
            connections: 32,
            no_limits: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().context("a value after the flag");
            match *arg {
                "--seconds" => o.seconds = value()?.parse().context("--seconds")?,
                "--rate" => o.rate = value()?.parse().context("--rate")?,
                "--connections" => o.connections = value()?.parse().context("--connections")?,
                "--no-limits" => o.no_limits = true,
                other => bail!(
                    "unknown option `{other}` (--seconds N, --rate N, --connections N, --no-limits)"
                ),
            }
        }
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn wait_for_port(port: u16, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(20) {
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
    eprintln!("building release binaries …");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "gatehouse"])
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p gatehouse failed");
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
    let db_name = format!("gatehouse_bench_gateway_{}", uuid::Uuid::new_v4().simple());
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
    let result = bench(&o, &gatehouse, &nginx, &db_url, &redis_url).await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "drop database {db_name} with (force)"
        )))
        .await?;
    result
}

async fn bench(
    o: &Options,
    gatehouse: &Path,
    nginx: &Path,
    db_url: &str,
    redis_url: &str,
) -> anyhow::Result<()> {
    // A throwaway deployment secret: 32 random bytes, base64, as GATEHOUSE_SECRET_KEY takes it.
    let secret: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| u.into_bytes())
        .collect();
    let key_text = base64::engine::general_purpose::STANDARD.encode(&secret);
    let key = SealingKey::from_base64(1, &key_text).map_err(anyhow::Error::msg)?;
    let store = Store::connect(db_url, Keyring::new(key)).await?;
    store.migrate().await?;

    let sim_port = free_port()?;
    let _sim = Killed(
        Command::new(gatehouse)
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
    let _gateway = Killed(
        Command::new(gatehouse)
            .args(["gateway", "--listen"])
            .arg(format!("127.0.0.1:{gw_port}"))
            .env("DATABASE_URL", db_url)
            .env("REDIS_URL", redis_url)
            .env("GATEHOUSE_SECRET_KEY", &key_text)
            .env("GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS", "true")
            .env(
                "GATEHOUSE_PUBLIC_URL",
                format!("http://127.0.0.1:{gw_port}"),
            )
            // Audit on: one event per call through the log sink (issue 6 makes it durable).
            .env("GATEHOUSE_LOG", "warn,gatehouse::audit=info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the gateway")?,
    );
    wait_for_port(gw_port, "the gateway").await?;

    let nginx_port = free_port()?;
    let nginx_dir = std::env::temp_dir().join(format!("gatehouse-bench-nginx-{nginx_port}"));
    std::fs::create_dir_all(nginx_dir.join("logs"))?;
    let conf = format!(
        r#"worker_processes 1;
error_log {dir}/logs/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
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
    let _nginx = Killed(
        Command::new(nginx)
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
            name: "gateway",
            url: format!("http://127.0.0.1:{gw_port}/mcp/{server}"),
            token: Some(token),
            tag: "gw-",
        },
    ];
    let mut figures = Vec::new();
    for target in &targets {
        eprintln!("measuring {} …", target.name);
        figures.push((
            target.name,
            measure(o.seconds, o.rate, o.connections, target).await?,
        ));
    }
    let _ = std::fs::remove_dir_all(&nginx_dir);

    println!(
        "\ntools/call retry_task, {} s per phase; latency at {} req/s (open loop), throughput with {} connections (closed loop)\n",
        o.seconds, o.rate, o.connections
    );
    println!(
        "{:<8} {:>12} {:>10} {:>10} {:>8}",
        "target", "req/s", "p50 ms", "p99 ms", "errors"
    );
    for (name, f) in &figures {
        println!(
            "{name:<8} {:>12.0} {:>10.3} {:>10.3} {:>8}",
            f.throughput, f.p50_ms, f.p99_ms, f.errors
        );
    }
    let get = |n: &str| figures.iter().find(|(name, _)| *name == n).map(|(_, f)| *f);
    let (direct, nginx, gateway) = (
        get("direct").expect("direct"),
        get("nginx").expect("nginx"),
        get("gateway").expect("gateway"),
    );
    let added = |f: Figures| (f.p50_ms - direct.p50_ms, f.p99_ms - direct.p99_ms);
    let (n50, n99) = added(nginx);
    let (g50, g99) = added(gateway);
    println!(
        "\nadded over direct: nginx p50 {n50:.3} ms, p99 {n99:.3} ms; gateway p50 {g50:.3} ms, p99 {g99:.3} ms"
    );
    let ratio = |g: f64, n: f64| if n > 0.0 { g / n } else { f64::INFINITY };
    println!(
        "gateway/nginx added latency: p50 {:.2}×, p99 {:.2}× (budget ≤ 2×)",
        ratio(g50, n50),
        ratio(g99, n99)
    );
    println!(
        "gateway/nginx throughput: {:.2}× (budget ≥ 0.5×)",
        gateway.throughput / nginx.throughput
    );
    Ok(())
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

/// Latency at `rate` req/s (open loop) for `seconds`, then throughput with `connections` closed
/// loops for `seconds`.
pub(crate) async fn measure(
    seconds: u64,
    rate: u64,
    connections: usize,
    target: &Target,
) -> anyhow::Result<Figures> {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()?;
    let headers = Arc::new(session_headers(&client, target).await?);
    let url: Arc<str> = target.url.as_str().into();

    // Warm up: connections, caches.
    for id in 0..200 {
        call(&client, &url, &headers, target.tag, id).await;
    }

    // Latency at a fixed rate, each request timed from its scheduled start.
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (client, url, headers, tag) =
            (client.clone(), url.clone(), headers.clone(), target.tag);
        // Timed from the moment it is sent: the timer's millisecond granularity would otherwise
        // dominate sub-millisecond latencies. At this rate nothing queues in the client.
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = call(&client, &url, &headers, tag, 1_000 + i).await;
            (ok, sent.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (ok, took) = t.await?;
        if !ok {
            errors += 1;
        }
        latencies.push(took);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    let (p50_ms, p99_ms) = (pct(0.50), pct(0.99));

    // Throughput flat out.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..connections {
        let (client, url, headers, tag) =
            (client.clone(), url.clone(), headers.clone(), target.tag);
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut failed = 0usize;
            while Instant::now() < deadline {
                if !call(
                    &client,
                    &url,
                    &headers,
                    tag,
                    10_000_000 * (w as u64 + 1) + n,
                )
                .await
                {
                    failed += 1;
                }
                n += 1;
            }
            (n, failed)
        }));
    }
    let mut done = 0u64;
    for w in workers {
        let (n, failed) = w.await?;
        done += n;
        errors += failed;
    }
    Ok(Figures {
        throughput: done as f64 / seconds as f64,
        p50_ms,
        p99_ms,
        errors,
    })
}

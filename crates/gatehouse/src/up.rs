//! `gatehouse up`: everything in one process for a laptop. Without `DATABASE_URL` it runs a
//! private PostgreSQL from the machine's own server binaries; without `GATEHOUSE_SECRET_KEY` it
//! makes one and keeps it in the data folder; it applies the migrations and runs the gateway.
//! With `--demo` it also runs the GenieACS demo upstream and registers it, with a starter policy
//! and a grant, and prints how to call a tool through the proxy. The admin web app and the audit
//! ingester run beside the gateway: without `REDIS_URL` the gateway writes its events ahead into
//! Postgres's `audit_outbox` and the ingester moves them into the audit log from there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::secret::{Redacted, SealingKey};
use store::{Actor, GrantId, OrgId, ServerId, Store};

use crate::audit_cmd::Ingest;
use crate::config::{self, Problems};
use crate::gateway_cmd::{self, GatewayArgs};
use crate::local_pg::LocalPostgres;

/// Options of `gatehouse up`: the gateway's, plus where to keep local state and the demo.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Also run the GenieACS demo upstream, registered with a starter policy and a grant.
    #[arg(long)]
    demo: bool,
    /// Where `up` keeps its private database, generated secret key and demo credentials.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = ".gatehouse")]
    data_dir: PathBuf,
    /// Address of the admin web app.
    #[arg(long, env = "GATEHOUSE_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Address of the GenieACS demo upstream (with --demo).
    #[arg(
        long,
        env = "GATEHOUSE_DEMO_UPSTREAM_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    demo_upstream_listen: SocketAddr,
}

const STARTER_POLICY: &str = include_str!("demo-policy.json");

pub(crate) fn run(args: UpArgs) -> ExitCode {
    gateway_cmd::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(up(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(mut args: UpArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data folder {}", args.data_dir.display()))?;
    let mut local_pg = None;
    if args
        .gateway
        .store
        .database_url
        .as_deref()
        .is_none_or(|u| u.trim().is_empty())
    {
        eprintln!(
            "gatehouse: DATABASE_URL is not set; running a private PostgreSQL in {}",
            args.data_dir.join("postgres").display()
        );
        let pg = LocalPostgres::start(&args.data_dir).await?;
        args.gateway.store.database_url = Some(pg.database_url());
        local_pg = Some(pg);
    }
    // On a laptop the upstreams (the demo one included) live on loopback or the local network.
    args.gateway.allow_private_upstreams = true;
    if args
        .gateway
        .secrets
        .secret_key
        .as_deref()
        .is_none_or(|k| k.trim().is_empty())
    {
        args.gateway.secrets.secret_key = Some(local_secret_key(&args.data_dir)?);
    }

    let outcome = run_everything(&args).await;
    if let Some(pg) = local_pg
        && let Err(e) = pg.stop().await
    {
        eprintln!("gatehouse: could not stop the private PostgreSQL: {e:#}");
    }
    outcome
}

async fn run_everything(args: &UpArgs) -> Result<ExitCode> {
    let mut problems = Problems::default();
    let keyring = config::keyring(&args.gateway.secrets, true, &mut problems);
    let public_url = config::public_url(&args.gateway.public, &mut problems);
    if !problems.0.is_empty() {
        for p in &problems.0 {
            eprintln!("error: configuration: {p}");
        }
        return Ok(ExitCode::from(2));
    }
    let (keyring, public_url) = (keyring.expect("checked"), public_url.expect("checked"));
    let database_url = args.gateway.store.database_url.clone().expect("set by up");
    let store = Store::connect(&database_url, keyring)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;

    let mut tasks = tokio::task::JoinSet::new();
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin web app to {}", args.admin_listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let mut admin_config = admin::AdminConfig::for_public_url(&public_url, true);
    admin_config.redis = match args
        .gateway
        .store
        .redis_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => Some(redis::Client::open(url).context("REDIS_URL")?),
        None => None,
    };
    admin_config.approval_channel = args.gateway.approval_channel.trim().to_owned();
    let demo = if args.demo {
        let upstream = start_demo_upstream(args, &mut tasks).await?;
        Some(seed_demo(&store, &args.data_dir, &upstream).await?)
    } else {
        None
    };

    let (gateway, listener) = match gateway_cmd::prepare(args.gateway.clone()).await? {
        Ok(ready) => ready,
        Err(code) => return Ok(code),
    };
    let gateway_addr = listener.local_addr()?;
    // One process: a decision in the admin app wakes the calls this gateway holds at once,
    // with or without Redis.
    let signal = gateway.approval_signal();
    admin_config.on_approval_decided = Some(std::sync::Arc::new(move || signal.notify()));
    let admin_state = admin::AppState::new(store.clone(), admin_config);
    tasks.spawn(async move {
        admin::serve(admin_listener, admin_state)
            .await
            .context("serving the admin web app")
    });
    let drain = Duration::from_millis(args.gateway.shutdown_drain_ms);
    let (stop_gateway, gateway_stop) = tokio::sync::oneshot::channel::<()>();
    let mut gateway_task = tokio::spawn(async move {
        let stop = async {
            let _ = gateway_stop.await;
        };
        gateway::serve_until(listener, gateway, stop, drain)
            .await
            .context("serving the gateway")
    });
    let ingest = Ingest {
        redis: args
            .gateway
            .store
            .redis_url
            .clone()
            .filter(|u| !u.trim().is_empty()),
        workers: 1,
        config: audit::IngestConfig {
            stream: args.gateway.audit.config(Duration::from_secs(5)),
            consumer: format!("up-{}", std::process::id()),
            ..audit::IngestConfig::default()
        },
    };
    let ingest_store = store.clone();
    tasks.spawn(async move {
        ingest
            .run(ingest_store, std::future::pending())
            .await
            .context("ingesting audit events")
    });

    print_banner(
        &public_url,
        gateway_addr,
        admin_addr,
        demo.as_ref(),
        args.demo_upstream_listen,
    );

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            eprintln!("gatehouse: stopping: finishing the calls in flight (Ctrl-C again to stop now)");
            let _ = stop_gateway.send(());
            tokio::select! {
                stopped = gateway_task => stopped.context("the gateway panicked")??,
                _ = tokio::signal::ctrl_c() => eprintln!("gatehouse: stopping now"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ended = &mut gateway_task => match ended {
            Ok(Ok(())) => bail!("the gateway stopped unexpectedly"),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e).context("the gateway panicked"),
        },
        Some(ended) = tasks.join_next() => {
            match ended {
                Ok(Ok(())) => bail!("a component stopped unexpectedly"),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(e).context("a component panicked"),
            }
        }
    }
}

/// The secret key `up` keeps for local use: generated once, readable only by its owner.
fn local_secret_key(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("secret-key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    let key = SealingKey::generate_secret_base64();
    write_private(&path, &key)?;
    eprintln!(
        "gatehouse: GATEHOUSE_SECRET_KEY is not set; generated one in {}",
        path.display()
    );
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The running demo upstream: where it listens and the token it requires.
struct DemoUpstream {
    url: String,
    token: String,
}

async fn start_demo_upstream(
    args: &UpArgs,
    tasks: &mut tokio::task::JoinSet<Result<()>>,
) -> Result<DemoUpstream> {
    // The upstream demands its own bearer token, so the demo shows the gateway injecting the
    // server's credentials (and never forwarding the agent's grant token).
    let token = match std::fs::read_to_string(args.data_dir.join("demo-upstream-token")) {
        Ok(t) => t.trim().to_owned(),
        Err(_) => {
            let t = format!(
                "acs_{}",
                SealingKey::generate_secret_base64().trim_end_matches('=')
            );
            write_private(&args.data_dir.join("demo-upstream-token"), &t)?;
            t
        }
    };
    let config = genieacs_sim::SimConfig {
        auth_token: Some(token.clone()),
        ..genieacs_sim::SimConfig::default()
    };
    let state = genieacs_sim::SimState::new(config)?;
    let listener = tokio::net::TcpListener::bind(args.demo_upstream_listen)
        .await
        .with_context(|| format!("binding the demo upstream to {}", args.demo_upstream_listen))?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    tasks.spawn(genieacs_sim::serve(listener, state));
    Ok(DemoUpstream { url, token })
}

/// What the demo registered, kept in the data folder so the next `up` reuses it.
#[derive(Debug, Serialize, Deserialize)]
struct Demo {
    organisation_id: OrgId,
    server_id: ServerId,
    grant_id: GrantId,
    upstream_url: String,
    token: String,
}

async fn seed_demo(store: &Store, data_dir: &Path, upstream: &DemoUpstream) -> Result<Demo> {
    let path = data_dir.join("demo.json");
    if let Some(demo) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Demo>(&t).ok())
    {
        let live = store.grant_by_token(&demo.token).await?.is_some_and(|g| {
            g.is_active(time::OffsetDateTime::now_utc()) && g.server_id == demo.server_id
        });
        if live && demo.upstream_url == upstream.url {
            return Ok(demo);
        }
    }

    let org = store.create_organisation(Actor::Operator, "Demo").await?;
    let mut tx = store.begin(org.organisation_id).await?;
    let server = store::server::create_server(
        &mut tx,
        Actor::Operator,
        &store::server::NewServer {
            name: format!("genieacs-demo-{}", &org.organisation_id.to_string()[..8]),
            upstream_url: upstream.url.clone(),
            headers: Redacted::new(vec![(
                "Authorization".to_owned(),
                format!("Bearer {}", upstream.token),
            )]),
        },
    )
    .await?;
    let definitions = demo_tool_definitions();
    let tools: Vec<policy::ToolDef> = definitions
        .iter()
        .map(|d| serde_json::from_value(d.clone()))
        .collect::<Result<_, _>>()
        .context("reading the demo upstream's tools")?;
    let pinned = definitions
        .iter()
        .zip(&tools)
        .map(|(definition, tool)| {
            let risk = policy::classify(tool);
            store::server::PinnedTool::new(
                definition.clone(),
                risk.class,
                serde_json::to_value(&risk.signals).unwrap_or(Value::Null),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    store::server::pin_tool_snapshot(&mut tx, Actor::Operator, server.server_id, &pinned).await?;
    policy::Policy::parse(STARTER_POLICY, Some(&tools))
        .map_err(|d| anyhow::anyhow!("the starter policy is invalid:\n{d}"))?;
    store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        server.server_id,
        "default",
        STARTER_POLICY,
        Some("starter policy from gatehouse up --demo"),
    )
    .await?;
    let minted = store::grant::mint_grant(
        &mut tx,
        Actor::Operator,
        &store::grant::NewGrant {
            server: server.server_id,
            policy_name: "default".to_owned(),
            label: "demo-agent".to_owned(),
            identity: None,
            expires_at: None,
        },
    )
    .await?;
    tx.commit().await?;
    let demo = Demo {
        organisation_id: org.organisation_id,
        server_id: server.server_id,
        grant_id: minted.grant.grant_id,
        upstream_url: upstream.url.clone(),
        token: minted.token.expose().clone(),
    };
    write_private(&path, &serde_json::to_string_pretty(&demo)?)?;
    Ok(demo)
}

/// The demo upstream's tools as its `tools/list` answers them.
fn demo_tool_definitions() -> Vec<Value> {
    genieacs_sim::tools::list_result(&Default::default())["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn print_banner(
    public_url: &str,
    gateway: SocketAddr,
    admin: SocketAddr,
    demo: Option<&Demo>,
    upstream: SocketAddr,
) {
    println!();
    println!("  Gatehouse is running.");
    println!();
    println!("  Gateway          {public_url}   (listening on {gateway})");
    println!(
        "  Admin            http://{admin}/signup   (sign up, register servers, mint grants, read the audit log)"
    );
    println!("  Health           {public_url}/healthz   {public_url}/metrics");
    if let Some(demo) = demo {
        let proxy = format!("{public_url}/mcp/{}", demo.server_id);
        println!("  Demo upstream    http://{upstream}/mcp   (simulated GenieACS, 50 devices)");
        println!("  Proxy URL        {proxy}");
        println!("  Grant token      Authorization: Bearer {}", demo.token);
        println!();
        println!("  Call a tool through the proxy:");
        println!(
            "    npx -y @modelcontextprotocol/inspector@2.12.0 --cli {proxy} --transport http \\\n      --header \"Authorization: Bearer {}\" --method tools/call --tool-name get_parameter \\\n      --tool-arg device_id=00236A-SmartRG585-SMRT00236a42 --tool-arg parameter_path=InternetGatewayDevice.DeviceInfo.SoftwareVersion",
            demo.token
        );
        println!();
        println!(
            "  Client config:   {{\"mcpServers\":{{\"genieacs\":{{\"url\":\"{proxy}\",\"headers\":{{\"Authorization\":\"Bearer {}\"}}}}}}}}",
            demo.token
        );
    }
    println!();
    println!("  Stop with Ctrl-C.");
    println!();
}

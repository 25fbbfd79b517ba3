//! `gatehouse gateway`: one gateway replica. Every flag is also an environment variable; every bad
//! value is reported by its name before anything starts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;

use crate::audit_cmd::StreamArgs;
use crate::config::{self, Problems};
use crate::{PublicUrlArgs, SecretArgs, StoreArgs};

/// Options of `gatehouse gateway`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
    #[command(flatten)]
    pub(crate) public: PublicUrlArgs,
    #[command(flatten)]
    pub(crate) audit: StreamArgs,
    /// Extra host names the gateway answers to (comma-separated; `*` for any). Localhost names
    /// and the public URL's host are always allowed.
    #[arg(long, env = "GATEHOUSE_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Browser origins allowed besides those on allowed hosts (comma-separated; `*` for any).
    #[arg(long, env = "GATEHOUSE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Largest request body, in bytes.
    #[arg(long, env = "GATEHOUSE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest upstream JSON answer the gateway reads, in bytes.
    #[arg(long, env = "GATEHOUSE_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_response_bytes: usize,
    /// Upstream connect timeout, in milliseconds.
    #[arg(
        long,
        env = "GATEHOUSE_UPSTREAM_CONNECT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    upstream_connect_timeout_ms: u64,
    /// Upstream response timeout (headers, and a whole JSON body), in milliseconds.
    #[arg(long, env = "GATEHOUSE_UPSTREAM_TIMEOUT_MS", default_value_t = 30_000)]
    upstream_timeout_ms: u64,
    /// How long cached configuration is trusted without an invalidation, in milliseconds
    /// (default 5000 with Redis, 1000 without, so changes still show within a second).
    #[arg(long, env = "GATEHOUSE_CONFIG_TTL_MS")]
    config_ttl_ms: Option<u64>,
    /// Allow upstreams on loopback and private networks (self-hosted GenieACS usually lives on
    /// one). Link-local and cloud-metadata addresses are refused regardless.
    #[arg(long, env = "GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS")]
    pub(crate) allow_private_upstreams: bool,
    /// Most SSE streams (GET streams and requests answered with a stream) open at once on this
    /// replica.
    #[arg(long, env = "GATEHOUSE_MAX_STREAMS", default_value_t = 1000)]
    max_streams: usize,
    /// Most SSE streams one organisation may hold open at once on this replica.
    #[arg(long, env = "GATEHOUSE_MAX_STREAMS_PER_ORG", default_value_t = 100)]
    max_streams_per_org: usize,
    /// A GET stream silent this long (in milliseconds) is ended; the client resumes it.
    #[arg(
        long,
        env = "GATEHOUSE_STREAM_IDLE_TIMEOUT_MS",
        default_value_t = 300_000
    )]
    stream_idle_timeout_ms: u64,
    /// The longest any SSE stream stays open, in milliseconds.
    #[arg(
        long,
        env = "GATEHOUSE_STREAM_MAX_LIFETIME_MS",
        default_value_t = 3_600_000
    )]
    stream_max_lifetime_ms: u64,
    /// Most bytes of request bodies and upstream JSON answers held in memory at once.
    #[arg(long, env = "GATEHOUSE_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_buffered_bytes: usize,
    /// How long a client may take to send a request body, in milliseconds (408 beyond).
    #[arg(long, env = "GATEHOUSE_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    body_timeout_ms: u64,
    /// On SIGTERM or Ctrl-C, how long the requests in flight get to finish before the gateway
    /// writes the audit outcomes still queued and exits, in milliseconds.
    #[arg(long, env = "GATEHOUSE_SHUTDOWN_DRAIN_MS", default_value_t = 20_000)]
    pub(crate) shutdown_drain_ms: u64,
    /// How long an unknown, revoked or expired token is remembered as such, in milliseconds.
    #[arg(long, env = "GATEHOUSE_UNKNOWN_TOKEN_TTL_MS", default_value_t = 10_000)]
    unknown_token_ttl_ms: u64,
    /// Invalid tokens one client address (IPv6: its /64) may present per minute before its
    /// uncached lookups get 429 (0: no limit; raise it behind a load balancer).
    #[arg(long, env = "GATEHOUSE_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    auth_failures_per_minute: u32,
    /// Postgres statement timeout of the gateway's connections, in milliseconds: a slow query
    /// gives its connection back instead of holding it.
    #[arg(long, env = "GATEHOUSE_STATEMENT_TIMEOUT_MS", default_value_t = 2_000)]
    statement_timeout_ms: u64,
    /// The Redis channel approval decisions are announced on (with REDIS_URL).
    #[arg(
        long,
        env = "GATEHOUSE_APPROVAL_CHANNEL",
        default_value = gateway::DEFAULT_APPROVAL_CHANNEL
    )]
    pub(crate) approval_channel: String,
    /// How often a held call re-reads its approval whatever the announcements say, in
    /// milliseconds (a lost announcement costs at most this).
    #[arg(long, env = "GATEHOUSE_APPROVAL_POLL_MS", default_value_t = 1_000)]
    approval_poll_ms: u64,
    /// How often a held call answered on SSE is sent a progress notification, in milliseconds.
    #[arg(long, env = "GATEHOUSE_APPROVAL_KEEPALIVE_MS", default_value_t = 5_000)]
    approval_keepalive_ms: u64,
    /// The longest a call is held for an approval whatever its rule's `wait` says, in
    /// milliseconds (keep it below the audit grace period).
    #[arg(long, env = "GATEHOUSE_APPROVAL_MAX_WAIT_MS", default_value_t = 60_000)]
    approval_max_wait_ms: u64,
    /// How many times a new approval is offered to the organisation's webhook.
    #[arg(long, env = "GATEHOUSE_WEBHOOK_ATTEMPTS", default_value_t = 5)]
    webhook_attempts: u32,
    /// The pause before a webhook's second attempt, in milliseconds; each later one doubles it.
    #[arg(long, env = "GATEHOUSE_WEBHOOK_BACKOFF_MS", default_value_t = 1_000)]
    webhook_backoff_ms: u64,
}

/// The longest one audit write may take before the request is refused.
const JOURNAL_CALL_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) fn run(args: GatewayArgs) -> ExitCode {
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(start(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let drain = Duration::from_millis(args.shutdown_drain_ms);
    let (gateway, listener) = match prepare(args).await? {
        Ok(ready) => ready,
        Err(code) => return Ok(code),
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!(?drain, "stopping: finishing the requests in flight");
    };
    gateway::serve_until(listener, gateway, stop, drain).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .try_init();
}

/// Validates `args` (reporting every bad variable and answering `Err(exit code)`), connects the
/// store and the limiter, and binds the listener: a gateway ready to serve.
pub(crate) async fn prepare(
    args: GatewayArgs,
) -> anyhow::Result<Result<(gateway::Gateway, tokio::net::TcpListener), ExitCode>> {
    let mut problems = Problems::default();
    let database_url = config::database_url(&args.store, &mut problems);
    let keyring = config::keyring(&args.secrets, true, &mut problems);
    let public_url = config::public_url(&args.public, &mut problems);
    let secret = args.secrets.secret_key.as_deref().and_then(|text| {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
    });
    let listen: Option<std::net::SocketAddr> = match args.listen.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add("GATEHOUSE_LISTEN", "must be an address like 127.0.0.1:8080");
            None
        }
    };
    let redis = match args.store.redis_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => match redis::Client::open(url) {
            Ok(client) => Some((url.to_owned(), client)),
            Err(e) => {
                problems.add("REDIS_URL", e);
                None
            }
        },
    };
    if args.max_body_bytes == 0 {
        problems.add("GATEHOUSE_MAX_BODY_BYTES", "must be positive");
    }
    if args.upstream_timeout_ms == 0 || args.upstream_connect_timeout_ms == 0 {
        problems.add("GATEHOUSE_UPSTREAM_TIMEOUT_MS", "timeouts must be positive");
    }
    args.audit.check(&mut problems);
    for (name, value) in [
        ("GATEHOUSE_MAX_STREAMS", args.max_streams as u64),
        (
            "GATEHOUSE_MAX_STREAMS_PER_ORG",
            args.max_streams_per_org as u64,
        ),
        (
            "GATEHOUSE_STREAM_IDLE_TIMEOUT_MS",
            args.stream_idle_timeout_ms,
        ),
        (
            "GATEHOUSE_STREAM_MAX_LIFETIME_MS",
            args.stream_max_lifetime_ms,
        ),
        ("GATEHOUSE_BODY_TIMEOUT_MS", args.body_timeout_ms),
        ("GATEHOUSE_STATEMENT_TIMEOUT_MS", args.statement_timeout_ms),
        ("GATEHOUSE_APPROVAL_POLL_MS", args.approval_poll_ms),
        (
            "GATEHOUSE_APPROVAL_KEEPALIVE_MS",
            args.approval_keepalive_ms,
        ),
        ("GATEHOUSE_APPROVAL_MAX_WAIT_MS", args.approval_max_wait_ms),
        (
            "GATEHOUSE_WEBHOOK_ATTEMPTS",
            u64::from(args.webhook_attempts),
        ),
        ("GATEHOUSE_WEBHOOK_BACKOFF_MS", args.webhook_backoff_ms),
    ] {
        if value == 0 {
            problems.add(name, "must be positive");
        }
    }
    if args.max_buffered_bytes < args.max_body_bytes.max(args.max_response_bytes) {
        problems.add(
            "GATEHOUSE_MAX_BUFFERED_BYTES",
            "must be at least GATEHOUSE_MAX_BODY_BYTES and GATEHOUSE_MAX_RESPONSE_BYTES",
        );
    }
    if args.approval_channel.trim().is_empty() {
        problems.add("GATEHOUSE_APPROVAL_CHANNEL", "must not be empty");
    }
    if !problems.0.is_empty() {
        for p in &problems.0 {
            eprintln!("error: configuration: {p}");
        }
        return Ok(Err(ExitCode::from(2)));
    }
    let (database_url, keyring, public_url, secret, listen) = (
        database_url.expect("checked"),
        keyring.expect("checked"),
        public_url.expect("checked"),
        secret.expect("checked by the keyring"),
        listen.expect("checked"),
    );

    let mut settings = gateway::Settings::local();
    if let Some(host) = public_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
        .and_then(|authority| {
            authority
                .rsplit_once('@')
                .map_or(Some(authority), |(_, h)| Some(h))
        })
    {
        let host = if let Some(v6) = host.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or_default()
        };
        settings.allowed_hosts.push(host.to_ascii_lowercase());
    }
    settings.allowed_hosts.extend(
        args.allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty()),
    );
    settings.allowed_origins = args
        .allowed_origins
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect();
    settings.max_body_bytes = args.max_body_bytes;
    settings.max_response_bytes = args.max_response_bytes;
    settings.connect_timeout = Duration::from_millis(args.upstream_connect_timeout_ms);
    settings.response_timeout = Duration::from_millis(args.upstream_timeout_ms);
    settings.config_ttl = Duration::from_millis(args.config_ttl_ms.unwrap_or(if redis.is_some() {
        5_000
    } else {
        1_000
    }));
    settings.max_streams = args.max_streams;
    settings.max_streams_per_org = args.max_streams_per_org;
    settings.stream_idle_timeout = Duration::from_millis(args.stream_idle_timeout_ms);
    settings.stream_max_lifetime = Duration::from_millis(args.stream_max_lifetime_ms);
    settings.max_buffered_bytes = args.max_buffered_bytes;
    settings.body_timeout = Duration::from_millis(args.body_timeout_ms);
    settings.unknown_token_ttl = Duration::from_millis(args.unknown_token_ttl_ms);
    settings.auth_failures_per_minute = args.auth_failures_per_minute;
    settings.allow_private_upstreams = args.allow_private_upstreams;
    settings.approval_channel = args.approval_channel.trim().to_owned();
    settings.approval_poll = Duration::from_millis(args.approval_poll_ms);
    settings.approval_keepalive = Duration::from_millis(args.approval_keepalive_ms);
    settings.approval_max_wait = Duration::from_millis(args.approval_max_wait_ms);
    settings.webhook_attempts = args.webhook_attempts;
    settings.webhook_backoff = Duration::from_millis(args.webhook_backoff_ms);

    let store = store::Store::connect_with_statement_timeout(
        &database_url,
        keyring,
        Duration::from_millis(args.statement_timeout_ms),
    )
    .await
    .context("connecting to DATABASE_URL")?;
    let limiter: limits::Limiter = match &redis {
        Some((url, _)) => limits::RedisLimiter::connect(url, limits::RedisConfig::default())
            .await
            .context("connecting the rate limiter to REDIS_URL")?
            .into(),
        None => {
            tracing::warn!(
                "REDIS_URL is not set: rate limits are counted in this process only, which is \
                 correct for exactly one gateway replica"
            );
            limits::InProcessLimiter::new().into()
        }
    };
    // Every request's audit event is written ahead of forwarding (DESIGN.md §7): into the Redis
    // streams `gatehouse ingest` reads, or without Redis into Postgres's audit_outbox.
    let journal = match &redis {
        Some((url, _)) => audit::Journal::connect(url, args.audit.config(JOURNAL_CALL_TIMEOUT))
            .await
            .context("connecting the audit journal to REDIS_URL")?,
        None => {
            tracing::warn!(
                "REDIS_URL is not set: audit events are written ahead into Postgres's \
                 audit_outbox, from which `gatehouse ingest` (without REDIS_URL) moves them"
            );
            audit::Journal::outbox(store.clone(), JOURNAL_CALL_TIMEOUT)
        }
    };
    let session_key = mcp::session::SessionKey::derive(&secret);
    let gateway = gateway::Gateway::new(
        settings,
        store,
        limiter,
        session_key,
        journal,
        redis.map(|(_, client)| client),
    )?;
    gateway.spawn_invalidation_listener();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, public_url, "gateway listening; proxy URLs are {public_url}/mcp/<server id>");
    Ok(Ok((gateway, listener)))
}

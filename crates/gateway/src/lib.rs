//! The gateway: a stateless, policy-enforcing MCP proxy (Streamable HTTP, revisions 2025-03-26
//! to 2026-07-28). Each request to `/mcp/{server_id}` is authenticated by its grant token, checked
//! against the grant's server, decided by the server's policy when it is a `tools/call`, and then
//! forwarded byte for byte to the upstream with the upstream's own credentials; `tools/list`
//! answers are filtered to what the grant may see.
//!
//! It must never forward a grant token, a client cookie or a call the policy did not allow; never
//! re-serialise a message it forwards (it parses only what a decision needs, through the `mcp`
//! crate); never keep anything a second replica would need (sessions are sealed into the id the
//! client holds, counters live in the limiter, configuration is only cached); and never let a call
//! through when the limiter, the configuration or the audit path cannot be reached.
//!
//! `router(gateway)` builds the axum app; [`serve`] runs it. The pieces: [`Settings`] (limits and
//! timeouts), `cache` (grant → server, credentials, compiled policy; invalidated through Redis
//! pub/sub with a TTL as safety net), `proxy` (the request path), `event` (each request's audit event,
//! written ahead through `audit::Journal`), `metrics` (Prometheus).
#![forbid(unsafe_code)]

pub mod approval;
mod budget;
mod cache;
mod egress;
mod error;
mod event;
pub mod invalidate;
mod metrics;
mod pinning;
mod proxy;
mod settings;
mod streams;
mod throttle;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

pub use approval::{ApprovalSignal, DEFAULT_APPROVAL_CHANNEL};
pub use error::GatewayError;
pub use settings::{DEFAULT_INVALIDATION_CHANNEL, Settings};

/// One gateway replica's shared state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    store: store::Store,
    limiter: limits::Limiter,
    session_key: mcp::session::SessionKey,
    journal: audit::Journal,
    redis: Option<redis::Client>,
    http: reqwest::Client,
    cache: Arc<cache::ConfigCache>,
    metrics: metrics::Metrics,
    streams: Arc<streams::Streams>,
    throttle: throttle::FailureThrottle,
    budget: budget::Budget,
    pinning: Arc<pinning::Registry>,
    approval_signal: approval::ApprovalSignal,
}

impl Gateway {
    /// A gateway over `store`, counting limits in `limiter`, sealing sessions with `session_key`
    /// and writing audit events through `journal`. `redis` (when configured) carries configuration
    /// invalidations and is checked by `/readyz`.
    pub fn new(
        settings: Settings,
        store: store::Store,
        limiter: limits::Limiter,
        session_key: mcp::session::SessionKey,
        journal: audit::Journal,
        redis: Option<redis::Client>,
    ) -> anyhow::Result<Gateway> {
        use anyhow::Context as _;
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            // Upstreams are reached by their configured URL, never by following a redirect
            // somewhere the policy and the operator never saw.
            .redirect(reqwest::redirect::Policy::none())
            // Only the configured upstream is dialled: no proxy from the environment, and every
            // resolved address checked against the egress rule (DESIGN.md §9).
            .no_proxy()
            .dns_resolver(egress::GuardedResolver::new(egress::Egress {
                allow_private: settings.allow_private_upstreams,
            }))
            .tcp_nodelay(true)
            .build()
            .context("building the upstream HTTP client")?;
        let metrics = metrics::Metrics::new();
        let cache = Arc::new(cache::ConfigCache::new(
            store.clone(),
            metrics.config_reads(),
            settings.config_ttl,
            settings.unknown_token_ttl,
        ));
        let streams = Arc::new(streams::Streams::new(
            settings.max_streams,
            settings.max_streams_per_org,
        ));
        let throttle = throttle::FailureThrottle::new(settings.auth_failures_per_minute);
        let budget = budget::Budget::new(settings.max_buffered_bytes);
        let recheck_every = settings.config_ttl;
        let pinning = Arc::new(pinning::Registry::new(
            store.clone(),
            http.clone(),
            &settings,
        ));
        let gateway = Gateway {
            inner: Arc::new(Inner {
                settings,
                store,
                limiter,
                session_key,
                journal,
                redis,
                http,
                cache,
                metrics,
                streams,
                throttle,
                budget,
                pinning,
                approval_signal: approval::ApprovalSignal::default(),
            }),
        };
        let runtime = tokio::runtime::Handle::try_current()
            .context("a gateway is built inside a Tokio runtime")?;
        // Open streams follow their grant's configuration for as long as the gateway lives.
        runtime.spawn(streams::recheck_forever(
            Arc::downgrade(&gateway.inner),
            gateway.inner.streams.clone(),
            recheck_every,
        ));
        // A configuration change reaches this replica within a second whether or not its Redis
        // announcement does.
        runtime.spawn(invalidate::watch_epoch(
            Arc::downgrade(&gateway.inner),
            invalidate::EPOCH_EVERY,
        ));
        Ok(gateway)
    }

    /// Starts listening on Redis pub/sub (when Redis is configured) for configuration
    /// invalidations and for approval decisions. The task reconnects by itself and, whenever it
    /// was disconnected, empties the cache and wakes every held call, since it may have missed
    /// messages meanwhile. Aborting the handle stops both.
    pub fn spawn_invalidation_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let client = self.inner.redis.clone()?;
        let gateway = self.clone();
        let approvals = approval::listen(self.clone(), client.clone());
        Some(tokio::spawn(async move {
            let channel = gateway.inner.settings.invalidation_channel.clone();
            let config = invalidate::listen(client, channel, move || gateway.invalidate_all());
            futures_util::future::join(config, approvals).await;
        }))
    }

    /// The signal that wakes this replica's held calls when an approval is decided. The admin
    /// app of the same process (`gatehouse up`) calls [`ApprovalSignal::notify`] after each
    /// decision, which is how held calls learn of it without Redis.
    pub fn approval_signal(&self) -> ApprovalSignal {
        self.inner.approval_signal.clone()
    }

    /// Forgets every cached grant, server and policy: the next request of each grant reads
    /// the store again.
    pub fn invalidate_all(&self) {
        self.inner.cache.clear();
        self.inner.streams.recheck_soon();
    }

    /// The settings this gateway runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
}

/// The gateway's HTTP app: the proxy at `/mcp/{server_id}` and the operational endpoints.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route(
            "/mcp/{server_id}",
            axum::routing::post(proxy::handle)
                .get(proxy::handle)
                .delete(proxy::handle),
        )
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics))
        .with_state(gateway)
}

/// Serves the gateway on `listener` until the process is stopped.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Gateway) -> std::io::Result<()> {
    serve_until(listener, gateway, std::future::pending(), Duration::ZERO).await
}

/// How long the outcomes still queued when a gateway stops may take to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// [`serve`] until `shutdown` resolves; then the gateway stops accepting connections, gives the
/// requests in flight up to `drain` to finish (a call forwarded is answered, not cut), and writes
/// the audit outcomes still queued before it returns, so the calls it answered are not stored
/// with an unknown outcome. Open GET streams end at once (their clients resume elsewhere with
/// `Last-Event-ID`). Requests still running after `drain` (a held approval, a call's stream that
/// goes on) end with the process; their events are stored as unknown after the ingester's grace.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Small JSON-RPC answers and SSE events must leave at once, not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        router(gateway.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping.send(());
    })
    .into_future();
    let streams = gateway.inner.streams.clone();
    let drained = async move {
        match stopped.await {
            Ok(()) => {
                streams.stop_get_streams();
                tokio::time::sleep(drain).await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server => served?,
        () = drained => tracing::warn!(?drain, "requests still in flight after the drain period; stopping without them"),
    }
    if let Err(e) = gateway.inner.journal.flush(FLUSH_TIMEOUT).await {
        tracing::warn!(error = %e, "audit outcomes still queued at shutdown were not all written; their events will be stored with an unknown outcome");
    }
    Ok(())
}

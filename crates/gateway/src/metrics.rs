//! `/healthz`, `/readyz` and Prometheus `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Gateway;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    upstream_latency: Histogram,
    limiter_latency: Histogram,
    config_reads: crate::cache::Reads,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let requests = Family::<Labels, Counter>::default();
        let decisions = Family::<Labels, Counter>::default();
        // 0.1 ms … ~13 s
        let upstream_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let limiter_latency = Histogram::new(exponential_buckets(0.00005, 2.0, 16));
        let mut registry = Registry::with_prefix("gatehouse_gateway");
        registry.register(
            "requests",
            "Requests to /mcp/{server_id} by HTTP method and status",
            requests.clone(),
        );
        registry.register(
            "decisions",
            "Gateway decisions by kind (allow, deny, unknown_tool, rate_limited, pass, rejected, ...)",
            decisions.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream's response headers arrived",
            upstream_latency.clone(),
        );
        registry.register(
            "limiter_latency_seconds",
            "Time of one rate-limit consume (all counters of a call)",
            limiter_latency.clone(),
        );
        let config_reads = crate::cache::Reads::default();
        registry.register(
            "config_reads",
            "Reads of a grant's configuration from the store, by who waited: a request, or nobody (a background refresh)",
            config_reads.clone(),
        );
        Metrics {
            config_reads,
            registry: Mutex::new(registry),
            requests,
            decisions,
            upstream_latency,
            limiter_latency,
        }
    }

    pub(crate) fn request(&self, method: &str, status: u16) {
        self.requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub(crate) fn decision(&self, kind: &'static str) {
        self.decisions
            .get_or_create(&vec![("decision", kind.to_owned())])
            .inc();
    }

    pub(crate) fn upstream(&self, took: Duration) {
        self.upstream_latency.observe(took.as_secs_f64());
    }

    pub(crate) fn limiter(&self, took: Duration) {
        self.limiter_latency.observe(took.as_secs_f64());
    }

    /// The counter the configuration cache counts its store reads in.
    pub(crate) fn config_reads(&self) -> crate::cache::Reads {
        self.config_reads.clone()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when Postgres, the audit journal and (if configured) Redis answer; 503 naming what is down.
pub(crate) async fn readyz(State(gw): State<Gateway>) -> Response {
    let inner = &gw.inner;
    let timeout = Duration::from_secs(2);
    let postgres = matches!(
        tokio::time::timeout(timeout, inner.store.pool().acquire()).await,
        Ok(Ok(_))
    );
    let redis = match &inner.redis {
        None => None,
        Some(client) => Some(matches!(
            tokio::time::timeout(timeout, ping(client)).await,
            Ok(Ok(()))
        )),
    };
    let audit = matches!(
        tokio::time::timeout(timeout, inner.journal.ping()).await,
        Ok(Ok(()))
    );
    let ready = postgres && redis != Some(false) && audit;
    let body = serde_json::json!({
        "ready": ready,
        "postgres": if postgres { "up" } else { "down" },
        "audit": if audit { "up" } else { "down" },
        "redis": match redis { None => "not configured", Some(true) => "up", Some(false) => "down" },
        "limiter": inner.limiter.kind(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn ping(client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(())
}

pub(crate) async fn metrics(State(gw): State<Gateway>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.inner.metrics.render(),
    )
        .into_response()
}

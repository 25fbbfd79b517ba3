//! Configuration changes reach every replica within a second (Redis pub/sub, and the store's
//! configuration epoch when an announcement is lost), and `/readyz`, `/metrics` report the state
//! of things.

use std::time::{Duration, Instant};

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn policy_edits_and_revocations_reach_every_replica_within_a_second(pool: PgPool) {
    edits_and_revocations_reach_two_replicas(pool, true).await;
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn changes_whose_announcement_is_lost_still_reach_every_replica_within_a_second(
    pool: PgPool,
) {
    edits_and_revocations_reach_two_replicas(pool, false).await;
}

/// A policy edit, then a revocation, seen by both of two replicas within a second of committing,
/// with a TTL far longer; `announce` publishes each on Redis as the CLI and the admin app do,
/// otherwise only the store knows.
async fn edits_and_revocations_reach_two_replicas(pool: PgPool, announce: bool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let channel = channel();
    // A long TTL, so only an invalidation can explain a change seen within a second.
    let mut settings = Settings::local();
    settings.config_ttl = Duration::from_secs(600);
    let a = gateway(
        &store,
        settings.clone(),
        Limits::Redis {
            channel: channel.clone(),
        },
    )
    .await;
    let b = gateway(
        &store,
        settings,
        Limits::Redis {
            channel: channel.clone(),
        },
    )
    .await;
    let mut on_a = Session::open(&a.url(&seed), &seed.token).await;
    let mut on_b = Session::open(&b.url(&seed), &seed.token).await;
    assert_eq!(on_a.tool_names().await, vec!["retry_task"]);
    assert_eq!(on_b.tool_names().await, vec!["retry_task"]);
    tokio::time::sleep(Duration::from_millis(200)).await; // both subscribed

    publish(
        &store,
        &seed,
        r#"{"version":"1","default":"allow","hide":["retry_task"]}"#,
    )
    .await;
    let redis = redis::Client::open(REDIS_URL).unwrap();
    let published = Instant::now();
    if announce {
        gateway::invalidate::publish(&redis, &channel, "policy")
            .await
            .unwrap();
    }
    for session in [&mut on_a, &mut on_b] {
        loop {
            let names = session.tool_names().await;
            if !names.contains(&"retry_task".to_owned())
                && names.contains(&"reboot_device".to_owned())
            {
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(1),
                "edit not seen within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let call = on_a
        .call("retry_task", json!({"task_id": "x"}))
        .await
        .json();
    assert_eq!(call["error"]["message"], "Unknown tool: retry_task");

    revoke(&store, &seed).await;
    let revoked = Instant::now();
    if announce {
        gateway::invalidate::publish(&redis, &channel, "grant")
            .await
            .unwrap();
    }
    for session in [&mut on_a, &mut on_b] {
        loop {
            if session.request("ping", json!({})).await.status == 401 {
                break;
            }
            assert!(
                revoked.elapsed() < Duration::from_secs(1),
                "revocation not seen within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn metrics(gw: &Gw) -> String {
    http()
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The gateway's count of store reads for grant configuration, by who waited for them.
async fn config_reads(gw: &Gw, waited: &str) -> u64 {
    let metrics = metrics(gw).await;
    let line = format!("gatehouse_gateway_config_reads_total{{waited=\"{waited}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn with_the_store_down_a_cached_grant_serves_until_its_ttl_and_refreshes_back_off(
    pool: PgPool,
) {
    let store = store(pool.clone());
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let ttl = Duration::from_millis(1600);
    let mut settings = Settings::local();
    settings.config_ttl = ttl;
    // Limiter, audit journal and invalidations in Redis: only the configuration needs Postgres.
    let gw = gateway(&store, settings, Limits::Redis { channel: channel() }).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    let cached = Instant::now();
    let read_on_requests = config_reads(&gw, "request").await;
    pool.close().await;
    tokio::time::sleep(ttl / 2 + Duration::from_millis(50)).await;
    // Every request past half the TTL finds the view due; the first refresh fails.
    while cached.elapsed() < ttl - Duration::from_millis(200) {
        assert_eq!(session.tool_names().await, vec!["retry_task"]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        config_reads(&gw, "refresh").await,
        1,
        "a failed refresh is not retried at the rate requests arrive"
    );
    assert_eq!(config_reads(&gw, "request").await, read_on_requests);
    // Past the TTL the view is not used: the request reads the store, and fails clearly.
    tokio::time::sleep(ttl.saturating_sub(cached.elapsed()) + Duration::from_millis(50)).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let answer = post(&gw.url(&seed), Some(&seed.token), ping, &[]).await;
    assert_eq!(answer.status, 503, "{answer:?}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_busy_grant_never_waits_for_the_store_and_still_sees_changes_within_the_ttl(
    pool: PgPool,
) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    // No Redis: a change is seen through the TTL's refreshes or the store's configuration epoch.
    let ttl = Duration::from_millis(400);
    let mut settings = Settings::local();
    settings.config_ttl = ttl;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    let busy = Instant::now();
    while busy.elapsed() < ttl * 5 {
        assert_eq!(session.tool_names().await, vec!["retry_task"]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        config_reads(&gw, "request").await,
        1,
        "only the first request waited for the store"
    );
    let refreshes = config_reads(&gw, "refresh").await;
    assert!(
        refreshes >= 4,
        "read again in the background every half TTL: {refreshes}"
    );

    publish(
        &store,
        &seed,
        r#"{"version":"1","default":"allow","hide":["retry_task"]}"#,
    )
    .await;
    let published = Instant::now();
    loop {
        let names = session.tool_names().await;
        if names.contains(&"reboot_device".to_owned()) {
            assert!(!names.contains(&"retry_task".to_owned()));
            break;
        }
        // A view is never used past its TTL; the refresh's own read adds a little.
        assert!(
            published.elapsed() < ttl + Duration::from_millis(300),
            "the change was not seen within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An invalidation (the epoch moved) empties the cache: at most one more read on a request's
    // path for the change.
    assert!(config_reads(&gw, "request").await <= 2);

    revoke(&store, &seed).await;
    let revoked = Instant::now();
    loop {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        if post(&gw.url(&seed), Some(&seed.token), ping, &[])
            .await
            .status
            == 401
        {
            break;
        }
        assert!(
            revoked.elapsed() < ttl + Duration::from_millis(300),
            "the revocation was not seen within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn health_readiness_and_metrics(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let gw = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    session.call("retry_task", json!({"task_id": "x"})).await;
    session
        .call("reboot_device", json!({"device_id": "x"}))
        .await;

    let health = http()
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http()
        .get(format!("{}/readyz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["postgres"], "up");
    assert_eq!(ready["redis"], "up");
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains(r#"gatehouse_gateway_decisions_total{decision="allow"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"gatehouse_gateway_decisions_total{decision="unknown_tool"} 1"#));
    assert!(metrics.contains("gatehouse_gateway_upstream_latency_seconds_bucket"));
    assert!(metrics.contains("gatehouse_gateway_limiter_latency_seconds_count 1"));
    assert!(metrics.contains("gatehouse_gateway_requests_total"));
}

/// A configuration store that accepts connections and never answers: the request is refused
/// with 503 within the lookup timeout, never held.
#[tokio::test]
async fn a_store_that_never_answers_is_a_prompt_refusal() {
    let (addr, _hole) = raw_upstream(None).await;
    let options: sqlx::postgres::PgConnectOptions = format!("postgres://postgres@{addr}/gatehouse")
        .parse()
        .expect("url");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(60))
        .connect_lazy_with(options);
    let store = store(pool);
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = format!("{}/mcp/{}", gw.base, uuid::Uuid::new_v4());
    let started = Instant::now();
    let answer = post(
        &url,
        Some(&format!("ghg_{}", "a".repeat(44))),
        initialize_body(),
        &[],
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        waited < Duration::from_secs(6),
        "refused after {waited:?}, past the lookup timeout"
    );
}

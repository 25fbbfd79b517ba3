//! Integration tests of the durable path against a real Redis (a unique stream prefix per test)
//! and a real Postgres (a fresh database per test via `#[sqlx::test]`).

mod chain;
mod durable;
mod export;
mod postgres_down;

use std::time::Duration;

use audit::{AuditRecord, IngestConfig, Ingester, Journal, Outcome, StreamConfig};
use serde_json::json;
use sqlx::PgPool;
use store::audit::AuditDecision;
use store::secret::{Keyring, SealingKey};
use store::{Actor, GrantId, OrgId, ServerId, Store};
use time::OffsetDateTime;

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(crate) fn store(pool: PgPool) -> Store {
    Store::new(pool, Keyring::new(SealingKey::generate(1)))
}

pub(crate) async fn org(store: &Store) -> OrgId {
    store
        .create_organisation(Actor::Operator, "acme")
        .await
        .unwrap()
        .organisation_id
}

/// Stream settings no other test shares.
pub(crate) fn streams() -> StreamConfig {
    StreamConfig {
        prefix: format!("test:audit:{}", uuid::Uuid::new_v4().simple()),
        shards: 2,
        ..StreamConfig::default()
    }
}

pub(crate) fn ingest_config(stream: &StreamConfig, consumer: &str) -> IngestConfig {
    IngestConfig {
        stream: stream.clone(),
        consumer: consumer.into(),
        batch: 500,
        share: audit::ShardShare::ALL,
        grace: Duration::from_millis(300),
        claim_idle: Duration::from_millis(150),
        idle_sleep: Duration::from_millis(10),
        fill_wait: Duration::from_millis(5),
    }
}

pub(crate) async fn journal(stream: &StreamConfig) -> Journal {
    Journal::connect(&redis_url(), stream.clone())
        .await
        .unwrap()
}

pub(crate) async fn ingester(store: &Store, stream: &StreamConfig, consumer: &str) -> Ingester {
    Ingester::connect(&redis_url(), store.clone(), ingest_config(stream, consumer))
        .await
        .unwrap()
}

pub(crate) fn record(org: OrgId, request_id: &str) -> AuditRecord {
    AuditRecord {
        occurred_at: OffsetDateTime::now_utc(),
        request_id: request_id.into(),
        organisation_id: org,
        server_id: ServerId::new(),
        grant_id: GrantId::new(),
        identity: "noc-agent".into(),
        session: Some("upstream-session-1".into()),
        method: "tools/call".into(),
        tool: Some("reboot_device".into()),
        arguments: audit::audited_arguments(
            Some(&json!({"device_id": "00236A-1", "password": "x"})),
            true,
        ),
        decision: AuditDecision::Allow,
        rule: Some("/tools/reboot_device".into()),
        message: None,
        policy_version: Some(1),
        outcome: Outcome::Pending,
        client_addr: Some("192.0.2.7".parse().unwrap()),
        user_agent: Some("claude-code/1.0".into()),
    }
}

/// `n` calls of `org` written ahead, each with its outcome appended: request ids `<prefix><i>`.
pub(crate) async fn answered_calls(journal: &Journal, org: OrgId, prefix: &str, n: usize) {
    for i in 0..n {
        let ticket = journal
            .write_ahead(record(org, &format!("{prefix}{i}")))
            .await
            .unwrap();
        journal.record_outcome(ticket, ok_outcome()).await.unwrap();
    }
}

/// How many entries `org`'s shard stream holds.
pub(crate) async fn stream_len(streams: &StreamConfig, org: OrgId) -> u64 {
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("XLEN")
        .arg(streams.stream_key(streams.shard_of(org)))
        .query_async(&mut con)
        .await
        .unwrap()
}

pub(crate) fn ok_outcome() -> Outcome {
    Outcome::Known {
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: 1234,
    }
}

/// Every stored event of `org`, oldest first.
pub(crate) async fn stored(store: &Store, org: OrgId) -> Vec<store::audit::AuditEvent> {
    let mut tx = store.begin(org).await.unwrap();
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store::audit::audit_page(&mut tx, &Default::default(), cursor, 500)
            .await
            .unwrap();
        out.extend(page.events);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    tx.rollback().await.unwrap();
    out.reverse();
    out
}

/// Steps `ingester` until `done` holds of the stored events, or fails after 5 s.
pub(crate) async fn ingest_until(
    ingester: &mut Ingester,
    store: &Store,
    org: OrgId,
    done: impl Fn(&[store::audit::AuditEvent]) -> bool,
) -> Vec<store::audit::AuditEvent> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        ingester.step().await.unwrap();
        let events = stored(store, org).await;
        if done(&events) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not ingested in time: {} events",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

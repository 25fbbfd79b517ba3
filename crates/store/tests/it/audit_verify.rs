//! The background verification of the audit chain: a run advanced in small chunks, each its own
//! transaction, finds what one pass over the whole chain finds; one run at a time; retention
//! cutting the chain during a run is no break.

use serde_json::json;
use sqlx::PgPool;
use store::audit::{AuditDecision, ChainProblem, NewAuditEvent, verify_audit_chain};
use store::audit_verify::{
    Verification, VerificationOutcome, audit_verification, continue_audit_verification,
    start_audit_verification,
};
use store::{AuditEventId, GrantId, OrgId, ServerId, Store};
use time::{Duration, OffsetDateTime};

use crate::{org, store};

async fn chain(store: &Store, org: OrgId, n: i64) {
    let now = OffsetDateTime::now_utc();
    let events: Vec<NewAuditEvent> = (0..n)
        .map(|i| NewAuditEvent {
            audit_event_id: AuditEventId::new(),
            organisation_id: org,
            occurred_at: now - Duration::seconds(n - i),
            server_id: ServerId::new(),
            grant_id: GrantId::new(),
            identity: "noc-agent".into(),
            session_id: None,
            method: "tools/call".into(),
            tool_name: Some("get_parameter".into()),
            arguments: json!({"device_id": i}),
            decision: AuditDecision::Allow,
            rule: None,
            message: None,
            policy_version: Some(1),
            upstream_status: Some(200),
            is_error: Some(false),
            latency_us: Some(100),
            client_addr: None,
            user_agent: None,
        })
        .collect();
    store.insert_audit_batch(&events).await.unwrap();
}

/// Starts a run and advances it `rows` events per transaction until it finishes; returns it and
/// how many transactions it took.
async fn run(store: &Store, org: OrgId, rows: i64) -> (Verification, usize) {
    let mut tx = store.begin(org).await.unwrap();
    let started = start_audit_verification(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert!(started.new);
    for steps in 1.. {
        let mut tx = store.begin(org).await.unwrap();
        let v = continue_audit_verification(&mut tx, started.run_id, rows)
            .await
            .unwrap()
            .expect("the run is still this one");
        tx.commit().await.unwrap();
        if v.finished_at.is_some() {
            return (v, steps);
        }
    }
    unreachable!()
}

async fn full(store: &Store, org: OrgId) -> store::audit::ChainReport {
    let mut tx = store.begin(org).await.unwrap();
    let report = verify_audit_chain(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    report
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_run_in_chunks_finds_what_one_pass_finds(pool: PgPool) {
    let store = store(pool);
    let org = org(&store, "acme").await;
    let (empty, _) = run(&store, org, 7).await;
    assert_eq!(empty.outcome, Some(VerificationOutcome::Empty));

    chain(&store, org, 50).await;
    let (v, steps) = run(&store, org, 7).await;
    assert_eq!(v.outcome, Some(VerificationOutcome::Intact));
    assert_eq!((v.checked, v.target_sequence, steps), (50, 50, 8));
    assert_eq!(Some(v.report().unwrap()), Some(full(&store, org).await));

    // An old event changed after the run above checked it: the next run finds it.
    sqlx::query("update audit_event set identity = 'someone else' where sequence = 4")
        .execute(store.pool())
        .await
        .unwrap();
    let (v, _) = run(&store, org, 7).await;
    assert_eq!(v.outcome, Some(VerificationOutcome::Broken));
    assert!(matches!(
        v.problem,
        Some(ChainProblem::Altered { sequence: 4, .. })
    ));
    assert_eq!(v.report().unwrap(), full(&store, org).await);
    sqlx::query("update audit_event set identity = 'noc-agent' where sequence = 4")
        .execute(store.pool())
        .await
        .unwrap();

    // The tail removed, past a chunk boundary.
    sqlx::query("delete from audit_event where sequence > 47")
        .execute(store.pool())
        .await
        .unwrap();
    let (v, _) = run(&store, org, 7).await;
    assert_eq!(v.problem, Some(ChainProblem::Removed { from: 48, to: 50 }));
    assert_eq!(v.report().unwrap(), full(&store, org).await);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn one_run_at_a_time_and_events_after_the_start_wait_for_the_next(pool: PgPool) {
    let store = store(pool);
    let org = org(&store, "acme").await;
    chain(&store, org, 20).await;
    let mut tx = store.begin(org).await.unwrap();
    let first = start_audit_verification(&mut tx).await.unwrap();
    let again = start_audit_verification(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert!(first.new && !again.new);
    assert_eq!(first.run_id, again.run_id);

    // Events stored during the run are not its business.
    chain(&store, org, 5).await;
    let mut tx = store.begin(org).await.unwrap();
    let v = continue_audit_verification(&mut tx, first.run_id, 100)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v.outcome, Some(VerificationOutcome::Intact));
    assert_eq!((v.checked, v.target_sequence), (20, 20));
    // Finished, it takes no more steps; the next run covers all 25.
    let mut tx = store.begin(org).await.unwrap();
    assert!(
        continue_audit_verification(&mut tx, first.run_id, 100)
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();
    let (v, _) = run(&store, org, 100).await;
    assert_eq!(v.checked, 25);

    // Another organisation's row is not this one's.
    let other = crate::org(&store, "other").await;
    let mut tx = store.begin(other).await.unwrap();
    assert_eq!(audit_verification(&mut tx).await.unwrap(), None);
    assert!(
        continue_audit_verification(&mut tx, v.run_id, 100)
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn retention_cutting_the_chain_during_a_run_is_no_break(pool: PgPool) {
    let store = store(pool);
    let org = org(&store, "acme").await;
    chain(&store, org, 30).await;
    let mut tx = store.begin(org).await.unwrap();
    let started = start_audit_verification(&mut tx).await.unwrap();
    continue_audit_verification(&mut tx, started.run_id, 5)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    // Retention removes events 1 to 12 and records where it cut (as its function does).
    sqlx::query(
        "insert into audit_chain_anchor (organisation_id, first_sequence, prev_hash, cut_before)
         select organisation_id, 13, hash, now() from audit_event
         where organisation_id = $1 and sequence = 12",
    )
    .bind(org.as_uuid())
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query("delete from audit_event where sequence <= 12")
        .execute(store.pool())
        .await
        .unwrap();
    let mut tx = store.begin(org).await.unwrap();
    let v = continue_audit_verification(&mut tx, started.run_id, 100)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v.outcome, Some(VerificationOutcome::Intact), "{v:?}");
    assert_eq!(v.checked, 5 + 18);
    assert_eq!(full(&store, org).await.problem, None);
}

//! Calls held for a human approval (issue 8): approved within the wait, denied with the
//! approver's comment, a wait that runs out (pending, then exactly once after approval), and a
//! decision taken elsewhere reaching the replica that holds the call through Redis.

use std::time::{Duration, Instant};

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::approval::{self, Approval, ApprovalFilter, Decision};
use store::{Actor, Store};

use crate::support::*;

fn policy(wait: &str) -> String {
    format!(
        r#"{{"version":"1","default":"allow","tools":{{"reboot_device":{{"approval":{{"wait":"{wait}","timeout":"10m"}}}}}}}}"#
    )
}

/// How many `reboot_device` calls reached the upstream.
fn reboots(sim: &Sim) -> usize {
    sim.state
        .calls()
        .iter()
        .filter(|c| c.tool == "reboot_device")
        .count()
}

/// Waits until the organisation has a pending approval, and returns it.
async fn pending(store: &Store, seed: &Seed) -> Approval {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut tx = store.begin(seed.org).await.unwrap();
        let page = approval::list_approvals(&mut tx, ApprovalFilter::Pending, None, 10)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if let Some(a) = page.approvals.into_iter().next() {
            return a;
        }
        assert!(Instant::now() < deadline, "no approval was opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn decide(
    store: &Store,
    seed: &Seed,
    a: &Approval,
    decision: Decision,
    comment: Option<&str>,
) {
    let mut tx = store.begin(seed.org).await.unwrap();
    approval::decide_approval(&mut tx, Actor::Operator, a.approval_id, decision, comment)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn reboot() -> Value {
    json!({"device_id": "d1"})
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_approval_within_the_wait_lets_the_call_through_once(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);

    let mut session = Session::open(&url, &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    assert_eq!(a.tool_name, "reboot_device");
    assert_eq!(reboots(&sim), 0, "nothing is forwarded while held");
    let decided = Instant::now();
    decide(&store, &seed, &a, Decision::Approve, Some("go ahead")).await;
    gw.signal.notify();

    let answer = held.await.unwrap();
    assert!(
        decided.elapsed() < Duration::from_secs(3),
        "{:?}",
        decided.elapsed()
    );
    let text = text_of(&answer.json()).to_owned();
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);

    // The approval is spent: the same call again needs a new one.
    let mut tx = store.begin(seed.org).await.unwrap();
    let again = approval::approval_by_id(&mut tx, a.approval_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again.status, approval::ApprovalStatus::Consumed);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_denial_reaches_the_agent_with_the_approvers_comment(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);

    let mut session = Session::open(&url, &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    decide(
        &store,
        &seed,
        &a,
        Decision::Deny,
        Some("not during business hours"),
    )
    .await;
    gw.signal.notify();

    let answer = held.await.unwrap().json();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = text_of(&answer);
    assert!(text.starts_with("[POLICY DENIED]"), "{text}");
    assert!(text.contains("not during business hours"), "{text}");
    assert_eq!(reboots(&sim), 0);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_wait_that_runs_out_is_pending_then_goes_through_exactly_once(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("1s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);
    let mut session = Session::open(&url, &seed.token).await;

    let first = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&first).to_owned();
    assert!(text.starts_with("[APPROVAL PENDING]"), "{text}");
    let a = pending(&store, &seed).await;
    assert!(text.contains(&a.approval_id.to_string()), "{text}");
    assert_eq!(reboots(&sim), 0);

    // Asking again before anyone decided finds the same approval.
    let again = session.call("reboot_device", reboot()).await.json();
    assert!(text_of(&again).contains(&a.approval_id.to_string()));

    decide(&store, &seed, &a, Decision::Approve, None).await;
    let approved = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&approved);
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);

    // Once: the next identical call needs a new approval.
    let next = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&next);
    assert!(text.starts_with("[APPROVAL PENDING]"), "{text}");
    assert!(!text.contains(&a.approval_id.to_string()), "{text}");
    assert_eq!(reboots(&sim), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_decision_elsewhere_reaches_the_replica_holding_the_call_through_redis(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    // The safety-net re-read is pushed out of the way: only the Redis announcement can wake
    // the held call in time.
    let approvals_channel = format!("gatehouse:approvals:test:{}", seed.org);
    let settings = |s: Settings| Settings {
        approval_channel: approvals_channel.clone(),
        approval_poll: Duration::from_secs(30),
        ..s
    };
    let a_gw = gateway(
        &store,
        settings(Settings::local()),
        Limits::Redis { channel: channel() },
    )
    .await;
    let _b_gw = gateway(
        &store,
        settings(Settings::local()),
        Limits::Redis { channel: channel() },
    )
    .await;

    let mut session = Session::open(&a_gw.url(&seed), &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    // Let the replica's subscriber settle before announcing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    decide(&store, &seed, &a, Decision::Approve, None).await;
    let decided = Instant::now();
    let redis = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    gateway::approval::publish_decision(&redis, &approvals_channel, a.approval_id)
        .await
        .unwrap();

    let answer = held.await.unwrap().json();
    assert!(
        decided.elapsed() < Duration::from_secs(2),
        "{:?}",
        decided.elapsed()
    );
    let text = text_of(&answer);
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);
}

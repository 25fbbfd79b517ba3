//! Approvals: one open approval per identical call, decisions (once, never on an expired one,
//! each an admin event), exactly-once consumption under concurrency, expiry, pages, the webhook.

use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use store::approval::{
    ApprovalFilter, ApprovalStatus, Decision, NewApproval, approval_by_id, approval_webhook,
    arguments_hash, decide_approval, delete_approval_webhook, expire_stale_approvals,
    list_approvals, open_approval, pending_approval_count, set_approval_webhook, take_approved,
};
use store::secret::Redacted;
use store::{Actor, Error, GrantId, OrgId, ServerId, Store};

use crate::{mint, org, publish, server, store};

struct Fixture {
    store: Store,
    org: OrgId,
    server: ServerId,
    grant: GrantId,
}

async fn fixture(pool: PgPool) -> Fixture {
    let store = store(pool);
    let org = org(&store, "acme").await;
    let server = server(&store, org, "acs").await;
    publish(&store, org, server, "default").await;
    let grant = mint(&store, org, server, "noc-agent").await.grant.grant_id;
    Fixture {
        store,
        org,
        server,
        grant,
    }
}

async fn open(f: &Fixture, args: serde_json::Value, timeout: Duration) -> store::approval::Opened {
    let mut tx = f.store.begin(f.org).await.unwrap();
    let redacted = json!({ "device_id": args["device_id"], "password": "[REDACTED]" });
    let opened = open_approval(
        &mut tx,
        &NewApproval {
            grant: f.grant,
            server: f.server,
            tool: "reboot_device",
            arguments_redacted: &redacted,
            arguments_hash: arguments_hash(Some(&args)),
            request_id: "req-1",
            session_id: Some("session-1"),
            timeout,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    opened
}

const MINUTE: Duration = Duration::from_secs(60);

async fn decide(
    f: &Fixture,
    id: store::ApprovalId,
    decision: Decision,
    comment: Option<&str>,
) -> store::Result<store::approval::Approval> {
    let mut tx = f.store.begin(f.org).await.unwrap();
    let out = decide_approval(&mut tx, Actor::Operator, id, decision, comment).await;
    if out.is_ok() {
        tx.commit().await.unwrap();
    }
    out
}

async fn take(f: &Fixture, args: &serde_json::Value) -> Option<store::approval::Approval> {
    let mut tx = f.store.begin(f.org).await.unwrap();
    let taken = take_approved(
        &mut tx,
        f.grant,
        "reboot_device",
        &arguments_hash(Some(args)),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    taken
}

#[test]
fn the_argument_hash_ignores_key_order_and_absent_means_empty() {
    let a = json!({"b": 1, "a": {"y": 2, "x": [1, 2]}});
    let b = json!({"a": {"x": [1, 2], "y": 2}, "b": 1});
    assert_eq!(arguments_hash(Some(&a)), arguments_hash(Some(&b)));
    assert_eq!(arguments_hash(None), arguments_hash(Some(&json!({}))));
    assert_ne!(
        arguments_hash(Some(&json!({"b": 2}))),
        arguments_hash(Some(&json!({"b": 1})))
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_identical_call_finds_the_open_approval(pool: PgPool) {
    let f = fixture(pool).await;
    let args = json!({"device_id": "cpe-1", "password": "hunter2"});
    let first = open(&f, args.clone(), MINUTE).await;
    assert!(first.created);
    let a = &first.approval;
    assert_eq!(a.status, ApprovalStatus::Pending);
    assert_eq!(a.identity, "noc-agent");
    assert_eq!(a.tool_name, "reboot_device");
    assert_eq!(a.session_id.as_deref(), Some("session-1"));
    assert_eq!(a.arguments["password"], "[REDACTED]");
    let left = a.expires_at - a.created_at;
    assert_eq!(left, time::Duration::seconds(60));

    let again = open(&f, args.clone(), MINUTE).await;
    assert!(!again.created);
    assert_eq!(again.approval.approval_id, a.approval_id);

    let other = open(&f, json!({"device_id": "cpe-2"}), MINUTE).await;
    assert!(other.created);
    assert_ne!(other.approval.approval_id, a.approval_id);

    let mut tx = f.store.begin(f.org).await.unwrap();
    assert_eq!(pending_approval_count(&mut tx).await.unwrap(), 2);
    assert_eq!(
        approval_by_id(&mut tx, a.approval_id).await.unwrap(),
        first.approval
    );
    tx.rollback().await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn concurrent_openers_of_one_call_share_one_approval(pool: PgPool) {
    let f = std::sync::Arc::new(fixture(pool).await);
    let args = json!({"device_id": "cpe-1"});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let f = f.clone();
        let args = args.clone();
        tasks.push(tokio::spawn(async move { open(&f, args, MINUTE).await }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut created = 0;
    for t in tasks {
        let opened = t.await.unwrap();
        ids.insert(opened.approval.approval_id);
        created += usize::from(opened.created);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(created, 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_decision_is_made_once_and_recorded(pool: PgPool) {
    let f = fixture(pool).await;
    let a = open(&f, json!({"device_id": "cpe-1"}), MINUTE)
        .await
        .approval;
    let b = open(&f, json!({"device_id": "cpe-2"}), MINUTE)
        .await
        .approval;

    // A denial needs words for the agent.
    assert!(matches!(
        decide(&f, b.approval_id, Decision::Deny, Some("  ")).await,
        Err(Error::Invalid {
            field: "comment",
            ..
        })
    ));

    let approved = decide(&f, a.approval_id, Decision::Approve, Some("go ahead"))
        .await
        .unwrap();
    assert_eq!(approved.status, ApprovalStatus::Approved);
    assert_eq!(approved.comment.as_deref(), Some("go ahead"));
    assert_eq!(approved.decided_via.as_deref(), Some("cli"));
    assert!(approved.decided_at.is_some());
    // The approved call has as long again as the timeout to be retried.
    assert!(approved.expires_at >= approved.decided_at.unwrap() + time::Duration::seconds(59));

    match decide(&f, a.approval_id, Decision::Deny, Some("changed my mind")).await {
        Err(Error::Conflict {
            constraint,
            message,
        }) => {
            assert_eq!(constraint, "approval_decided");
            assert!(message.contains("already decided (approved)"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let denied = decide(
        &f,
        b.approval_id,
        Decision::Deny,
        Some("not during business hours"),
    )
    .await
    .unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);

    let mut tx = f.store.begin(f.org).await.unwrap();
    let events = store::admin::list_admin_events(&mut tx, None, 10)
        .await
        .unwrap();
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| e.action.starts_with("approval."))
        .map(|e| (e.action.as_str(), e.target_id, e.details["comment"].clone()))
        .collect();
    assert_eq!(
        decisions,
        vec![
            (
                "approval.deny",
                Some(b.approval_id.as_uuid()),
                json!("not during business hours")
            ),
            (
                "approval.approve",
                Some(a.approval_id.as_uuid()),
                json!("go ahead")
            ),
        ]
    );
    assert_eq!(events[0].actor_label, "cli");
    assert_eq!(pending_approval_count(&mut tx).await.unwrap(), 0);
    tx.rollback().await.unwrap();

    // Another organisation can neither see nor decide it.
    let other = org(&f.store, "other").await;
    let mut tx = f.store.begin(other).await.unwrap();
    assert!(matches!(
        approval_by_id(&mut tx, a.approval_id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        decide_approval(
            &mut tx,
            Actor::Operator,
            b.approval_id,
            Decision::Approve,
            None
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    tx.rollback().await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_approval_is_consumed_exactly_once_under_concurrency(pool: PgPool) {
    let f = std::sync::Arc::new(fixture(pool).await);
    let args = json!({"device_id": "cpe-1"});
    assert!(take(&f, &args).await.is_none(), "nothing approved yet");
    let a = open(&f, args.clone(), MINUTE).await.approval;
    assert!(take(&f, &args).await.is_none(), "pending is not approved");
    decide(&f, a.approval_id, Decision::Approve, None)
        .await
        .unwrap();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let f = f.clone();
        let args = args.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            // Wait before taking a connection: the pool may hold fewer than six, and a task
            // holding one at the barrier would keep the others from ever reaching it.
            barrier.wait().await;
            let mut tx = f.store.begin(f.org).await.unwrap();
            let taken = take_approved(
                &mut tx,
                f.grant,
                "reboot_device",
                &arguments_hash(Some(&args)),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            taken
        }));
    }
    let mut taken = Vec::new();
    for t in tasks {
        if let Some(a) = t.await.unwrap() {
            taken.push(a);
        }
    }
    assert_eq!(taken.len(), 1, "exactly one call takes the approval");
    assert_eq!(taken[0].approval_id, a.approval_id);
    assert_eq!(taken[0].status, ApprovalStatus::Consumed);
    assert!(taken[0].consumed_at.is_some());
    assert!(take(&f, &args).await.is_none());

    // The next identical call needs a new approval.
    let next = open(&f, args.clone(), MINUTE).await;
    assert!(next.created);
    assert_ne!(next.approval.approval_id, a.approval_id);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_expired_approval_cannot_be_decided_and_the_call_opens_a_new_one(pool: PgPool) {
    let f = fixture(pool).await;
    let args = json!({"device_id": "cpe-1"});
    let a = open(&f, args.clone(), Duration::from_millis(1))
        .await
        .approval;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut tx = f.store.begin(f.org).await.unwrap();
    assert_eq!(
        approval_by_id(&mut tx, a.approval_id).await.unwrap().status,
        ApprovalStatus::Expired
    );
    assert_eq!(pending_approval_count(&mut tx).await.unwrap(), 0);
    tx.rollback().await.unwrap();

    match decide(&f, a.approval_id, Decision::Approve, None).await {
        Err(Error::Conflict { constraint, .. }) => assert_eq!(constraint, "approval_expired"),
        other => panic!("{other:?}"),
    }

    let next = open(&f, args.clone(), MINUTE).await;
    assert!(next.created);
    assert_ne!(next.approval.approval_id, a.approval_id);

    // An approved approval whose retry window passed is not taken either.
    let b = open(
        &f,
        json!({"device_id": "cpe-9"}),
        Duration::from_millis(200),
    )
    .await
    .approval;
    decide(&f, b.approval_id, Decision::Approve, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(take(&f, &json!({"device_id": "cpe-9"})).await.is_none());

    let mut tx = f.store.begin(f.org).await.unwrap();
    // `a` was written expired by the new open; `b` now.
    assert_eq!(expire_stale_approvals(&mut tx).await.unwrap(), 1);
    assert_eq!(
        approval_by_id(&mut tx, b.approval_id).await.unwrap().status,
        ApprovalStatus::Expired
    );
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn pages_of_pending_and_decided_approvals(pool: PgPool) {
    let f = fixture(pool).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            open(&f, json!({"device_id": format!("cpe-{i}")}), MINUTE)
                .await
                .approval
                .approval_id,
        );
    }
    decide(&f, ids[0], Decision::Deny, Some("no"))
        .await
        .unwrap();
    decide(&f, ids[1], Decision::Approve, None).await.unwrap();

    let mut tx = f.store.begin(f.org).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list_approvals(&mut tx, ApprovalFilter::Pending, cursor, 2)
            .await
            .unwrap();
        assert!(page.approvals.len() <= 2);
        seen.extend(page.approvals.iter().map(|a| a.approval_id));
        match page.next {
            // The cursor survives its text form, as a query string carries it.
            Some(next) => cursor = Some(next.to_string().parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, vec![ids[4], ids[3], ids[2]]);

    let decided = list_approvals(&mut tx, ApprovalFilter::Decided, None, 10)
        .await
        .unwrap();
    let decided: Vec<_> = decided
        .approvals
        .iter()
        .map(|a| (a.approval_id, a.status))
        .collect();
    assert_eq!(
        decided,
        vec![
            (ids[1], ApprovalStatus::Approved),
            (ids[0], ApprovalStatus::Denied)
        ]
    );
    assert!("junk".parse::<store::approval::ApprovalCursor>().is_err());
    tx.rollback().await.unwrap();

    let other = org(&f.store, "other").await;
    let mut tx = f.store.begin(other).await.unwrap();
    let page = list_approvals(&mut tx, ApprovalFilter::Pending, None, 10)
        .await
        .unwrap();
    assert!(page.approvals.is_empty());
    assert_eq!(pending_approval_count(&mut tx).await.unwrap(), 0);
    tx.rollback().await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_webhook_is_set_read_and_removed(pool: PgPool) {
    let f = fixture(pool).await;
    let mut tx = f.store.begin(f.org).await.unwrap();
    assert!(approval_webhook(&mut tx).await.unwrap().is_none());
    assert!(matches!(
        set_approval_webhook(
            &mut tx,
            Actor::Operator,
            "ftp://x",
            &Redacted::new("0123456789abcdef".into()),
            true
        )
        .await,
        Err(Error::Invalid { field: "url", .. })
    ));
    assert!(matches!(
        set_approval_webhook(
            &mut tx,
            Actor::Operator,
            "https://chat.example/hook",
            &Redacted::new("short".into()),
            true
        )
        .await,
        Err(Error::Invalid {
            field: "secret",
            ..
        })
    ));
    set_approval_webhook(
        &mut tx,
        Actor::Operator,
        "https://chat.example/hook",
        &Redacted::new("0123456789abcdef".into()),
        true,
    )
    .await
    .unwrap();
    set_approval_webhook(
        &mut tx,
        Actor::Operator,
        "https://chat.example/other",
        &Redacted::new("fedcba9876543210".into()),
        false,
    )
    .await
    .unwrap();
    let target = approval_webhook(&mut tx).await.unwrap().unwrap();
    assert_eq!(target.webhook.url, "https://chat.example/other");
    assert!(!target.webhook.enabled);
    assert_eq!(target.secret.expose(), b"fedcba9876543210");
    assert!(
        delete_approval_webhook(&mut tx, Actor::Operator)
            .await
            .unwrap()
    );
    assert!(
        !delete_approval_webhook(&mut tx, Actor::Operator)
            .await
            .unwrap()
    );
    assert!(approval_webhook(&mut tx).await.unwrap().is_none());
    tx.commit().await.unwrap();
}

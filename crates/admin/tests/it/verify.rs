//! "Verify integrity": a background run over the whole chain, in chunks, whose progress and
//! result the page shows without reading the chain itself.

use std::time::Duration;

use sqlx::PgPool;
use store::OrgId;
use store::audit::{AuditDecision, NewAuditEvent};

use crate::audit::event;
use crate::support::{Answer, App, Browser, org_of, sign_up, spawn_app};

/// Starts a verification from the page (as its button does) and follows the page until it
/// finished.
async fn verify(b: &mut Browser) -> Answer {
    let started = b.post("/audit/verify", &[]).await;
    assert_eq!(started.status, 303, "{}", started.body);
    assert_eq!(started.location.as_deref(), Some("/audit/verify"));
    for _ in 0..600 {
        let page = b.get("/audit/verify").await;
        assert_eq!(page.status, 200);
        if !page.body.contains("verify-running") {
            return page;
        }
        assert_eq!(
            page.headers.get("refresh").map(|v| v.to_str().unwrap()),
            Some("2"),
            "a running verification's page refreshes itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the verification never finished");
}

async fn store_events(app: &App, org: OrgId, n: i64) {
    let events: Vec<NewAuditEvent> = (0..n)
        .rev()
        .map(|i| event(org, i, AuditDecision::Allow))
        .collect();
    for batch in events.chunks(2000) {
        app.store.insert_audit_batch(batch).await.unwrap();
    }
}

async fn tamper(app: &App, org: OrgId, sequence: i64) -> uuid::Uuid {
    sqlx::query_scalar(
        "update audit_event set message = 'nothing to see' where organisation_id = $1 and sequence = $2 returning audit_event_id",
    )
    .bind(org.as_uuid())
    .bind(sequence)
    .fetch_one(app.store.pool())
    .await
    .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn verify_reports_an_intact_chain_and_names_an_altered_event(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    let never = b.get("/audit/verify").await;
    assert_eq!(never.status, 200);
    assert!(
        never.body.contains("has not been verified yet"),
        "{}",
        never.body
    );
    assert!(never.body.contains("Verify now"));
    assert!(verify(&mut b).await.body.contains("No events yet"));

    store_events(&app, org, 5).await;
    let ok = verify(&mut b).await;
    assert!(ok.body.contains("verify-intact"));
    assert!(
        ok.body.contains("Intact: all 5 events check out"),
        "{}",
        ok.body
    );
    assert!(
        ok.body.contains("Checked 5 events up to event #5"),
        "{}",
        ok.body
    );
    assert!(ok.body.contains("Verify again"));

    // Someone with database access rewrites event #3's message.
    let id = tamper(&app, org, 3).await;
    let broken = verify(&mut b).await;
    assert!(broken.body.contains("verify-broken"));
    assert!(
        broken
            .body
            .contains("Broken: event #3 was changed after it was recorded.")
    );
    assert!(broken.body.contains("2 events before it verified"));
    assert!(
        broken
            .body
            .contains(&format!("href=\"/audit/events/{id}\""))
    );
    // Each organisation verifies its own chain, and sees only its own result.
    let mut other = sign_up(&app, "bob@example.net", "Other").await;
    assert!(
        other
            .get("/audit/verify")
            .await
            .body
            .contains("has not been verified yet")
    );
    assert!(verify(&mut other).await.body.contains("No events yet"));
    assert!(
        b.get("/audit/verify")
            .await
            .body
            .contains("Broken: event #3")
    );
}

/// Over several chunks, a later run still finds an event changed after an earlier run had
/// checked it: nothing of an earlier run is trusted.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_run_rereads_the_chain_so_a_change_to_a_checked_event_is_found(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    let n = 2 * store::audit_verify::VERIFY_CHUNK + 7;
    store_events(&app, org, n).await;
    let ok = verify(&mut b).await;
    assert!(
        ok.body
            .contains(&format!("Intact: all {n} events check out")),
        "{}",
        ok.body
    );
    // The oldest events, checked by the first chunk of the run before.
    let id = tamper(&app, org, 2).await;
    let broken = verify(&mut b).await;
    assert!(
        broken
            .body
            .contains("Broken: event #2 was changed after it was recorded."),
        "{}",
        broken.body
    );
    assert!(broken.body.contains(&format!("/audit/events/{id}")));
}

/// The page shows a run's progress from the row the run keeps: loading it does not advance the
/// run or read the chain, so it answers the same whatever the log's size.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_page_shows_progress_and_an_interrupted_run_can_be_started_again(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut b = sign_up(&app, "ada@example.net", "Acme").await;
    let org = org_of(&app, "ada@example.net").await;
    store_events(&app, org, 300).await;
    // A run that has read its first 100 events (as its first chunk would).
    let mut tx = app.store.begin(org).await.unwrap();
    let started = store::audit_verify::start_audit_verification(&mut tx)
        .await
        .unwrap();
    assert!(started.new);
    store::audit_verify::continue_audit_verification(&mut tx, started.run_id, 100)
        .await
        .unwrap()
        .expect("the run goes on");
    tx.commit().await.unwrap();

    for _ in 0..2 {
        let page = b.get("/audit/verify").await;
        assert!(page.body.contains("verify-running"), "{}", page.body);
        assert!(
            page.body.contains("100 of 300 events read (33 %)"),
            "{}",
            page.body
        );
        assert_eq!(page.headers.get("refresh").unwrap(), "2");
        assert!(!page.body.contains("Verify again"), "one run at a time");
    }
    // Starting again while it runs starts nothing new.
    let again = b.post("/audit/verify", &[]).await;
    assert_eq!(again.status, 303);
    let mut tx = app.store.begin(org).await.unwrap();
    let v = store::audit_verify::audit_verification(&mut tx)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(v.run_id, started.run_id);
    assert_eq!(v.checked, 100, "the page never advanced the run");

    // Its process went away: no progress for a minute.
    sqlx::query("update audit_verification set heartbeat_at = now() - interval '1 minute'")
        .execute(app.store.pool())
        .await
        .unwrap();
    let stopped = b.get("/audit/verify").await;
    assert!(stopped.body.contains("verify-stopped"), "{}", stopped.body);
    assert!(stopped.body.contains("stopped before it finished"));
    assert!(stopped.headers.get("refresh").is_none());
    let ok = verify(&mut b).await;
    assert!(
        ok.body.contains("Intact: all 300 events check out"),
        "{}",
        ok.body
    );
    // The stale run's task, had it come back, would find itself replaced.
    let mut tx = app.store.begin(org).await.unwrap();
    assert!(
        store::audit_verify::continue_audit_verification(&mut tx, started.run_id, 100)
            .await
            .unwrap()
            .is_none()
    );
    tx.commit().await.unwrap();
}

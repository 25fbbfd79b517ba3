//! Tamper evidence and retention: verification catches an altered, an inserted and a removed
//! event (changed directly in SQL), and still verifies a chain that retention cut.

use serde_json::json;
use sqlx::{Executor as _, PgPool};
use store::audit::{ChainProblem, NewAuditEvent, verify_audit_chain};
use store::{OrgId, Store};
use time::{Duration, OffsetDateTime};

use crate::{org, record, store};

async fn ingest(store: &Store, org: OrgId, times: &[OffsetDateTime]) -> Vec<NewAuditEvent> {
    let events: Vec<NewAuditEvent> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = record(org, &uuid::Uuid::new_v4().to_string());
            r.occurred_at = *t;
            r.outcome = crate::ok_outcome();
            r.message = Some(format!("event {i}"));
            r.to_new_event()
        })
        .collect();
    store.insert_audit_batch(&events).await.unwrap();
    events
}

async fn verify(store: &Store, org: OrgId) -> store::audit::ChainReport {
    let mut tx = store.begin(org).await.unwrap();
    let r = verify_audit_chain(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();
    r
}

fn minutes_ago(n: usize) -> Vec<OffsetDateTime> {
    let now = OffsetDateTime::now_utc();
    (0..n)
        .rev()
        .map(|i| now - Duration::seconds(i as i64 + 1))
        .collect()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn verify_names_the_altered_inserted_and_removed_event(pool: PgPool) {
    let store = store(pool.clone());

    let altered = org(&store).await;
    let events = ingest(&store, altered, &minutes_ago(10)).await;
    assert_eq!(verify(&store, altered).await.problem, None);
    assert_eq!(verify(&store, altered).await.checked, 10);
    pool.execute(sqlx::AssertSqlSafe(format!(
        "update audit_event set arguments = '{}' where organisation_id = '{altered}' and sequence = 4",
        json!({"device_id": "someone-else"})
    )))
    .await
    .unwrap();
    assert_eq!(
        verify(&store, altered).await.problem,
        Some(ChainProblem::Altered {
            sequence: 4,
            audit_event_id: events[3].audit_event_id.as_uuid()
        })
    );

    let inserted = org(&store).await;
    ingest(&store, inserted, &minutes_ago(10)).await;
    let forged = uuid::Uuid::new_v4();
    pool.execute(sqlx::AssertSqlSafe(format!(
        r#"
        update audit_event set sequence = sequence + 1 where organisation_id = '{inserted}' and sequence >= 6;
        insert into audit_event (audit_event_id, organisation_id, occurred_at, sequence, prev_hash, hash,
            server_id, access_grant_id, identity, method, decision)
        select '{forged}', organisation_id, occurred_at, 6, hash, hash, server_id, access_grant_id,
            identity, method, 'allow'
        from audit_event where organisation_id = '{inserted}' and sequence = 5;
        "#
    )))
    .await
    .unwrap();
    assert!(matches!(
        verify(&store, inserted).await.problem,
        Some(ChainProblem::Altered { sequence: 6, audit_event_id } | ChainProblem::Inserted { sequence: 6, audit_event_id })
            if audit_event_id == forged
    ));

    let removed = org(&store).await;
    ingest(&store, removed, &minutes_ago(10)).await;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "delete from audit_event where organisation_id = '{removed}' and sequence = 7"
    )))
    .await
    .unwrap();
    assert_eq!(
        verify(&store, removed).await.problem,
        Some(ChainProblem::Removed { from: 7, to: 7 })
    );

    // Removing the newest or the oldest events is caught too (against the head; against genesis).
    let tail = org(&store).await;
    ingest(&store, tail, &minutes_ago(5)).await;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "delete from audit_event where organisation_id = '{tail}' and sequence >= 4"
    )))
    .await
    .unwrap();
    assert_eq!(
        verify(&store, tail).await.problem,
        Some(ChainProblem::Removed { from: 4, to: 5 })
    );
    let head = org(&store).await;
    ingest(&store, head, &minutes_ago(5)).await;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "delete from audit_event where organisation_id = '{head}' and sequence <= 2"
    )))
    .await
    .unwrap();
    assert_eq!(
        verify(&store, head).await.problem,
        Some(ChainProblem::Removed { from: 1, to: 2 })
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn retention_cuts_the_chain_where_verify_anchors(pool: PgPool) {
    let store = store(pool.clone());
    let kept = org(&store).await;
    let cut = org(&store).await;
    let now = OffsetDateTime::now_utc();
    let times = [
        now - Duration::days(6),
        now - Duration::days(5),
        now - Duration::days(4),
        now - Duration::hours(1),
        now - Duration::minutes(1),
    ];
    ingest(&store, kept, &times).await;
    ingest(&store, cut, &times).await;
    let mut tx = store.begin(cut).await.unwrap();
    store::audit::set_audit_retention(&mut tx, store::Actor::Operator, Some(2))
        .await
        .unwrap();
    assert_eq!(
        store::audit::audit_retention(&mut tx).await.unwrap(),
        Some(2)
    );
    tx.commit().await.unwrap();

    let report = store::audit::apply_audit_retention(&pool, now)
        .await
        .unwrap();
    assert_eq!(report.cuts.len(), 1);
    assert_eq!(
        (
            report.cuts[0].organisation_id,
            report.cuts[0].removed,
            report.cuts[0].first_sequence
        ),
        (cut, 3, 4)
    );
    let partition = |d: Duration| {
        format!(
            "audit_event_p{}",
            (now - d).date().to_string().replace('-', "")
        )
    };
    // Partitions still holding `kept`'s old events stay; the empty ones between are dropped.
    for days in [6, 5, 4] {
        assert!(
            !report
                .dropped_partitions
                .contains(&partition(Duration::days(days)))
        );
    }

    let r = verify(&store, cut).await;
    assert_eq!((r.problem, r.checked, r.first_sequence), (None, 2, Some(4)));
    assert_eq!(verify(&store, kept).await.checked, 5);
    // A second run changes nothing.
    assert!(
        store::audit::apply_audit_retention(&pool, now)
            .await
            .unwrap()
            .cuts
            .is_empty()
    );

    // Once `kept` has a retention too, the emptied old partitions are dropped.
    let mut tx = store.begin(kept).await.unwrap();
    store::audit::set_audit_retention(&mut tx, store::Actor::Operator, Some(2))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store::audit::apply_audit_retention(&pool, now)
        .await
        .unwrap();
    for days in [6, 5, 4] {
        assert!(
            report
                .dropped_partitions
                .contains(&partition(Duration::days(days))),
            "{report:?}"
        );
    }
    assert_eq!(verify(&store, kept).await.problem, None);

    // Removing the oldest kept event is not retention: it is reported.
    pool.execute(sqlx::AssertSqlSafe(format!(
        "delete from audit_event where organisation_id = '{cut}' and sequence = 4"
    )))
    .await
    .unwrap();
    assert_eq!(
        verify(&store, cut).await.problem,
        Some(ChainProblem::Removed { from: 4, to: 4 })
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn dropping_whole_partitions_records_the_anchor_too(pool: PgPool) {
    let store = store(pool.clone());
    let org = org(&store).await;
    let now = OffsetDateTime::now_utc();
    ingest(
        &store,
        org,
        &[
            now - Duration::days(5),
            now - Duration::days(4),
            now - Duration::minutes(1),
        ],
    )
    .await;
    let dropped = store::audit::drop_partitions_before(&pool, (now - Duration::days(2)).date())
        .await
        .unwrap();
    assert!(dropped.len() >= 2, "{dropped:?}");
    let r = verify(&store, org).await;
    assert_eq!((r.problem, r.checked, r.first_sequence), (None, 1, Some(3)));
}

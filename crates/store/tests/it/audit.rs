//! The audit log: idempotent chained ingestion, the viewer's reads, verification, partitions.

use serde_json::json;
use sqlx::PgPool;
use store::audit::{
    AuditDecision, AuditFilter, ChainProblem, NewAuditEvent, audit_hourly_counts, audit_page,
    drop_partitions_before, ensure_partitions, verify_audit_chain,
};
use store::{AuditEventId, GrantId, OrgId, ServerId};
use time::{Duration, OffsetDateTime, macros::date};

use crate::{org, store};

fn event(
    org: OrgId,
    server: ServerId,
    at: OffsetDateTime,
    tool: &str,
    decision: AuditDecision,
) -> NewAuditEvent {
    NewAuditEvent {
        audit_event_id: AuditEventId::new(),
        organisation_id: org,
        occurred_at: at,
        server_id: server,
        grant_id: GrantId::new(),
        identity: "noc-agent".into(),
        session_id: Some("s-1".into()),
        method: "tools/call".into(),
        tool_name: Some(tool.into()),
        arguments: json!({"device_id": "00236A-1", "nested": {"z": 1.5e-7, "a": [1, 2]}}),
        decision,
        rule: (decision == AuditDecision::Deny).then(|| "/tools/set_parameter/deny_if/0".into()),
        message: (decision == AuditDecision::Deny)
            .then(|| "Passwords are changed by the provisioning team only.".into()),
        policy_version: Some(3),
        upstream_status: Some(200),
        is_error: Some(false),
        latency_us: Some(1234),
        client_addr: Some("2001:db8::1".parse().unwrap()),
        user_agent: Some("claude-code/1.0".into()),
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn batches_are_idempotent_chained_and_paged_by_keyset(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    let (s1, s2) = (ServerId::new(), ServerId::new());
    let now = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for i in 0..10 {
        let decision = if i % 3 == 0 {
            AuditDecision::Deny
        } else {
            AuditDecision::Allow
        };
        let server = if i % 2 == 0 { s1 } else { s2 };
        events.push(event(
            a,
            server,
            now - Duration::minutes(i),
            if i < 5 {
                "reboot_device"
            } else {
                "get_parameter"
            },
            decision,
        ));
    }
    events.push(event(b, s1, now, "reboot_device", AuditDecision::Allow));

    let report = store.insert_audit_batch(&events).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (11, 0));
    // The ingester retries a batch it could not acknowledge: nothing is stored twice.
    let mut retry = events[5..].to_vec();
    retry.push(event(a, s1, now, "ping", AuditDecision::Passthrough));
    let report = store.insert_audit_batch(&retry).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (1, 6));

    let mut tx = store.begin(a).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = audit_page(&mut tx, &AuditFilter::default(), cursor, 4)
            .await
            .unwrap();
        seen.extend(
            page.events
                .iter()
                .map(|e| (e.event.occurred_at, e.event.audit_event_id)),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        11,
        "every event of the organisation once, none of the other's"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, strictly"
    );

    for (filter, expected) in [
        (
            AuditFilter {
                server: Some(s1),
                ..Default::default()
            },
            6,
        ),
        (
            AuditFilter {
                decision: Some(AuditDecision::Deny),
                ..Default::default()
            },
            4,
        ),
        (
            AuditFilter {
                tool: Some("get_parameter".into()),
                ..Default::default()
            },
            5,
        ),
        (
            AuditFilter {
                identity: Some("noc-agent".into()),
                ..Default::default()
            },
            11,
        ),
        (
            AuditFilter {
                grant: Some(events[0].grant_id),
                ..Default::default()
            },
            1,
        ),
        (
            AuditFilter {
                text: Some("PROVISIONING team".into()),
                ..Default::default()
            },
            4,
        ),
        (
            AuditFilter {
                text: Some("100%".into()),
                ..Default::default()
            },
            0,
        ),
        (
            AuditFilter {
                from: Some(now - Duration::seconds(150)),
                to: Some(now),
                ..Default::default()
            },
            2,
        ),
    ] {
        let page = audit_page(&mut tx, &filter, None, 100).await.unwrap();
        assert_eq!(page.events.len(), expected, "{filter:?}");
    }
    let first = &audit_page(&mut tx, &AuditFilter::default(), None, 1)
        .await
        .unwrap()
        .events[0];
    assert_eq!(
        first.event.client_addr,
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(first.event.arguments["nested"]["z"], json!(1.5e-7));

    let from = now - Duration::hours(2);
    let to = now + Duration::hours(1);
    let total: i64 = audit_hourly_counts(&mut tx, from, to, &AuditFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(total, 11);
    let denies: i64 = audit_hourly_counts(
        &mut tx,
        from,
        to,
        &AuditFilter {
            tool: Some("reboot_device".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .iter()
    .filter(|c| c.decision == AuditDecision::Deny)
    .map(|c| c.count)
    .sum();
    assert_eq!(denies, 2);

    let report = verify_audit_chain(&mut tx).await.unwrap();
    assert_eq!(
        (report.checked, report.first_sequence, report.problem),
        (11, Some(1), None)
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn verification_names_the_altered_inserted_or_removed_event(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let s = ServerId::new();
    let now = OffsetDateTime::now_utc();
    let events: Vec<_> = (0..5)
        .map(|i| {
            event(
                a,
                s,
                now + Duration::seconds(i),
                "reboot_device",
                AuditDecision::Allow,
            )
        })
        .collect();
    store.insert_audit_batch(&events).await.unwrap();
    let verify = || async {
        let mut tx = store.begin(a).await.unwrap();
        verify_audit_chain(&mut tx).await.unwrap().problem
    };
    assert_eq!(verify().await, None);

    sqlx::query("update audit_event set message = 'nothing to see' where sequence = 3")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        verify().await,
        Some(ChainProblem::Altered {
            sequence: 3,
            audit_event_id: events[2].audit_event_id.as_uuid()
        })
    );
    sqlx::query("update audit_event set message = null where sequence = 3")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(verify().await, None);

    sqlx::query("delete from audit_event where sequence = 2")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        verify().await,
        Some(ChainProblem::Removed { from: 2, to: 2 })
    );
    sqlx::query("delete from audit_event where sequence < 3")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        verify().await,
        Some(ChainProblem::Removed { from: 1, to: 2 }),
        "a chain cut at its start by anything but the retention job (which records where it cut) is reported"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn partitions_are_created_ahead_and_dropped_whole(pool: PgPool) {
    let store = store(pool.clone());
    store.migrate().await.unwrap();
    let today = OffsetDateTime::now_utc().date();
    let partition = |d: time::Date| format!("audit_event_p{}", d.to_string().replace('-', ""));
    let exists = |name: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("select to_regclass($1) is not null")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(
        exists(partition(today + Duration::days(14))).await,
        "two weeks ahead exist after migrate"
    );
    assert!(
        ensure_partitions(&pool, today, 3).await.unwrap().is_empty(),
        "ensuring twice creates nothing"
    );

    let created = ensure_partitions(&pool, date!(2020 - 01 - 01), 3)
        .await
        .unwrap();
    assert_eq!(
        created,
        [
            "audit_event_p20200101",
            "audit_event_p20200102",
            "audit_event_p20200103"
        ]
    );
    // An event on a day without a partition gets one from the batch itself.
    let a = org(&store, "a").await;
    let old = |d: time::Date| {
        event(
            a,
            ServerId::new(),
            d.midnight().assume_utc() + Duration::hours(12),
            "x",
            AuditDecision::Allow,
        )
    };
    store
        .insert_audit_batch(&[old(date!(2020 - 01 - 02)), old(date!(2020 - 01 - 05))])
        .await
        .unwrap();
    assert!(exists("audit_event_p20200105".into()).await);

    let dropped = drop_partitions_before(&pool, date!(2020 - 01 - 03))
        .await
        .unwrap();
    assert_eq!(dropped, ["audit_event_p20200101", "audit_event_p20200102"]);
    let left: i64 = sqlx::query_scalar("select count(*) from audit_event")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    let hours: i64 = sqlx::query_scalar("select count(*) from audit_hour_count")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(hours, 1, "the rollup forgets dropped days too");
    assert!(exists(partition(today)).await);
}

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

/// Events spread over many hours with sparse combinations: every filter, paged in small pages,
/// gives exactly the matching events newest first, as a scan of all events would. This drives the
/// search through its rounds over the hourly facets (several rounds per page, hours that the
/// page's bounds or cursor cut, text on top of exact filters) and the chart through the facets.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_search_walks_sparse_hours_and_agrees_with_a_full_scan(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    let servers = [ServerId::new(), ServerId::new()];
    let grants = [GrantId::new(), GrantId::new(), GrantId::new()];
    let tools = ["reboot_device", "get_parameter", "factory_reset"];
    // Whole microseconds, as stored: bounds finer than that would be rounded by Postgres.
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(40);
    let mut events = Vec::new();
    for i in 0..300_i64 {
        // Irregular gaps, so some hours hold many events and some none.
        let at = start + Duration::minutes(i * 7 + (i * i) % 23);
        let decision = match i % 11 {
            0 => AuditDecision::Deny,
            5 => AuditDecision::UpstreamError,
            _ => AuditDecision::Allow,
        };
        let mut e = event(
            a,
            servers[(i % 2) as usize],
            at,
            tools[(i % 3) as usize],
            decision,
        );
        e.grant_id = grants[(i % 3 + i / 150) as usize % 3];
        e.identity = format!("agent-{}", i % 4);
        if i % 37 == 0 {
            e.tool_name = None;
            e.method = "ping".into();
        }
        e.message = (i % 13 == 0).then(|| format!("device 00236A-{i} refused"));
        events.push(e);
        // The other organisation's events share every value and must never appear.
        let mut other = events.last().unwrap().clone();
        other.audit_event_id = store::AuditEventId::new();
        other.organisation_id = b;
        events.push(other);
    }
    for chunk in events.chunks(64) {
        store.insert_audit_batch(chunk).await.unwrap();
    }
    let ours: Vec<&NewAuditEvent> = events.iter().filter(|e| e.organisation_id == a).collect();
    let micros = |t: OffsetDateTime| t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap();

    let mid = start + Duration::hours(20) + Duration::minutes(17);
    let filters = [
        AuditFilter {
            grant: Some(grants[1]),
            tool: Some("factory_reset".into()),
            decision: Some(AuditDecision::Deny),
            ..Default::default()
        },
        AuditFilter {
            server: Some(servers[0]),
            decision: Some(AuditDecision::UpstreamError),
            ..Default::default()
        },
        AuditFilter {
            identity: Some("agent-3".into()),
            from: Some(start + Duration::hours(5) + Duration::minutes(31)),
            to: Some(mid),
            ..Default::default()
        },
        AuditFilter {
            tool: Some("reboot_device".into()),
            text: Some("00236A-".into()),
            ..Default::default()
        },
        AuditFilter {
            grant: Some(grants[2]),
            ..Default::default()
        },
        AuditFilter {
            decision: Some(AuditDecision::Hidden),
            ..Default::default()
        },
        AuditFilter {
            text: Some("00236A-1".into()),
            ..Default::default()
        },
        AuditFilter {
            from: Some(mid),
            ..Default::default()
        },
    ];
    let mut tx = store.begin(a).await.unwrap();
    for filter in &filters {
        let matches = |e: &&&NewAuditEvent| {
            filter.from.is_none_or(|f| micros(e.occurred_at) >= f)
                && filter.to.is_none_or(|t| micros(e.occurred_at) < t)
                && filter.server.is_none_or(|s| e.server_id == s)
                && filter.grant.is_none_or(|g| e.grant_id == g)
                && filter.identity.as_ref().is_none_or(|i| &e.identity == i)
                && filter
                    .tool
                    .as_ref()
                    .is_none_or(|t| e.tool_name.as_ref() == Some(t))
                && filter.decision.is_none_or(|d| e.decision == d)
                && filter.text.as_ref().is_none_or(|t| {
                    e.message
                        .as_ref()
                        .is_some_and(|m| m.to_lowercase().contains(&t.to_lowercase()))
                })
        };
        let mut expected: Vec<_> = ours
            .iter()
            .filter(matches)
            .map(|e| (micros(e.occurred_at), e.audit_event_id.as_uuid()))
            .collect();
        expected.sort_by(|x, y| y.cmp(x));

        for page_size in [1, 4, 50] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = audit_page(&mut tx, filter, cursor, page_size)
                    .await
                    .unwrap();
                assert!(page.events.len() as i64 <= page_size);
                seen.extend(
                    page.events
                        .iter()
                        .map(|e| (e.event.occurred_at, e.event.audit_event_id.as_uuid())),
                );
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "{filter:?}, pages of {page_size}");
        }

        if filter.text.is_none() && filter.from.is_none() {
            let hour = |t: OffsetDateTime| {
                t.replace_minute(0)
                    .unwrap()
                    .replace_second(0)
                    .unwrap()
                    .replace_nanosecond(0)
                    .unwrap()
            };
            let counts = audit_hourly_counts(
                &mut tx,
                start - Duration::hours(1),
                start + Duration::hours(48),
                filter,
            )
            .await
            .unwrap();
            let mut expected_counts = std::collections::BTreeMap::new();
            for e in ours.iter().filter(matches) {
                *expected_counts
                    .entry((hour(e.occurred_at), e.decision.as_str()))
                    .or_insert(0_i64) += 1;
            }
            let got: std::collections::BTreeMap<_, _> = counts
                .iter()
                .map(|c| ((c.hour, c.decision.as_str()), c.count))
                .collect();
            assert_eq!(got, expected_counts, "chart of {filter:?}");
        }
    }
    let nothing = AuditFilter {
        grant: Some(grants[0]),
        tool: Some("factory_reset".into()),
        decision: Some(AuditDecision::Hidden),
        ..Default::default()
    };
    assert!(
        audit_page(&mut tx, &nothing, None, 50)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    tx.rollback().await.unwrap();
}

/// One batch holding several organisations is stored in one transaction, and every audit table
/// still shows a forgetful query only its own organisation's rows.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_batch_of_several_organisations_stays_isolated(pool: PgPool) {
    let store = store(pool.clone());
    let a = org(&store, "a").await;
    let b = org(&store, "b").await;
    let now = OffsetDateTime::now_utc();
    let events: Vec<_> = (0..6)
        .map(|i| {
            event(
                if i % 2 == 0 { a } else { b },
                ServerId::new(),
                now - Duration::minutes(i),
                "reboot_device",
                AuditDecision::Deny,
            )
        })
        .collect();
    let report = store.insert_audit_batch(&events).await.unwrap();
    assert_eq!((report.inserted, report.duplicates), (6, 0));

    let mut tx = store.begin(a).await.unwrap();
    let conn = tx.raw_connection_for_tests();
    for table in [
        "audit_event",
        "audit_hour_count",
        "audit_hour_facet",
        "chain_head",
    ] {
        let orgs: Vec<uuid::Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select distinct organisation_id from {table}"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        assert_eq!(orgs, [a.as_uuid()], "{table} leaks another organisation");
    }
    let facets: i64 = sqlx::query_scalar("select sum(event_count)::int8 from audit_hour_facet")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(facets, 3);
    let err = sqlx::query(
        "insert into audit_hour_facet values ($1, now(), gen_random_uuid(), gen_random_uuid(), 'x', '', 'allow', 1)",
    )
    .bind(b.as_uuid())
    .execute(&mut *conn)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();
    for o in [a, b] {
        let mut tx = store.begin(o).await.unwrap();
        let report = verify_audit_chain(&mut tx).await.unwrap();
        assert_eq!((report.checked, report.problem), (3, None));
    }
}

/// Ingesters racing on overlapping batches of several organisations (claimed entries, retries)
/// store every event once, without deadlocking, and every chain verifies.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn concurrent_overlapping_batches_store_each_event_once(pool: PgPool) {
    let store = store(pool.clone());
    let orgs = [
        org(&store, "a").await,
        org(&store, "b").await,
        org(&store, "c").await,
    ];
    let now = OffsetDateTime::now_utc();
    let events: Vec<_> = (0..90)
        .map(|i| {
            event(
                orgs[i % 3],
                ServerId::new(),
                now - Duration::seconds(i as i64),
                "reboot_device",
                AuditDecision::Allow,
            )
        })
        .collect();
    let batches: Vec<Vec<NewAuditEvent>> = (0..6)
        .map(|k| events[k * 10..k * 10 + 30].to_vec())
        .collect();
    let mut tasks = Vec::new();
    for k in 0..6 {
        let store = store.clone();
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let mut inserted = 0;
            for j in 0..6 {
                inserted += store
                    .insert_audit_batch(&batches[(j + k) % 6])
                    .await
                    .unwrap()
                    .inserted;
            }
            inserted
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await.unwrap();
    }
    assert_eq!(
        inserted, 80,
        "events 0..80 are in some batch, each stored once"
    );
    for o in orgs {
        let mut tx = store.begin(o).await.unwrap();
        let report = verify_audit_chain(&mut tx).await.unwrap();
        assert_eq!(
            (report.checked, report.problem),
            (80 / 3 + u64::from(o != orgs[2]), None),
            "{o}"
        );
    }
}

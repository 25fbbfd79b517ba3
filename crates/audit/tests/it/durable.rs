//! Write-ahead, outcome, ingestion: nothing lost, nothing twice.

use std::time::{Duration, Instant};

use audit::{Journal, Outcome, StreamConfig, UNKNOWN_OUTCOME_MESSAGE};
use sqlx::PgPool;
use store::audit::AuditDecision;

use crate::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn write_ahead_then_outcome_is_one_event_with_the_outcome(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    let mut ticket = journal.write_ahead(record(org, "req-ok")).await.unwrap();
    ticket.record_mut().decision = AuditDecision::Allow;
    journal.record_outcome(ticket, ok_outcome()).await.unwrap();
    // A denial is recorded complete, never written ahead.
    let mut denied = record(org, "req-denied");
    denied.decision = AuditDecision::Deny;
    denied.message = Some("Passwords are changed by the provisioning team only.".into());
    denied.outcome = Outcome::Known {
        upstream_status: None,
        is_error: None,
        latency_us: 10,
    };
    journal.record(denied).await.unwrap();

    let mut ingester = ingester(&store, &streams, "a").await;
    let report = ingester.step().await.unwrap();
    assert_eq!(
        (report.inserted, report.unknown, report.deferred),
        (2, 0, 0)
    );
    let events = stored(&store, org).await;
    assert_eq!(events.len(), 2);
    let ok = &events
        .iter()
        .find(|e| e.event.audit_event_id == audit::audit_event_id_for("req-ok"))
        .unwrap()
        .event;
    assert_eq!(
        (
            ok.upstream_status,
            ok.is_error,
            ok.latency_us,
            ok.message.as_deref()
        ),
        (Some(200), Some(false), Some(1234), None)
    );
    assert_eq!(
        ok.arguments,
        serde_json::json!({"device_id": "00236A-1", "password": "[REDACTED]"})
    );
    // Nothing is left in the streams, and stepping again stores nothing more.
    let again = ingester.step().await.unwrap();
    assert_eq!(again.read, 0);
    assert_eq!(stored(&store, org).await.len(), 2);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn write_ahead_without_outcome_is_stored_as_unknown_after_the_grace_period(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    // The gateway "dies" right after forwarding: the ticket is dropped without an outcome.
    let started = Instant::now();
    drop(
        journal
            .write_ahead(record(org, "req-killed"))
            .await
            .unwrap(),
    );

    let mut ingester = ingester(&store, &streams, "a").await;
    let first = ingester.step().await.unwrap();
    assert_eq!(
        (first.deferred, first.inserted),
        (1, 0),
        "still within grace"
    );
    let events = ingest_until(&mut ingester, &store, org, |e| !e.is_empty()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(events.len(), 1);
    let e = &events[0].event;
    assert_eq!(e.decision, AuditDecision::Allow);
    assert_eq!(e.rule.as_deref(), Some("/tools/reboot_device"));
    assert_eq!((e.upstream_status, e.latency_us), (None, None));
    assert_eq!(e.message.as_deref(), Some(UNKNOWN_OUTCOME_MESSAGE));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_outcome_in_a_later_batch_still_wins_over_unknown(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    let ticket = journal.write_ahead(record(org, "req-slow")).await.unwrap();
    let mut ingester = ingester(&store, &streams, "a").await;
    assert_eq!(ingester.step().await.unwrap().deferred, 1);
    journal.record_outcome(ticket, ok_outcome()).await.unwrap();
    let events = ingest_until(&mut ingester, &store, org, |e| !e.is_empty()).await;
    assert_eq!(events[0].event.upstream_status, Some(200));
    // The write-ahead was acknowledged with its outcome: past the grace period nothing changes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = ingester.step().await.unwrap();
    assert_eq!((r.read, r.inserted), (0, 0));
    assert_eq!(stored(&store, org).await.len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_ingester_killed_mid_batch_loses_nothing_and_duplicates_nothing(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    answered_calls(&journal, org, "req-", 50).await;
    // Consumer `a` reads every entry and dies before storing or acknowledging.
    let mut a = ingester(&store, &streams, "a").await;
    let shard = streams.shard_of(org);
    let fetched = a.fetch(shard).await.unwrap();
    assert_eq!(fetched.len(), 100);
    drop(fetched);
    drop(a);
    // Consumer `b` sees no new entries, then claims `a`'s once they have been idle long enough.
    let mut b = ingester(&store, &streams, "b").await;
    let events = ingest_until(&mut b, &store, org, |e| e.len() >= 50).await;
    assert_eq!(events.len(), 50);

    // A consumer that committed but died before acknowledging: its retry is stored once.
    let t = journal.write_ahead(record(org, "req-late")).await.unwrap();
    journal.record_outcome(t, ok_outcome()).await.unwrap();
    let mut c = ingester(&store, &streams, "c").await;
    let fetched = c.fetch(shard).await.unwrap();
    let events: Vec<_> = fetched_records(&fetched);
    store.insert_audit_batch(&events).await.unwrap();
    drop(fetched);
    let events = ingest_until(&mut b, &store, org, |e| e.len() >= 51).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.step().await.unwrap();
    assert_eq!(stored(&store, org).await.len(), 51);
    let mut ids: Vec<_> = events.iter().map(|e| e.event.audit_event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 51);
}

fn fetched_records(fetched: &audit::Fetched) -> Vec<store::audit::NewAuditEvent> {
    fetched
        .records()
        .into_iter()
        .map(|r| r.to_new_event())
        .collect()
}

#[tokio::test]
async fn write_ahead_errors_fast_when_redis_is_unreachable() {
    // A private Redis, so that stopping it disturbs nobody.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is installed");
    let url = format!("redis://127.0.0.1:{port}");
    let streams = StreamConfig {
        prefix: "test:audit:unreachable".into(),
        call_timeout: Duration::from_millis(300),
        ..StreamConfig::default()
    };
    let journal = loop {
        match Journal::connect(&url, streams.clone()).await {
            Ok(j) => break j,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let org = store::OrgId::new();
    let t = journal.write_ahead(record(org, "before")).await.unwrap();
    drop(t);
    server.kill().await.unwrap();
    server.wait().await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let err = journal.write_ahead(record(org, "after")).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "took {:?}: {err}",
            started.elapsed()
        );
    }
    // Never connecting at all fails as fast.
    let started = Instant::now();
    assert!(Journal::connect(&url, streams).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(700));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_stream_deleted_under_the_ingester_is_recreated(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let mut ingester = ingester(&store, &streams, "a").await;
    let mut con = redis::Client::open(crate::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for shard in 0..streams.shards {
        let _: () = redis::cmd("DEL")
            .arg(streams.stream_key(shard))
            .query_async(&mut con)
            .await
            .unwrap();
    }
    ingester.step().await.unwrap();
    let journal = journal(&streams).await;
    let t = journal
        .write_ahead(record(org, "after-loss"))
        .await
        .unwrap();
    journal.record_outcome(t, ok_outcome()).await.unwrap();
    let events = ingest_until(&mut ingester, &store, org, |e| !e.is_empty()).await;
    assert_eq!(events.len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn outcomes_recorded_in_the_background_all_arrive_with_their_write_aheads(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    let mut tickets = Vec::new();
    for i in 0..400 {
        tickets.push(
            journal
                .write_ahead(record(org, &format!("req-{i}")))
                .await
                .unwrap(),
        );
    }
    // Queued back to back: the writer sends them in a few pipelines, not 400 round trips.
    for t in tickets {
        journal.record_outcome_in_background(t, ok_outcome());
    }
    let mut ingester = ingester(&store, &streams, "a").await;
    let events = ingest_until(&mut ingester, &store, org, |e| e.len() >= 400).await;
    assert_eq!(events.len(), 400);
    assert!(
        events.iter().all(|e| e.event.upstream_status == Some(200)),
        "every event has its outcome, none is unknown"
    );
    let again = ingester.step().await.unwrap();
    assert_eq!((again.read, again.deferred), (0, 0), "nothing left pending");
}

/// Writes `n` calls ahead and hands their outcomes to the background writer.
async fn queue_outcomes(journal: &Journal, org: store::OrgId, round: usize, n: usize) {
    let mut tickets = Vec::new();
    for i in 0..n {
        let request_id = format!("req-{round}-{i}");
        tickets.push(journal.write_ahead(record(org, &request_id)).await.unwrap());
    }
    for t in tickets {
        journal.record_outcome_in_background(t, ok_outcome());
    }
}

/// The `o` entries written so far across the shards of `streams`.
async fn outcome_entries(streams: &StreamConfig) -> usize {
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut n = 0;
    for shard in 0..streams.shards {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(streams.stream_key(shard))
            .arg("-")
            .arg("+")
            .query_async(&mut con)
            .await
            .unwrap();
        n += entries
            .iter()
            .filter(|(_, f)| f.iter().any(|(k, v)| k == "k" && v == "o"))
            .count();
    }
    n
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_flush_returns_once_every_queued_outcome_is_written(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    for round in 0..2 {
        queue_outcomes(&journal, org, round, 300).await;
        journal.flush(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            outcome_entries(&streams).await,
            300 * (round + 1),
            "all written when flush returned (round {round})"
        );
    }
    // Nothing queued: at once.
    let at = Instant::now();
    journal.flush(Duration::from_secs(5)).await.unwrap();
    assert!(at.elapsed() < Duration::from_secs(1));
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_flush_of_the_outbox_waits_for_its_outcome_tasks(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let journal = Journal::outbox(store.clone(), Duration::from_secs(5));
    for round in 0..2 {
        queue_outcomes(&journal, org, round, 50).await;
        journal.flush(Duration::from_secs(5)).await.unwrap();
        let rows = store.audit_outbox_of(org).await.unwrap();
        assert_eq!(rows.len(), 50 * (round + 1));
        assert!(
            rows.iter().all(|r| r.complete),
            "every outcome written when flush returned (round {round})"
        );
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_ingesters_of_one_process_split_the_shards_and_store_every_event_once(pool: PgPool) {
    let store = store(pool);
    let streams = StreamConfig {
        shards: 4,
        ..streams()
    };
    let journal = journal(&streams).await;
    let mut orgs = Vec::new();
    for i in 0..12 {
        let org = store
            .create_organisation(store::Actor::Operator, &format!("org-{i}"))
            .await
            .unwrap()
            .organisation_id;
        answered_calls(&journal, org, &format!("req-{i}-"), 3).await;
        orgs.push(org);
    }
    let shares = audit::ShardShare::split(2, streams.shards);
    assert_eq!(
        shares
            .iter()
            .map(|s| s.shards(4).collect())
            .collect::<Vec<Vec<u16>>>(),
        [vec![0, 2], vec![1, 3]]
    );
    let mut ingesters = Vec::new();
    for (k, share) in shares.into_iter().enumerate() {
        let config = IngestConfig {
            share,
            ..crate::ingest_config(&streams, &format!("worker-{k}"))
        };
        ingesters.push(
            Ingester::connect(&redis_url(), store.clone(), config)
                .await
                .unwrap(),
        );
    }
    for (k, ingester) in ingesters.iter_mut().enumerate() {
        let report = ingester.step().await.unwrap();
        let mine = orgs
            .iter()
            .filter(|o| usize::from(streams.shard_of(**o) % 2) == k)
            .count() as u64;
        // Each write-ahead reaches the ingester of its outcome, in the same batch.
        assert_eq!(
            (report.read, report.inserted, report.deferred, report.acked),
            (6 * mine, 3 * mine, 0, 6 * mine),
            "worker {k}"
        );
        for org in &orgs {
            let share = usize::from(streams.shard_of(*org) % 2);
            let expected = if share <= k { 3 } else { 0 };
            assert_eq!(stored(&store, *org).await.len(), expected, "worker {k}");
        }
    }
    for org in &orgs {
        assert_eq!(stored(&store, *org).await.len(), 3, "every event once");
    }
    for ingester in &mut ingesters {
        assert_eq!(ingester.step().await.unwrap().read, 0);
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_batch_larger_than_one_ack_command_is_acknowledged_and_deleted_whole(pool: PgPool) {
    let store = store(pool);
    let org = org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    // 240 calls: one step reads their 480 entries (the test batch is 500), acknowledged in two
    // commands of at most 256 ids.
    answered_calls(&journal, org, "req-", 240).await;
    let mut ingester = ingester(&store, &streams, "a").await;
    let report = ingester.step().await.unwrap();
    assert_eq!(
        (report.read, report.inserted, report.acked),
        (480, 240, 480)
    );
    assert_eq!(stream_len(&streams, org).await, 0, "every entry deleted");
    assert_eq!(stored(&store, org).await.len(), 240);
}

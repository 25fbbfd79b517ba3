//! Sealed sessions: any replica opens them; another grant cannot.

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_session_opened_on_one_replica_works_on_another(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let a = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let b = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;

    let mut session = Session::open(&a.url(&seed), &seed.token).await;
    session.url = b.url(&seed);
    let answer = session.call("retry_task", json!({"task_id": "x"})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json().get("result").is_some());
    let calls = sim.state.calls();
    assert_eq!(calls.len(), 1);
    // The upstream saw its own session id, which is not what the client holds.
    assert_ne!(calls[0].session_id, session.id);
    assert!(!session.id.contains(&calls[0].session_id));

    // The same sealed id with another grant of the same server is refused on both replicas.
    let (_, other) = mint(&store, seed.org, seed.server, "other").await;
    for gw in [&a, &b] {
        let stolen = post(
            &gw.url(&seed),
            Some(&other),
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            &[
                ("mcp-session-id", &session.id),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
        assert_eq!(stolen.status, 404);
    }
    assert_eq!(sim.state.calls().len(), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_ended_session_is_a_404_whatever_status_the_upstream_uses(pool: PgPool) {
    // server-everything (the TypeScript SDK's transport) answers requests on an unknown session
    // with 400 or 404 depending on its version; clients re-initialise only on 404.
    let store = store(pool);
    let upstream = everything().await;
    let seed = seed(
        &store,
        &upstream.url,
        r#"{"version":"1","default":"allow"}"#,
    )
    .await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    assert_eq!(session.request("ping", json!({})).await.status, 200);
    let deleted = http()
        .delete(gw.url(&seed))
        .bearer_auth(&seed.token)
        .header("mcp-session-id", &session.id)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let after = session.request("ping", json!({})).await;
    assert_eq!(after.status, 404, "{}", after.body);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn get_streams_pass_through_and_are_bounded(pool: PgPool) {
    let store = store(pool);
    let upstream = everything().await;
    let seed = seed(
        &store,
        &upstream.url,
        r#"{"version":"1","default":"allow"}"#,
    )
    .await;
    let mut settings = Settings::local();
    settings.max_streams = 1;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    let session = Session::open(&gw.url(&seed), &seed.token).await;
    let open_stream = || {
        http()
            .get(gw.url(&seed))
            .bearer_auth(&seed.token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session.id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    let stream = tokio::time::timeout(std::time::Duration::from_secs(5), open_stream())
        .await
        .expect("headers of the GET stream arrive at once")
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // This replica allows one stream at a time; the second is refused while the first is open.
    let second = open_stream().await.unwrap();
    assert_eq!(second.status(), 503);
    drop(stream);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let third = open_stream().await.unwrap();
    assert_eq!(
        third.status(),
        200,
        "the slot is given back when a stream ends"
    );
}

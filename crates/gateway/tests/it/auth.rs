//! Who may use a proxy URL: 401 for a missing, unknown, revoked or expired token; 403 for a token
//! of another server (another organisation's included) and for a foreign Host or Origin. The token
//! never reaches the upstream, whose own credentials are injected instead.

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use store::Actor;

use crate::support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"x"}}}"#;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn tokens_are_checked(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);

    let missing = post(&url, None, CALL, &[]).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(missing.header("x-request-id").is_some());

    let unknown = post(&url, Some("gh_grant_not-a-real-token"), CALL, &[]).await;
    assert_eq!(unknown.status, 401);
    assert!(
        unknown
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );

    // Revoked: refused at once (this gateway has no Redis, so the revocation is seen when the
    // cache entry's TTL ends; a fresh token is never cached before its first use).
    let (grant, token) = mint(&store, seed.org, seed.server, "to-revoke").await;
    let mut tx = store.begin(seed.org).await.unwrap();
    store::grant::revoke_grant(&mut tx, Actor::Operator, grant)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(post(&url, Some(&token), CALL, &[]).await.status, 401);

    // Expired.
    let mut tx = store.begin(seed.org).await.unwrap();
    let minted = store::grant::mint_grant(
        &mut tx,
        Actor::Operator,
        &store::grant::NewGrant {
            server: seed.server,
            policy_name: "default".into(),
            label: "short-lived".into(),
            identity: None,
            expires_at: Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(1)),
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let short = minted.token.expose().clone();
    assert!(!Session::open(&url, &short).await.id.is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        post(&url, Some(&short), CALL, &[]).await.status,
        401,
        "expired while cached"
    );

    // Request ids: the client's is echoed, otherwise one is made.
    let echoed = post(&url, None, CALL, &[("x-request-id", "req-123")]).await;
    assert_eq!(echoed.header("x-request-id"), Some("req-123"));

    assert!(sim.state.calls().is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn tokens_of_other_servers_and_organisations_are_forbidden(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let ours = seed(&store, &sim.url, SEED_POLICY).await;
    let theirs = seed(&store, &sim.url, SEED_POLICY).await; // another organisation
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;

    let other_org = post(&gw.url(&theirs), Some(&ours.token), CALL, &[]).await;
    assert_eq!(other_org.status, 403, "{}", other_org.body);
    let not_a_server = post(
        &format!("{}/mcp/not-a-uuid", gw.base),
        Some(&ours.token),
        CALL,
        &[],
    )
    .await;
    assert_eq!(not_a_server.status, 403);
    let random = post(
        &format!("{}/mcp/{}", gw.base, uuid::Uuid::new_v4()),
        Some(&ours.token),
        CALL,
        &[],
    )
    .await;
    assert_eq!(random.status, 403);
    assert!(sim.state.calls().is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn dns_rebinding_is_refused(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);
    let evil_host = post(&url, Some(&seed.token), CALL, &[("host", "evil.example")]).await;
    assert_eq!(evil_host.status, 403);
    let evil_origin = post(
        &url,
        Some(&seed.token),
        CALL,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(evil_origin.status, 403);
    let local_origin = post(
        &url,
        Some(&seed.token),
        initialize_body(),
        &[("origin", "http://localhost:3000")],
    )
    .await;
    assert_eq!(local_origin.status, 200, "{}", local_origin.body);
    assert!(sim.state.calls().is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_upstream_sees_its_credentials_not_the_token(pool: PgPool) {
    let store = store(pool);
    // The simulator requires its own bearer token: the gateway must inject it.
    let sim = sim(SimConfig {
        auth_token: Some("upstream-secret".into()),
        ..SimConfig::default()
    })
    .await;
    let seed = seed_with_headers(
        &store,
        &sim.url,
        SEED_POLICY,
        vec![("Authorization".into(), "Bearer upstream-secret".into())],
    )
    .await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    let answer = session.call("retry_task", json!({"task_id": "x"})).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json().get("result").is_some(), "{}", answer.body);
    assert_eq!(sim.state.calls().len(), 1);
    // A cookie from the client is not forwarded either (the sim would not care; the header
    // allow-list is unit-tested in `mcp`), and the session id the client holds is not the
    // upstream's.
    assert!(session.id.len() > 100, "sealed: {}", session.id);
}

//! Where the gateway may connect, and what it never passes on: loopback and private upstreams only
//! when the deployment allows them (by IP literal or by a name that resolves there), link-local
//! and metadata addresses never, non-MCP answers never, and no call without an id.

use gateway::Settings;
use genieacs_sim::SimConfig;
use sqlx::PgPool;

use crate::support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"t1"}}}"#;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn private_upstreams_are_refused_unless_allowed(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow"}"#;
    let by_ip = seed(&store, &sim.url, policy).await;
    let by_name = seed(&store, &sim.url.replace("127.0.0.1", "localhost"), policy).await;
    let mut settings = Settings::local();
    settings.allow_private_upstreams = false;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    for seed in [&by_ip, &by_name] {
        let answer = post(&gw.url(seed), Some(&seed.token), initialize_body(), &[]).await;
        let body = answer.json();
        assert_eq!(body["error"]["code"], -32603, "{}", answer.body);
        assert_eq!(
            body["error"]["data"]["upstream"], "unreachable",
            "{}",
            answer.body
        );
    }
    assert_eq!(sim.state.call_count(), 0);
    assert_eq!(
        sim.state.session_count(),
        0,
        "nothing reached the private upstream"
    );

    // The same upstreams, in a deployment that allows private networks.
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let answer = post(
        &gw.url(&by_name),
        Some(&by_name.token),
        initialize_body(),
        &[],
    )
    .await;
    assert!(answer.session_id().is_some(), "{}", answer.body);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn metadata_addresses_are_refused_even_when_private_ones_are_allowed(pool: PgPool) {
    let store = store(pool);
    let policy = r#"{"version":"1","default":"allow"}"#;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    // 2852039166 is 169.254.169.254 written as one number; the others are the same address
    // mapped into IPv6, and AWS's IPv6 metadata address.
    let mut tried = 0;
    for upstream in [
        "http://2852039166/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ] {
        let seeded = seed_if_accepted(&store, upstream, policy).await;
        let Some(seeded) = seeded else { continue };
        tried += 1;
        let started = std::time::Instant::now();
        let answer = post(
            &gw.url(&seeded),
            Some(&seeded.token),
            initialize_body(),
            &[],
        )
        .await;
        assert_eq!(
            answer.json()["error"]["data"]["upstream"],
            "unreachable",
            "{upstream}: {}",
            answer.body
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "refused before dialling"
        );
    }
    assert!(
        tried > 0,
        "the store refused every form, so the gateway's check went untested"
    );
}

/// Seeds a server with `upstream` when the store accepts the URL (it refuses some forms itself).
async fn seed_if_accepted(store: &store::Store, upstream: &str, policy: &str) -> Option<Seed> {
    let store = store.clone();
    let (upstream, policy) = (upstream.to_owned(), policy.to_owned());
    tokio::spawn(async move { seed(&store, &upstream, &policy).await })
        .await
        .ok()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn answers_that_are_not_mcp_never_reach_the_client(pool: PgPool) {
    let store = store(pool);
    let (addr, _task) = raw_upstream(Some(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 22\r\n\r\nAKIA-SECRET-CREDENTIAL",
    ))
    .await;
    let seed = seed(
        &store,
        &format!("http://{addr}/mcp"),
        r#"{"version":"1","default":"allow"}"#,
    )
    .await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let get = http()
        .get(gw.url(&seed))
        .bearer_auth(&seed.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("send");
    let status = get.status().as_u16();
    let body = get.text().await.expect("body");
    assert!(!body.contains("AKIA"), "{status}: {body}");
    assert!(status >= 500, "{status}: {body}");
    let post = post(&gw.url(&seed), Some(&seed.token), CALL, &[]).await;
    assert!(!post.body.contains("AKIA"), "{}", post.body);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_decided_method_without_an_id_is_refused(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, r#"{"version":"1","default":"deny"}"#).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);
    let session = Session::open(&url, &seed.token).await;
    let headers = [
        ("mcp-session-id", session.id.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let calls_before = sim.state.call_count();
    for body in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"reboot_device","arguments":{"device_id":"d"}}}"#,
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"genieacs://devices/list"}}"#,
    ] {
        let answer = post(&url, Some(&seed.token), body, &headers).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.json()["error"]["code"], -32600, "{}", answer.body);
    }
    assert_eq!(
        sim.state.call_count(),
        calls_before,
        "neither reached the upstream"
    );
}

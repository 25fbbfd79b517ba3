//! Hostile input: each a clear error, none reaching the upstream (proved by the simulator's log).

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn hostile_input_never_reaches_the_upstream(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow"}"#;
    let seed = seed(&store, &sim.url, policy).await;
    let mut settings = Settings::local();
    settings.max_body_bytes = 64 * 1024;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    let url = gw.url(&seed);
    let session = Session::open(&url, &seed.token).await;
    let headers = [
        ("mcp-session-id", session.id.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let t = Some(seed.token.as_str());

    let malformed = post(
        &url,
        t,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","#,
        &headers,
    )
    .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["code"], -32700);

    let not_rpc = post(
        &url,
        t,
        r#"{"id":1,"method":"tools/call","params":{"name":"retry_task"}}"#,
        &headers,
    )
    .await;
    assert_eq!(not_rpc.status, 400);
    assert_eq!(not_rpc.json()["error"]["code"], -32600);

    let no_name = post(
        &url,
        t,
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{}}}"#,
        &headers,
    )
    .await;
    assert_eq!(no_name.json()["error"]["code"], -32602, "{}", no_name.body);
    assert_eq!(no_name.json()["id"], 7);

    let args_not_object = post(&url, t, r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"retry_task","arguments":[1]}}"#, &headers).await;
    assert_eq!(args_not_object.json()["error"]["code"], -32602);

    // A duplicated name could make the policy and the upstream see different tools.
    let duplicate = post(&url, t, r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"retry_task","name":"delete_task","arguments":{}}}"#, &headers).await;
    assert!(
        duplicate.json().get("error").is_some(),
        "{}",
        duplicate.body
    );

    let notification = post(&url, t, r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"x"}}}"#, &headers).await;
    assert_eq!(notification.status, 400, "{}", notification.body);
    assert_eq!(notification.json()["error"]["code"], -32600);

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"{}"}}}}}}"#,
        "x".repeat(100 * 1024)
    );
    assert_eq!(post(&url, t, huge, &headers).await.status, 413);

    let batch = post(&url, t, r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"retry_task","arguments":{}}}]"#, &headers).await;
    assert_eq!(batch.status, 400, "{}", batch.body);

    // 2026-07-28: the headers name another tool than the body.
    let body = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"x"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}});
    let mismatch = post(
        &url,
        t,
        body.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "delete_task"),
        ],
    )
    .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.json()["error"]["code"], -32020);
    // Also when an older client sends the mirrored headers anyway.
    let old_mismatch = post(
        &url,
        t,
        body.to_string(),
        &[headers[0], headers[1], ("mcp-method", "tools/list")],
    )
    .await;
    assert_eq!(old_mismatch.status, 400, "{}", old_mismatch.body);

    let unsupported = post(
        &url,
        t,
        body.to_string(),
        &[("mcp-protocol-version", "1999-01-01")],
    )
    .await;
    assert_eq!(unsupported.status, 400);

    // A session id of another grant, or one that is not ours at all.
    let (_, other_token) = mint(&store, seed.org, seed.server, "other").await;
    let call = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"x"}}}"#;
    let stolen = post(&url, Some(&other_token), call, &headers).await;
    assert_eq!(stolen.status, 404, "{}", stolen.body);
    let forged = post(
        &url,
        t,
        call,
        &[("mcp-session-id", "upstream-session-guess")],
    )
    .await;
    assert_eq!(forged.status, 404);

    assert!(sim.state.calls().is_empty(), "{:?}", sim.state.calls());
    let events = gw.audit_events(seed.org).await;
    let refused = events
        .iter()
        .filter(|e| e.decision == store::audit::AuditDecision::Deny && e.message.is_some())
        .count();
    assert!(refused >= 10, "{events:#?}");
}

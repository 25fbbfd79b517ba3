//! Issue 5's seed scenario and the other decisions, from Rust.

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use store::audit::AuditDecision;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn seed_scenario_lists_limits_and_hides(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let (_, other_token) = mint(&store, seed.org, seed.server, "alice-laptop").await;
    let gw = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let url = gw.url(&seed);

    let mut session = Session::open(&url, &seed.token).await;
    assert_eq!(session.tool_names().await, vec!["retry_task"]);

    for i in 0..30 {
        let answer = session
            .call("retry_task", json!({"task_id": format!("t{i}")}))
            .await;
        assert_eq!(answer.status, 200);
        assert!(
            !text_of(&answer.json()).starts_with("[POLICY DENIED]"),
            "call {i} was denied: {}",
            answer.body
        );
    }
    let denied = session
        .call("retry_task", json!({"task_id": "t31"}))
        .await
        .json();
    assert_eq!(denied["result"]["isError"], true);
    let text = text_of(&denied);
    assert!(
        text.starts_with("[POLICY DENIED] rate limit `retry_task_rate`"),
        "{text}"
    );
    let meta = &denied["result"]["_meta"]["io.gatehouse/decision"];
    assert_eq!(meta["rule"], "/tools/retry_task/limits/0");
    assert_eq!(meta["policy_version"], 1);
    let retry_after = meta["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(retry_after > 0 && retry_after <= 60_000, "{retry_after}");

    // Another grant has its own 30.
    let mut other = Session::open(&url, &other_token).await;
    for i in 0..30 {
        let answer = other
            .call("retry_task", json!({"task_id": format!("o{i}")}))
            .await;
        assert!(
            !text_of(&answer.json()).starts_with("[POLICY DENIED]"),
            "{}",
            answer.body
        );
    }
    assert!(
        text_of(
            &other
                .call("retry_task", json!({"task_id": "o31"}))
                .await
                .json()
        )
        .starts_with("[POLICY DENIED]")
    );

    // reboot_device does not exist for these grants.
    let unknown = session
        .call("reboot_device", json!({"device_id": "x"}))
        .await
        .json();
    assert_eq!(unknown["error"]["code"], -32602);
    assert_eq!(unknown["error"]["message"], "Unknown tool: reboot_device");

    // Exactly the 60 admitted calls reached the upstream.
    let calls = sim.state.calls();
    assert_eq!(calls.len(), 60, "{calls:?}");
    assert!(calls.iter().all(|c| c.tool == "retry_task"));

    // Every request with a valid grant was audited, with the request id and the rule.
    let events = gw.audit_events(seed.org).await;
    let limited: Vec<_> = events
        .iter()
        .filter(|e| e.decision == AuditDecision::RateLimited)
        .collect();
    assert_eq!(limited.len(), 2);
    assert_eq!(
        limited[0].rule.as_deref(),
        Some("/tools/retry_task/limits/0")
    );
    assert_eq!(limited[0].tool_name.as_deref(), Some("retry_task"));
    assert_eq!(
        limited[0].arguments,
        json!(["task_id"]),
        "values are not recorded by default, only keys"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.decision == AuditDecision::Hidden)
            .count(),
        1
    );
    let allowed: Vec<_> = events
        .iter()
        .filter(|e| e.decision == AuditDecision::Allow)
        .collect();
    assert_eq!(allowed.len(), 60);
    assert!(
        allowed
            .iter()
            .all(|e| e.upstream_status == Some(200) && e.is_error.is_some()),
        "{allowed:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.client_addr == Some([127, 0, 0, 1].into()))
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn deny_hide_and_approval_answers(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow","hide":["delete_task"],
        "tools":{"download_firmware":{"action":"deny","reason":"Firmware rollouts go through change control."},
                 "reboot_device":{"approval":{"timeout":"10m","wait":"1s"}},
                 "set_parameter":{"deny_if":[{"path":"args.parameter_values","op":"contains","value":"Password"}]}}}"#;
    let seed = seed(&store, &sim.url, policy).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;

    let names = session.tool_names().await;
    assert!(!names.contains(&"delete_task".to_owned()), "{names:?}");
    assert!(names.contains(&"download_firmware".to_owned()));

    let denied = session
        .call(
            "download_firmware",
            json!({"device_id": "d", "file_name": "f"}),
        )
        .await
        .json();
    assert_eq!(
        text_of(&denied),
        "[POLICY DENIED] Firmware rollouts go through change control."
    );
    assert_eq!(
        denied["result"]["_meta"]["io.gatehouse/decision"]["rule"],
        "/tools/download_firmware/action"
    );

    let hidden = session
        .call("delete_task", json!({"task_id": "x"}))
        .await
        .json();
    assert_eq!(hidden["error"]["message"], "Unknown tool: delete_task");

    let approval = session
        .call("reboot_device", json!({"device_id": "d"}))
        .await
        .json();
    assert!(
        text_of(&approval).starts_with("[APPROVAL PENDING] approval "),
        "{approval}"
    );
    assert_eq!(approval["result"]["isError"], true);

    let password = session
        .call(
            "set_parameter",
            json!({"device_id": "d", "parameter_values": "[[\"X.Password\", \"p\"]]"}),
        )
        .await
        .json();
    assert!(
        text_of(&password).starts_with("[POLICY DENIED]"),
        "{password}"
    );

    assert!(
        sim.state.calls().is_empty(),
        "no denied call reached the upstream"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn redis_down_refuses_limited_calls(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    // The limiter reaches Redis through a TCP relay that the test then cuts.
    let relay = Relay::start("127.0.0.1:6379").await;
    let config = limits::RedisConfig {
        call_timeout: std::time::Duration::from_millis(300),
        connect_timeout: std::time::Duration::from_millis(300),
    };
    let limiter: limits::Limiter =
        limits::RedisLimiter::connect(&format!("redis://{}", relay.addr), config)
            .await
            .expect("limiter through the relay")
            .into();
    relay.cut();
    let gw =
        gateway_with_limiter(&store, Settings::local(), Limits::InProcess, Some(limiter)).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    let started = std::time::Instant::now();
    let refused = session
        .call("retry_task", json!({"task_id": "t"}))
        .await
        .json();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(refused["error"]["code"], -32603, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limiter")
    );
    assert!(sim.state.calls().is_empty());
}

/// An upstream whose `tools/list` comes in two pages (cursor `p2`), each with a visible and a
/// hidden tool, and some members the gateway must leave alone.
async fn paged_upstream() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let second = m["params"]["cursor"] == "p2";
            let result = if second {
                r#"{"tools":[{"name":"delete_task","inputSchema":{"type":"object"}},{"name":"retry_task","inputSchema":{"type":"object"},"x-extra":1.50}]}"#
            } else {
                r#"{"tools":[{"name":"reboot_device","inputSchema":{"type":"object"}},{"name":"get_parameter","inputSchema":{"type":"object"}}],"nextCursor":"p2","_meta":{"k":[1,2]}}"#
            };
            let reply = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, m["id"]);
            ([(http::header::CONTENT_TYPE, "application/json")], reply)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), task)
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_tools_list_page_is_filtered(pool: PgPool) {
    let store = store(pool);
    let (url, _upstream) = paged_upstream().await;
    let policy = r#"{"version":"1","default":"deny","tools":{"retry_task":{},"get_parameter":{}}}"#;
    let seed = seed(&store, &url, policy).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let list = |cursor: Option<&str>| {
        let params = match cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        json!({"jsonrpc":"2.0","id":5,"method":"tools/list","params":params}).to_string()
    };
    let first = post(&gw.url(&seed), Some(&seed.token), list(None), &[]).await;
    assert_eq!(
        first.body,
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"get_parameter","inputSchema":{"type":"object"}}],"nextCursor":"p2","_meta":{"k":[1,2]}}}"#
    );
    let second = post(&gw.url(&seed), Some(&seed.token), list(Some("p2")), &[]).await;
    assert_eq!(
        second.body,
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"retry_task","inputSchema":{"type":"object"},"x-extra":1.50}]}}"#
    );
}

//! Upstreams that are down, hang or send garbage give a JSON-RPC error within the timeout; SSE
//! answers pass through (and `tools/list` is filtered in them too).

use std::time::{Duration, Instant};

use gateway::Settings;
use genieacs_sim::{ResponseMode, SimConfig};
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":"x"}}}"#;

fn fast() -> Settings {
    let mut s = Settings::local();
    s.connect_timeout = Duration::from_millis(500);
    s.response_timeout = Duration::from_millis(800);
    s
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn down_hanging_and_garbage_upstreams_fail_clearly(pool: PgPool) {
    let store = store(pool);
    let gw = gateway(&store, fast(), Limits::InProcess).await;
    // max 1 per minute: if the refused calls had kept their slots, the second call would be
    // rate-limited instead of reporting the upstream.
    let one = r#"{"version":"1","default":"deny","tools":{"retry_task":{"limits":[{"counter":"c","window":"minute","max":1}]}}}"#;

    let dead = dead_address().await;
    let down = seed(&store, &format!("http://{dead}/mcp"), one).await;
    for _ in 0..2 {
        let started = Instant::now();
        let answer = post(&gw.url(&down), Some(&down.token), CALL, &[]).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let m = answer.json();
        assert_eq!(m["id"], 42);
        assert_eq!(m["error"]["code"], -32603, "{m}");
        assert_eq!(
            m["error"]["data"]["upstream"], "unreachable",
            "refunded, not limited: {m}"
        );
    }

    let (hang_addr, _hang) = raw_upstream(None).await;
    let hanging = seed(&store, &format!("http://{hang_addr}/mcp"), SEED_POLICY).await;
    let started = Instant::now();
    let answer = post(&gw.url(&hanging), Some(&hanging.token), CALL, &[]).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(answer.json()["error"]["data"]["upstream"], "timeout");

    let (garbage_addr, _garbage) = raw_upstream(Some(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\nnot json!",
    ))
    .await;
    let garbage = seed(&store, &format!("http://{garbage_addr}/mcp"), SEED_POLICY).await;
    let answer = post(&gw.url(&garbage), Some(&garbage.token), CALL, &[]).await;
    assert_eq!(
        answer.json()["error"]["data"]["upstream"],
        "bad_response",
        "{}",
        answer.body
    );

    let (not_http_addr, _not_http) = raw_upstream(Some(b"SSH-2.0-OpenSSH\r\n")).await;
    let not_http = seed(&store, &format!("http://{not_http_addr}/mcp"), SEED_POLICY).await;
    let answer = post(&gw.url(&not_http), Some(&not_http.token), CALL, &[]).await;
    assert_eq!(answer.json()["error"]["code"], -32603, "{}", answer.body);

    // SSE headers, then silence: the client gets the timeout error as the stream's last event.
    let (silent_addr, _silent) = raw_upstream_with(
        Some(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n: hello\n\n"),
        true,
    )
    .await;
    let silent = seed(&store, &format!("http://{silent_addr}/mcp"), SEED_POLICY).await;
    let started = Instant::now();
    let answer = post(&gw.url(&silent), Some(&silent.token), CALL, &[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.body.starts_with(": hello"), "{}", answer.body);
    assert_eq!(answer.json()["id"], 42);
    assert_eq!(
        answer.json()["error"]["data"]["upstream"],
        "timeout",
        "{}",
        answer.body
    );

    let (error_addr, _error) = raw_upstream(Some(
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy",
    ))
    .await;
    let failing = seed(&store, &format!("http://{error_addr}/mcp"), SEED_POLICY).await;
    let answer = post(&gw.url(&failing), Some(&failing.token), CALL, &[]).await;
    assert_eq!(
        answer.json()["error"]["data"]["status"],
        503,
        "{}",
        answer.body
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sse_answers_pass_through_and_tools_list_is_filtered_in_them(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig {
        response_mode: ResponseMode::Sse,
        ..SimConfig::default()
    })
    .await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;

    let list = session.request("tools/list", json!({})).await;
    assert!(
        list.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let names: Vec<_> = list.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["retry_task"]);
    assert!(!list.body.contains("reboot_device"), "{}", list.body);

    let call = session.call("retry_task", json!({"task_id": "x"})).await;
    assert!(
        call.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(call.body.contains("event: message"), "{}", call.body);
    assert!(call.json().get("result").is_some());
    assert_eq!(sim.state.calls().len(), 1);

    // DELETE ends the session; the upstream's 404 for the ended session reaches the client.
    let deleted = http()
        .delete(gw.url(&seed))
        .bearer_auth(&seed.token)
        .header("mcp-session-id", &session.id)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let after = session.call("retry_task", json!({"task_id": "x"})).await;
    assert_eq!(after.status, 404, "{}", after.body);

    // GET is passed through: the simulator has no server→client stream and says 405.
    let get = http()
        .get(gw.url(&seed))
        .bearer_auth(&seed.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
}

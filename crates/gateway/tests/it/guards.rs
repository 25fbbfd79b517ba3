//! What keeps one client from slowing the others: the negative cache and the per-address limit on
//! invalid tokens, the time limit on request bodies, the replica's budget of buffered bytes; and
//! `Mcp-Param-*` headers checked against the arguments.

use std::time::{Duration, Instant};

use gateway::Settings;
use serde_json::json;
use sqlx::PgPool;
use store::Actor;
use store::server::{PinnedTool, RiskClass};

use crate::support::*;

const ALLOW_ALL: &str = r#"{"version":"1","default":"allow"}"#;

/// A token with the grant prefix that no grant has.
fn junk_token() -> String {
    format!("ghg_{}", uuid::Uuid::new_v4().simple())
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn junk_tokens_are_remembered_and_limited_per_address_and_store_errors_are_not_remembered(
    pool: PgPool,
) {
    let store = store(pool.clone());
    let (_recorder, upstream, _task) = recorder().await;
    let seed = seed(&store, &upstream, ALLOW_ALL).await;
    let (_, uncached) = mint(&store, seed.org, seed.server, "second").await;
    let mut settings = Settings::local();
    settings.auth_failures_per_minute = 5;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

    // A valid token used once is cached.
    let ok = post(&gw.url(&seed), Some(&seed.token), ping, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let junk = junk_token();
    for _ in 0..5 {
        let refused = post(&gw.url(&seed), Some(&junk), ping, &[]).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    // The address used up its failures: tokens the gateway does not know are refused unread.
    let throttled = post(&gw.url(&seed), Some(&junk_token()), ping, &[]).await;
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    assert!(
        throttled.body.contains("too many invalid grant tokens"),
        "{}",
        throttled.body
    );
    let throttled = post(&gw.url(&seed), Some(&uncached), ping, &[]).await;
    assert_eq!(throttled.status, 429, "an uncached token waits too");
    // Known tokens are answered from the cache: the cached grant still works, and the junk one
    // still gets its 401.
    let ok = post(&gw.url(&seed), Some(&seed.token), ping, &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // With the store gone, a remembered junk token is still a prompt 401 (never read again),
    // while an unknown one is a 503 each time: errors are not remembered.
    pool.close().await;
    let remembered = post(&gw.url(&seed), Some(&junk), ping, &[]).await;
    assert_eq!(remembered.status, 401, "{}", remembered.body);
    let other = gateway(&store, Settings::local(), Limits::InProcess).await;
    let fresh = junk_token();
    for _ in 0..2 {
        let failed = post(&other.url(&seed), Some(&fresh), ping, &[]).await;
        assert_eq!(failed.status, 503, "{}", failed.body);
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_body_sent_too_slowly_is_refused_with_408(pool: PgPool) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let store = store(pool);
    let (recorder, upstream, _task) = recorder().await;
    let seed = seed(&store, &upstream, ALLOW_ALL).await;
    let mut settings = Settings::local();
    settings.body_timeout = Duration::from_millis(300);
    let gw = gateway(&store, settings, Limits::InProcess).await;

    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp/{} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n{{\"jsonrpc\":",
        seed.server, seed.token
    );
    let started = Instant::now();
    socket.write_all(head.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut reply))
        .await
        .expect("answered in time")
        .expect("read");
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains("the request body did not arrive within 300 ms"),
        "{reply}"
    );
    assert!(recorder.arrivals.lock().unwrap().is_empty());
}

/// An upstream that answers every POST with a JSON result of `size` bytes, the last byte only
/// after `delay` (so the gateway holds the rest meanwhile).
async fn slow_big_upstream(
    size: usize,
    delay: Duration,
    arrived: std::sync::Arc<tokio::sync::Notify>,
) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            arrived.notify_one();
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let head = format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":""#,
                message["id"]
            );
            let tail = r#""}]}}"#;
            let filler = "x".repeat(size - head.len() - tail.len());
            let first = format!("{head}{filler}{}", &tail[..tail.len() - 1]);
            let last = &tail[tail.len() - 1..];
            let chunks =
                futures_util::stream::iter([(first, Duration::ZERO), (last.to_owned(), delay)])
                    .then(|(chunk, wait)| async move {
                        tokio::time::sleep(wait).await;
                        Ok::<_, std::io::Error>(bytes::Bytes::from(chunk))
                    });
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from_stream(chunks))
                .expect("response")
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}/mcp"), task)
}

use futures_util::StreamExt as _;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn buffered_bytes_are_bounded_across_requests(pool: PgPool) {
    let store = store(pool);
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let (upstream, _task) =
        slow_big_upstream(40 * 1024, Duration::from_secs(2), arrived.clone()).await;
    let seed = seed(&store, &upstream, ALLOW_ALL).await;
    let mut settings = Settings::local();
    settings.max_response_bytes = 64 * 1024;
    settings.max_body_bytes = 64 * 1024;
    settings.max_buffered_bytes = 64 * 1024;
    let gw = gateway(&store, settings, Limits::InProcess).await;
    let call = |id: u32| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{}}})
            .to_string()
    };

    // The first answer holds 40 KiB while its last byte is awaited; a second one cannot fit.
    let url = gw.url(&seed);
    let (token, body) = (seed.token.clone(), call(1));
    let first = tokio::spawn(async move { post(&url, Some(&token), body, &[]).await });
    arrived.notified().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = post(&gw.url(&seed), Some(&seed.token), call(2), &[]).await;
    assert_eq!(second.status, 200);
    let error = second.json();
    assert!(
        error["result"].is_null(),
        "the second answer was not dropped"
    );
    assert_eq!(error["id"], 2);
    assert_eq!(error["error"]["data"]["gateway"], "busy", "{error}");
    assert_eq!(second.header("retry-after"), Some("1"));
    // A request body that does not fit is refused before it is read whole.
    let big = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"pad":"y".repeat(30 * 1024)}}}).to_string();
    let refused = post(&gw.url(&seed), Some(&seed.token), big.clone(), &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    let first = first.await.expect("first");
    assert_eq!(first.status, 200);
    let text = first.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .len();
    assert!(text > 40_000, "{text}");
    // Everything was given back: a big body and then a big answer fit again.
    let again = post(&gw.url(&seed), Some(&seed.token), big, &[]).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let again = post(&gw.url(&seed), Some(&seed.token), call(4), &[]).await;
    assert_eq!(again.status, 200);
    assert!(again.json()["result"].is_object());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn mcp_param_headers_must_agree_with_the_arguments(pool: PgPool) {
    let store = store(pool);
    let retry_task = json!({"name": "retry_task", "inputSchema": {"type": "object", "properties": {
        "task_id": {"type": "string", "x-mcp-header": "Task"},
        "note": {"type": "string"}}}});
    let list_devices = json!({"name": "list_devices", "inputSchema": {"type": "object"}});
    // The upstream lists the pinned definitions, so pinning lets the calls through.
    let (recorder, upstream, _task) =
        recorder_listing(json!([retry_task.clone(), list_devices.clone()])).await;
    let pinned = seed(&store, &upstream, ALLOW_ALL).await;
    let mut tx = store.begin(pinned.org).await.expect("tx");
    store::server::pin_tool_snapshot(
        &mut tx,
        Actor::Operator,
        pinned.server,
        &[
            PinnedTool::new(retry_task, RiskClass::Write, json!({})).unwrap(),
            PinnedTool::new(list_devices, RiskClass::Read, json!({})).unwrap(),
        ],
    )
    .await
    .expect("pin");
    tx.commit().await.expect("commit");
    let unpinned = seed(&store, &upstream, ALLOW_ALL).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;

    let call = |tool: &str, arguments: serde_json::Value| {
        json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":tool,"arguments":arguments}}).to_string()
    };
    let send = |seed: &Seed,
                tool: &'static str,
                arguments: serde_json::Value,
                extra: Vec<(&'static str, &'static str)>| {
        let (url, token, body) = (gw.url(seed), seed.token.clone(), call(tool, arguments));
        async move {
            let mut headers = vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", tool),
            ];
            headers.extend(extra);
            post(&url, Some(&token), body, &headers).await
        }
    };
    /// Whose server, which tool, its arguments, extra headers, the refusal expected (if any).
    type Case<'s> = (
        &'s Seed,
        &'static str,
        serde_json::Value,
        Vec<(&'static str, &'static str)>,
        Option<&'static str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            &pinned,
            "retry_task",
            json!({"task_id": "t-1"}),
            vec![("mcp-param-task", "t-1")],
            None,
        ),
        (
            &pinned,
            "retry_task",
            json!({"task_id": "t-1"}),
            vec![("mcp-param-task", "t-2")],
            Some("mcp-param-task header value 't-2' does not match the body value"),
        ),
        (
            &pinned,
            "retry_task",
            json!({"task_id": "t-1"}),
            vec![],
            Some("mcp-param-task header is missing"),
        ),
        (
            &pinned,
            "retry_task",
            json!({"task_id": "t-1", "note": "n"}),
            vec![("mcp-param-task", "t-1"), ("mcp-param-note", "n")],
            Some("mcp-param-note header is not declared by the tool's input schema"),
        ),
        (&pinned, "list_devices", json!({}), vec![], None),
        (
            &pinned,
            "list_devices",
            json!({}),
            vec![("mcp-param-task", "t-1")],
            Some("mcp-param-task header is not declared"),
        ),
        (
            &unpinned,
            "retry_task",
            json!({"task_id": "t-1"}),
            vec![],
            None,
        ),
        (
            &unpinned,
            "retry_task",
            json!({"task_id": "t-1"}),
            vec![("mcp-param-task", "t-1")],
            Some("cannot be checked: the tool's input schema is not known"),
        ),
    ];
    let mut forwarded = 0;
    for (i, (seed, tool, arguments, extra, refusal)) in cases.into_iter().enumerate() {
        let answer = send(seed, tool, arguments, extra).await;
        match refusal {
            None => {
                assert_eq!(answer.status, 200, "case {i}: {}", answer.body);
                assert!(
                    answer.json()["result"].is_object(),
                    "case {i}: {}",
                    answer.body
                );
                forwarded += 1;
            }
            Some(why) => {
                assert_eq!(answer.status, 400, "case {i}: {}", answer.body);
                let error = answer.json();
                assert_eq!(error["error"]["code"], -32020, "case {i}: {error}");
                assert!(
                    error["error"]["message"].as_str().unwrap().contains(why),
                    "case {i}: {error}"
                );
            }
        }
    }
    // Refused calls never reached the upstream.
    assert_eq!(recorder.arrivals.lock().unwrap().len(), forwarded);
}

/// The gateway's pool (`gatehouse gateway` connects with `GATEHOUSE_STATEMENT_TIMEOUT_MS`):
/// Postgres cancels a statement that runs past the timeout, so a slow query gives its connection
/// back instead of holding it while other tenants wait.
#[tokio::test]
async fn the_gateways_pool_cancels_slow_statements() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = store::Store::connect_with_statement_timeout(
        &url,
        store::secret::Keyring::new(store::secret::SealingKey::generate(1)),
        Duration::from_millis(100),
    )
    .await
    .expect("connect");
    let started = Instant::now();
    let slow = sqlx::query("select pg_sleep(5)")
        .execute(store.pool())
        .await;
    let error = slow.expect_err("cancelled").to_string();
    assert!(error.contains("statement timeout"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

//! SSE streams through the gateway: caps per replica and per organisation (POST streams counted),
//! idle timeout and maximum lifetime, streams closed within a second of a revocation or a server
//! edit, and every stream filtered (a `tools/list` answer replayed on a resumed GET stream).

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use gateway::Settings;
use sqlx::PgPool;

use crate::support::*;

/// An upstream whose behaviour is its path:
/// - `/hang`: GET and POST answer an SSE stream with a priming event, then stay silent;
/// - `/ping`: GET answers a stream with a `: ping` comment every 100 ms, forever;
/// - `/replay`: GET answers the events in `REPLAY` (a resumed stream replaying a `tools/list`
///   answer with a hidden tool), then ends;
/// - `/batch`, `/dup`: GET answers one event carrying a tool list the gateway cannot filter
///   (in a batch; with a duplicated `result`), then a notification, then ends.
async fn sse_upstream() -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Path;
    fn sse(body: Body) -> axum::response::Response {
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .expect("response")
    }
    let handler = |Path(mode): Path<String>| async move {
        let priming = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"id: 1\ndata: \n\n"))
        });
        match mode.as_str() {
            "hang" => sse(Body::from_stream(
                priming.chain(futures_util::stream::pending()),
            )),
            "ping" => sse(Body::from_stream(priming.chain(
                futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok(bytes::Bytes::from_static(b": ping\n\n")), ()))
                }),
            ))),
            "replay" => sse(Body::from(REPLAY)),
            "batch" => sse(Body::from(format!("data: [{LIST}]\n\n{NOTE}"))),
            "dup" => sse(Body::from(format!(
                "data: {{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"tools\":[]}},\"result\":{{\"tools\":[{{\"name\":\"get-env\",\"inputSchema\":{{}}}}]}}}}\n\n{NOTE}"
            ))),
            _ => axum::response::IntoResponse::into_response(axum::http::StatusCode::NOT_FOUND),
        }
    };
    let app = axum::Router::new().route("/{mode}", axum::routing::get(handler).post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}"), task)
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"get-env","inputSchema":{"type":"object"}}],"nextCursor":"c2"}}"#;
const NOTE: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"after\"}}\n\n";
const REPLAY: &str = concat!(
    "id: 1\ndata: \n\n",
    ": a comment\n\n",
    "id: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}},{\"name\":\"get-env\",\"inputSchema\":{\"type\":\"object\"}}],\"nextCursor\":\"c2\"}}\n\n",
    "id: 3\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"get-env\"}}\n\n",
);

const HIDE_GET_ENV: &str = r#"{"version":"1","default":"allow","hide":["get-env"]}"#;

/// Opens a GET stream (no session: the test upstreams have none).
async fn open_get(url: &str, token: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http()
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("GET")
}

/// A POST `tools/call` whose answer is a stream that never ends.
async fn open_post(url: &str, token: &str) -> reqwest::Response {
    http()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#)
        .send()
        .await
        .expect("POST")
}

/// Reads a stream to its end, failing the test after `limit`; the text and how long it took.
async fn read_to_end(response: reqwest::Response, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), body.next()).await {
            Ok(Some(Ok(chunk))) => text.extend_from_slice(&chunk),
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!(
                "the stream was still open after {limit:?}: {}",
                String::from_utf8_lossy(&text)
            ),
        }
    }
    (
        String::from_utf8_lossy(&text).into_owned(),
        started.elapsed(),
    )
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn streams_are_capped_per_replica_and_per_organisation_post_streams_included(pool: PgPool) {
    let store = store(pool);
    let (upstream, _task) = sse_upstream().await;
    let a = seed(&store, &format!("{upstream}/hang"), HIDE_GET_ENV).await;
    let b = seed(&store, &format!("{upstream}/hang"), HIDE_GET_ENV).await;
    let mut settings = Settings::local();
    settings.max_streams = 3;
    settings.max_streams_per_org = 2;
    // Long enough for the checks below on a busy machine, short enough to see slots come back.
    settings.stream_idle_timeout = Duration::from_secs(3);
    let gw = gateway(&store, settings, Limits::InProcess).await;

    let a1 = open_get(&gw.url(&a), &a.token, &[]).await;
    assert_eq!(a1.status(), 200);
    // A POST answered with a stream takes a slot too.
    let a2 = open_post(&gw.url(&a), &a.token).await;
    assert_eq!(a2.status(), 200);
    assert_eq!(
        a2.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let refused = answer(open_get(&gw.url(&a), &a.token, &[]).await).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("this organisation already has 2 open streams"),
        "{}",
        refused.body
    );
    let refused = answer(open_post(&gw.url(&a), &a.token).await).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    // Another organisation still gets the replica's last slot, then the replica is full.
    let b1 = open_get(&gw.url(&b), &b.token, &[]).await;
    assert_eq!(b1.status(), 200);
    let full = answer(open_get(&gw.url(&b), &b.token, &[]).await).await;
    assert_eq!(full.status, 503);
    assert!(full.body.contains("too many open streams"), "{}", full.body);

    // Silent GET streams end after the idle timeout, and their slots come back.
    let (_, took) = read_to_end(a1, Duration::from_secs(8)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (_, _) = read_to_end(b1, Duration::from_secs(8)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = open_get(&gw.url(&b), &b.token, &[]).await;
    assert_eq!(again.status(), 200);
    drop(a2);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn streams_end_after_idle_timeout_and_maximum_lifetime(pool: PgPool) {
    let store = store(pool);
    let (upstream, _task) = sse_upstream().await;
    let hang = seed(&store, &format!("{upstream}/hang"), HIDE_GET_ENV).await;
    let ping = seed(&store, &format!("{upstream}/ping"), HIDE_GET_ENV).await;
    let mut settings = Settings::local();
    settings.stream_idle_timeout = Duration::from_millis(400);
    settings.response_timeout = Duration::from_millis(400);
    settings.stream_max_lifetime = Duration::from_millis(1200);
    let gw = gateway(&store, settings, Limits::InProcess).await;

    // A silent request's stream ends with the request's timeout error.
    let (text, took) = read_to_end(
        open_post(&gw.url(&hang), &hang.token).await,
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_millis(1100), "{took:?}");
    assert!(text.starts_with("id: 1\ndata: \n\n"), "{text}");
    assert!(
        text.contains(r#""id":5"#) && text.contains(r#""upstream":"timeout""#),
        "{text}"
    );

    // A silent GET stream just ends.
    let (text, took) = read_to_end(
        open_get(&gw.url(&hang), &hang.token, &[]).await,
        Duration::from_secs(5),
    )
    .await;
    assert!(took < Duration::from_millis(1100), "{took:?}");
    assert_eq!(text, "id: 1\ndata: \n\n");

    // A stream that never falls silent still ends at its maximum lifetime.
    let (text, took) = read_to_end(
        open_get(&gw.url(&ping), &ping.token, &[]).await,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_millis(2500),
        "{took:?}"
    );
    assert!(text.matches(": ping\n\n").count() >= 5, "{text}");
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_revocation_or_a_server_edit_closes_open_streams_within_a_second(pool: PgPool) {
    let store = store(pool.clone());
    let (upstream, _task) = sse_upstream().await;
    let seed = seed(&store, &format!("{upstream}/ping"), HIDE_GET_ENV).await;
    let (_, other_token) = mint(&store, seed.org, seed.server, "other-agent").await;
    let channel = channel();
    let gw = gateway(
        &store,
        Settings::local(),
        Limits::Redis {
            channel: channel.clone(),
        },
    )
    .await;
    let redis = redis::Client::open(REDIS_URL).expect("redis");

    let revoked = open_get(&gw.url(&seed), &seed.token, &[]).await;
    let kept = open_get(&gw.url(&seed), &other_token, &[]).await;
    assert_eq!(
        (revoked.status().as_u16(), kept.status().as_u16()),
        (200, 200)
    );
    revoke(&store, &seed).await;
    gateway::invalidate::publish(&redis, &channel, "grant:revoked")
        .await
        .expect("publish");
    let (text, took) = read_to_end(revoked, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // It was live: the upstream's priming event (and, given time, its pings) came through.
    assert!(text.contains("id: 1"), "{text}");

    // The other grant's stream goes on, until its server is pointed elsewhere.
    let mut kept = kept.bytes_stream();
    let more = tokio::time::timeout(Duration::from_secs(1), kept.next()).await;
    assert!(matches!(more, Ok(Some(Ok(_)))), "{more:?}");
    sqlx::query("update server set upstream_url = $1 where server_id = $2")
        .bind(format!("{upstream}/hang"))
        .bind(seed.server.as_uuid())
        .execute(&pool)
        .await
        .expect("edit the server");
    gateway::invalidate::publish(&redis, &channel, "server:edited")
        .await
        .expect("publish");
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), kept.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(_) => break,
            Err(_) => panic!("the stream stayed open after its server changed"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_tool_list_replayed_on_a_resumed_get_stream_is_filtered(pool: PgPool) {
    let store = store(pool);
    let (upstream, _task) = sse_upstream().await;
    let replay = seed(&store, &format!("{upstream}/replay"), HIDE_GET_ENV).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;

    for extra in [&[][..], &[("last-event-id", "1")][..]] {
        let (text, _) = read_to_end(
            open_get(&gw.url(&replay), &replay.token, extra).await,
            Duration::from_secs(5),
        )
        .await;
        let expected = concat!(
            "id: 1\ndata: \n\n",
            ": a comment\n\n",
            "id: 2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}}],\"nextCursor\":\"c2\"}}\n\n",
            // Not a response: passes as it came, even though it names the hidden tool.
            "id: 3\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"get-env\"}}\n\n",
        );
        assert_eq!(text, expected);
    }

    // Tool lists the gateway cannot filter end the stream before they reach the client.
    for mode in ["batch", "dup"] {
        let s = seed(&store, &format!("{upstream}/{mode}"), HIDE_GET_ENV).await;
        let (text, _) = read_to_end(
            open_get(&gw.url(&s), &s.token, &[]).await,
            Duration::from_secs(5),
        )
        .await;
        assert!(!text.contains("get-env"), "{mode}: {text}");
        assert!(
            !text.contains("after"),
            "{mode}: the stream goes no further: {text}"
        );
    }
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_stopping_gateway_ends_its_get_streams_at_once_instead_of_holding_its_drain(
    pool: PgPool,
) {
    let store = store(pool);
    let (upstream, _task) = sse_upstream().await;
    let ping = seed(&store, &format!("{upstream}/ping"), HIDE_GET_ENV).await;
    let mut gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&ping);
    let streams: Vec<reqwest::Response> =
        futures_util::future::join_all((0..3).map(|_| open_get(&url, &ping.token, &[]))).await;
    assert!(streams.iter().all(|s| s.status() == 200));
    let reading = tokio::spawn(futures_util::future::join_all(
        streams
            .into_iter()
            .map(|s| read_to_end(s, Duration::from_secs(5))),
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let started = Instant::now();
    gw.stop().await;
    let stopped = started.elapsed();
    // Far inside the drain period (DRAIN), which the streams would otherwise have held.
    assert!(stopped < Duration::from_secs(2), "{stopped:?}");
    for (text, took) in reading.await.unwrap() {
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(
            text.starts_with("id: 1\ndata: \n\n") && text.contains(": ping\n\n"),
            "{text}"
        );
    }
}

//! Streamable HTTP edge cases: sessions, protocol versions, statuses, auth, Host/Origin, JSON/SSE.

use genieacs_sim::{ResponseMode, SimConfig};
use serde_json::json;

use crate::support::{Session, client, initialize_body, post, spawn, spawn_default};

const PING: &str = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;

#[tokio::test]
async fn session_lifecycle_initialize_reuse_delete_then_404() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;
    assert_eq!(s.version, "2025-11-25");
    assert_eq!(s.id.len(), 32);
    assert!(
        s.id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "visible ASCII"
    );

    // Reuse: several requests on the same session.
    for _ in 0..3 {
        let v = s.request("ping", json!({})).await;
        assert_eq!(v["result"], json!({}));
    }
    // A second session is independent.
    let other = Session::open(&sim.url).await;
    assert_ne!(other.id, s.id);
    assert_eq!(sim.state.session_count(), 2);

    // DELETE ends the session; afterwards it is unknown (404), and a second DELETE is 404 too.
    let del = client()
        .delete(&sim.url)
        .header("mcp-session-id", &s.id)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    let after = s.post_raw(PING, &[]).await;
    assert_eq!(after.status, 404);
    assert_eq!(after.json()["error"]["code"], json!(-32001));
    let again = client()
        .delete(&sim.url)
        .header("mcp-session-id", &s.id)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    // The other session still works.
    assert_eq!(other.request("ping", json!({})).await["result"], json!({}));
}

#[tokio::test]
async fn missing_or_unknown_session_id() {
    let sim = spawn_default().await;
    let missing = post(&sim.url, PING, &[]).await;
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("Mcp-Session-Id"), "{}", missing.body);
    let unknown = post(&sim.url, PING, &[("mcp-session-id", "no-such-session")]).await;
    assert_eq!(unknown.status, 404);
    // Notifications need a session too.
    let note = post(
        &sim.url,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &[],
    )
    .await;
    assert_eq!(note.status, 400);
    let del = client().delete(&sim.url).send().await.unwrap();
    assert_eq!(del.status(), 400);
}

#[tokio::test]
async fn protocol_versions() {
    let sim = spawn_default().await;
    for v in ["2025-03-26", "2025-06-18", "2025-11-25"] {
        let s = Session::open_with(&sim.url, v, &[]).await;
        assert_eq!(s.version, v, "the client's supported version is echoed");
    }
    // An unknown requested version gets our newest; the client decides whether to continue.
    let s = Session::open_with(&sim.url, "2024-11-05", &[]).await;
    assert_eq!(s.version, "2025-11-25");

    // After initialize: an unsupported header is 400; a missing header means 2025-03-26 (accepted).
    let bad = post(
        &sim.url,
        PING,
        &[
            ("mcp-session-id", &s.id),
            ("mcp-protocol-version", "1999-01-01"),
        ],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("Unsupported protocol version"),
        "{}",
        bad.body
    );
    let none = post(&sim.url, PING, &[("mcp-session-id", &s.id)]).await;
    assert_eq!(none.status, 200);
}

#[tokio::test]
async fn get_streams_stay_open_only_when_asked_for_and_only_for_a_session() {
    let sim = spawn(SimConfig {
        get_streams: true,
        ..SimConfig::default()
    })
    .await;
    let s = Session::open(&sim.url).await;
    let get = |session: Option<&str>, accept: &str| {
        let mut r = client().get(&sim.url).header("accept", accept);
        if let Some(id) = session {
            r = r.header("mcp-session-id", id);
        }
        r.send()
    };
    assert_eq!(get(None, "text/event-stream").await.unwrap().status(), 400);
    assert_eq!(
        get(Some("no-such-session"), "text/event-stream")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get(Some(&s.id), "application/json").await.unwrap().status(),
        406
    );
    let mut stream = get(Some(&s.id), "text/event-stream").await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = stream.chunk().await.unwrap().expect("the priming comment");
    assert_eq!(&first[..], b": open\n\n");
    // Nothing else arrives soon: the stream is idle, and still open.
    let next = tokio::time::timeout(std::time::Duration::from_millis(200), stream.chunk()).await;
    assert!(next.is_err(), "an idle stream sends nothing: {next:?}");
}

#[tokio::test]
async fn transport_statuses_and_jsonrpc_errors() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;

    let get = client()
        .get(&sim.url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, DELETE");

    let r = client()
        .post(&sim.url)
        .header("content-type", "text/plain")
        .header("accept", "application/json")
        .header("mcp-session-id", &s.id)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client()
        .post(&sim.url)
        .header("content-type", "application/json")
        .header("accept", "text/html")
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);

    let parse = s.post_raw("{not json", &[]).await;
    assert_eq!(parse.status, 400);
    assert_eq!(parse.json()["error"]["code"], json!(-32700));
    let batch = s.post_raw(&format!("[{PING}]"), &[]).await;
    assert_eq!(batch.status, 400);

    let unknown = s.request("prompts/list", json!({})).await;
    assert_eq!(unknown["error"]["code"], json!(-32601));
    let unknown_tool = s
        .request(
            "tools/call",
            json!({"name": "format_disk", "arguments": {}}),
        )
        .await;
    assert_eq!(unknown_tool["error"]["code"], json!(-32602));
    let missing_resource = s
        .request("resources/read", json!({"uri": "genieacs://nothing/here"}))
        .await;
    assert_eq!(missing_resource["error"]["code"], json!(-32002));

    // Notifications and client responses are accepted with 202 and no body.
    for body in [
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","id":99,"result":{}}"#,
    ] {
        let a = s.post_raw(body, &[]).await;
        assert_eq!(a.status, 202);
        assert!(a.body.is_empty());
    }
    // String ids are echoed verbatim.
    let a = s
        .post_raw(r#"{"jsonrpc":"2.0","id":"abc-1","method":"ping"}"#, &[])
        .await;
    assert_eq!(a.json()["id"], json!("abc-1"));
}

#[tokio::test]
async fn json_and_sse_modes() {
    let json_sim = spawn_default().await;
    let a = post(&json_sim.url, &initialize_body("2025-11-25"), &[]).await;
    assert_eq!(a.content_type, "application/json");

    let sse_sim = spawn(SimConfig {
        response_mode: ResponseMode::Sse,
        ..SimConfig::default()
    })
    .await;
    let a = post(&sse_sim.url, &initialize_body("2025-11-25"), &[]).await;
    assert_eq!(a.content_type, "text/event-stream");
    assert!(a.body.starts_with("event: message\ndata: {"), "{}", a.body);
    assert!(a.body.ends_with("\n\n"));
    assert_eq!(a.json()["result"]["protocolVersion"], json!("2025-11-25"));
    let s = Session::open(&sse_sim.url).await;
    let (text, is_error) = s
        .call("search_devices", json!({"query": "{}", "limit": "1"}))
        .await;
    assert!(!is_error, "{text}");

    // A client that only accepts JSON gets JSON even in SSE mode.
    let r = client()
        .post(&sse_sim.url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", &s.id)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn bearer_token_required_when_configured() {
    let sim = spawn(SimConfig {
        auth_token: Some("s3cret-upstream".into()),
        ..SimConfig::default()
    })
    .await;
    let init = initialize_body("2025-11-25");
    let none = post(&sim.url, &init, &[]).await;
    assert_eq!(none.status, 401);
    let wrong = post(&sim.url, &init, &[("authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, 401);
    let basic = post(
        &sim.url,
        &init,
        &[("authorization", "Basic czNjcmV0LXVwc3RyZWFt")],
    )
    .await;
    assert_eq!(basic.status, 401);
    let ok = Session::open_with(
        &sim.url,
        "2025-11-25",
        &[("authorization", "Bearer s3cret-upstream")],
    )
    .await;
    // Every later request needs the token too.
    assert_eq!(ok.post_raw(PING, &[]).await.status, 401);
    assert_eq!(
        ok.post_raw(PING, &[("authorization", "bearer s3cret-upstream")])
            .await
            .status,
        200
    );
    let r = client().get(&sim.url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

#[tokio::test]
async fn host_and_origin_guard() {
    let sim = spawn_default().await;
    let init = initialize_body("2025-11-25");
    let port = sim.addr.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let a = post(&sim.url, &init, &[("host", &host)]).await;
        assert_eq!(a.status, 200, "Host {host}");
    }
    let evil = post(&sim.url, &init, &[("host", "evil.example.com")]).await;
    assert_eq!(evil.status, 403);
    let origin = post(&sim.url, &init, &[("origin", "http://evil.example.com")]).await;
    assert_eq!(origin.status, 403);
    let good_origin = post(
        &sim.url,
        &init,
        &[("origin", &format!("http://localhost:{port}"))],
    )
    .await;
    assert_eq!(good_origin.status, 200);

    // An allow-list that names the gateway-facing host.
    let sim = spawn(SimConfig {
        allowed_hosts: vec!["acs-mcp.internal".into()],
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        post(&sim.url, &init, &[("host", "acs-mcp.internal:8080")])
            .await
            .status,
        200
    );
    assert_eq!(
        post(&sim.url, &init, &[]).await.status,
        403,
        "127.0.0.1 is not on this list"
    );
}

//! The crate's pieces composed the way the gateway composes them, on recorded-style traffic:
//! a request read and checked, an SSE response proxied event by event with only the `tools/list`
//! result rewritten, and a session id sealed on the way out and opened on the way back.

use http::{HeaderMap, HeaderName, HeaderValue};
use mcp::headers::{self, Disposition};
use mcp::message::{self, Body, Kind};
use mcp::reply::{self, Decision};
use mcp::session::{self, Binding, SessionKey};
use mcp::sse::SseParser;
use mcp::{Revision, tools_list};

/// What the gateway does with one upstream SSE stream answering `tools/list` id `list_id`:
/// forwards every event's bytes, except the response to the list, which it filters.
fn proxy_stream(chunks: &[&[u8]], list_id: &str, hidden: &[&str]) -> Vec<u8> {
    let mut parser = SseParser::new(1 << 20);
    let mut out = Vec::new();
    let handle = |event: mcp::SseEvent, out: &mut Vec<u8>| {
        let rewritten = event
            .message_data()
            .filter(|_| event.terminated)
            .and_then(|data| {
                let Ok(Body::Single(m)) = message::parse(data.as_bytes()) else {
                    return None;
                };
                let Kind::Response(r) = &m.kind else {
                    return None;
                };
                if r.id?.raw() != list_id {
                    return None;
                }
                let filtered =
                    tools_list::filter(data.as_bytes(), |name, _| !hidden.contains(&name)).ok()?;
                filtered.changed().then(|| {
                    event
                        .with_data(std::str::from_utf8(&filtered.bytes).unwrap())
                        .unwrap()
                })
            });
        match rewritten {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => out.extend_from_slice(event.raw()),
        }
    };
    for chunk in chunks {
        for event in parser.feed(chunk).unwrap() {
            handle(event, &mut out);
        }
    }
    if let Some(event) = parser.finish().unwrap() {
        handle(event, &mut out);
    }
    out
}

#[test]
fn sse_tools_list_is_filtered_and_everything_else_passes_byte_for_byte() {
    let upstream = concat!(
        "id: s1-0\r\ndata:\r\n\r\n",
        ": keep-alive\r\n\r\n",
        "event: message\r\nid: s1-1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r\n",
        "event: message\r\nid: s1-2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"elicitation/create\",\"params\":{}}\r\n\r\n",
        "event: message\r\nid: s1-3\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"get_env\"},{\"name\":\"echo\"}],\"nextCursor\":\"p2\"}}\r\n\r\n",
        "retry: 500\r\n\r\n",
    )
    .as_bytes();
    let expected = concat!(
        "id: s1-0\r\ndata:\r\n\r\n",
        ": keep-alive\r\n\r\n",
        "event: message\r\nid: s1-1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\r\n\r\n",
        "event: message\r\nid: s1-2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"elicitation/create\",\"params\":{}}\r\n\r\n",
        "id: s1-3\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"echo\"}],\"nextCursor\":\"p2\"}}\r\n\r\n",
        "retry: 500\r\n\r\n",
    )
    .as_bytes();
    // Whatever the chunking, the client gets the same bytes.
    for size in [1, 2, 3, 5, 8, 13, 64, upstream.len()] {
        let chunks: Vec<&[u8]> = upstream.chunks(size).collect();
        let got = proxy_stream(&chunks, "2", &["get_env"]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "chunks of {size}"
        );
    }
    // Nothing hidden: the stream passes unchanged.
    let chunks: Vec<&[u8]> = upstream.chunks(7).collect();
    assert_eq!(proxy_stream(&chunks, "2", &[]), upstream);
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                HeaderName::try_from(*n).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_denied_call_on_a_2026_request() {
    let body = br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"get_env","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":"c-1"}}}"#;
    let request = header_map(&[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get_env"),
        ("authorization", "Bearer gh_grant_token"),
    ]);
    let revision = headers::protocol_version(&request).unwrap().unwrap();
    assert_eq!(revision, Revision::V2026_07_28);
    let Body::Single(m) = message::parse(body).unwrap() else {
        panic!("single")
    };
    headers::check_mirrored_headers(&request, &m).unwrap();
    let call = m.tool_call().unwrap();
    assert_eq!(call.name, "get_env");
    // The grant token stays at the gateway.
    assert!(
        headers::forwardable_request_headers(&request)
            .get("authorization")
            .is_none()
    );

    let denial = reply::denied(
        call.id,
        "get_env is hidden by policy",
        Decision {
            rule: "/hide/0",
            policy_version: 4,
        },
        revision,
    );
    let sse = String::from_utf8(denial.sse_event()).unwrap();
    assert!(sse.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"c-1\",\"result\":{\"resultType\":\"complete\""));

    // The same call with a header naming another tool never reaches a decision.
    let lying = header_map(&[
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
    ]);
    let mismatch = headers::check_mirrored_headers(&lying, &m).unwrap_err();
    let answer = reply::header_mismatch(m.id(), &mismatch);
    assert_eq!(answer.status(), http::StatusCode::BAD_REQUEST);
    assert!(
        std::str::from_utf8(answer.json())
            .unwrap()
            .contains("-32020")
    );
}

#[test]
fn session_ids_cross_the_gateway_sealed() {
    let key = SessionKey::derive(&[7u8; 32]);
    let binding = Binding {
        grant_id: "g-1",
        server_id: "s-1",
    };
    // initialize response from the upstream: its session id is sealed for the client.
    let upstream_response = header_map(&[
        ("content-type", "text/event-stream"),
        ("mcp-session-id", "upstream-session-42"),
    ]);
    assert_eq!(
        headers::response_header(&headers::MCP_SESSION_ID),
        Disposition::Session
    );
    let upstream_id = upstream_response
        .get(headers::MCP_SESSION_ID)
        .unwrap()
        .to_str()
        .unwrap();
    let sealed = session::seal(&key, upstream_id, binding, 1_800_000_000, None).unwrap();
    let mut to_client = headers::forwardable_response_headers(&upstream_response);
    to_client.insert(
        headers::MCP_SESSION_ID,
        headers::header_value(&sealed).unwrap(),
    );
    assert_eq!(to_client.len(), 2);

    // The client's next request, on another replica: opened, and the upstream's id restored.
    let opened = session::open(&key, &sealed, binding, 1_800_000_100).unwrap();
    assert_eq!(opened.upstream_session_id, "upstream-session-42");
    // Presented with another grant: refused.
    let thief = Binding {
        grant_id: "g-2",
        ..binding
    };
    assert!(session::open(&key, &sealed, thief, 1_800_000_100).is_err());
}

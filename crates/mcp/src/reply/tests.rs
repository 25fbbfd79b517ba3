use super::*;
use crate::message::{Body, parse};

fn text(reply: &Reply) -> &str {
    std::str::from_utf8(reply.json()).unwrap()
}

const DECISION: Decision<'static> = Decision {
    rule: "/tools/get_env",
    policy_version: 3,
};

#[test]
fn writes_replies() {
    let id = Id::parse("7").unwrap();
    let sid = Id::parse(r#""a\u00e9""#).unwrap();
    let cases: Vec<(&str, Reply, StatusCode, &str)> = vec![
        (
            "denied",
            denied(
                id,
                "get_env is not allowed.",
                DECISION,
                Revision::V2025_11_25,
            ),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"[POLICY DENIED] get_env is not allowed."}],"isError":true,"_meta":{"io.gatehouse/decision":{"outcome":"denied","rule":"/tools/get_env","policy_version":3}}}}"#,
        ),
        (
            "denied, 2026-07-28 result type, string id echoed exactly",
            denied(sid, "no", DECISION, Revision::V2026_07_28),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":"a\u00e9","result":{"resultType":"complete","content":[{"type":"text","text":"[POLICY DENIED] no"}],"isError":true,"_meta":{"io.gatehouse/decision":{"outcome":"denied","rule":"/tools/get_env","policy_version":3}}}}"#,
        ),
        (
            "rate limited",
            rate_limited(
                id,
                "retry_task_rate (30 per minute)",
                12_001,
                DECISION,
                Revision::V2025_06_18,
            ),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"[POLICY DENIED] rate limit retry_task_rate (30 per minute) reached, retry after 13 s"}],"isError":true,"_meta":{"io.gatehouse/decision":{"outcome":"rate_limited","rule":"/tools/get_env","policy_version":3,"retry_after_ms":12001}}}}"#,
        ),
        (
            "approval pending",
            approval_pending(
                id,
                "ap_123",
                "is waiting for a human; retry the same call once it is approved.",
                DECISION,
                Revision::V2025_06_18,
            ),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"[APPROVAL PENDING] approval ap_123 is waiting for a human; retry the same call once it is approved."}],"isError":true,"_meta":{"io.gatehouse/decision":{"outcome":"approval_pending","rule":"/tools/get_env","policy_version":3,"approval_id":"ap_123"}}}}"#,
        ),
        (
            "unknown tool",
            unknown_tool(id, "reboot_device"),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: reboot_device"}}"#,
        ),
        (
            "upstream timeout",
            upstream_failed(Some(id), UpstreamFailure::Timeout),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"The upstream MCP server did not answer in time","data":{"upstream":"timeout"}}}"#,
        ),
        (
            "upstream status",
            upstream_failed(Some(id), UpstreamFailure::Status(502)),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"The upstream MCP server answered with HTTP 502","data":{"upstream":"status","status":502}}}"#,
        ),
        (
            "upstream unreachable, no id",
            upstream_failed(None, UpstreamFailure::Unreachable),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"The upstream MCP server could not be reached","data":{"upstream":"unreachable"}}}"#,
        ),
        (
            "limiter unavailable",
            unavailable(Some(id), "rate limiter"),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"Gatehouse cannot reach its rate limiter; the call was refused and did not reach the upstream"}}"#,
        ),
        (
            "header mismatch",
            header_mismatch(
                Some(id),
                &HeaderMismatch("Mcp-Name header is missing".into()),
            ),
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32020,"message":"Header mismatch: Mcp-Name header is missing"}}"#,
        ),
        (
            "unsupported version",
            unsupported_protocol_version(Some(id), "2099-01-01"),
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32022,"message":"Unsupported protocol version: 2099-01-01","data":{"supported":["2024-11-05","2025-03-26","2025-06-18","2025-11-25","2026-07-28"],"requested":"2099-01-01"}}}"#,
        ),
        (
            "progress",
            progress(
                Id::parse(r#""tok""#).unwrap(),
                3,
                None,
                Some("waiting for approval ap_1"),
            ),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":3,"message":"waiting for approval ap_1"}}"#,
        ),
        (
            "progress with total, integer token",
            progress(Id::parse("12").unwrap(), 1, Some(10), None),
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":12,"progress":1,"total":10}}"#,
        ),
    ];
    let mut failures = Vec::new();
    for (name, reply, status, expected) in &cases {
        if text(reply) != *expected || reply.status() != *status {
            failures.push(format!(
                "{name}\n  expected: {status} {expected}\n  got:      {} {}",
                reply.status(),
                text(reply)
            ));
        }
        // Every reply is a valid JSON-RPC message by our own reader.
        assert!(parse(reply.json()).is_ok(), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn message_errors() {
    let cases: &[(&[u8], StatusCode, &str)] = &[
        (
            b"{",
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error: the body is not JSON: EOF while parsing an object at line 1 column 1"}}"#,
        ),
        (
            br#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#,
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request: the id must be a string or an integer"}}"#,
        ),
        (
            br#"{"jsonrpc":"2.0","id":"q","method":7}"#,
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":"q","error":{"code":-32600,"message":"Invalid Request: the method must be a string"}}"#,
        ),
        (
            br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"a","arguments":[]}}"#,
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Invalid params: tools/call arguments must be an object"}}"#,
        ),
    ];
    for (body, status, expected) in cases {
        let e = parse(body).unwrap_err();
        let reply = message_error(&e);
        assert_eq!(text(&reply), *expected);
        assert_eq!(reply.status(), *status);
    }
}

#[test]
fn sse_framing() {
    let reply = unknown_tool(Id::parse("1").unwrap(), "a\nb");
    let event = reply.sse_event();
    let mut parser = crate::sse::SseParser::new(1 << 16);
    let events = parser.feed(&event).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.as_deref(), Some("message"));
    assert_eq!(events[0].data.as_deref().unwrap().as_bytes(), reply.json());
    assert_eq!(
        String::from_utf8(event).unwrap(),
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,\"message\":\"Unknown tool: a\\nb\"}}\n\n"
    );
}

#[test]
fn denial_reads_back_as_a_tool_result() {
    let reply = denied(
        Id::parse("9").unwrap(),
        "x",
        DECISION,
        Revision::V2025_06_18,
    );
    let Body::Single(m) = parse(reply.json()).unwrap() else {
        panic!("single")
    };
    assert_eq!(m.id().unwrap().raw(), "9");
    let v: Value = serde_json::from_slice(reply.json()).unwrap();
    assert_eq!(v["result"]["isError"], true);
    assert_eq!(
        v["result"]["_meta"][DECISION_META_KEY]["rule"],
        "/tools/get_env"
    );
}

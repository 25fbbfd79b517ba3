use super::*;
use crate::message::{Body, parse};
use serde_json::json;

/// Header name and raw value pairs, as a test writes them.
type Pairs<'a> = [(&'a str, &'a [u8])];

fn headers(pairs: &Pairs<'_>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::try_from(*name).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    map
}

fn single_message(body: &str) -> Message<'_> {
    match parse(body.as_bytes()).unwrap() {
        Body::Single(m) => m,
        Body::Batch(_) => panic!("single"),
    }
}

#[test]
fn revisions() {
    for r in Revision::ALL {
        assert_eq!(Revision::parse(r.as_str()), Some(r));
        assert_eq!(r.to_string(), r.as_str());
    }
    assert_eq!(Revision::parse("2025-06-19"), None);
    assert_eq!(Revision::parse(" 2025-06-18"), None);
    assert!(Revision::V2025_11_25.has_sessions());
    assert!(!Revision::V2026_07_28.has_sessions());
    assert!(Revision::V2025_03_26.allows_batches());
    assert!(!Revision::V2025_06_18.allows_batches());
    assert!(Revision::V2026_07_28.mirrors_headers());
    assert!(!Revision::V2025_11_25.mirrors_headers());
    assert!(Revision::V2026_07_28.has_result_type());
}

#[test]
fn protocol_version_header() {
    assert_eq!(protocol_version(&headers(&[])), Ok(None));
    assert_eq!(
        protocol_version(&headers(&[("MCP-Protocol-Version", b"2025-06-18")])),
        Ok(Some(Revision::V2025_06_18))
    );
    assert_eq!(
        protocol_version(&headers(&[("mcp-protocol-version", b"2099-01-01")])),
        Err(UnsupportedVersion("2099-01-01".into()))
    );
    assert!(
        protocol_version(&headers(&[
            ("mcp-protocol-version", b"2025-06-18"),
            ("mcp-protocol-version", b"2025-06-18")
        ]))
        .is_err()
    );
}

#[test]
fn sentinel_values() {
    let cases: &[(&str, &str)] = &[
        ("us-west1", "us-west1"),
        ("Hello, \u{4e16}\u{754c}", "=?base64?SGVsbG8sIOS4lueVjA==?="),
        (" padded ", "=?base64?IHBhZGRlZCA=?="),
        ("line1\nline2", "=?base64?bGluZTEKbGluZTI=?="),
        ("=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="),
        ("file:///projects/a b.txt", "file:///projects/a b.txt"),
    ];
    for (plain, encoded) in cases {
        assert_eq!(encode_value(plain), *encoded, "encoding {plain:?}");
        assert_eq!(
            decode_value(encoded).as_deref(),
            Some(*plain),
            "decoding {encoded:?}"
        );
    }
    assert_eq!(decode_value("=?base64?not base64!?="), None);
    assert_eq!(decode_value("=?base64?/w==?="), None, "not UTF-8 inside");
    // Markers are case-sensitive: anything else is a plain value.
    assert_eq!(
        decode_value("=?BASE64?YQ==?=").as_deref(),
        Some("=?BASE64?YQ==?=")
    );
}

#[test]
fn mirrored_headers() {
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let call_unicode =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wetter_\u00fc"}}"#;
    let read =
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a.txt"}}"#;
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let notification = r#"{"jsonrpc":"2.0","method":"notifications/whatever"}"#;
    let ok = "ok";
    let cases: &[(&str, &str, &Pairs<'_>, &str)] = &[
        (
            "all agree",
            call,
            &[
                ("mcp-protocol-version", b"2026-07-28"),
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"get_weather"),
            ],
            ok,
        ),
        (
            "name in base64",
            call,
            &[
                ("mcp-protocol-version", b"2026-07-28"),
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"=?base64?Z2V0X3dlYXRoZXI=?="),
            ],
            ok,
        ),
        (
            "non-ASCII name in base64",
            call_unicode,
            &[
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"=?base64?d2V0dGVyX8O8?="),
            ],
            ok,
        ),
        (
            "another tool in the header",
            call,
            &[
                ("mcp-protocol-version", b"2026-07-28"),
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"delete_everything"),
            ],
            "Header mismatch: Mcp-Name header value 'delete_everything' does not match body value 'get_weather'",
        ),
        (
            "another method in the header",
            call,
            &[
                ("mcp-protocol-version", b"2026-07-28"),
                ("mcp-method", b"tools/list"),
                ("mcp-name", b"get_weather"),
            ],
            "Header mismatch: Mcp-Method header value 'tools/list' does not match body value 'tools/call'",
        ),
        (
            "method compares case-sensitively",
            list,
            &[("mcp-method", b"Tools/List")],
            "Header mismatch: Mcp-Method header value 'Tools/List' does not match body value 'tools/list'",
        ),
        (
            "missing method",
            list,
            &[],
            "Header mismatch: Mcp-Method header is missing",
        ),
        (
            "missing name",
            read,
            &[("mcp-method", b"resources/read")],
            "Header mismatch: Mcp-Name header is missing",
        ),
        (
            "repeated name",
            read,
            &[
                ("mcp-method", b"resources/read"),
                ("mcp-name", b"file:///a.txt"),
                ("mcp-name", b"file:///b.txt"),
            ],
            "Header mismatch: mcp-name header is repeated",
        ),
        (
            "resource uri",
            read,
            &[
                ("mcp-method", b"resources/read"),
                ("mcp-name", b"file:///a.txt"),
            ],
            ok,
        ),
        (
            "protocol version disagrees with _meta",
            call,
            &[
                ("mcp-protocol-version", b"2025-11-25"),
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"get_weather"),
            ],
            "Header mismatch: MCP-Protocol-Version header value '2025-11-25' does not match body value '2026-07-28'",
        ),
        (
            "bad base64",
            call,
            &[
                ("mcp-protocol-version", b"2026-07-28"),
                ("mcp-method", b"tools/call"),
                ("mcp-name", b"=?base64?%%%?="),
            ],
            "Header mismatch: Mcp-Name header has an invalid base64 value",
        ),
        (
            "obs-text bytes in a header",
            list,
            &[("mcp-method", b"tools/list\xe9")],
            "Header mismatch: mcp-method header contains invalid characters",
        ),
        (
            "an extra Mcp-Name on tools/list is ignored",
            list,
            &[("mcp-method", b"tools/list"), ("mcp-name", b"x")],
            ok,
        ),
        ("notifications are not checked", notification, &[], ok),
    ];
    let mut failures = Vec::new();
    for (name, body, pairs, expected) in cases {
        let got = match check_mirrored_headers(&headers(pairs), &single_message(body)) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        if got != *expected {
            failures.push(format!("{name}\n  expected: {expected}\n  got:      {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn param_headers() {
    let schema = json!({
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
            "target": {"type": "object", "properties": {"host": {"type": "string", "x-mcp-header": "Host"}}},
            "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"x-mcp-header": "Ignored"}}}},
            "query": {"type": "string"}
        }
    });
    let ok = "ok";
    let full = json!({"region": "us-west1", "count": 42, "dry": true, "target": {"host": "h\u{e9}"}, "query": "q"});
    let all: &[(&str, &[u8])] = &[
        ("mcp-param-region", b"us-west1"),
        ("mcp-param-count", b"42"),
        ("mcp-param-dry-run", b"true"),
        ("mcp-param-host", b"=?base64?aMOp?="),
    ];
    type Case<'a> = (&'a str, Value, Vec<(&'a str, &'a [u8])>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("all present and equal", full.clone(), all.to_vec(), ok),
        (
            "integers compare numerically",
            full.clone(),
            [&all[..1], &[("mcp-param-count", &b"42.0"[..])], &all[2..]].concat(),
            ok,
        ),
        (
            "different region",
            full.clone(),
            [&[("mcp-param-region", &b"eu-west1"[..])], &all[1..]].concat(),
            "Header mismatch: mcp-param-region header value 'eu-west1' does not match the body value",
        ),
        (
            "missing header for a present argument",
            full.clone(),
            all[1..].to_vec(),
            "Header mismatch: mcp-param-region header is missing",
        ),
        (
            "absent and null arguments need no header",
            json!({"region": null, "query": "q"}),
            vec![],
            ok,
        ),
        (
            "header for an absent argument",
            json!({"query": "q"}),
            vec![("mcp-param-count", &b"1"[..])],
            "Header mismatch: mcp-param-count header is present but the argument is absent",
        ),
        (
            "boolean spelled otherwise",
            json!({"dry": false}),
            vec![("mcp-param-dry-run", &b"False"[..])],
            "Header mismatch: mcp-param-dry-run header value 'False' does not match the body value",
        ),
        (
            "a string argument compares as a string",
            json!({"count": "42"}),
            vec![("mcp-param-count", &b"42"[..])],
            ok,
        ),
        (
            "unmarked Mcp-Param headers are not ours to judge",
            json!({}),
            vec![("mcp-param-other", &b"x"[..])],
            ok,
        ),
    ];
    let mut failures = Vec::new();
    for (name, arguments, pairs, expected) in cases {
        let got = match check_param_headers(&headers(&pairs), &schema, Some(&arguments)) {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        if got != expected {
            failures.push(format!("{name}\n  expected: {expected}\n  got:      {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(check_param_headers(&headers(&[]), &schema, None).is_ok());
}

#[test]
fn header_dispositions() {
    let forward_up = [
        "accept",
        "content-type",
        "user-agent",
        "mcp-protocol-version",
        "last-event-id",
        "mcp-method",
        "mcp-name",
        "mcp-param-region",
        "traceparent",
    ];
    let drop_up = [
        "authorization",
        "cookie",
        "host",
        "origin",
        "referer",
        "content-length",
        "accept-encoding",
        "x-forwarded-for",
        "x-api-key",
        "forwarded",
    ];
    for name in forward_up {
        assert_eq!(
            request_header(&HeaderName::from_static(name)),
            Disposition::Forward,
            "{name}"
        );
    }
    for name in drop_up {
        assert_eq!(
            request_header(&HeaderName::from_static(name)),
            Disposition::Drop,
            "{name}"
        );
    }
    for name in HOP_BY_HOP {
        assert_eq!(request_header(&name), Disposition::Drop, "{name}");
        assert_eq!(response_header(&name), Disposition::Drop, "{name}");
    }
    assert_eq!(request_header(&MCP_SESSION_ID), Disposition::Session);
    assert_eq!(response_header(&MCP_SESSION_ID), Disposition::Session);
    for name in [
        "content-type",
        "cache-control",
        "retry-after",
        "x-accel-buffering",
        "content-encoding",
    ] {
        assert_eq!(
            response_header(&HeaderName::from_static(name)),
            Disposition::Forward,
            "{name}"
        );
    }
    for name in [
        "www-authenticate",
        "set-cookie",
        "content-length",
        "server",
        "date",
    ] {
        assert_eq!(
            response_header(&HeaderName::from_static(name)),
            Disposition::Drop,
            "{name}"
        );
    }
}

#[test]
fn forwardable_headers() {
    let incoming = headers(&[
        ("Authorization", b"Bearer gh_secret"),
        ("Cookie", b"a=b"),
        ("Host", b"gateway.example"),
        ("Accept", b"application/json, text/event-stream"),
        ("Content-Type", b"application/json"),
        ("Mcp-Session-Id", b"sealed"),
        ("MCP-Protocol-Version", b"2025-11-25"),
        ("Mcp-Param-A", b"1"),
        ("Mcp-Param-A", b"2"),
        ("Connection", b"keep-alive, mcp-param-a"),
        ("Transfer-Encoding", b"chunked"),
    ]);
    let out = forwardable_request_headers(&incoming);
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    // Mcp-Param-A is named by Connection, so it is hop-by-hop for this request.
    assert_eq!(names, ["accept", "content-type", "mcp-protocol-version"]);

    let incoming = headers(&[
        ("Mcp-Param-A", b"1"),
        ("Mcp-Param-A", b"2"),
        ("Last-Event-ID", b"42"),
    ]);
    let out = forwardable_request_headers(&incoming);
    assert_eq!(out.get_all("mcp-param-a").iter().count(), 2);
    assert_eq!(out.get("last-event-id").unwrap(), "42");

    let upstream = headers(&[
        ("Content-Type", b"text/event-stream"),
        ("Mcp-Session-Id", b"upstream-1"),
        (
            "WWW-Authenticate",
            b"Bearer resource_metadata=\"https://upstream/.well-known\"",
        ),
        ("Set-Cookie", b"x=y"),
        ("Cache-Control", b"no-cache"),
    ]);
    let out = forwardable_response_headers(&upstream);
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["cache-control", "content-type"]);
}

#[test]
fn header_values() {
    assert!(header_value("abc.DEF-123_~").is_some());
    assert!(header_value("a\nb").is_none());
}

#[test]
fn undeclared_param_headers_are_refused() {
    let schema = json!({"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "note": {"type": "string"}}});
    assert!(mirrors_params(&schema));
    assert!(!mirrors_params(&json!({"properties": {"note": {}}})));
    assert!(
        check_undeclared_param_headers(&headers(&[("mcp-param-region", b"eu")]), Some(&schema))
            .is_ok()
    );
    assert!(
        check_undeclared_param_headers(&headers(&[("mcp-method", b"tools/call")]), None).is_ok()
    );
    let undeclared =
        check_undeclared_param_headers(&headers(&[("mcp-param-note", b"x")]), Some(&schema));
    assert_eq!(
        undeclared.unwrap_err().to_string(),
        "Header mismatch: mcp-param-note header is not declared by the tool's input schema"
    );
    let unknown = check_undeclared_param_headers(&headers(&[("mcp-param-region", b"eu")]), None);
    assert_eq!(
        unknown.unwrap_err().to_string(),
        "Header mismatch: mcp-param-region header cannot be checked: the tool's input schema is not known"
    );
}

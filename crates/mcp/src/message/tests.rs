use super::*;

/// A one-line summary of what `parse` made of a body, for table-driven tests.
fn summary(body: &str) -> String {
    match parse(body.as_bytes()) {
        Ok(Body::Single(m)) => summarise(&m),
        Ok(Body::Batch(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| match item {
                    Ok(m) => summarise(m),
                    Err(e) => error_summary(e),
                })
                .collect();
            format!("batch[{}]", parts.join(" | "))
        }
        Err(e) => error_summary(&e),
    }
}

fn error_summary(e: &MessageError) -> String {
    match e.id() {
        Some(id) => format!("error {} id={} {:?}", e.code(), id.raw(), e.kind()),
        None => format!("error {} {:?}", e.code(), e.kind()),
    }
}

fn summarise(m: &Message<'_>) -> String {
    let mut out = match &m.kind {
        Kind::Request(r) => format!("request id={} method={}", r.id.raw(), r.method),
        Kind::Notification(n) => format!("notification method={}", n.method),
        Kind::Response(r) => {
            let id = r.id.map_or("none".to_owned(), |i| i.raw().to_owned());
            match r.outcome {
                Outcome::Result(v) => format!("result id={id} {}", v.get()),
                Outcome::Error(_) => {
                    format!("error-response id={id} code={:?}", r.outcome.error_code())
                }
            }
        }
    };
    if let Some(p) = m.params() {
        match &p.target {
            Target::None => {}
            Target::Tool { name, arguments } => {
                out += &format!(" tool={name}");
                if let Some(a) = arguments {
                    out += &format!(" args={a}");
                }
            }
            Target::Resource { uri } => out += &format!(" uri={uri}"),
            Target::Prompt { name } => out += &format!(" prompt={name}"),
        }
        if let Some(t) = p.progress_token {
            out += &format!(" progress={}", t.raw());
        }
        if let Some(v) = &p.protocol_version {
            out += &format!(" version={v}");
        }
    }
    out
}

#[test]
fn classifies_bodies() {
    let cases: &[(&str, &str, &str)] = &[
        // What a decision needs.
        (
            "tools/call with arguments",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_env","arguments":{"a":1,"b":[true,null]}}}"#,
            r#"request id=7 method=tools/call tool=get_env args={"a":1,"b":[true,null]}"#,
        ),
        (
            "tools/call without arguments",
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"ping"}}"#,
            r#"request id="x" method=tools/call tool=ping"#,
        ),
        (
            "arguments null is absent",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping","arguments":null}}"#,
            r#"request id=1 method=tools/call tool=ping"#,
        ),
        (
            "escaped tool name is unescaped",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get\u005fenv"}}"#,
            r#"request id=1 method=tools/call tool=get_env"#,
        ),
        (
            "escaped method is unescaped",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"a"}}"#,
            r#"request id=1 method=tools/call tool=a"#,
        ),
        (
            "member order does not matter",
            r#"{"params":{"arguments":{},"name":"a"},"method":"tools/call","id":-3,"jsonrpc":"2.0"}"#,
            r#"request id=-3 method=tools/call tool=a args={}"#,
        ),
        (
            "unknown members are skipped",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","x":{"deep":[1,2]},"params":{"name":"a","task":{"ttl":5},"y":0}}"#,
            r#"request id=1 method=tools/call tool=a"#,
        ),
        (
            "progress token and 2026 protocol version",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"p-1","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"request id=1 method=tools/call tool=a progress="p-1" version=2026-07-28"#,
        ),
        (
            "integer progress token on another method",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":42}}}"#,
            r#"request id=1 method=tools/list progress=42"#,
        ),
        (
            "resources/read",
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/hosts"}}"#,
            r#"request id=2 method=resources/read uri=file:///etc/hosts"#,
        ),
        (
            "prompts/get",
            r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet"}}"#,
            r#"request id=2 method=prompts/get prompt=greet"#,
        ),
        (
            "unknown method, params not read",
            r#"{"jsonrpc":"2.0","id":2,"method":"x/y","params":[1,2,3]}"#,
            r#"request id=2 method=x/y"#,
        ),
        (
            "unknown method with duplicated params members is the upstream's business",
            r#"{"jsonrpc":"2.0","id":2,"method":"x/y","params":{"name":1,"name":2,"_meta":7}}"#,
            r#"request id=2 method=x/y"#,
        ),
        (
            "no params",
            r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#,
            r#"request id=0 method=ping"#,
        ),
        (
            "surrounding whitespace",
            " \r\n\t{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n ",
            "notification method=notifications/initialized",
        ),
        (
            "big integer id is kept as text",
            r#"{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"ping"}"#,
            "request id=123456789012345678901234567890 method=ping",
        ),
        (
            "string id with escapes is kept as text",
            r#"{"jsonrpc":"2.0","id":"a\"b\u00e9","method":"ping"}"#,
            r#"request id="a\"b\u00e9" method=ping"#,
        ),
        // Responses (the client answering a server→client request).
        (
            "result",
            r#"{"jsonrpc":"2.0","id":5,"result":{"roots":[]}}"#,
            r#"result id=5 {"roots":[]}"#,
        ),
        (
            "error response",
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#,
            "error-response id=5 code=Some(-32601)",
        ),
        (
            "error response with null id",
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
            "error-response id=none code=Some(-32700)",
        ),
        (
            "error response without id",
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"bad"}}"#,
            "error-response id=none code=Some(-32700)",
        ),
        // Batches (2025-03-26).
        (
            "batch of two",
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
            "batch[request id=1 method=tools/list | notification method=notifications/initialized]",
        ),
        (
            "batch with invalid elements",
            r#"[1,{"jsonrpc":"1.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":3}},[]]"#,
            r#"batch[error -32600 NotAnObject | error -32600 WrongVersion("\"1.0\"") | error -32602 id=2 InvalidParams("tools/call needs a string params.name") | error -32600 NotAnObject]"#,
        ),
        // Parse errors: -32700.
        (
            "empty body",
            "",
            r#"error -32700 NotJson("EOF while parsing a value at line 1 column 0")"#,
        ),
        (
            "not json",
            "hello",
            r#"error -32700 NotJson("expected value at line 1 column 1")"#,
        ),
        (
            "truncated object",
            r#"{"jsonrpc":"2.0","id":1"#,
            r#"error -32700 NotJson("EOF while parsing an object at line 1 column 23")"#,
        ),
        (
            "trailing garbage",
            r#"{"jsonrpc":"2.0","id":1,"method":"a"} x"#,
            r#"error -32700 NotJson("trailing characters at line 1 column 39")"#,
        ),
        (
            "broken JSON after a wrong-typed member is still a parse error",
            r#"{"jsonrpc":"2.0","id":1,"method":"a","params":{"x":}"#,
            r#"error -32700 NotJson("expected value at line 1 column 52")"#,
        ),
        (
            "truncated batch",
            r#"[{"jsonrpc":"2.0","id":1,"method":"a"}"#,
            r#"error -32700 NotJson("EOF while parsing a list at line 1 column 38")"#,
        ),
        // Invalid requests: -32600.
        ("a number", "42", "error -32600 NotAnObject"),
        ("a string", r#""tools/call""#, "error -32600 NotAnObject"),
        ("null", "null", "error -32600 NotAnObject"),
        ("empty batch", "[]", "error -32600 EmptyBatch"),
        (
            "missing jsonrpc",
            r#"{"id":1,"method":"ping"}"#,
            "error -32600 MissingVersion",
        ),
        (
            "wrong jsonrpc",
            r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            r#"error -32600 WrongVersion("\"1.0\"")"#,
        ),
        (
            "jsonrpc as a number",
            r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
            r#"error -32600 WrongVersion("2.0")"#,
        ),
        (
            "escaped jsonrpc is not the literal 2.0",
            r#"{"jsonrpc":"2\u002e0","id":1,"method":"ping"}"#,
            r#"error -32600 WrongVersion("\"2\\u002e0\"")"#,
        ),
        (
            "null id",
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "float id",
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "exponent id",
            r#"{"jsonrpc":"2.0","id":1e3,"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "object id",
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "bool id",
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "array id",
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            "error -32600 InvalidId",
        ),
        (
            "method not a string",
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            "error -32600 id=1 MethodNotString",
        ),
        (
            "method null",
            r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
            "error -32600 id=1 MethodNotString",
        ),
        (
            "result without id",
            r#"{"jsonrpc":"2.0","result":{}}"#,
            "error -32600 ResponseWithoutId",
        ),
        (
            "result with null id",
            r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
            "error -32600 InvalidId",
        ),
        (
            "nothing",
            r#"{"jsonrpc":"2.0","id":1}"#,
            "error -32600 id=1 NotAMessage",
        ),
        (
            "method and result",
            r#"{"jsonrpc":"2.0","id":1,"method":"a","result":{}}"#,
            "error -32600 id=1 NotAMessage",
        ),
        (
            "result and error",
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            "error -32600 id=1 NotAMessage",
        ),
        (
            "duplicated method",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
            r#"error -32600 Malformed("duplicate field `method`")"#,
        ),
        (
            "duplicated id",
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"error -32600 Malformed("duplicate field `id`")"#,
        ),
        // Invalid params: -32602, with the id to echo.
        (
            "tools/call without params",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"error -32602 id=1 InvalidParams("tools/call needs a params object")"#,
        ),
        (
            "tools/call with array params",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["a"]}"#,
            r#"error -32602 id=1 InvalidParams("tools/call needs a params object")"#,
        ),
        (
            "tools/call without name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            r#"error -32602 id=1 InvalidParams("tools/call needs a string params.name")"#,
        ),
        (
            "tools/call with numeric name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
            r#"error -32602 id=1 InvalidParams("tools/call needs a string params.name")"#,
        ),
        (
            "tools/call with duplicated name",
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"read","name":"delete"}}"#,
            r#"error -32602 id="a" InvalidParams("params: duplicate field `name`")"#,
        ),
        (
            "arguments an array",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            "error -32602 id=1 ArgumentsNotObject",
        ),
        (
            "arguments a string",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":"{}"}}"#,
            "error -32602 id=1 ArgumentsNotObject",
        ),
        (
            "duplicated key inside arguments",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"x":{"k":1,"k":2}}}}"#,
            r#"error -32602 id=1 InvalidParams("params.arguments: duplicate key `k`")"#,
        ),
        (
            "resources/read without uri",
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}"#,
            r#"error -32602 id=1 InvalidParams("resources/read needs a string params.uri")"#,
        ),
        (
            "prompts/get with null name",
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":null}}"#,
            r#"error -32602 id=1 InvalidParams("prompts/get needs a string params.name")"#,
        ),
        (
            "_meta not an object on tools/call",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":[]}}"#,
            r#"error -32602 id=1 InvalidParams("params._meta must be an object")"#,
        ),
        (
            "progress token of the wrong type is ignored",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":{}}}}"#,
            "request id=1 method=tools/call tool=a",
        ),
    ];
    let mut failures = Vec::new();
    for (name, body, expected) in cases {
        let got = summary(body);
        if got != *expected {
            failures.push(format!(
                "{name}\n  body:     {body}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn not_utf8_is_a_parse_error() {
    let e = parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}").unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::NotUtf8);
    assert_eq!(e.code(), code::PARSE_ERROR);
    assert!(e.id().is_none());
}

#[test]
fn batch_elements_keep_their_exact_text() {
    let body =
        r#"[ {"jsonrpc":"2.0", "id":1,"method":"a" ,"x" : [ 1 ]} ,{"jsonrpc":"2.0","method":"b"}]"#;
    let Body::Batch(items) = parse(body.as_bytes()).unwrap() else {
        panic!("a batch");
    };
    let raws: Vec<&str> = items.iter().map(|m| m.as_ref().unwrap().raw()).collect();
    assert_eq!(
        raws,
        [
            r#"{"jsonrpc":"2.0", "id":1,"method":"a" ,"x" : [ 1 ]}"#,
            r#"{"jsonrpc":"2.0","method":"b"}"#
        ]
    );
}

#[test]
fn single_message_text_is_the_body_without_surrounding_whitespace() {
    let body = "\n {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"} \n";
    let Body::Single(m) = parse(body.as_bytes()).unwrap() else {
        panic!("single");
    };
    assert_eq!(m.raw(), body.trim());
}

#[test]
fn tool_call_view() {
    let body = br#"{"jsonrpc":"2.0","id":"r-9","method":"tools/call","params":{"name":"reboot","arguments":{"device_id":"d1"}}}"#;
    let Body::Single(m) = parse(body).unwrap() else {
        panic!("single");
    };
    let call = m.tool_call().expect("a tools/call");
    assert_eq!(call.id.raw(), "\"r-9\"");
    assert!(call.id.is_string());
    assert_eq!(call.name, "reboot");
    assert_eq!(call.arguments.unwrap()["device_id"], "d1");
    assert_eq!(m.method(), Some("tools/call"));
    assert_eq!(m.id().unwrap().raw(), "\"r-9\"");
    assert_eq!(m.params().unwrap().target.mcp_name(), Some("reboot"));
}

#[test]
fn names_without_escapes_are_borrowed() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"plain"}}"#;
    let Body::Single(m) = parse(body).unwrap() else {
        panic!("single");
    };
    let Kind::Request(r) = &m.kind else {
        panic!("request")
    };
    assert!(matches!(r.method, Cow::Borrowed(_)));
    assert!(matches!(
        &r.params.target,
        Target::Tool {
            name: Cow::Borrowed(_),
            ..
        }
    ));
}

#[test]
fn arguments_keep_key_order() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"z":1,"a":2,"m":3}}}"#;
    let Body::Single(m) = parse(body).unwrap() else {
        panic!("single");
    };
    let keys: Vec<&String> = m
        .tool_call()
        .unwrap()
        .arguments
        .unwrap()
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["z", "a", "m"]);
}

#[test]
fn deeply_nested_input_never_overflows_the_stack() {
    for depth in [200, 10_000, 200_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // Nested inside an unknown member and inside params of an unknown method: skipped
        // iteratively, accepted.
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","x":{nested},"params":{{"a":{nested}}}}}"#
        );
        assert!(
            parse(body.as_bytes()).is_ok(),
            "depth {depth} in skipped members"
        );
        // Nested inside arguments, which are built into a Value: refused past serde_json's limit.
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"k":{nested}}}}}}}"#
        );
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.code(), code::INVALID_PARAMS, "depth {depth}: {e}");
        // A nested batch body: one element, which is not an object.
        let Ok(Body::Batch(items)) = parse(nested.as_bytes()) else {
            panic!("depth {depth}: a batch")
        };
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().code(), code::INVALID_REQUEST);
        // Unbalanced: a parse error.
        let e = parse("[".repeat(depth).as_bytes()).unwrap_err();
        assert_eq!(e.code(), code::PARSE_ERROR, "depth {depth}: {e}");
        let e = parse("{\"a\":".repeat(depth).as_bytes()).unwrap_err();
        assert_eq!(e.code(), code::PARSE_ERROR, "depth {depth}: {e}");
    }
}

#[test]
fn arguments_nested_within_the_limit_are_read() {
    let nested = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"a","arguments":{{"k":{nested}}}}}}}"#
    );
    let Body::Single(m) = parse(body.as_bytes()).unwrap() else {
        panic!("single")
    };
    assert!(m.tool_call().unwrap().arguments.is_some());
}

#[test]
fn owned_ids_compare_by_text() {
    let a = Id::parse("7").unwrap();
    let b = Id::parse("\"7\"").unwrap();
    assert_ne!(a, b);
    assert_eq!(a.to_owned(), Id::parse("7").unwrap().to_owned());
    assert_eq!(a.to_owned().as_id().raw(), "7");
    assert!(Id::parse("7.0").is_none());
    assert!(Id::parse("null").is_none());
    assert!(Id::parse("-12").is_some());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1F600}]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the bytes, `parse` answers without panicking.
        #[test]
        fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&body);
        }

        /// Arbitrary JSON-ish text: mutations of a valid message.
        #[test]
        fn never_panics_on_mutated_messages(cut in 0usize..120, insert in "[\\[\\]{}\",:0-9a-z\\\\ ]{0,4}") {
            let base = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","arguments":{"k":[1,"x"]}}}"#;
            let cut = cut.min(base.len());
            let text = format!("{}{}{}", &base[..cut], insert, &base[cut..]);
            let _ = parse(text.as_bytes());
        }

        /// The arguments the gateway reads are exactly the arguments serde_json reads, and the
        /// name and id round-trip, however they are escaped.
        #[test]
        fn reads_what_serde_json_reads(
            name in "[a-z_\u{e9}\\\\\"/]{1,12}",
            id in prop_oneof![any::<i64>().prop_map(Value::from), "[a-z\"\\\\]{0,6}".prop_map(Value::String)],
            arguments in prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..4),
        ) {
            let arguments = Value::Object(arguments.into_iter().collect());
            let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments}}).to_string();
            let Body::Single(m) = parse(body.as_bytes()).unwrap() else { panic!("single") };
            let call = m.tool_call().unwrap();
            prop_assert_eq!(call.name, name.as_str());
            prop_assert_eq!(call.arguments, Some(&arguments));
            prop_assert_eq!(serde_json::from_str::<Value>(call.id.raw()).unwrap(), id);
        }
    }
}

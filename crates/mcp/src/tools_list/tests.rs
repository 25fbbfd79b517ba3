use super::*;
use proptest::prelude::*;
use serde_json::json;

fn keep_all_but<'a>(hidden: &'a [&'a str]) -> impl FnMut(&str, &Value) -> bool + 'a {
    move |name, _| !hidden.contains(&name)
}

#[test]
fn removes_only_rejected_tools() {
    let response = r#"{"jsonrpc":"2.0","id":3,"result":{"_meta":{"x":1},"tools":[{"name":"a","inputSchema":{"type":"object"}}, {"name":"get_env","description":"dumps env","inputSchema":{"type":"object"}},{"name":"b","annotations":{"readOnlyHint":true},"x-unknown":1.50}],"nextCursor":"c2","extra":{"big":12345678901234567890123}}}"#;
    let out = filter(response.as_bytes(), keep_all_but(&["get_env"])).unwrap();
    assert!(out.changed());
    assert_eq!(
        std::str::from_utf8(&out.bytes).unwrap(),
        r#"{"jsonrpc":"2.0","id":3,"result":{"_meta":{"x":1},"tools":[{"name":"a","inputSchema":{"type":"object"}},{"name":"b","annotations":{"readOnlyHint":true},"x-unknown":1.50}],"nextCursor":"c2","extra":{"big":12345678901234567890123}}}"#
    );
    let seen: Vec<(&str, bool)> = out
        .tools
        .iter()
        .map(|t| (t.name.as_str(), t.kept))
        .collect();
    assert_eq!(seen, [("a", true), ("get_env", false), ("b", true)]);
    assert_eq!(out.tools[1].definition["description"], "dumps env");
    assert_eq!(out.malformed, 0);
}

#[test]
fn unchanged_list_is_the_original_bytes() {
    let response = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[ {\"name\":\"a\"} ,\n {\"name\":\"b\"} ]}}";
    let out = filter(response, |_, _| true).unwrap();
    assert!(!out.changed());
    assert_eq!(&out.bytes[..], &response[..]);
    assert_eq!(out.tools.len(), 2);
}

#[test]
fn cases() {
    /// (case, response, tools to hide, expected bytes or error)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [&'a str],
        Result<&'a str, ToolsListError>,
    );
    let cases: &[Case<'_>] = &[
        (
            "all removed",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}}"#,
            &["x"],
            Ok(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#),
        ),
        (
            "empty list",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            &[],
            Ok(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#),
        ),
        (
            "whitespace around the array is kept",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\" : [ {\"name\":\"x\"}, {\"name\":\"y\"} ] , \"nextCursor\":\"n\"}}",
            &["x"],
            Ok(
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\" : [{\"name\":\"y\"}] , \"nextCursor\":\"n\"}}",
            ),
        ),
        (
            "a tools member elsewhere is not touched",
            r#"{"jsonrpc":"2.0","id":1,"result":{"_meta":{"tools":[{"name":"x"}]},"tools":[{"name":"x"},{"name":"y"}]}}"#,
            &["x"],
            Ok(
                r#"{"jsonrpc":"2.0","id":1,"result":{"_meta":{"tools":[{"name":"x"}]},"tools":[{"name":"y"}]}}"#,
            ),
        ),
        (
            "malformed tools are removed",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"},{"name":7},"str",{"description":"no name"},{"name":"dup","name":"other"}]}}"#,
            &[],
            Ok(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok"}]}}"#),
        ),
        (
            "escaped names are matched unescaped, kept escaped",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get\u005fenv"},{"name":"caf\u00e9"}]}}"#,
            &["get_env"],
            Ok(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"caf\u00e9"}]}}"#),
        ),
        (
            "error response",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            &[],
            Err(ToolsListError::ErrorResponse),
        ),
        (
            "no tools array",
            r#"{"jsonrpc":"2.0","id":1,"result":{"items":[]}}"#,
            &[],
            Err(ToolsListError::NoToolsArray),
        ),
        (
            "tools not an array",
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"x"}}}"#,
            &[],
            Err(ToolsListError::NoToolsArray),
        ),
        (
            "result not an object",
            r#"{"jsonrpc":"2.0","id":1,"result":[]}"#,
            &[],
            Err(ToolsListError::NoToolsArray),
        ),
    ];
    for (name, response, hidden, expected) in cases {
        let got = filter(response.as_bytes(), keep_all_but(hidden))
            .map(|out| String::from_utf8(out.bytes.into_owned()).unwrap());
        assert_eq!(
            got.as_deref().map_err(Clone::clone),
            expected.clone(),
            "{name}"
        );
    }
    assert!(matches!(
        filter(b"not json", |_, _| true),
        Err(ToolsListError::NotAResponse(_))
    ));
    assert!(matches!(
        filter(br#"{"jsonrpc":"2.0","id":1}"#, |_, _| true),
        Err(ToolsListError::NotAResponse(_))
    ));
}

#[test]
fn predicate_sees_the_definition() {
    let response = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
        {"name":"r","annotations":{"readOnlyHint":true}},
        {"name":"w","annotations":{"readOnlyHint":false}}
    ]}})
    .to_string();
    let out = filter(response.as_bytes(), |_, def| {
        def["annotations"]["readOnlyHint"] == true
    })
    .unwrap();
    let kept: Vec<&str> = out
        .tools
        .iter()
        .filter(|t| t.kept)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(kept, ["r"]);
}

proptest! {
    /// Whatever is removed, the result is the original with exactly the rejected tools gone:
    /// serde_json reads the same document otherwise.
    #[test]
    fn filtering_equals_removing(
        names in prop::collection::vec("[a-e]{1,2}", 0..8),
        hidden in prop::collection::btree_set("[a-e]{1,2}", 0..4),
    ) {
        let tools: Vec<Value> = names.iter().enumerate()
            .map(|(i, n)| json!({"name": n, "inputSchema": {"type": "object"}, "i": i}))
            .collect();
        let response = json!({"jsonrpc":"2.0","id":1,"result":{"tools": tools, "nextCursor": "z", "_meta": {"k": [1, 2]}}});
        let text = serde_json::to_string_pretty(&response).unwrap();
        let out = filter(text.as_bytes(), |name, _| !hidden.contains(name)).unwrap();
        let mut expected = response.clone();
        expected["result"]["tools"]
            .as_array_mut()
            .unwrap()
            .retain(|t| !hidden.contains(t["name"].as_str().unwrap()));
        let got: Value = serde_json::from_slice(&out.bytes).unwrap();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(out.tools.len(), names.len());
    }
}

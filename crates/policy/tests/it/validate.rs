//! Validation: every field, both spellings, every error reported with pointer, line and column.
//! Expected texts are golden: update them with `UPDATE_EXPECT=1 cargo test -p policy` and review the diff.

use expect_test::{Expect, expect};
use policy::Policy;

use crate::support::{diagnostics, genieacs_tools};

fn check(text: &str, expected: Expect) {
    expected.assert_eq(&diagnostics(text, None));
}

fn check_with_tools(text: &str, expected: Expect) {
    expected.assert_eq(&diagnostics(text, Some(&genieacs_tools())));
}

#[test]
fn the_design_example_is_valid_against_the_genieacs_tools() {
    let text = include_str!("../data/design-example.json");
    let policy = Policy::parse(text, Some(&genieacs_tools())).expect("valid");
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
}

#[test]
fn five_errors_are_all_reported_in_document_order() {
    check(
        r#"{
  "version": 1,
  "default": "deny",
  "tools": {
    "reboot_device": { "acton": "deny" },
    "retry_task": { "limits": [ {"counter": "r", "window": "minutes", "max": 0} ] },
    "set_parameter": { "require": [ {"path": "device_id", "op": "regex", "value": "^00236A-" } ] }
  }
}"#,
        expect![[r#"
            error at /version (line 2, column 14): expected the string "1", found the number 1; write "version": "1"
            error at /tools/reboot_device/acton (line 5, column 24): unknown field `acton`; did you mean `action`? (expected one of `action`, `reason`, `on_deny`, `require`, `deny_if`, `limits`, `approval`, `record_arguments`)
            error at /tools/retry_task/limits/0/window (line 6, column 60): expected "second", "minute", "hour", "day" or a whole number of seconds, found "minutes"; did you mean `minute`?
            error at /tools/retry_task/limits/0/max (line 6, column 78): `max` must be at least 1; to refuse every call, use "action": "deny"
            error at /tools/set_parameter/require/0/path (line 7, column 46): a condition path starts with `args.` and names an argument, such as "args.device_id"; found "device_id"
        "#]],
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    check(
        "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n}",
        expect![[r#"
        error at / (line 4, column 1): not valid JSON: key must be a string
    "#]],
    );
    check(
        "",
        expect![[r#"
        error at / (line 1, column 1): not valid JSON: EOF while parsing a value
    "#]],
    );
    check(
        "[]",
        expect![[r#"
        error at / (line 1, column 1): expected an object, found an array
    "#]],
    );
    check(
        "{\"version\": \"1\", \"default\": \"deny\"} extra",
        expect![[r#"
        error at / (line 1, column 37): not valid JSON: trailing characters
    "#]],
    );
}

#[test]
fn required_fields_and_version() {
    check(
        "{}",
        expect![[r#"
        error at / (line 1, column 1): missing required field `version`
        error at / (line 1, column 1): missing required field `default`
    "#]],
    );
    check(
        r#"{"version": "2", "default": "allow"}"#,
        expect![[r#"
        error at /version (line 1, column 13): unsupported version; the only policy version is "1"
    "#]],
    );
    check(
        r#"{"version": "1", "default": "block"}"#,
        expect![[r#"
        error at /default (line 1, column 29): expected one of "allow", "deny", found "block"
    "#]],
    );
    check(
        r#"{"version": "1", "default": "alow"}"#,
        expect![[r#"
        error at /default (line 1, column 29): expected one of "allow", "deny", found "alow"; did you mean `allow`?
    "#]],
    );
}

#[test]
fn unknown_and_duplicate_fields_are_errors() {
    check(
        r#"{"version": "1", "default": "deny", "on_deny": "no", "defualt": "allow", "tools": {"a": {"reason": "x", "reason": "y"}}}"#,
        expect![[r#"
            error at /defualt (line 1, column 54): unknown field `defualt`; did you mean `default`? (expected one of `version`, `default`, `on_deny`, `hide`, `all_tools`, `tools`, `record_arguments`)
            error at /tools/a/reason (line 1, column 105): field `reason` is given twice
        "#]],
    );
    check(
        r#"{"version": "1", "default": "deny", "all_tools": {"limit": []}}"#,
        expect![[r#"
            error at /all_tools/limit (line 1, column 51): unknown field `limit`; did you mean `limits`? (expected one of `limits`)
        "#]],
    );
}

#[test]
fn both_spellings_of_the_message_and_of_approval() {
    let text = r#"{"version": "1", "default": "deny", "tools": {
        "a": {"action": "deny", "reason": "A"},
        "b": {"action": "deny", "on_deny": "B"},
        "c": {"action": "approve"},
        "d": {"approval": {"timeout": "10m", "wait": 30}}
    }}"#;
    let policy = Policy::parse(text, None).expect("valid");
    let doc = policy.document();
    assert_eq!(doc.tools["a"].message.as_deref(), Some("A"));
    assert_eq!(doc.tools["b"].message.as_deref(), Some("B"));
    let c = doc.tools["c"].approval.expect("approve implies approval");
    assert_eq!((c.timeout_secs, c.wait_secs), (900, 25));
    let d = doc.tools["d"].approval.expect("approval object");
    assert_eq!((d.timeout_secs, d.wait_secs), (600, 30));
    assert_eq!(doc.tools["d"].action, policy::Action::Approve);

    check(
        r#"{"version": "1", "default": "deny", "tools": {"a": {"reason": "x", "on_deny": "y"}}}"#,
        expect![[r#"
            error at /tools/a/on_deny (line 1, column 68): `reason` and `on_deny` mean the same; give only one
        "#]],
    );
    check(
        r#"{"version": "1", "default": "deny", "tools": {
            "a": {"action": "deny", "approval": {}},
            "b": {"action": "allow", "approval": {}},
            "c": {"action": "aprove"},
            "d": {"approval": {"timeout": "10 minutes", "wait": "1h"}},
            "e": {"approval": {"timeout": "20s", "wait": "30s"}},
            "f": {"approval": {"timeout": 0}}
        }}"#,
        expect![[r#"
            error at /tools/a/approval (line 2, column 49): `approval` holds calls for a human, but `action` is "deny"; remove one of them
            error at /tools/b/approval (line 3, column 50): `approval` holds calls for a human, but `action` is "allow"; write "action": "approve" or remove `action`
            error at /tools/c/action (line 4, column 29): expected one of "allow", "deny", "approve", found "aprove"; did you mean `approve`?
            error at /tools/d/approval/timeout (line 5, column 43): expected a duration such as "30s", "10m", "2h" or "1d", found "10 minutes"
            error at /tools/d/approval/wait (line 5, column 65): must be between 1 s and 300 s, found 3600 s
            error at /tools/e/approval/wait (line 6, column 58): `wait` (30 s) is longer than `timeout` (20 s); the request cannot be held past the approval's expiry
            error at /tools/f/approval/timeout (line 7, column 43): must be between 1 s and 604800 s, found 0 s
        "#]],
    );
}

#[test]
fn windows_as_names_or_seconds_and_every_scope() {
    let text = r#"{"version": "1", "default": "allow", "all_tools": {"limits": [
        {"counter": "a", "window": "second", "max": 1},
        {"counter": "b", "window": "minute", "max": 2, "scope": "identity"},
        {"counter": "c", "window": "hour", "max": 3, "scope": "server"},
        {"counter": "d", "window": "day", "max": 4, "scope": "organisation"},
        {"counter": "e", "window": 90, "max": 5, "scope": "session"},
        {"counter": "f", "window": 1, "max": 6, "scope": "grant"}
    ]}}"#;
    let policy = Policy::parse(text, None).expect("valid");
    let got: Vec<(u64, u32, &str)> = policy
        .document()
        .all_tools_limits
        .iter()
        .map(|l| (l.window_secs, l.max, l.scope.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, 1, "grant"),
            (60, 2, "identity"),
            (3600, 3, "server"),
            (86400, 4, "organisation"),
            (90, 5, "session"),
            (1, 6, "grant"),
        ]
    );
    check(
        r#"{"version": "1", "default": "allow", "all_tools": {"limits": [
            {"counter": "a", "window": "fortnight", "max": 1},
            {"counter": "b", "window": 0, "max": 1},
            {"counter": "c", "window": 1.5, "max": 1},
            {"counter": "d", "window": "minute", "max": -1},
            {"counter": "e", "window": "minute", "max": 10, "scope": "organization"},
            {"counter": "has space", "window": "minute", "max": 1},
            {"window": "minute"}
        ]}}"#,
        expect![[r#"
            error at /all_tools/limits/0/window (line 2, column 40): expected "second", "minute", "hour", "day" or a whole number of seconds, found "fortnight"
            error at /all_tools/limits/1/window (line 3, column 40): a window in seconds must be a whole number from 1 to 604800, found 0
            error at /all_tools/limits/2/window (line 4, column 40): a window in seconds must be a whole number from 1 to 604800, found 1.5
            error at /all_tools/limits/3/max (line 5, column 57): expected a whole number from 1 to 1000000, found -1
            error at /all_tools/limits/4/scope (line 6, column 70): expected one of "grant", "identity", "server", "organisation", "session", found "organization"; did you mean `organisation`?
            error at /all_tools/limits/5/counter (line 7, column 25): counter names are 1 to 64 letters, digits, `_`, `.` or `-`; found "has space"
            error at /all_tools/limits/6 (line 8, column 13): missing required field `counter`
            error at /all_tools/limits/6 (line 8, column 13): missing required field `max`
        "#]],
    );
}

#[test]
fn a_shared_counter_must_be_defined_the_same_way() {
    check(
        r#"{"version": "1", "default": "allow",
            "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 100}]},
            "tools": {
              "a": {"limits": [{"counter": "calls", "window": "minute", "max": 100}]},
              "b": {"limits": [{"counter": "calls", "window": "hour", "max": 100}]},
              "c": {"limits": [{"counter": "calls", "window": "hour", "max": 100, "scope": "server"}]}
            }}"#,
        expect![[r#"
            error at /tools/b/limits/0 (line 5, column 32): counter `calls` (scope grant) is already defined at /all_tools/limits/0 as 100 per 60 s; rules that name the same counter share it, so they must give the same window and max (or use another counter name)
        "#]],
    );
}

#[test]
fn every_operator_checks_its_value_type() {
    let ok = r#"{"version": "1", "default": "deny", "tools": {"t": {"require": [
        {"path": "args.a", "op": "eq", "value": {"x": [1]}},
        {"path": "args.a", "op": "neq", "value": null},
        {"path": "args.a", "op": "in", "value": [1, "x"]},
        {"path": "args.a", "op": "not_in", "value": ["y"]},
        {"path": "args.a", "op": "lt", "value": 1},
        {"path": "args.a", "op": "lte", "value": 1.5},
        {"path": "args.a", "op": "gt", "value": -1},
        {"path": "args.a", "op": "gte", "value": 0},
        {"path": "args.a.b.0", "op": "regex", "value": "^x+$"},
        {"path": "args.a", "op": "contains", "value": "x"},
        {"path": "args.a", "op": "exists", "value": false},
        {"path": "args.a", "op": "exists"}
    ]}}}"#;
    Policy::parse(ok, None).expect("every operator with a fitting value is valid");
    check(
        r#"{"version": "1", "default": "deny", "tools": {"t": {"deny_if": [
            {"path": "args.a", "op": "in", "value": "x"},
            {"path": "args.a", "op": "not_in", "value": []},
            {"path": "args.a", "op": "lt", "value": "5"},
            {"path": "args.a", "op": "regex", "value": 5},
            {"path": "args.a", "op": "regex", "value": "a{1000000}"},
            {"path": "args.a", "op": "contains", "value": ["x"]},
            {"path": "args.a", "op": "exists", "value": "yes"},
            {"path": "args.a", "op": "like", "value": "x"},
            {"path": "arguments.a", "op": "eq", "value": 1},
            {"path": "args..a", "op": "eq", "value": 1},
            {"path": "args.a", "op": "eq"}
        ]}}}"#,
        expect![[r#"
            error at /tools/t/deny_if/0/value (line 2, column 53): `in` expects an array of values, found a string
            error at /tools/t/deny_if/1/value (line 3, column 57): `not_in` needs at least one value
            error at /tools/t/deny_if/2/value (line 4, column 53): `lt` expects a number, found a string
            error at /tools/t/deny_if/3/value (line 5, column 56): `regex` expects a regular expression string, found a number
            error at /tools/t/deny_if/4/value (line 6, column 56): invalid regular expression: Compiled regex exceeds size limit of 262144 bytes.
            error at /tools/t/deny_if/5/value (line 7, column 59): `contains` expects a string, number, boolean or null, found an array
            error at /tools/t/deny_if/6/value (line 8, column 57): `exists` expects true or false, found a string
            error at /tools/t/deny_if/7/op (line 9, column 38): expected one of "eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists", found "like"
            error at /tools/t/deny_if/8/path (line 10, column 22): a condition path starts with `args.` and names an argument, such as "args.device_id"; found "arguments.a"
            error at /tools/t/deny_if/9/path (line 11, column 22): the path "args..a" has an empty segment
            error at /tools/t/deny_if/10 (line 12, column 13): missing required field `value`
        "#]],
    );
}

#[test]
fn hide_accepts_names_and_star() {
    let policy = Policy::parse(
        r#"{"version": "1", "default": "allow", "hide": ["*"]}"#,
        None,
    )
    .expect("valid");
    assert!(!policy.visible("anything"));
    check(
        r#"{"version": "1", "default": "allow", "hide": ["a", 3, "a"], "tools": {"a": {}}}"#,
        expect![[r#"
            error at /hide/1 (line 1, column 52): expected a string, found a number
            warning at /hide/2 (line 1, column 55): `a` is hidden twice
            warning at /tools/a (line 1, column 71): `a` is hidden by /hide/0, so this rule never applies
        "#]],
    );
}

#[test]
fn against_a_tool_list_unknown_tools_and_arguments_get_suggestions() {
    check_with_tools(
        r#"{
  "version": "1",
  "default": "deny",
  "hide": ["delete_tsk"],
  "tools": {
    "reboot_devices": {},
    "set_parameter": {"require": [{"path": "args.devce_id", "op": "regex", "value": "^00236A-"}]},
    "search_devices": {"deny_if": [{"path": "args.limit", "op": "gt", "value": 100}]},
    "get_parameter": {"require": [{"path": "args.device_id", "op": "eq", "value": 5}]},
    "tag_device": {"require": [{"path": "args.action", "op": "in", "value": ["add", true]}]},
    "retry_task": {"require": [{"path": "args.task_id.x", "op": "exists"}]}
  }
}"#,
        expect![[r#"
            error at /hide/0 (line 4, column 12): the server has no tool `delete_tsk`; did you mean `delete_task`?
            error at /tools/reboot_devices (line 6, column 5): the server has no tool `reboot_devices`; did you mean `reboot_device`?
            error at /tools/set_parameter/require/0/path (line 7, column 44): `set_parameter` has no argument `devce_id`; did you mean `device_id`? (its arguments: device_id, parameter_values)
            error at /tools/get_parameter/require/0/value (line 9, column 83): argument `device_id` of `get_parameter` is declared as string, but the value is a number
            error at /tools/tag_device/require/0/value (line 10, column 77): argument `action` of `tag_device` is declared as string, but the list holds a boolean
            error at /tools/retry_task/require/0/path (line 11, column 41): argument `task_id` of `retry_task` is not an object, so it has no `x`
        "#]],
    );
}

#[test]
fn limits_on_a_denied_or_hidden_tool_are_warnings() {
    check(
        r#"{"version": "1", "default": "deny", "hide": ["b"], "tools": {
            "a": {"action": "deny", "limits": [{"counter": "x", "window": "minute", "max": 1}]},
            "b": {}
        }}"#,
        expect![[r#"
            warning at /tools/a/limits (line 2, column 47): `limits` never applies: the tool's action is "deny"
            warning at /tools/b (line 3, column 13): `b` is hidden by /hide/0, so this rule never applies
        "#]],
    );
}

#[test]
fn size_limits_are_enforced() {
    let huge = format!(
        r#"{{"version": "1", "default": "deny", "on_deny": "{}"}}"#,
        "x".repeat(policy::MAX_DOCUMENT_BYTES)
    );
    check(
        &huge,
        expect![[r#"
        error at / (line 1, column 1): the document is 262194 bytes; a policy may be at most 262144 bytes
    "#]],
    );
    let long_message = format!(
        r#"{{"version": "1", "default": "deny", "on_deny": "{}"}}"#,
        "x".repeat(1001)
    );
    check(
        &long_message,
        expect![[r#"
        error at /on_deny (line 1, column 48): the message is longer than 1000 characters
    "#]],
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    check(
        &deep,
        expect![[r#"
        error at / (line 1, column 513): not valid JSON: Maximum nesting depth exceeded
    "#]],
    );
}

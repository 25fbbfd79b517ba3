//! Deciding calls: the evaluation order of DESIGN.md §4, every operator, every scope, the rule
//! pointer behind every outcome.

use policy::{Call, Decision, Proceed, Subject};
use serde_json::json;

use crate::support::{SUBJECT, decide, policy};

fn design() -> policy::Policy {
    policy(include_str!("../data/design-example.json"))
}

/// A short text for a decision: kind, rule, and the message or the counters.
fn summary(d: &Decision) -> String {
    match d {
        Decision::Allow { rule } => format!("allow {rule}"),
        Decision::Deny(x) => format!("deny {} | {} | {}", x.rule, x.message, x.detail),
        Decision::UnknownTool { rule } => format!("unknown {rule}"),
        Decision::NeedsApproval { rule, approval } => {
            format!(
                "approval {rule} {}s/{}s",
                approval.timeout_secs, approval.wait_secs
            )
        }
        Decision::NeedsLimits { limits, then } => {
            let counters: Vec<String> = limits
                .iter()
                .map(|l| format!("{}={}/{}s@{}", l.rule, l.max, l.window_secs, l.scope))
                .collect();
            let then = match then {
                Proceed::Allow { rule } => format!("allow {rule}"),
                Proceed::NeedsApproval { rule, .. } => format!("approval {rule}"),
            };
            format!("limits [{}] then {then}", counters.join(", "))
        }
    }
}

#[test]
fn the_design_example_decides_each_genieacs_tool() {
    let p = design();
    let cases = [
        ("delete_task", json!({"task_id": "t1"}), "unknown /hide/0"),
        ("manage_provision", json!({}), "unknown /default"),
        (
            "download_firmware",
            json!({"device_id": "x", "file_id": "f"}),
            "deny /tools/download_firmware/action | Firmware rollouts go through change control. | `download_firmware` is denied by this server's policy",
        ),
        (
            "set_parameter",
            json!({"device_id": "00236A-SmartRG585-SMRT00236a42", "parameter_values": "[[\"Device.WiFi.SSID.1.SSID\",\"home\"]]"}),
            "limits [/all_tools/limits/0=120/60s@grant] then allow /tools/set_parameter",
        ),
        (
            "set_parameter",
            json!({"device_id": "001122-Other-1", "parameter_values": "[]"}),
            "deny /tools/set_parameter/require/0 | Passwords are changed by the provisioning team only. | required condition not met: args.device_id regex \"^00236A-\"",
        ),
        (
            "set_parameter",
            json!({"device_id": "00236A-x", "parameter_values": "[[\"Device.Users.User.1.Password\",\"x\"]]"}),
            "deny /tools/set_parameter/deny_if/0 | Passwords are changed by the provisioning team only. | denied because args.parameter_values contains \"Password\"",
        ),
        (
            "set_parameter",
            json!({"parameter_values": "[]"}),
            "deny /tools/set_parameter/require/0 | Passwords are changed by the provisioning team only. | required condition args.device_id regex \"^00236A-\" cannot hold: argument `device_id` is absent",
        ),
        (
            "retry_task",
            json!({"task_id": "t1"}),
            "limits [/all_tools/limits/0=120/60s@grant, /tools/retry_task/limits/0=30/60s@grant] then allow /tools/retry_task",
        ),
        (
            "reboot_device",
            json!({"device_id": "d"}),
            "limits [/all_tools/limits/0=120/60s@grant] then approval /tools/reboot_device/approval",
        ),
        (
            "search_devices",
            json!({"query": "{}"}),
            "limits [/all_tools/limits/0=120/60s@grant] then allow /tools/search_devices",
        ),
    ];
    for (tool, args, expected) in cases {
        assert_eq!(
            summary(&decide(&p, tool, args.clone())),
            expected,
            "{tool} {args}"
        );
    }
}

#[test]
fn evaluation_order_first_denial_wins() {
    // A tool that is hidden, denied, conditioned, limited and held: hidden wins.
    let all = r#"{"version": "1", "default": "deny", "hide": ["t"], "tools": {"t": {
        "action": "deny", "limits": [{"counter": "c", "window": 1, "max": 1}]}}}"#;
    assert_eq!(
        summary(&decide(&policy(all), "t", json!({}))),
        "unknown /hide/0"
    );
    // Not hidden: action deny comes before conditions and limits.
    let denied = r#"{"version": "1", "default": "deny", "tools": {"t": {"action": "deny",
        "require": [{"path": "args.x", "op": "exists"}],
        "limits": [{"counter": "c", "window": 1, "max": 1}]}}}"#;
    assert!(summary(&decide(&policy(denied), "t", json!({}))).starts_with("deny /tools/t/action"));
    // require before deny_if, both before limits and approval.
    let conds = r#"{"version": "1", "default": "deny", "tools": {"t": {"action": "approve",
        "require": [{"path": "args.x", "op": "eq", "value": 1}],
        "deny_if": [{"path": "args.y", "op": "eq", "value": 1}],
        "limits": [{"counter": "c", "window": 1, "max": 1}]}}}"#;
    let p = policy(conds);
    assert!(
        summary(&decide(&p, "t", json!({"x": 2, "y": 1}))).starts_with("deny /tools/t/require/0")
    );
    assert!(
        summary(&decide(&p, "t", json!({"x": 1, "y": 1}))).starts_with("deny /tools/t/deny_if/0")
    );
    assert_eq!(
        summary(&decide(&p, "t", json!({"x": 1, "y": 2}))),
        "limits [/tools/t/limits/0=1/1s@grant] then approval /tools/t/action"
    );
    // Under default allow, an unlisted tool is allowed by /default and still consumes all_tools limits.
    let open = r#"{"version": "1", "default": "allow", "all_tools": {"limits": [{"counter": "c", "window": 1, "max": 5}]}}"#;
    assert_eq!(
        summary(&decide(&policy(open), "x", json!({}))),
        "limits [/all_tools/limits/0=5/1s@grant] then allow /default"
    );
    let bare = r#"{"version": "1", "default": "allow"}"#;
    assert_eq!(
        summary(&decide(&policy(bare), "x", json!({}))),
        "allow /default"
    );
}

#[test]
fn the_top_level_message_is_the_fallback() {
    let p = policy(
        r#"{"version": "1", "default": "deny", "on_deny": "Ask the NOC.", "tools": {
        "a": {"action": "deny"}, "b": {"action": "deny", "reason": "Not b."}}}"#,
    );
    assert_eq!(
        summary(&decide(&p, "a", json!({}))),
        "deny /tools/a/action | Ask the NOC. | `a` is denied by this server's policy"
    );
    assert_eq!(
        summary(&decide(&p, "b", json!({}))),
        "deny /tools/b/action | Not b. | `b` is denied by this server's policy"
    );
    let q = policy(r#"{"version": "1", "default": "deny", "tools": {"a": {"action": "deny"}}}"#);
    assert_eq!(
        summary(&decide(&q, "a", json!({}))),
        "deny /tools/a/action | `a` is denied by this server's policy | `a` is denied by this server's policy"
    );
}

/// One `require` condition; the call passes (true) or is denied (false).
fn passes(condition: serde_json::Value, args: serde_json::Value) -> bool {
    let text = json!({"version": "1", "default": "deny", "tools": {"t": {"require": [condition]}}})
        .to_string();
    matches!(decide(&policy(&text), "t", args), Decision::Allow { .. })
}

/// The same condition as `deny_if`; true when the call is denied.
fn denies(condition: serde_json::Value, args: serde_json::Value) -> bool {
    let text = json!({"version": "1", "default": "deny", "tools": {"t": {"deny_if": [condition]}}})
        .to_string();
    matches!(decide(&policy(&text), "t", args), Decision::Deny(_))
}

#[test]
fn every_operator() {
    let c =
        |op: &str, value: serde_json::Value| json!({"path": "args.a", "op": op, "value": value});
    let table: Vec<(serde_json::Value, serde_json::Value, bool)> = vec![
        (c("eq", json!("x")), json!({"a": "x"}), true),
        (c("eq", json!("x")), json!({"a": "y"}), false),
        (c("eq", json!(1)), json!({"a": 1.0}), true),
        (c("eq", json!(1)), json!({"a": "1"}), false),
        (
            c("eq", json!({"k": [1, 2]})),
            json!({"a": {"k": [1, 2.0]}}),
            true,
        ),
        (c("neq", json!("x")), json!({"a": "y"}), true),
        (c("neq", json!("x")), json!({"a": "x"}), false),
        (c("in", json!(["a", "b"])), json!({"a": "b"}), true),
        (c("in", json!(["a", "b"])), json!({"a": "c"}), false),
        (c("not_in", json!(["a", "b"])), json!({"a": "c"}), true),
        (c("not_in", json!(["a", "b"])), json!({"a": "a"}), false),
        (c("lt", json!(10)), json!({"a": 9}), true),
        (c("lt", json!(10)), json!({"a": 10}), false),
        (c("lte", json!(10)), json!({"a": 10}), true),
        (c("gt", json!(10)), json!({"a": 10}), false),
        (c("gt", json!(10)), json!({"a": 10.5}), true),
        (c("gte", json!(10)), json!({"a": 10}), true),
        // Numeric strings compare as numbers (GenieACS's `limit` is a string).
        (c("lte", json!(100)), json!({"a": "50"}), true),
        (c("lte", json!(100)), json!({"a": "500"}), false),
        (c("lte", json!(100)), json!({"a": "fifty"}), false),
        (
            c("regex", json!("^00236A-")),
            json!({"a": "00236A-x"}),
            true,
        ),
        (
            c("regex", json!("^00236A-")),
            json!({"a": "x00236A-"}),
            false,
        ),
        (c("regex", json!("^1")), json!({"a": 1}), false),
        (
            c("contains", json!("Pass")),
            json!({"a": "xPassword"}),
            true,
        ),
        (c("contains", json!("Pass")), json!({"a": "x"}), false),
        (c("contains", json!("b")), json!({"a": ["a", "b"]}), true),
        (c("contains", json!(2)), json!({"a": [1, 2.0]}), true),
        (c("contains", json!("k")), json!({"a": {"k": 1}}), true),
        (c("contains", json!("k")), json!({"a": 5}), false),
        (c("exists", json!(true)), json!({"a": null}), true),
        (c("exists", json!(true)), json!({}), false),
        (c("exists", json!(false)), json!({}), true),
        (c("exists", json!(false)), json!({"a": 1}), false),
    ];
    for (cond, args, expected) in table {
        assert_eq!(
            passes(cond.clone(), args.clone()),
            expected,
            "require {cond} on {args}"
        );
    }
}

#[test]
fn absent_or_unreadable_arguments_fail_closed_in_both_lists() {
    let eq = json!({"path": "args.a", "op": "eq", "value": "x"});
    assert!(
        !passes(eq.clone(), json!({})),
        "a require on an absent argument fails"
    );
    assert!(
        denies(eq.clone(), json!({})),
        "a deny_if on an absent argument denies"
    );
    let lt = json!({"path": "args.a", "op": "lt", "value": 5});
    assert!(
        denies(lt.clone(), json!({"a": "abc"})),
        "an unreadable number cannot rule the condition out"
    );
    assert!(!denies(lt, json!({"a": 7})));
    assert!(!denies(
        json!({"path": "args.a", "op": "exists", "value": false}),
        json!({"a": 1})
    ));
    assert!(denies(
        json!({"path": "args.a", "op": "exists", "value": false}),
        json!({})
    ));
    // No arguments at all.
    let p = policy(
        r#"{"version": "1", "default": "deny", "tools": {"t": {"require": [{"path": "args.a", "op": "exists"}]}}}"#,
    );
    let d = p.decide(&Call {
        tool: "t",
        arguments: None,
        subject: SUBJECT,
    });
    assert!(matches!(d, Decision::Deny(_)));
}

#[test]
fn nested_paths_follow_objects_and_array_indices() {
    let cond = json!({"path": "args.target.ids.1", "op": "eq", "value": "b"});
    assert!(passes(cond.clone(), json!({"target": {"ids": ["a", "b"]}})));
    assert!(!passes(cond, json!({"target": {"ids": ["a"]}})));
}

#[test]
fn counter_keys_are_scoped_and_tagged_by_organisation() {
    let p = policy(
        r#"{"version": "1", "default": "allow", "all_tools": {"limits": [
        {"counter": "g", "window": 60, "max": 1, "scope": "grant"},
        {"counter": "i", "window": 60, "max": 1, "scope": "identity"},
        {"counter": "s", "window": 60, "max": 1, "scope": "server"},
        {"counter": "o", "window": 60, "max": 1, "scope": "organisation"},
        {"counter": "x", "window": 60, "max": 1, "scope": "session"}]}}"#,
    );
    let Decision::NeedsLimits { limits, .. } = decide(&p, "t", json!({})) else {
        panic!("limits expected")
    };
    let keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gh:{org-1}:rl:grant:grant-1:g:60",
            "gh:{org-1}:rl:identity:noc-agent:i:60",
            "gh:{org-1}:rl:server:srv-1:s:60",
            "gh:{org-1}:rl:organisation:org-1:o:60",
            "gh:{org-1}:rl:session:sess-1:x:60",
        ]
    );
    // Another organisation never shares a key, and hostile ids cannot forge a hash tag.
    let other = Subject {
        organisation: "org-2",
        identity: "evil}:{org-1",
        ..SUBJECT
    };
    let Decision::NeedsLimits { limits, .. } = p.decide(&Call {
        tool: "t",
        arguments: None,
        subject: other,
    }) else {
        panic!("limits expected")
    };
    assert!(limits.iter().all(|l| l.key.starts_with("gh:{org-2}:")));
    assert_eq!(
        limits[1].key,
        "gh:{org-2}:rl:identity:evil%7D%3A%7Borg-1:i:60"
    );
}

#[test]
fn a_counter_named_twice_is_consumed_once_and_session_scope_needs_a_session() {
    let p = policy(
        r#"{"version": "1", "default": "deny",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 10}]},
        "tools": {"t": {"limits": [{"counter": "calls", "window": "minute", "max": 10},
                                   {"counter": "per_session", "window": "minute", "max": 3, "scope": "session"}]}}}"#,
    );
    let d = decide(&p, "t", json!({}));
    assert_eq!(
        summary(&d),
        "limits [/all_tools/limits/0=10/60s@grant, /tools/t/limits/1=3/60s@session] then allow /tools/t"
    );
    let stateless = p.decide(&Call {
        tool: "t",
        arguments: None,
        subject: Subject {
            session: None,
            ..SUBJECT
        },
    });
    assert!(
        summary(&stateless).starts_with(
            "deny /tools/t/limits/1 | rate limit `per_session` counts per MCP session"
        )
    );
}

#[test]
fn a_refused_counter_becomes_a_denial_with_retry_after() {
    let p = design();
    let Decision::NeedsLimits { limits, .. } = decide(&p, "retry_task", json!({"task_id": "t"}))
    else {
        panic!("limits expected")
    };
    let denial = limits[1].denial(12_300);
    assert_eq!(denial.rule.as_str(), "/tools/retry_task/limits/0");
    assert_eq!(
        denial.message,
        "rate limit `retry_task_rate` reached (30 per minute per grant), retry after 13 s"
    );
    assert_eq!(denial.retry_after_ms, Some(12_300));
}

#[test]
fn visibility_for_tools_list() {
    let p = design();
    assert!(p.visible("search_devices"));
    assert!(
        p.visible("download_firmware"),
        "a denied tool is listed; calling it explains why"
    );
    assert!(!p.visible("delete_task"), "hidden");
    assert!(
        !p.visible("manage_provision"),
        "unlisted under default deny"
    );
    let open = policy(r#"{"version": "1", "default": "allow", "hide": ["x"]}"#);
    assert!(open.visible("anything"));
    assert!(!open.visible("x"));
}

#[test]
fn record_arguments_per_tool_overrides_the_top_level() {
    let p = policy(
        r#"{"version": "1", "default": "allow", "record_arguments": true,
        "tools": {"a": {"record_arguments": false}, "b": {}}}"#,
    );
    assert!(!p.records_arguments("a"));
    assert!(p.records_arguments("b"));
    assert!(p.records_arguments("unlisted"));
    assert!(!design().records_arguments("search_devices"));
}

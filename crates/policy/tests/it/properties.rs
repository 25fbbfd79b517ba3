//! Property tests: whatever the arguments, a valid policy decides without panicking, never lets
//! an unlisted tool through under `default: deny`, and never shows a hidden tool.

use policy::{Call, Decision, Policy};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::support::SUBJECT;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "(00236A-|Password|x|1)".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A policy using every operator on arguments the generated calls may or may not have.
fn rich_policy() -> Policy {
    let text = json!({
        "version": "1", "default": "deny", "hide": ["h"],
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 5}]},
        "tools": {
            "t": {
                "require": [
                    {"path": "args.a", "op": "exists"},
                    {"path": "args.a.b", "op": "neq", "value": 3}
                ],
                "deny_if": [
                    {"path": "args.a", "op": "contains", "value": "Password"},
                    {"path": "args.b", "op": "gt", "value": 10},
                    {"path": "args.c", "op": "regex", "value": "^(a|b)+$"},
                    {"path": "args.d.0", "op": "in", "value": [1, "x", null]},
                    {"path": "args.e", "op": "not_in", "value": [true]},
                    {"path": "args.e", "op": "lte", "value": -1}
                ],
                "limits": [{"counter": "t", "window": 10, "max": 1, "scope": "session"}]
            },
            "u": {"action": "approve"},
            "h": {}
        }
    });
    Policy::parse(&text.to_string(), None).expect("valid")
}

proptest! {
    #[test]
    fn a_valid_policy_never_panics_on_any_arguments(args in arb_json(), tool in "(t|u|h|x|)") {
        let p = rich_policy();
        let d = p.decide(&Call { tool: &tool, arguments: Some(&args), subject: SUBJECT });
        prop_assert!(!d.rule().as_str().is_empty());
    }

    #[test]
    fn default_deny_never_allows_an_unlisted_tool(tool in "[a-z_]{1,12}", args in arb_json()) {
        let p = rich_policy();
        prop_assume!(!["t", "u", "h"].contains(&tool.as_str()));
        let d = p.decide(&Call { tool: &tool, arguments: Some(&args), subject: SUBJECT });
        let unknown = matches!(d, Decision::UnknownTool { .. });
        prop_assert!(unknown, "{}: {:?}", tool, d);
        prop_assert!(!p.visible(&tool));
    }

    #[test]
    fn a_hidden_tool_is_never_visible_nor_callable(names in prop::collection::vec("[a-z]{1,6}", 1..6), default in "(allow|deny)") {
        let text = json!({"version": "1", "default": default, "hide": [names[0].clone()],
            "tools": names.iter().map(|n| (n.clone(), json!({}))).collect::<serde_json::Map<_, _>>()}).to_string();
        let p = Policy::parse(&text, None).expect("valid");
        prop_assert!(!p.visible(&names[0]));
        let d = p.decide(&Call { tool: &names[0], arguments: None, subject: SUBJECT });
        let unknown = matches!(d, Decision::UnknownTool { .. });
        prop_assert!(unknown, "{:?}", d);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = Policy::parse(&text, None);
    }

    #[test]
    fn parsing_arbitrary_json_never_panics(doc in arb_json()) {
        let _ = Policy::parse(&doc.to_string(), None);
    }
}

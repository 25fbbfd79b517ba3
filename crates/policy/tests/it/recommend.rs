//! The recommended policy: one choice per risk class, and a document that validates against
//! the very tools it was made for.

use policy::{
    Decision, Policy, Recommendation, RiskClass, ToolDef, recommendation, recommended_policy,
};
use serde_json::{Value, json};

use crate::support::{decide, genieacs_tools};

fn labelled_tools() -> Vec<ToolDef> {
    let data: Value =
        serde_json::from_str(include_str!("../data/labelled-tools.json")).expect("json");
    data.as_array()
        .expect("array")
        .iter()
        .map(|entry| serde_json::from_value(entry["tool"].clone()).expect("tool"))
        .collect()
}

#[test]
fn one_choice_per_class() {
    assert_eq!(recommendation(RiskClass::Read), Recommendation::Allow);
    assert_eq!(
        recommendation(RiskClass::Write),
        Recommendation::RateLimit {
            max: 30,
            window_secs: 60
        }
    );
    assert_eq!(
        recommendation(RiskClass::Execute),
        Recommendation::RateLimit {
            max: 10,
            window_secs: 60
        }
    );
    assert_eq!(recommendation(RiskClass::Destructive), Recommendation::Hide);
    assert_eq!(
        recommendation(RiskClass::Financial),
        Recommendation::Approve
    );
}

#[test]
fn the_recommended_policy_validates_against_its_tools() {
    for tools in [genieacs_tools(), labelled_tools()] {
        let doc = recommended_policy(&tools);
        let policy = Policy::parse(&doc.to_string(), Some(&tools))
            .unwrap_or_else(|d| panic!("recommended policy is invalid:\n{d}\n{doc:#}"));
        assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
        // Every tool is either listed or hidden: nothing falls through to the default by accident.
        for tool in &tools {
            let listed = doc["tools"].get(&tool.name).is_some();
            let hidden = doc["hide"]
                .as_array()
                .is_some_and(|h| h.contains(&json!(tool.name)));
            assert!(
                listed ^ hidden,
                "{} listed={listed} hidden={hidden}",
                tool.name
            );
        }
    }
}

#[test]
fn the_recommended_genieacs_policy_allows_reads_limits_writes_and_hides_deletes() {
    let tools = genieacs_tools();
    let policy =
        Policy::parse(&recommended_policy(&tools).to_string(), Some(&tools)).expect("valid");
    assert!(matches!(
        decide(&policy, "get_parameter", json!({})),
        Decision::Allow { .. }
    ));
    assert!(matches!(
        decide(&policy, "delete_task", json!({})),
        Decision::UnknownTool { .. }
    ));
    let Decision::NeedsLimits { limits, .. } = decide(&policy, "retry_task", json!({})) else {
        panic!("retry_task is a write: rate limited")
    };
    assert_eq!((limits[0].max, limits[0].window_secs), (30, 60));
}

#[test]
fn counter_names_stay_valid_and_distinct_for_awkward_tool_names() {
    let tools: Vec<ToolDef> = ["create thing", "create_thing", "créer/objet", &"x".repeat(100)]
        .iter()
        .map(|name| serde_json::from_value(json!({"name": name, "description": "Create an item", "inputSchema": {"type": "object"}})).unwrap())
        .collect();
    let doc = recommended_policy(&tools);
    Policy::parse(&doc.to_string(), Some(&tools)).unwrap_or_else(|d| panic!("{d}\n{doc:#}"));
}

//! The risk classifier against a labelled set of real tools, plus its invariants.

use std::collections::BTreeMap;

use policy::{Annotations, RiskClass, ToolDef, classify};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Labelled {
    source: String,
    tool: ToolDef,
    expected: RiskClass,
    why: String,
}

fn labelled_set() -> Vec<Labelled> {
    let text = include_str!("../data/labelled-tools.json");
    serde_json::from_str(text).expect("the labelled set parses")
}

/// The classifier agrees with the hand labels on at least 90% of the set. Run with
/// `--nocapture` to see the figure and every miss.
#[test]
fn accuracy_on_the_labelled_set_is_at_least_90_percent() {
    let set = labelled_set();
    assert!(set.len() >= 60, "the labelled set has {} tools", set.len());
    let mut misses = Vec::new();
    let mut confusion: BTreeMap<(RiskClass, RiskClass), usize> = BTreeMap::new();
    for entry in &set {
        assert!(!entry.why.is_empty() && !entry.source.is_empty());
        let risk = classify(&entry.tool);
        *confusion.entry((entry.expected, risk.class)).or_default() += 1;
        if risk.class != entry.expected {
            misses.push((entry, risk));
        }
    }
    let hits = set.len() - misses.len();
    let accuracy = hits as f64 / set.len() as f64;
    println!(
        "risk classifier: {hits}/{} correct, accuracy {:.1}%",
        set.len(),
        accuracy * 100.0
    );
    println!("confusion (expected -> classified: count):");
    for ((expected, got), n) in &confusion {
        println!("  {expected:>11} -> {got:<11} {n}");
    }
    println!("misses:");
    for (entry, risk) in &misses {
        let top = &risk.signals[0];
        println!(
            "  {:<32} expected {:<11} got {:<11} ({}: {:?} {}) [{}]",
            entry.tool.name,
            entry.expected,
            risk.class,
            serde_json::to_value(top.source).unwrap(),
            top.matched,
            top.detail,
            entry.source,
        );
    }
    assert!(
        accuracy >= 0.9,
        "accuracy {:.1}% is below 90%",
        accuracy * 100.0
    );
}

fn genieacs_tools() -> Vec<ToolDef> {
    labelled_set()
        .into_iter()
        .filter(|e| e.source.starts_with("GenieACS"))
        .map(|e| e.tool)
        .collect()
}

/// Each GenieACS tool gets the class shared/genieacs.md calls sensible, for the reasons shown.
#[test]
fn the_twelve_genieacs_tools_get_their_expected_class() {
    let tools = genieacs_tools();
    assert_eq!(tools.len(), 12);
    let expected = [
        ("reboot_device", RiskClass::Write),
        ("download_firmware", RiskClass::Execute),
        ("refresh_parameter", RiskClass::Read),
        ("set_parameter", RiskClass::Write),
        ("get_parameter", RiskClass::Read),
        ("manage_preset", RiskClass::Write),
        ("manage_provision", RiskClass::Execute),
        ("search_devices", RiskClass::Read),
        ("tag_device", RiskClass::Write),
        ("connection_request", RiskClass::Execute),
        ("delete_task", RiskClass::Destructive),
        ("retry_task", RiskClass::Write),
    ];
    let mut report = String::new();
    for (name, class) in expected {
        let tool = tools.iter().find(|t| t.name == name).expect(name);
        let risk = classify(tool);
        assert_eq!(risk.class, class, "{name}: {risk:#?}");
        report.push_str(&format!("{name}: {} ({})\n", risk.class, risk.level));
        for s in &risk.signals {
            let source = serde_json::to_value(s.source).unwrap();
            let source = source.as_str().unwrap();
            report.push_str(&format!(
                "  {} {source} {:?}: {}\n",
                s.suggests, s.matched, s.detail
            ));
        }
    }
    expect_test::expect_file!["genieacs-risk.txt"].assert_eq(&report);
}

fn tool(name: &str, description: &str, properties: &[&str]) -> ToolDef {
    let props: serde_json::Map<String, serde_json::Value> = properties
        .iter()
        .map(|p| ((*p).to_owned(), serde_json::json!({"type": "string"})))
        .collect();
    serde_json::from_value(serde_json::json!({
        "name": name,
        "description": description,
        "inputSchema": {"type": "object", "properties": props},
    }))
    .unwrap()
}

fn with_annotations(mut tool: ToolDef, annotations: Option<Annotations>) -> ToolDef {
    tool.annotations = annotations;
    tool
}

#[test]
fn table_of_small_cases() {
    let hints = |read_only: Option<bool>, destructive: Option<bool>| {
        Some(Annotations {
            read_only_hint: read_only,
            destructive_hint: destructive,
            ..Annotations::default()
        })
    };
    let cases: Vec<(ToolDef, RiskClass)> = vec![
        // Name styles.
        (tool("deleteUser", "", &[]), RiskClass::Destructive),
        (tool("user-delete", "", &[]), RiskClass::Destructive),
        (tool("users.list", "", &[]), RiskClass::Read),
        (tool("HTTPGetStatus", "", &[]), RiskClass::Read),
        (tool("RunShellCommand", "", &[]), RiskClass::Execute),
        // A read-only hint cannot make a deleting tool read.
        (
            with_annotations(tool("delete_user", "", &[]), hints(Some(true), Some(false))),
            RiskClass::Destructive,
        ),
        // A destructive hint raises a tool nothing else explains...
        (
            with_annotations(tool("frobnicate", "", &[]), hints(None, Some(true))),
            RiskClass::Destructive,
        ),
        // ...but only to write when the name says what it does (the spec's "destructive" covers overwrites).
        (
            with_annotations(
                tool("write_file", "", &["path", "content"]),
                hints(Some(false), Some(true)),
            ),
            RiskClass::Write,
        ),
        (
            with_annotations(tool("get_status", "", &[]), hints(Some(false), None)),
            RiskClass::Write,
        ),
        // Default for a tool with no signals.
        (tool("frobnicate", "", &[]), RiskClass::Write),
        (
            with_annotations(tool("frobnicate", "", &[]), hints(Some(true), None)),
            RiskClass::Write,
        ),
        // The description's leading verbs count when the name has none.
        (
            tool("directory_tree", "Returns a tree of files.", &[]),
            RiskClass::Read,
        ),
        (
            tool(
                "kube_context",
                "Lists, shows or switches the current context.",
                &[],
            ),
            RiskClass::Write,
        ),
        (
            tool("thing", "This tool will delete a thing.", &[]),
            RiskClass::Destructive,
        ),
        // Objects raise a non-read action only.
        (
            tool("list_invoices", "Lists invoices.", &["customer"]),
            RiskClass::Read,
        ),
        (
            tool("create_invoice", "", &["customer"]),
            RiskClass::Financial,
        ),
        (
            tool("create_charge", "", &["unit_amount", "currency"]),
            RiskClass::Financial,
        ),
        (
            tool("create_thing", "", &["amountOff"]),
            RiskClass::Financial,
        ),
        (
            tool("get_firmware_version", "", &["device"]),
            RiskClass::Read,
        ),
        (
            tool("download_firmware", "", &["device"]),
            RiskClass::Execute,
        ),
        // Code-carrying arguments raise whatever the verb.
        (
            tool("query", "Query the database.", &["sql"]),
            RiskClass::Execute,
        ),
        (tool("get_country", "", &["code"]), RiskClass::Read),
        (tool("update_snippet", "", &["code"]), RiskClass::Execute),
        // Phrases.
        (
            tool(
                "helper",
                "Runs an arbitrary shell command on the host.",
                &[],
            ),
            RiskClass::Execute,
        ),
        (
            tool(
                "archive_project",
                "Archives the project; this cannot be undone.",
                &[],
            ),
            RiskClass::Destructive,
        ),
        (
            tool("settle", "Transfers funds between accounts.", &[]),
            RiskClass::Financial,
        ),
        // Later verbs in the name raise, unless they are as often nouns.
        (tool("get_or_create_user", "", &[]), RiskClass::Write),
        (tool("get_thread_reply", "", &[]), RiskClass::Read),
        (tool("search_and_delete", "", &[]), RiskClass::Destructive),
        // Auxiliary words lend the name its next verb.
        (tool("start_search", "", &[]), RiskClass::Read),
        (tool("trigger_deploy", "", &[]), RiskClass::Execute),
        // Destructive and financial together: financial, the more specific one.
        (tool("cancel_subscription", "", &[]), RiskClass::Financial),
    ];
    for (tool, class) in cases {
        let risk = classify(&tool);
        assert_eq!(risk.class, class, "{}: {risk:#?}", tool.name);
        assert_eq!(risk.level, class.level());
    }
}

#[test]
fn classification_is_deterministic_and_ignores_property_order() {
    for entry in labelled_set() {
        let first = classify(&entry.tool);
        assert_eq!(first, classify(&entry.tool));
        let mut reordered = entry.tool.clone();
        if let Some(props) = reordered
            .input_schema
            .get_mut("properties")
            .and_then(|p| p.as_object_mut())
        {
            let mut items: Vec<_> = std::mem::take(props).into_iter().collect();
            items.reverse();
            props.extend(items);
        }
        assert_eq!(first, classify(&reordered), "{}", entry.tool.name);
    }
}

#[test]
fn class_is_the_most_severe_signal_and_signals_come_most_severe_first() {
    for entry in labelled_set() {
        let risk = classify(&entry.tool);
        assert!(!risk.signals.is_empty(), "{}", entry.tool.name);
        assert_eq!(risk.signals[0].suggests, risk.class, "{}", entry.tool.name);
        assert!(
            risk.signals
                .windows(2)
                .all(|w| w[0].suggests >= w[1].suggests)
        );
    }
}

#[test]
fn names_serialise_in_lowercase_and_display_the_same() {
    for class in RiskClass::ALL {
        let json = serde_json::to_value(class).unwrap();
        assert_eq!(json, serde_json::Value::String(class.to_string()));
        assert_eq!(
            serde_json::to_value(class.level()).unwrap().as_str(),
            Some(class.level().to_string().as_str())
        );
    }
    assert_eq!(RiskClass::Destructive.level(), RiskClass::Financial.level());
    assert!(RiskClass::Read < RiskClass::Write && RiskClass::Write < RiskClass::Execute);
    assert!(
        RiskClass::Execute < RiskClass::Destructive
            && RiskClass::Destructive < RiskClass::Financial
    );
}

/// Words the generators draw from: verbs and objects of every class, noise, and phrases.
const NAME_WORDS: &[&str] = &[
    "get",
    "list",
    "read",
    "create",
    "update",
    "set",
    "post",
    "run",
    "exec",
    "deploy",
    "delete",
    "remove",
    "wipe",
    "refund",
    "pay",
    "charge",
    "invoice",
    "script",
    "firmware",
    "user",
    "file",
    "device",
    "task",
    "start",
    "trigger",
    "connection",
    "request",
    "and",
    "or",
    "frob",
    "x",
];
const DESCRIPTION_WORDS: &[&str] = &[
    "Returns",
    "Lists",
    "Creates",
    "Deletes",
    "Runs",
    "this tool will",
    "a",
    "the",
    "shell command",
    "permanently deletes",
    "cannot be undone",
    "transfers funds",
    "invoice",
    "refund",
    "firmware",
    "user",
    "files",
    "and",
    "or",
    ",",
    "connection request",
    "gets",
    "data",
];
const PROPERTY_NAMES: &[&str] = &[
    "id",
    "path",
    "content",
    "sql",
    "script",
    "command",
    "subCommand",
    "code",
    "amount",
    "currency",
    "unit_amount",
    "payment_intent",
    "query",
    "limit",
    "manifest",
    "name",
];

fn arb_tool() -> impl Strategy<Value = ToolDef> {
    let name = (
        prop::collection::vec(prop::sample::select(NAME_WORDS), 1..5),
        prop::sample::select(&["_", "-", ".", "camel"][..]),
    )
        .prop_map(|(words, sep)| {
            if sep == "camel" {
                words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if i == 0 {
                            (*w).to_owned()
                        } else {
                            let mut c = w.chars();
                            c.next()
                                .map(|f| f.to_uppercase().chain(c).collect())
                                .unwrap_or_default()
                        }
                    })
                    .collect::<String>()
            } else {
                words.join(sep)
            }
        });
    let description = prop::collection::vec(prop::sample::select(DESCRIPTION_WORDS), 0..8)
        .prop_map(|words| words.join(" "));
    let properties = prop::collection::vec(prop::sample::select(PROPERTY_NAMES), 0..4);
    (name, description, properties)
        .prop_map(|(name, description, properties)| tool(&name, &description, &properties))
}

fn arb_annotations() -> impl Strategy<Value = Annotations> {
    let hint = || prop::option::of(any::<bool>());
    (hint(), hint(), hint(), hint()).prop_map(|(read_only, destructive, idempotent, open_world)| {
        Annotations {
            title: None,
            read_only_hint: read_only,
            destructive_hint: destructive,
            idempotent_hint: idempotent,
            open_world_hint: open_world,
        }
    })
}

proptest! {
    /// Annotations are untrusted: whatever they say, the class is at least the one the tool gets
    /// with no annotations at all.
    #[test]
    fn annotations_never_lower_the_class(tool in arb_tool(), hints in arb_annotations()) {
        let bare = classify(&with_annotations(tool.clone(), None));
        let hinted = classify(&with_annotations(tool, Some(hints)));
        prop_assert!(hinted.class >= bare.class, "{:?} with hints < {:?} without", hinted.class, bare.class);
    }

    /// A read-only hint changes nothing about the class, whatever the other hints say.
    #[test]
    fn a_read_only_hint_changes_no_class(tool in arb_tool(), hints in arb_annotations()) {
        let claimed = Annotations { read_only_hint: Some(true), ..hints.clone() };
        let silent = Annotations { read_only_hint: None, ..hints };
        prop_assert_eq!(
            classify(&with_annotations(tool.clone(), Some(claimed))).class,
            classify(&with_annotations(tool, Some(silent))).class
        );
    }

    /// Classifying never panics and always explains itself.
    #[test]
    fn every_tool_gets_a_class_and_a_reason(name in "\\PC{0,40}", description in "\\PC{0,200}") {
        let risk = classify(&tool(&name, &description, &[]));
        prop_assert!(!risk.signals.is_empty());
        prop_assert_eq!(risk.signals[0].suggests, risk.class);
    }
}

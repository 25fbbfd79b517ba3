use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn sample() -> Value {
    json!({
        "name": "reboot_device",
        "title": "Reboot",
        "description": "Reboots one CPE.",
        "inputSchema": {"type": "object", "properties": {"device_id": {"type": "string"}},
                        "required": ["device_id"]},
        "outputSchema": {"type": "object"},
        "annotations": {"destructiveHint": true, "readOnlyHint": false},
        "_meta": {"build": "1"},
        "icons": [{"src": "https://example.net/i.png"}]
    })
}

#[test]
fn the_pinned_form_is_sorted_compact_and_only_the_covered_members() {
    let form = pinned_form(&sample());
    assert_eq!(
        form,
        r#"{"annotations":{"destructiveHint":true,"readOnlyHint":false},"description":"Reboots one CPE.","inputSchema":{"properties":{"device_id":{"type":"string"}},"required":["device_id"],"type":"object"},"name":"reboot_device","outputSchema":{"type":"object"},"title":"Reboot"}"#
    );
}

#[test]
fn uncovered_members_do_not_change_the_pin() {
    let mut other = sample();
    other["_meta"] = json!({"build": "2"});
    other["icons"] = json!([]);
    other["execution"] = json!({"taskSupport": "optional"});
    assert_eq!(pin_hash(&sample()), pin_hash(&other));
}

#[test]
fn absent_and_null_members_pin_alike_but_null_inside_a_schema_is_data() {
    let mut with_null = sample();
    with_null["outputSchema"] = Value::Null;
    let mut without = sample();
    without.as_object_mut().unwrap().remove("outputSchema");
    assert_eq!(pin_hash(&with_null), pin_hash(&without));
    assert_ne!(pin_hash(&sample()), pin_hash(&without));

    let mut null_default = sample();
    null_default["inputSchema"]["properties"]["device_id"]["default"] = Value::Null;
    assert_ne!(pin_hash(&sample()), pin_hash(&null_default));
}

#[test]
fn every_covered_member_counts_title_included() {
    let base = pin_hash(&sample());
    for key in PINNED_MEMBERS {
        let mut changed = sample();
        changed[key] = json!("something else");
        assert_ne!(base, pin_hash(&changed), "{key}");
        let mut removed = sample();
        removed.as_object_mut().unwrap().remove(key);
        assert_ne!(base, pin_hash(&removed), "{key} removed");
    }
}

#[test]
fn the_hash_is_domain_separated_and_stable() {
    let plain: [u8; 32] = Sha256::digest(pinned_form(&sample()).as_bytes()).into();
    assert_ne!(pin_hash(&sample()), plain);
    // The pin is stored: it must not change between builds.
    let hex: String = pin_hash(&json!({"name": "a"}))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expected: [u8; 32] = Sha256::digest(b"gatehouse/tool-pin/v1\0{\"name\":\"a\"}").into();
    let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn anything_but_an_object_pins_as_the_empty_object() {
    assert_eq!(pinned_form(&json!([1, 2])), "{}");
    assert_eq!(pinned_form(&json!("x")), "{}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z \\\"\\n\u{e9}]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn definition() -> impl Strategy<Value = Value> {
    (
        "[a-z_]{1,12}",
        prop::option::of("[ -~]{0,40}"),
        prop::option::of("[ -~]{0,20}"),
        json_value(),
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        json_value(),
    )
        .prop_map(
            |(name, description, title, input, output, annotations, meta)| {
                let mut d = Map::new();
                d.insert("name".into(), json!(name));
                if let Some(t) = description {
                    d.insert("description".into(), json!(t));
                }
                if let Some(t) = title {
                    d.insert("title".into(), json!(t));
                }
                d.insert("inputSchema".into(), input);
                if let Some(o) = output {
                    d.insert("outputSchema".into(), o);
                }
                if let Some(a) = annotations {
                    d.insert("annotations".into(), a);
                }
                d.insert("_meta".into(), meta);
                Value::Object(d)
            },
        )
}

/// The same value with every object's members in reverse order (objects keep insertion order).
fn reversed(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

/// A change to one covered member that is certainly a change.
fn mutate(definition: &mut Value, member: usize) {
    let key = PINNED_MEMBERS[member % PINNED_MEMBERS.len()];
    let current = definition.get(key).cloned().unwrap_or(Value::Null);
    definition[key] = json!({ "changed": current });
}

proptest! {
    #[test]
    fn key_order_and_whitespace_do_not_change_the_pin(d in definition()) {
        let pin = pin_hash(&d);
        prop_assert_eq!(pin, pin_hash(&reversed(&d)));
        let pretty = serde_json::to_string_pretty(&reversed(&d)).unwrap();
        let reparsed: Value = serde_json::from_str(&pretty).unwrap();
        prop_assert_eq!(pin, pin_hash(&reparsed));
        let compact: Value = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        prop_assert_eq!(pin, pin_hash(&compact));
    }

    #[test]
    fn any_change_to_a_covered_member_changes_the_pin(d in definition(), member in 0usize..6) {
        let mut changed = d.clone();
        mutate(&mut changed, member);
        prop_assert_ne!(pin_hash(&d), pin_hash(&changed));
    }

    #[test]
    fn a_changed_description_changes_the_pin(d in definition(), extra in "[ -~]{1,10}") {
        let mut changed = d.clone();
        let old = d.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
        changed["description"] = json!(format!("{old}{extra}"));
        prop_assert_ne!(pin_hash(&d), pin_hash(&changed));
    }
}

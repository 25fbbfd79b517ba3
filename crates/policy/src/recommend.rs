//! The recommended policy for a server's tools, from each tool's risk (DESIGN.md §8):
//! read → allow; write → 30 per minute per grant; execute → 10 per minute per grant;
//! destructive → hide; financial → hold for a human's approval.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::{RiskClass, ToolDef, classify};

/// What the policy editor pre-selects for a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "choice", rename_all = "snake_case")]
pub enum Recommendation {
    Allow,
    RateLimit { max: u32, window_secs: u64 },
    Approve,
    Hide,
}

/// The recommendation for one risk class.
pub fn recommendation(class: RiskClass) -> Recommendation {
    match class {
        RiskClass::Read => Recommendation::Allow,
        RiskClass::Write => Recommendation::RateLimit {
            max: 30,
            window_secs: 60,
        },
        RiskClass::Execute => Recommendation::RateLimit {
            max: 10,
            window_secs: 60,
        },
        RiskClass::Destructive => Recommendation::Hide,
        // Moving money is as critical as destroying data, but hiding it would make the tool
        // useless; a human looks at each call instead.
        RiskClass::Financial => Recommendation::Approve,
    }
}

/// A complete policy document (version 1, `default: deny`) for `tools`, which validates
/// against those same tools.
pub fn recommended_policy(tools: &[ToolDef]) -> Value {
    let mut rules = Map::new();
    let mut hide = Vec::new();
    let mut counters = HashSet::new();
    for tool in tools {
        if rules.contains_key(&tool.name) || hide.contains(&tool.name) {
            continue;
        }
        let rule = match recommendation(classify(tool).class) {
            Recommendation::Allow => json!({}),
            Recommendation::RateLimit { max, window_secs } => {
                let counter = unique_counter(&tool.name, &mut counters);
                json!({"limits": [{"counter": counter, "window": window_name(window_secs), "max": max, "scope": "grant"}]})
            }
            Recommendation::Approve => json!({"action": "approve"}),
            Recommendation::Hide => {
                hide.push(tool.name.clone());
                continue;
            }
        };
        rules.insert(tool.name.clone(), rule);
    }
    let mut doc = Map::new();
    doc.insert("version".into(), json!("1"));
    doc.insert("default".into(), json!("deny"));
    if !hide.is_empty() {
        doc.insert("hide".into(), json!(hide));
    }
    doc.insert("tools".into(), Value::Object(rules));
    Value::Object(doc)
}

fn window_name(secs: u64) -> Value {
    match secs {
        60 => json!("minute"),
        s => json!(s),
    }
}

/// A counter name for the tool (letters, digits, `_`, `.`, `-`; at most 64), distinct from
/// every other counter in the policy so two tools never share a limit by accident.
fn unique_counter(tool: &str, taken: &mut HashSet<String>) -> String {
    let base: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(56)
        .collect();
    let base = if base.is_empty() {
        "tool".to_string()
    } else {
        base
    };
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

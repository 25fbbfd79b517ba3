//! The visual policy builder: one setting per pinned tool (Allow / Rate limit / Require approval /
//! Deny / Hide), read from a policy document and written back into it.
//!
//! The document is the truth and the builder a view of it: [`read`] derives each tool's setting
//! from the JSON, and [`apply`] changes only the tools whose setting differs from what the document
//! says, leaving everything else (conditions, messages, other tools, unknown fields) as written.
//! Both the page without JavaScript (a form post) and the live editor (the same post, fetched) go
//! through these two functions, so the two ways of editing cannot drift apart.

use std::collections::HashSet;

use policy::{Recommendation, Scope};
use serde_json::{Map, Value, json};

/// What the builder offers for one tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Allow,
    RateLimit,
    Approve,
    Deny,
    Hide,
    /// The document says something the builder cannot show (several limits, an unknown action):
    /// left as written.
    Custom,
}

impl Choice {
    /// The choices a person can pick, in the order the page shows them.
    pub(crate) const OFFERED: [Choice; 5] = [
        Choice::Allow,
        Choice::RateLimit,
        Choice::Approve,
        Choice::Deny,
        Choice::Hide,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Choice::Allow => "allow",
            Choice::RateLimit => "rate_limit",
            Choice::Approve => "approve",
            Choice::Deny => "deny",
            Choice::Hide => "hide",
            Choice::Custom => "custom",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Choice::Allow => "Allow",
            Choice::RateLimit => "Rate limit",
            Choice::Approve => "Require approval",
            Choice::Deny => "Deny",
            Choice::Hide => "Hide",
            Choice::Custom => "As written",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Choice> {
        Choice::OFFERED
            .into_iter()
            .chain([Choice::Custom])
            .find(|c| c.as_str() == s)
    }
}

/// A rate limit as the builder edits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitSetting {
    pub(crate) max: u64,
    pub(crate) window_secs: u64,
    pub(crate) scope: Scope,
}

impl LimitSetting {
    /// What a tool that has no limit yet starts from: its recommendation's numbers, or 60 a minute.
    pub(crate) fn starting_point(recommended: Recommendation) -> LimitSetting {
        let (max, window_secs) = match recommended {
            Recommendation::RateLimit { max, window_secs } => (u64::from(max), window_secs),
            _ => (60, 60),
        };
        LimitSetting {
            max,
            window_secs,
            scope: Scope::Grant,
        }
    }
}

/// One tool's setting, as read from a document or submitted by the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) choice: Choice,
    /// Present for `RateLimit`.
    pub(crate) limit: Option<LimitSetting>,
}

/// A tool's setting read from a document, with what a person should know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) setting: Setting,
    pub(crate) notes: Vec<String>,
}

/// The window names the policy language knows, with their length.
pub(crate) const WINDOWS: [(&str, u64); 4] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86_400),
];

/// A window as written in a document: a name or a whole number of seconds.
pub(crate) fn window_secs(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => WINDOWS.iter().find(|(n, _)| n == s).map(|(_, secs)| *secs),
        Value::Number(n) => n.as_u64().filter(|s| *s > 0),
        _ => None,
    }
}

/// A window as a document should say it: its name when it has one.
pub(crate) fn window_value(secs: u64) -> Value {
    match WINDOWS.iter().find(|(_, s)| *s == secs) {
        Some((name, _)) => json!(name),
        None => json!(secs),
    }
}

/// How a page shows a window: "minute", or "90 s".
pub(crate) fn window_label(secs: u64) -> String {
    match WINDOWS.iter().find(|(_, s)| *s == secs) {
        Some((name, _)) => (*name).to_owned(),
        None => format!("{secs} s"),
    }
}

/// The setting a risk recommendation stands for.
pub(crate) fn recommended_setting(r: Recommendation) -> Setting {
    match r {
        Recommendation::Allow => Setting {
            choice: Choice::Allow,
            limit: None,
        },
        Recommendation::RateLimit { .. } => Setting {
            choice: Choice::RateLimit,
            limit: Some(LimitSetting::starting_point(r)),
        },
        Recommendation::Approve => Setting {
            choice: Choice::Approve,
            limit: None,
        },
        Recommendation::Hide => Setting {
            choice: Choice::Hide,
            limit: None,
        },
    }
}

fn hide_list(doc: &Value) -> Vec<&str> {
    doc.get("hide")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether the document denies tools it does not list (`default` other than `"allow"` counts as
/// deny: the validator refuses it anyway, and failing closed is the safe reading).
pub(crate) fn default_denies(doc: &Value) -> bool {
    doc.get("default").and_then(Value::as_str) != Some("allow")
}

/// Reads `tool`'s setting from `doc` (any JSON; an object for a meaningful answer).
pub(crate) fn read(doc: &Value, tool: &str) -> Reading {
    let mut notes = Vec::new();
    let hide = hide_list(doc);
    let rule = doc.get("tools").and_then(|t| t.get(tool));
    if hide.contains(&"*") || hide.contains(&tool) {
        if hide.contains(&"*") {
            notes.push("hidden by `*` in `hide`".to_owned());
        }
        if rule.is_some() {
            notes.push("also listed under `tools`, where its rule never applies".to_owned());
        }
        return Reading {
            setting: Setting {
                choice: Choice::Hide,
                limit: None,
            },
            notes,
        };
    }
    let Some(rule) = rule else {
        let setting = if default_denies(doc) {
            notes.push("not listed: the default denies it".to_owned());
            Setting {
                choice: Choice::Hide,
                limit: None,
            }
        } else {
            notes.push("not listed: the default allows it".to_owned());
            Setting {
                choice: Choice::Allow,
                limit: None,
            }
        };
        return Reading { setting, notes };
    };
    let custom = |notes: Vec<String>| Reading {
        setting: Setting {
            choice: Choice::Custom,
            limit: None,
        },
        notes,
    };
    let Some(rule) = rule.as_object() else {
        return custom(vec!["its rule is not an object".to_owned()]);
    };
    let conditions = ["require", "deny_if"]
        .iter()
        .filter_map(|k| rule.get(*k).and_then(Value::as_array))
        .map(Vec::len)
        .sum::<usize>();
    if conditions > 0 {
        notes.push(format!(
            "{conditions} condition{} on its arguments (edit them in the JSON)",
            if conditions == 1 { "" } else { "s" }
        ));
    }
    let action = rule.get("action").and_then(Value::as_str);
    let limits = rule.get("limits");
    let choice = match action {
        Some("deny") => Choice::Deny,
        Some("approve") => Choice::Approve,
        None | Some("allow") if rule.contains_key("approval") => Choice::Approve,
        None | Some("allow") => Choice::Allow,
        Some(other) => {
            notes.push(format!("unknown action `{other}`"));
            return custom(notes);
        }
    };
    match (choice, limits) {
        (_, None) => {}
        (Choice::Allow, Some(Value::Array(l))) if l.is_empty() => {}
        (Choice::Allow, Some(Value::Array(l))) if l.len() == 1 => {
            let l = &l[0];
            let max = l.get("max").and_then(Value::as_u64).filter(|m| *m > 0);
            let window = l.get("window").and_then(window_secs);
            let scope = match l.get("scope") {
                None => Some(Scope::Grant),
                Some(s) => s
                    .as_str()
                    .and_then(|s| Scope::ALL.into_iter().find(|x| x.as_str() == s)),
            };
            return match (max, window, scope) {
                (Some(max), Some(window_secs), Some(scope)) => Reading {
                    setting: Setting {
                        choice: Choice::RateLimit,
                        limit: Some(LimitSetting {
                            max,
                            window_secs,
                            scope,
                        }),
                    },
                    notes,
                },
                _ => {
                    notes.push("its limit is incomplete".to_owned());
                    custom(notes)
                }
            };
        }
        (Choice::Allow, Some(Value::Array(l))) => {
            notes.push(format!("{} limits", l.len()));
            return custom(notes);
        }
        (_, Some(Value::Array(l))) if !l.is_empty() => {
            notes.push(format!(
                "also rate-limited ({} limit{})",
                l.len(),
                if l.len() == 1 { "" } else { "s" }
            ));
        }
        (_, Some(Value::Array(_))) => {}
        (_, Some(_)) => {
            notes.push("`limits` is not a list".to_owned());
            return custom(notes);
        }
    }
    Reading {
        setting: Setting {
            choice,
            limit: None,
        },
        notes,
    }
}

/// Every counter name the document uses, so a new limit gets a name of its own.
fn counters(doc: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut collect = |limits: Option<&Value>| {
        for l in limits.and_then(Value::as_array).into_iter().flatten() {
            if let Some(c) = l.get("counter").and_then(Value::as_str) {
                out.insert(c.to_owned());
            }
        }
    };
    collect(doc.get("all_tools").and_then(|a| a.get("limits")));
    for rule in doc
        .get("tools")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(Map::values)
    {
        collect(rule.get("limits"));
    }
    out
}

/// A counter name for `tool` (letters, digits, `_`, `.`, `-`; at most 64) that `taken` lacks.
fn new_counter(tool: &str, taken: &HashSet<String>) -> String {
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
    let base = if base.is_empty() { "tool".into() } else { base };
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// Why a document cannot take builder changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotAnObject;

/// Sets `default` to deny or allow; nothing changes when it already says so.
pub(crate) fn apply_default(doc: &mut Value, deny: bool) -> Result<(), NotAnObject> {
    if default_denies(doc) == deny && doc.get("default").is_some() {
        return Ok(());
    }
    let obj = doc.as_object_mut().ok_or(NotAnObject)?;
    let value = json!(if deny { "deny" } else { "allow" });
    match obj.get_mut("default") {
        Some(v) => *v = value,
        None => {
            let at = obj.keys().position(|k| k == "version").map_or(0, |i| i + 1);
            obj.shift_insert(at, "default".into(), value);
        }
    }
    Ok(())
}

/// Writes `setting` for `tool` into `doc`, if it differs from what the document says; returns
/// whether anything changed. `all_tools` (the server's pinned tools) lets a `"*"` in `hide` be
/// spelled out when one tool comes out of hiding.
pub(crate) fn apply(
    doc: &mut Value,
    tool: &str,
    setting: &Setting,
    all_tools: &[String],
) -> Result<bool, NotAnObject> {
    if setting.choice == Choice::Custom || read(doc, tool).setting == *setting {
        return Ok(false);
    }
    let taken = counters(doc);
    let obj = doc.as_object_mut().ok_or(NotAnObject)?;
    if setting.choice == Choice::Hide {
        if let Some(tools) = obj.get_mut("tools").and_then(Value::as_object_mut) {
            tools.shift_remove(tool);
        }
        let hide = hide_entry(obj);
        if !hide.iter().any(|h| h == tool || h == "*") {
            hide.push(json!(tool));
        }
        return Ok(true);
    }
    // Out of hiding: off the list (a `*` becomes every other tool by name).
    if let Some(hide) = obj.get_mut("hide").and_then(Value::as_array_mut) {
        if hide.iter().any(|h| h == "*") {
            let mut names: Vec<Value> = hide
                .iter()
                .filter(|h| *h != "*" && *h != tool)
                .cloned()
                .collect();
            for t in all_tools {
                if t != tool && !names.iter().any(|n| n == t) {
                    names.push(json!(t));
                }
            }
            *hide = names;
        } else {
            hide.retain(|h| h != tool);
        }
        if hide.is_empty() {
            obj.shift_remove("hide");
        }
    }
    if !obj.get("tools").is_some_and(Value::is_object) {
        obj.insert("tools".into(), json!({}));
    }
    let tools = obj
        .get_mut("tools")
        .and_then(Value::as_object_mut)
        .expect("tools was just made an object");
    let rule = tools.entry(tool.to_owned()).or_insert_with(|| json!({}));
    if !rule.is_object() {
        *rule = json!({});
    }
    let rule = rule.as_object_mut().expect("rule was just made an object");
    match setting.choice {
        Choice::Allow => {
            rule.shift_remove("action");
            rule.shift_remove("approval");
            rule.shift_remove("limits");
        }
        Choice::RateLimit => {
            let limit = setting
                .limit
                .clone()
                .unwrap_or_else(|| LimitSetting::starting_point(Recommendation::Allow));
            let counter = rule
                .get("limits")
                .and_then(|l| l.get(0))
                .and_then(|l| l.get("counter"))
                .and_then(Value::as_str)
                .map_or_else(|| new_counter(tool, &taken), str::to_owned);
            rule.shift_remove("action");
            rule.shift_remove("approval");
            rule.insert(
                "limits".into(),
                json!([{
                    "counter": counter,
                    "window": window_value(limit.window_secs),
                    "max": limit.max,
                    "scope": limit.scope.as_str(),
                }]),
            );
        }
        Choice::Approve => {
            rule.shift_remove("limits");
            if !rule.contains_key("approval") {
                rule.insert("action".into(), json!("approve"));
            }
        }
        Choice::Deny => {
            rule.shift_remove("approval");
            rule.shift_remove("limits");
            rule.insert("action".into(), json!("deny"));
        }
        Choice::Hide | Choice::Custom => unreachable!("handled above"),
    }
    Ok(true)
}

/// The document's `hide` list, made (before `tools`) when missing or not a list.
fn hide_entry(obj: &mut Map<String, Value>) -> &mut Vec<Value> {
    if !obj.get("hide").is_some_and(Value::is_array) {
        obj.shift_remove("hide");
        let at = obj.keys().position(|k| k == "tools").unwrap_or(obj.len());
        obj.shift_insert(at, "hide".into(), json!([]));
    }
    obj.get_mut("hide")
        .and_then(Value::as_array_mut)
        .expect("hide was just made a list")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "version": "1",
            "default": "deny",
            "hide": ["delete_task"],
            "tools": {
                "get_parameter": {},
                "set_parameter": {
                    "require": [{"path": "args.device_id", "op": "regex", "value": "^00236A-"}],
                    "limits": [{"counter": "writes", "window": "minute", "max": 30}]
                },
                "reboot_device": {"approval": {"timeout": "10m"}},
                "download_firmware": {"action": "deny", "reason": "change control"},
                "retry_task": {"limits": [
                    {"counter": "a", "window": 60, "max": 1},
                    {"counter": "b", "window": "hour", "max": 9}
                ]}
            }
        })
    }

    fn choice(d: &Value, tool: &str) -> Choice {
        read(d, tool).setting.choice
    }

    fn set(choice: Choice) -> Setting {
        Setting {
            choice,
            limit: None,
        }
    }

    #[test]
    fn reads_every_kind_of_rule() {
        let d = doc();
        assert_eq!(choice(&d, "get_parameter"), Choice::Allow);
        let r = read(&d, "set_parameter");
        assert_eq!(
            r.setting.limit,
            Some(LimitSetting {
                max: 30,
                window_secs: 60,
                scope: Scope::Grant
            })
        );
        assert_eq!(
            r.notes,
            ["1 condition on its arguments (edit them in the JSON)"]
        );
        assert_eq!(choice(&d, "reboot_device"), Choice::Approve);
        assert_eq!(choice(&d, "download_firmware"), Choice::Deny);
        assert_eq!(choice(&d, "delete_task"), Choice::Hide);
        assert_eq!(choice(&d, "retry_task"), Choice::Custom);
        let unlisted = read(&d, "factory_reset");
        assert_eq!(unlisted.setting.choice, Choice::Hide);
        assert_eq!(unlisted.notes, ["not listed: the default denies it"]);
        let mut allow = d.clone();
        allow["default"] = json!("allow");
        assert_eq!(choice(&allow, "factory_reset"), Choice::Allow);
    }

    #[test]
    fn an_unchanged_setting_leaves_the_document_as_it_is() {
        let mut d = doc();
        for tool in [
            "get_parameter",
            "set_parameter",
            "reboot_device",
            "download_firmware",
            "delete_task",
            "retry_task",
            "factory_reset",
        ] {
            let setting = read(&d, tool).setting;
            assert!(!apply(&mut d, tool, &setting, &[]).unwrap(), "{tool}");
        }
        assert_eq!(d, doc());
    }

    #[test]
    fn changes_keep_conditions_and_messages() {
        let mut d = doc();
        // A rate-limited tool with conditions becomes denied: conditions stay, the limit goes.
        assert!(apply(&mut d, "set_parameter", &set(Choice::Deny), &[]).unwrap());
        assert_eq!(
            d["tools"]["set_parameter"],
            json!({"require": [{"path": "args.device_id", "op": "regex", "value": "^00236A-"}], "action": "deny"})
        );
        // A denied tool with a reason becomes rate-limited per identity.
        let limit = Setting {
            choice: Choice::RateLimit,
            limit: Some(LimitSetting {
                max: 5,
                window_secs: 3600,
                scope: Scope::Identity,
            }),
        };
        assert!(apply(&mut d, "download_firmware", &limit, &[]).unwrap());
        assert_eq!(
            d["tools"]["download_firmware"],
            json!({"reason": "change control", "limits": [{"counter": "download_firmware", "window": "hour", "max": 5, "scope": "identity"}]})
        );
        assert_eq!(read(&d, "download_firmware").setting, limit);
        // Approval replaces the limit; allowing removes the approval.
        assert!(apply(&mut d, "download_firmware", &set(Choice::Approve), &[]).unwrap());
        assert_eq!(
            d["tools"]["download_firmware"],
            json!({"reason": "change control", "action": "approve"})
        );
        assert!(apply(&mut d, "reboot_device", &set(Choice::Allow), &[]).unwrap());
        assert_eq!(d["tools"]["reboot_device"], json!({}));
    }

    #[test]
    fn hiding_and_unhiding_move_tools_between_hide_and_tools() {
        let mut d = doc();
        assert!(apply(&mut d, "get_parameter", &set(Choice::Hide), &[]).unwrap());
        assert_eq!(d["hide"], json!(["delete_task", "get_parameter"]));
        assert!(d["tools"].get("get_parameter").is_none());
        assert!(apply(&mut d, "delete_task", &set(Choice::Allow), &[]).unwrap());
        assert!(apply(&mut d, "get_parameter", &set(Choice::Allow), &[]).unwrap());
        assert!(d.get("hide").is_none(), "an empty hide list is dropped");
        assert_eq!(d["tools"]["delete_task"], json!({}));
        // An unlisted tool under `default: deny` that is allowed gets a rule.
        assert!(apply(&mut d, "factory_reset", &set(Choice::Allow), &[]).unwrap());
        assert_eq!(d["tools"]["factory_reset"], json!({}));

        // A new hide list goes before `tools`.
        let mut d = json!({"version": "1", "default": "allow", "tools": {"a": {}}});
        assert!(apply(&mut d, "a", &set(Choice::Hide), &[]).unwrap());
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"version":"1","default":"allow","hide":["a"],"tools":{}}"#
        );

        // `*` is spelled out when one tool comes out of hiding.
        let all = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut d = json!({"version": "1", "default": "deny", "hide": ["*"], "tools": {}});
        assert_eq!(choice(&d, "b"), Choice::Hide);
        assert!(apply(&mut d, "b", &set(Choice::Allow), &all).unwrap());
        assert_eq!(d["hide"], json!(["a", "c"]));
        assert_eq!(d["tools"], json!({"b": {}}));
    }

    #[test]
    fn new_counters_never_collide() {
        let mut d = json!({"version": "1", "default": "deny", "tools": {
            "x": {"limits": [{"counter": "y", "window": "minute", "max": 1}]}
        }});
        let limit = Setting {
            choice: Choice::RateLimit,
            limit: Some(LimitSetting {
                max: 2,
                window_secs: 90,
                scope: Scope::Grant,
            }),
        };
        assert!(apply(&mut d, "y", &limit, &[]).unwrap());
        assert_eq!(
            d["tools"]["y"]["limits"],
            json!([{"counter": "y-2", "window": 90, "max": 2, "scope": "grant"}])
        );
        // Changing an existing limit keeps its counter.
        let mut more = limit.clone();
        more.limit.as_mut().unwrap().max = 3;
        assert!(apply(&mut d, "y", &more, &[]).unwrap());
        assert_eq!(d["tools"]["y"]["limits"][0]["counter"], "y-2");
    }

    #[test]
    fn default_is_written_after_version() {
        let mut d = json!({"version": "1", "tools": {}});
        apply_default(&mut d, true).unwrap();
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"version":"1","default":"deny","tools":{}}"#
        );
        apply_default(&mut d, false).unwrap();
        assert_eq!(d["default"], "allow");
        assert_eq!(apply_default(&mut json!([]), true), Err(NotAnObject));
    }
}

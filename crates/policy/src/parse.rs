//! Reading a policy document: strict JSON, then a walk over a syntax tree that knows where every
//! value sits in the text, so each finding carries its JSON Pointer, line and column, and every
//! finding in the document is reported, not just the first.

use std::collections::HashMap;

use jsonc_parser::ast::{Object, ObjectProp, Value as Ast};
use jsonc_parser::common::Range;
use regex::RegexBuilder;
use serde_json::Value;

use crate::condition::json_kind;
use crate::diagnostic::{Diagnostic, LineIndex, Severity};
use crate::model::{
    Action, Approval, Condition, DefaultAction, Document, Limit, Op, Scope, ToolRule,
};
use crate::{Pointer, ToolDef};

/// Policies are edited by people; anything larger is a mistake or an attack.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const MAX_TOOLS: usize = 2_000;
const MAX_HIDE: usize = 2_000;
const MAX_CONDITIONS: usize = 64;
const MAX_LIMITS: usize = 16;
const MAX_IN_VALUES: usize = 1_000;
const MAX_MESSAGE_CHARS: usize = 1_000;
const MAX_PATH_SEGMENTS: usize = 16;
const MAX_REGEX_CHARS: usize = 1_000;
/// Compiled-program budget for one regex; the `regex` crate refuses patterns that exceed it.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
const MAX_LIMIT_MAX: u64 = 1_000_000;
const MAX_APPROVAL_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
const MAX_APPROVAL_WAIT_SECS: u64 = 300;

const TOP_FIELDS: &[&str] = &[
    "version",
    "default",
    "on_deny",
    "hide",
    "all_tools",
    "tools",
    "record_arguments",
];
const RULE_FIELDS: &[&str] = &[
    "action",
    "reason",
    "on_deny",
    "require",
    "deny_if",
    "limits",
    "approval",
    "record_arguments",
];
const LIMIT_FIELDS: &[&str] = &["counter", "window", "max", "scope"];
const CONDITION_FIELDS: &[&str] = &["path", "op", "value"];
const APPROVAL_FIELDS: &[&str] = &["timeout", "wait"];
const ALL_TOOLS_FIELDS: &[&str] = &["limits"];

/// Parses and validates `text`. Returns the document when there is no error, and every
/// finding (errors and warnings) either way.
pub(crate) fn parse(text: &str, tools: Option<&[ToolDef]>) -> (Option<Document>, Vec<Diagnostic>) {
    let mut w = Walker {
        lines: LineIndex::new(text),
        diags: Vec::new(),
        tools: tools.map(|t| t.iter().map(|t| (t.name.as_str(), t)).collect()),
        counters: HashMap::new(),
    };
    let root = Pointer::root();
    if text.len() > MAX_DOCUMENT_BYTES {
        w.error_at(
            &root,
            0,
            format!(
                "the document is {} bytes; a policy may be at most {MAX_DOCUMENT_BYTES} bytes",
                text.len()
            ),
        );
        return (None, w.diags);
    }
    // serde_json is the reference for what strict JSON is (and rejects what the tree parser
    // below would tolerate); the tree parser then gives each value its place in the text.
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let message = strip_position(&e.to_string());
        w.diags.push(Diagnostic {
            severity: Severity::Error,
            pointer: root,
            line: e.line().max(1),
            column: e.column().max(1),
            message: format!("not valid JSON: {message}"),
        });
        return (None, w.diags);
    }
    let ast = match jsonc_parser::parse_to_ast(
        text,
        &jsonc_parser::CollectOptions::default(),
        &strict_options(),
    ) {
        Ok(result) => result.value,
        Err(e) => {
            w.diags.push(Diagnostic {
                severity: Severity::Error,
                pointer: root,
                line: e.line_display(),
                column: e.column_display(),
                message: format!("not valid JSON: {}", e.kind()),
            });
            return (None, w.diags);
        }
    };
    let Some(ast) = ast else {
        w.error_at(&root, 0, "the document is empty; expected a policy object");
        return (None, w.diags);
    };
    let doc = w.document(&ast);
    let failed = w.diags.iter().any(|d| d.severity == Severity::Error);
    w.diags
        .sort_by_key(|d| (d.severity == Severity::Warning, d.line, d.column));
    (if failed { None } else { doc }, w.diags)
}

pub(crate) fn strict_options() -> jsonc_parser::ParseOptions {
    jsonc_parser::ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The closest candidate to `word`, when one is close enough to be a likely typo.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let mut best: Option<(&str, f64)> = None;
    for candidate in candidates {
        let score =
            strsim::normalized_damerau_levenshtein(&word.to_lowercase(), &candidate.to_lowercase());
        if score >= 0.6 && best.is_none_or(|(_, s)| score > s) {
            best = Some((candidate, score));
        }
    }
    best.map(|(c, _)| c)
}

fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    suggest(word, candidates)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

pub(crate) fn range_of(v: &Ast<'_>) -> Range {
    match v {
        Ast::StringLit(x) => x.range,
        Ast::NumberLit(x) => x.range,
        Ast::BooleanLit(x) => x.range,
        Ast::Object(x) => x.range,
        Ast::Array(x) => x.range,
        Ast::NullKeyword(x) => x.range,
    }
}

fn kind_of(v: &Ast<'_>) -> &'static str {
    match v {
        Ast::StringLit(_) => "a string",
        Ast::NumberLit(_) => "a number",
        Ast::BooleanLit(_) => "a boolean",
        Ast::Object(_) => "an object",
        Ast::Array(_) => "an array",
        Ast::NullKeyword(_) => "null",
    }
}

/// The plain JSON value of a syntax tree node.
fn to_json(v: &Ast<'_>) -> Value {
    match v {
        Ast::StringLit(s) => Value::String(s.value.to_string()),
        Ast::NumberLit(n) => n
            .value
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Ast::BooleanLit(b) => Value::Bool(b.value),
        Ast::NullKeyword(_) => Value::Null,
        Ast::Array(a) => Value::Array(a.elements.iter().map(to_json).collect()),
        Ast::Object(o) => Value::Object(
            o.properties
                .iter()
                .map(|p| (p.name.as_str().to_string(), to_json(&p.value)))
                .collect(),
        ),
    }
}

struct Walker<'t> {
    lines: LineIndex<'t>,
    diags: Vec<Diagnostic>,
    tools: Option<HashMap<&'t str, &'t ToolDef>>,
    /// The first definition of each (counter, scope): rules that name the same counter share it,
    /// so they must agree on what it counts.
    counters: HashMap<(String, Scope), Limit>,
}

/// The known fields of an object, each with its property.
type Fields<'b, 'a> = HashMap<&'b str, &'b ObjectProp<'a>>;

impl<'t> Walker<'t> {
    fn push(&mut self, severity: Severity, pointer: &Pointer, offset: usize, message: String) {
        let (line, column) = self.lines.line_column(offset);
        self.diags.push(Diagnostic {
            severity,
            pointer: pointer.clone(),
            line,
            column,
            message,
        });
    }

    fn error_at(&mut self, pointer: &Pointer, offset: usize, message: impl Into<String>) {
        self.push(Severity::Error, pointer, offset, message.into());
    }

    fn error(&mut self, pointer: &Pointer, v: &Ast<'_>, message: impl Into<String>) {
        self.error_at(pointer, range_of(v).start, message);
    }

    fn warn(&mut self, pointer: &Pointer, v: &Ast<'_>, message: impl Into<String>) {
        self.push(
            Severity::Warning,
            pointer,
            range_of(v).start,
            message.into(),
        );
    }

    fn expected(&mut self, pointer: &Pointer, v: &Ast<'_>, what: &str) {
        let found = kind_of(v);
        self.error(pointer, v, format!("expected {what}, found {found}"));
    }

    fn object<'b, 'a>(&mut self, pointer: &Pointer, v: &'b Ast<'a>) -> Option<&'b Object<'a>> {
        match v {
            Ast::Object(o) => Some(o),
            _ => {
                self.expected(pointer, v, "an object");
                None
            }
        }
    }

    fn string(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<String> {
        match v {
            Ast::StringLit(s) => Some(s.value.to_string()),
            _ => {
                self.expected(pointer, v, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<bool> {
        match v {
            Ast::BooleanLit(b) => Some(b.value),
            _ => {
                self.expected(pointer, v, "true or false");
                None
            }
        }
    }

    fn message(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<String> {
        let s = self.string(pointer, v)?;
        if s.trim().is_empty() {
            self.error(pointer, v, "the message is empty");
            return None;
        }
        if s.chars().count() > MAX_MESSAGE_CHARS {
            self.error(
                pointer,
                v,
                format!("the message is longer than {MAX_MESSAGE_CHARS} characters"),
            );
            return None;
        }
        Some(s)
    }

    /// One of `choices`, with a suggestion when the value is close to one.
    fn choice(
        &mut self,
        pointer: &Pointer,
        v: &Ast<'_>,
        choices: &[&'static str],
    ) -> Option<&'static str> {
        let list = choices
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let Ast::StringLit(s) = v else {
            self.expected(pointer, v, &format!("one of {list}"));
            return None;
        };
        if let Some(c) = choices.iter().find(|c| **c == s.value) {
            return Some(c);
        }
        let hint = did_you_mean(&s.value, choices.iter().copied());
        self.error(
            pointer,
            v,
            format!("expected one of {list}, found \"{}\"{hint}", s.value),
        );
        None
    }

    /// Checks an object's field names: unknown ones and duplicates are errors.
    fn fields<'b, 'a>(
        &mut self,
        pointer: &Pointer,
        obj: &'b Object<'a>,
        known: &[&str],
    ) -> Fields<'b, 'a> {
        let mut out: Fields<'b, 'a> = HashMap::new();
        for prop in &obj.properties {
            let name = prop.name.as_str();
            let here = pointer.push(name);
            if !known.contains(&name) {
                let hint = did_you_mean(name, known.iter().copied());
                let expected = known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error_at(
                    &here,
                    prop.range.start,
                    format!("unknown field `{name}`{hint} (expected one of {expected})"),
                );
            } else if out.insert(name, prop).is_some() {
                self.error_at(
                    &here,
                    prop.range.start,
                    format!("field `{name}` is given twice"),
                );
            }
        }
        out
    }

    fn require_field<'b, 'a>(
        &mut self,
        pointer: &Pointer,
        obj: &Object<'_>,
        fields: &Fields<'b, 'a>,
        name: &str,
    ) -> Option<&'b Ast<'a>> {
        match fields.get(name) {
            Some(p) => Some(&p.value),
            None => {
                self.error_at(
                    pointer,
                    obj.range.start,
                    format!("missing required field `{name}`"),
                );
                None
            }
        }
    }

    fn document(&mut self, v: &Ast<'_>) -> Option<Document> {
        let root = Pointer::root();
        let obj = self.object(&root, v)?;
        let f = self.fields(&root, obj, TOP_FIELDS);

        if let Some(version) = self.require_field(&root, obj, &f, "version") {
            let p = root.push("version");
            match version {
                Ast::StringLit(s) if s.value == "1" => {}
                Ast::NumberLit(n) if n.value == "1" => self.error(
                    &p,
                    version,
                    "expected the string \"1\", found the number 1; write \"version\": \"1\"",
                ),
                _ => self.error(
                    &p,
                    version,
                    "unsupported version; the only policy version is \"1\"",
                ),
            }
        }
        let default = self
            .require_field(&root, obj, &f, "default")
            .and_then(|v| self.choice(&root.push("default"), v, &["allow", "deny"]))
            .map(|c| {
                if c == "allow" {
                    DefaultAction::Allow
                } else {
                    DefaultAction::Deny
                }
            });
        let on_deny = f
            .get("on_deny")
            .and_then(|p| self.message(&root.push("on_deny"), &p.value));
        let record_arguments = f
            .get("record_arguments")
            .and_then(|p| self.boolean(&root.push("record_arguments"), &p.value))
            .unwrap_or(false);
        let hide = f
            .get("hide")
            .map(|p| self.hide(&root.push("hide"), &p.value))
            .unwrap_or_default();
        let all_tools_limits = match f.get("all_tools") {
            Some(p) => self.all_tools(&root.push("all_tools"), &p.value),
            None => Vec::new(),
        };
        let (tools, tool_order) = match f.get("tools") {
            Some(p) => self.tools(&root.push("tools"), &p.value),
            None => (HashMap::new(), Vec::new()),
        };
        self.cross_checks(&hide, &tools, f.get("tools").map(|p| &p.value));

        Some(Document {
            default: default?,
            on_deny,
            hide,
            all_tools_limits,
            tools,
            tool_order,
            record_arguments,
        })
    }

    fn hide(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Vec<(String, Pointer)> {
        let Ast::Array(items) = v else {
            self.expected(pointer, v, "an array of tool names");
            return Vec::new();
        };
        if items.elements.len() > MAX_HIDE {
            self.error(
                pointer,
                v,
                format!("at most {MAX_HIDE} names may be hidden"),
            );
            return Vec::new();
        }
        let mut out: Vec<(String, Pointer)> = Vec::new();
        for (i, item) in items.elements.iter().enumerate() {
            let p = pointer.push(i);
            let Some(name) = self.string(&p, item) else {
                continue;
            };
            if name != "*" {
                self.check_tool_name(&p, item, &name);
            }
            if out.iter().any(|(n, _)| *n == name) {
                self.warn(&p, item, format!("`{name}` is hidden twice"));
                continue;
            }
            out.push((name, p));
        }
        out
    }

    fn all_tools(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Vec<Limit> {
        let Some(obj) = self.object(pointer, v) else {
            return Vec::new();
        };
        let f = self.fields(pointer, obj, ALL_TOOLS_FIELDS);
        match f.get("limits") {
            Some(p) => self.limits(&pointer.push("limits"), &p.value),
            None => Vec::new(),
        }
    }

    fn tools(
        &mut self,
        pointer: &Pointer,
        v: &Ast<'_>,
    ) -> (HashMap<String, ToolRule>, Vec<String>) {
        let mut rules = HashMap::new();
        let mut order = Vec::new();
        let Some(obj) = self.object(pointer, v) else {
            return (rules, order);
        };
        if obj.properties.len() > MAX_TOOLS {
            self.error(
                pointer,
                v,
                format!("at most {MAX_TOOLS} tools may be listed"),
            );
            return (rules, order);
        }
        for prop in &obj.properties {
            let name = prop.name.as_str().to_string();
            let p = pointer.push(&name);
            if rules.contains_key(&name) {
                self.error_at(
                    &p,
                    prop.range.start,
                    format!("tool `{name}` is listed twice"),
                );
                continue;
            }
            if name.is_empty() {
                self.error_at(&p, prop.range.start, "a tool name cannot be empty");
                continue;
            }
            // An unknown name is reported, and the rule is still walked so its own mistakes are too.
            self.check_tool_name_at(&p, prop.range.start, &name);
            if let Some(rule) = self.rule(&p, &name, &prop.value) {
                rules.insert(name.clone(), rule);
                order.push(name);
            }
        }
        (rules, order)
    }

    fn check_tool_name(&mut self, pointer: &Pointer, v: &Ast<'_>, name: &str) -> bool {
        self.check_tool_name_at(pointer, range_of(v).start, name)
    }

    /// With a tool list in hand, a name the server does not have is an error.
    fn check_tool_name_at(&mut self, pointer: &Pointer, offset: usize, name: &str) -> bool {
        let Some(tools) = &self.tools else {
            return true;
        };
        if tools.contains_key(name) {
            return true;
        }
        let hint = did_you_mean(name, tools.keys().copied());
        self.error_at(
            pointer,
            offset,
            format!("the server has no tool `{name}`{hint}"),
        );
        false
    }

    fn rule(&mut self, pointer: &Pointer, tool: &str, v: &Ast<'_>) -> Option<ToolRule> {
        let obj = self.object(pointer, v)?;
        let f = self.fields(pointer, obj, RULE_FIELDS);

        let explicit_action = f.get("action").and_then(|p| {
            self.choice(
                &pointer.push("action"),
                &p.value,
                &["allow", "deny", "approve"],
            )
            .map(|c| match c {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                _ => Action::Approve,
            })
        });
        let approval = f
            .get("approval")
            .and_then(|p| self.approval(&pointer.push("approval"), &p.value));
        let (action, action_pointer) = match (explicit_action, f.get("approval")) {
            (Some(Action::Deny), Some(p)) => {
                self.error(
                    &pointer.push("approval"),
                    &p.value,
                    "`approval` holds calls for a human, but `action` is \"deny\"; remove one of them",
                );
                (Action::Deny, pointer.push("action"))
            }
            (Some(Action::Allow), Some(p)) => {
                self.error(
                    &pointer.push("approval"),
                    &p.value,
                    "`approval` holds calls for a human, but `action` is \"allow\"; write \"action\": \"approve\" or remove `action`",
                );
                (Action::Allow, pointer.push("action"))
            }
            (Some(a), _) => (a, pointer.push("action")),
            (None, Some(_)) => (Action::Approve, pointer.push("approval")),
            (None, None) => (Action::Allow, pointer.clone()),
        };
        let approval = match action {
            Action::Approve => Some(approval.unwrap_or_default()),
            _ => None,
        };

        let message = match (f.get("reason"), f.get("on_deny")) {
            (Some(_), Some(p)) => {
                self.error_at(
                    &pointer.push("on_deny"),
                    p.range.start,
                    "`reason` and `on_deny` mean the same; give only one",
                );
                None
            }
            (Some(p), None) => self.message(&pointer.push("reason"), &p.value),
            (None, Some(p)) => self.message(&pointer.push("on_deny"), &p.value),
            (None, None) => None,
        };
        let require = match f.get("require") {
            Some(p) => self.conditions(&pointer.push("require"), tool, &p.value),
            None => Vec::new(),
        };
        let deny_if = match f.get("deny_if") {
            Some(p) => self.conditions(&pointer.push("deny_if"), tool, &p.value),
            None => Vec::new(),
        };
        let limits = match f.get("limits") {
            Some(p) => self.limits(&pointer.push("limits"), &p.value),
            None => Vec::new(),
        };
        let record_arguments = f
            .get("record_arguments")
            .and_then(|p| self.boolean(&pointer.push("record_arguments"), &p.value));

        if action == Action::Deny {
            for (name, prop) in f
                .iter()
                .filter(|(n, _)| matches!(**n, "require" | "deny_if" | "limits"))
            {
                self.warn(
                    &pointer.push(name),
                    &prop.value,
                    format!("`{name}` never applies: the tool's action is \"deny\""),
                );
            }
        }
        Some(ToolRule {
            pointer: pointer.clone(),
            action,
            action_pointer,
            message,
            require,
            deny_if,
            limits,
            approval,
            record_arguments,
        })
    }

    fn approval(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<Approval> {
        let obj = self.object(pointer, v)?;
        let f = self.fields(pointer, obj, APPROVAL_FIELDS);
        let mut approval = Approval::default();
        let mut ok = true;
        if let Some(p) = f.get("timeout") {
            match self.duration(
                &pointer.push("timeout"),
                &p.value,
                MAX_APPROVAL_TIMEOUT_SECS,
            ) {
                Some(secs) => approval.timeout_secs = secs,
                None => ok = false,
            }
        }
        if let Some(p) = f.get("wait") {
            match self.duration(&pointer.push("wait"), &p.value, MAX_APPROVAL_WAIT_SECS) {
                Some(secs) => approval.wait_secs = secs,
                None => ok = false,
            }
        }
        if ok && approval.wait_secs > approval.timeout_secs {
            let at = f.get("wait").map(|p| &p.value).unwrap_or(v);
            self.error(
                &pointer.push("wait"),
                at,
                format!(
                    "`wait` ({} s) is longer than `timeout` ({} s); the request cannot be held past the approval's expiry",
                    approval.wait_secs, approval.timeout_secs
                ),
            );
            ok = false;
        }
        ok.then_some(approval)
    }

    /// A duration: whole seconds, or a string such as "25s", "10m", "2h", "1d".
    fn duration(&mut self, pointer: &Pointer, v: &Ast<'_>, max_secs: u64) -> Option<u64> {
        let secs = match v {
            Ast::NumberLit(n) => match n.value.parse::<u64>() {
                Ok(s) => s,
                Err(_) => {
                    self.error(
                        pointer,
                        v,
                        format!("expected a whole number of seconds, found {}", n.value),
                    );
                    return None;
                }
            },
            Ast::StringLit(s) => match parse_duration(&s.value) {
                Some(secs) => secs,
                None => {
                    self.error(
                        pointer,
                        v,
                        format!(
                            "expected a duration such as \"30s\", \"10m\", \"2h\" or \"1d\", found \"{}\"",
                            s.value
                        ),
                    );
                    return None;
                }
            },
            _ => {
                self.expected(
                    pointer,
                    v,
                    "a duration (\"10m\") or a whole number of seconds",
                );
                return None;
            }
        };
        if secs == 0 || secs > max_secs {
            self.error(
                pointer,
                v,
                format!("must be between 1 s and {max_secs} s, found {secs} s"),
            );
            return None;
        }
        Some(secs)
    }

    fn limits(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Vec<Limit> {
        let Ast::Array(items) = v else {
            self.expected(pointer, v, "an array of limits");
            return Vec::new();
        };
        if items.elements.len() > MAX_LIMITS {
            self.error(pointer, v, format!("at most {MAX_LIMITS} limits per rule"));
            return Vec::new();
        }
        items
            .elements
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.limit(&pointer.push(i), item))
            .collect()
    }

    fn limit(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<Limit> {
        let obj = self.object(pointer, v)?;
        let f = self.fields(pointer, obj, LIMIT_FIELDS);
        let counter = self.require_field(pointer, obj, &f, "counter").and_then(|c| {
            let p = pointer.push("counter");
            let name = self.string(&p, c)?;
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid {
                self.error(
                    &p,
                    c,
                    format!("counter names are 1 to 64 letters, digits, `_`, `.` or `-`; found \"{name}\""),
                );
                return None;
            }
            Some(name)
        });
        let window = self
            .require_field(pointer, obj, &f, "window")
            .and_then(|w| self.window(&pointer.push("window"), w));
        let max = self.require_field(pointer, obj, &f, "max").and_then(|m| {
            let p = pointer.push("max");
            match m {
                Ast::NumberLit(n) => match n.value.parse::<u64>() {
                    Ok(0) => {
                        self.error(&p, m, "`max` must be at least 1; to refuse every call, use \"action\": \"deny\"");
                        None
                    }
                    Ok(x) if x <= MAX_LIMIT_MAX => Some(x as u32),
                    _ => {
                        self.error(
                            &p,
                            m,
                            format!("expected a whole number from 1 to {MAX_LIMIT_MAX}, found {}", n.value),
                        );
                        None
                    }
                },
                _ => {
                    self.expected(&p, m, "a whole number");
                    None
                }
            }
        });
        let scope = match f.get("scope") {
            Some(p) => {
                let names = Scope::ALL.map(Scope::as_str);
                let c = self.choice(&pointer.push("scope"), &p.value, &names)?;
                Scope::ALL.into_iter().find(|s| s.as_str() == c)
            }
            None => Some(Scope::Grant),
        };
        let limit = Limit {
            pointer: pointer.clone(),
            counter: counter?,
            window_secs: window?,
            max: max?,
            scope: scope?,
        };
        self.check_counter_agreement(&limit, v);
        Some(limit)
    }

    fn check_counter_agreement(&mut self, limit: &Limit, v: &Ast<'_>) {
        let key = (limit.counter.clone(), limit.scope);
        match self.counters.get(&key) {
            None => {
                self.counters.insert(key, limit.clone());
            }
            Some(first) if first.window_secs != limit.window_secs || first.max != limit.max => {
                let message = format!(
                    "counter `{}` (scope {}) is already defined at {} as {} per {} s; rules that name the same counter share it, so they must give the same window and max (or use another counter name)",
                    limit.counter, limit.scope, first.pointer, first.max, first.window_secs
                );
                self.error(&limit.pointer, v, message);
            }
            Some(_) => {}
        }
    }

    fn window(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<u64> {
        match v {
            Ast::StringLit(s) => match s.value.as_ref() {
                "second" => Some(1),
                "minute" => Some(60),
                "hour" => Some(3600),
                "day" => Some(86_400),
                other => {
                    let hint = did_you_mean(other, ["second", "minute", "hour", "day"]);
                    self.error(
                        pointer,
                        v,
                        format!(
                            "expected \"second\", \"minute\", \"hour\", \"day\" or a whole number of seconds, found \"{other}\"{hint}"
                        ),
                    );
                    None
                }
            },
            Ast::NumberLit(n) => match n.value.parse::<u64>() {
                Ok(s) if (1..=MAX_WINDOW_SECS).contains(&s) => Some(s),
                _ => {
                    self.error(
                        pointer,
                        v,
                        format!("a window in seconds must be a whole number from 1 to {MAX_WINDOW_SECS}, found {}", n.value),
                    );
                    None
                }
            },
            _ => {
                self.expected(
                    pointer,
                    v,
                    "\"second\", \"minute\", \"hour\", \"day\" or a whole number of seconds",
                );
                None
            }
        }
    }

    fn conditions(&mut self, pointer: &Pointer, tool: &str, v: &Ast<'_>) -> Vec<Condition> {
        let Ast::Array(items) = v else {
            self.expected(pointer, v, "an array of conditions");
            return Vec::new();
        };
        if items.elements.len() > MAX_CONDITIONS {
            self.error(
                pointer,
                v,
                format!("at most {MAX_CONDITIONS} conditions per list"),
            );
            return Vec::new();
        }
        items
            .elements
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.condition(&pointer.push(i), tool, item))
            .collect()
    }

    fn condition(&mut self, pointer: &Pointer, tool: &str, v: &Ast<'_>) -> Option<Condition> {
        let obj = self.object(pointer, v)?;
        let f = self.fields(pointer, obj, CONDITION_FIELDS);
        let path_node = self.require_field(pointer, obj, &f, "path");
        let path = path_node.and_then(|p| self.path(&pointer.push("path"), p));
        let op = self.require_field(pointer, obj, &f, "op").and_then(|o| {
            let names = Op::ALL.map(Op::as_str);
            self.choice(&pointer.push("op"), o, &names)
                .and_then(Op::parse)
        })?;
        let value_node = match f.get("value") {
            Some(p) => Some(&p.value),
            // `exists` reads naturally without a value: {"path": "args.x", "op": "exists"}.
            None if op == Op::Exists => None,
            None => {
                self.error_at(pointer, obj.range.start, "missing required field `value`");
                return None;
            }
        };
        let value_pointer = pointer.push("value");
        let value = match value_node {
            Some(node) => self.condition_value(&value_pointer, op, node)?,
            None => Value::Bool(true),
        };
        let regex = match (op, &value) {
            (Op::Regex, Value::String(pattern)) => {
                let compiled = RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build();
                match compiled {
                    Ok(re) => Some(re),
                    Err(e) => {
                        let node = value_node.expect("a regex condition has a value");
                        let last = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        let detail = last.strip_prefix("error: ").unwrap_or(&last).to_string();
                        self.error(
                            &value_pointer,
                            node,
                            format!("invalid regular expression: {detail}"),
                        );
                        return None;
                    }
                }
            }
            _ => None,
        };
        let (path_text, path) = path?;
        if let (Some(node), Some(path_node)) = (value_node, path_node) {
            self.check_against_schema(pointer, tool, &path, path_node, op, &value, node);
        } else if let Some(path_node) = path_node {
            self.check_against_schema(pointer, tool, &path, path_node, op, &value, path_node);
        }
        Some(Condition {
            pointer: pointer.clone(),
            path_text,
            path,
            op,
            value,
            regex,
        })
    }

    fn path(&mut self, pointer: &Pointer, v: &Ast<'_>) -> Option<(String, Vec<String>)> {
        let text = self.string(pointer, v)?;
        let Some(rest) = text.strip_prefix("args.") else {
            self.error(
                pointer,
                v,
                format!("a condition path starts with `args.` and names an argument, such as \"args.device_id\"; found \"{text}\""),
            );
            return None;
        };
        let segments: Vec<String> = rest.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            self.error(
                pointer,
                v,
                format!("the path \"{text}\" has an empty segment"),
            );
            return None;
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            self.error(
                pointer,
                v,
                format!("a path may have at most {MAX_PATH_SEGMENTS} segments"),
            );
            return None;
        }
        Some((text, segments))
    }

    /// The value's type must fit the operator, whatever the tool.
    fn condition_value(&mut self, pointer: &Pointer, op: Op, v: &Ast<'_>) -> Option<Value> {
        let fits = match op {
            Op::Eq | Op::Neq => true,
            Op::In | Op::NotIn => match v {
                Ast::Array(a) if a.elements.is_empty() => {
                    self.error(pointer, v, format!("`{op}` needs at least one value"));
                    return None;
                }
                Ast::Array(a) if a.elements.len() > MAX_IN_VALUES => {
                    self.error(
                        pointer,
                        v,
                        format!("`{op}` takes at most {MAX_IN_VALUES} values"),
                    );
                    return None;
                }
                Ast::Array(_) => true,
                _ => false,
            },
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => matches!(v, Ast::NumberLit(_)),
            Op::Regex => match v {
                Ast::StringLit(s) if s.value.chars().count() > MAX_REGEX_CHARS => {
                    self.error(
                        pointer,
                        v,
                        format!("a pattern may have at most {MAX_REGEX_CHARS} characters"),
                    );
                    return None;
                }
                Ast::StringLit(_) => true,
                _ => false,
            },
            Op::Contains => !matches!(v, Ast::Object(_) | Ast::Array(_)),
            Op::Exists => matches!(v, Ast::BooleanLit(_)),
        };
        if !fits {
            let wanted = match op {
                Op::In | Op::NotIn => "an array of values",
                Op::Lt | Op::Lte | Op::Gt | Op::Gte => "a number",
                Op::Regex => "a regular expression string",
                Op::Contains => "a string, number, boolean or null",
                Op::Exists => "true or false",
                Op::Eq | Op::Neq => unreachable!("eq and neq take any value"),
            };
            self.error(
                pointer,
                v,
                format!("`{op}` expects {wanted}, found {}", kind_of(v)),
            );
            return None;
        }
        Some(to_json(v))
    }

    /// With a tool list in hand: the argument must exist in the tool's input schema and the
    /// condition's value must fit the argument's declared type.
    #[allow(clippy::too_many_arguments)] // each argument is one part of the condition being checked
    fn check_against_schema(
        &mut self,
        pointer: &Pointer,
        tool: &str,
        path: &[String],
        path_node: &Ast<'_>,
        op: Op,
        value: &Value,
        value_node: &Ast<'_>,
    ) {
        let Some(def) = self.tools.as_ref().and_then(|t| t.get(tool)).copied() else {
            return;
        };
        // Walk the schema as far as it declares properties; below an undeclared level, anything goes.
        let mut schema = &def.input_schema;
        for (depth, segment) in path.iter().enumerate() {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                if schema_types(schema)
                    .is_some_and(|t| !t.contains(&"object") && !t.contains(&"array"))
                {
                    let parent = path[..depth].join(".");
                    self.error(
                        &pointer.push("path"),
                        path_node,
                        format!("argument `{parent}` of `{tool}` is not an object, so it has no `{segment}`"),
                    );
                }
                return;
            };
            match props.get(segment.as_str()) {
                Some(s) => schema = s,
                None => {
                    let hint = did_you_mean(segment, props.keys().map(String::as_str));
                    let mut known: Vec<&str> = props.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    let whose = if depth == 0 {
                        format!("`{tool}`")
                    } else {
                        format!("`{}`", path[..depth].join("."))
                    };
                    self.error(
                        &pointer.push("path"),
                        path_node,
                        format!(
                            "{whose} has no argument `{segment}`{hint} (its arguments: {})",
                            known.join(", ")
                        ),
                    );
                    return;
                }
            }
        }
        let Some(types) = schema_types(schema) else {
            return;
        };
        let arg = path.join(".");
        let declared = types.join(" or ");
        let mismatch = |wanted: &str| {
            format!("argument `{arg}` of `{tool}` is declared as {declared}; `{op}` needs {wanted}")
        };
        let problem = match op {
            Op::Eq | Op::Neq => (!json_fits(value, &types)).then(|| {
                format!("argument `{arg}` of `{tool}` is declared as {declared}, but the value is {}", json_kind(value))
            }),
            Op::In | Op::NotIn => value
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| !json_fits(v, &types))
                .map(|v| format!("argument `{arg}` of `{tool}` is declared as {declared}, but the list holds {}", json_kind(v))),
            // Numeric comparisons also read numeric strings: many tools (GenieACS's among them)
            // take every argument as a string.
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => (!types.iter().any(|t| matches!(*t, "number" | "integer" | "string")))
                .then(|| mismatch("a number")),
            Op::Regex => (!types.contains(&"string")).then(|| mismatch("a string")),
            Op::Contains => (!types.iter().any(|t| matches!(*t, "string" | "array" | "object")))
                .then(|| mismatch("a string, an array or an object")),
            Op::Exists => None,
        };
        if let Some(message) = problem {
            self.error(&pointer.push("value"), value_node, message);
        }
    }

    fn cross_checks(
        &mut self,
        hide: &[(String, Pointer)],
        tools: &HashMap<String, ToolRule>,
        tools_node: Option<&Ast<'_>>,
    ) {
        let Some(Ast::Object(obj)) = tools_node else {
            return;
        };
        let hides_all = hide.iter().any(|(n, _)| n == "*");
        for prop in &obj.properties {
            let name = prop.name.as_str();
            if !tools.contains_key(name) {
                continue;
            }
            if let Some((_, p)) = hide.iter().find(|(n, _)| n == name || hides_all) {
                let message = format!("`{name}` is hidden by {p}, so this rule never applies");
                self.push(
                    Severity::Warning,
                    &Pointer::root().push("tools").push(name),
                    prop.range.start,
                    message,
                );
            }
        }
    }
}

/// "90s", "15m", "2h", "1d" (a number followed by one unit).
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs)
}

/// The `type` of a JSON Schema, as a list; `None` when the schema does not say.
fn schema_types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn json_fits(v: &Value, types: &[&str]) -> bool {
    types.iter().any(|t| match (*t, v) {
        ("string", Value::String(_)) => true,
        ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        ("boolean", Value::Bool(_)) => true,
        ("null", Value::Null) => true,
        ("array", Value::Array(_)) => true,
        ("object", Value::Object(_)) => true,
        _ => false,
    })
}

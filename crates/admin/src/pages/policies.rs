//! The policy editor: the visual builder and the raw JSON side by side, validated by the policy
//! engine on the server with every finding at its line, "try a call" against the draft, and
//! publishing (every publish is a new immutable version).
//!
//! Without JavaScript the one form posts: `…/draft` with `op=build` (apply the builder to the
//! document), `op=check` (validate) or `op=try` (decide a call) re-renders the page with the draft;
//! the form's own action publishes. With JavaScript the same `…/draft` post is fetched with
//! `Accept: application/json` and answers the re-rendered pieces, so the page stays in sync as
//! people type; the server is the only place that reads, changes and judges documents.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use policy::{Decision, Diagnostic, Proceed, Scope, Severity, Span, ToolDef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::policy::{PolicyVersion, VersionSummary};
use store::server::PinnedTool;
use store::{Role, ServerId};

use crate::AppState;
use crate::auth::{Member, PolicyManager, Viewer};
use crate::error::{Error, Result};
use crate::pages::policy_builder::{
    self as builder, Choice, LimitSetting, Setting, WINDOWS, window_label,
};
use crate::pages::servers::server_id;
use crate::pages::when;
use crate::views::{Page, render};

/// The largest document accepted (the policy engine's own limit).
const MAX_SOURCE_BYTES: usize = policy::MAX_DOCUMENT_BYTES;
/// The largest "try a call" arguments accepted.
const MAX_TRY_ARGS_BYTES: usize = 64 * 1024;
/// The largest limit the builder accepts (the policy engine's own bound).
const MAX_LIMIT: u64 = 1_000_000;

pub(crate) fn policy_name(name: &str) -> Result<&str> {
    store::policy::validate_policy_name(name).map_err(|_| Error::NotFound)?;
    Ok(name)
}

/// Pinned tools as the validator reads them.
pub(crate) fn tool_defs(tools: &[PinnedTool]) -> Vec<ToolDef> {
    tools
        .iter()
        .filter_map(|t| serde_json::from_value(t.definition.clone()).ok())
        .collect()
}

/// Everything the editor shows that comes from the store.
pub(crate) struct Loaded {
    pub(crate) server_name: String,
    pub(crate) exists: bool,
    /// The current version's document, or the recommendation for a policy not yet published.
    pub(crate) published: String,
    pub(crate) current: Option<i32>,
    pub(crate) versions: Vec<VersionSummary>,
    pub(crate) tools: Vec<PinnedTool>,
}

pub(crate) async fn load(
    state: &AppState,
    org: store::OrgId,
    server: ServerId,
    name: &str,
) -> Result<Loaded> {
    let mut tx = state.store.begin(org).await?;
    let s = store::server::server_by_id(&mut tx, server).await?;
    let tools = store::server::latest_pinned_tools(&mut tx, server).await?;
    let existing = match store::policy::policy_by_name(&mut tx, server, name).await {
        Ok(p) => Some(p),
        Err(store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let loaded = match existing {
        Some(p) => {
            let current: PolicyVersion =
                store::policy::current_policy_version(&mut tx, p.policy_id).await?;
            Loaded {
                server_name: s.name,
                exists: true,
                published: current.source,
                current: p.current_version,
                versions: store::policy::list_policy_versions(&mut tx, p.policy_id).await?,
                tools,
            }
        }
        None => Loaded {
            server_name: s.name,
            exists: false,
            published: serde_json::to_string_pretty(&policy::recommended_policy(&tool_defs(
                &tools,
            )))
            .map_err(anyhow::Error::from)?,
            current: None,
            versions: Vec::new(),
            tools,
        },
    };
    tx.commit().await?;
    Ok(loaded)
}

// ---- What the page shows -------------------------------------------------------------------

/// One finding, as the list under the document shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FindingRow {
    pub(crate) severity: &'static str,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) pointer: String,
    pub(crate) message: String,
}

impl From<&Diagnostic> for FindingRow {
    fn from(d: &Diagnostic) -> Self {
        FindingRow {
            severity: match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            line: d.line,
            column: d.column,
            pointer: d.pointer.to_string(),
            message: d.message.clone(),
        }
    }
}

/// The findings block: what was checked and what was found.
#[derive(Debug, Clone, Default)]
pub(crate) struct FindingsView {
    pub(crate) rows: Vec<FindingRow>,
    pub(crate) errors: usize,
    /// Set once the document was validated (not on a plain page load).
    pub(crate) heading: Option<String>,
    pub(crate) clean: bool,
}

/// One line number beside the document.
#[derive(Debug, Clone)]
pub(crate) struct GutterLine {
    pub(crate) number: usize,
    /// `has-finding error`, `has-finding warning`, `rule-hit`, or empty.
    pub(crate) class: String,
    pub(crate) title: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Opt {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) selected: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ChoiceOpt {
    pub(crate) value: &'static str,
    pub(crate) label: &'static str,
    pub(crate) checked: bool,
    pub(crate) recommended: bool,
}

/// One tool in the builder.
#[derive(Debug, Clone)]
pub(crate) struct BuilderRow {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) class: &'static str,
    pub(crate) level: &'static str,
    pub(crate) recommended: String,
    pub(crate) differs: bool,
    pub(crate) options: Vec<ChoiceOpt>,
    /// What the page shows, as [`setting_key`] spells it: only rows whose setting differs from
    /// this when posted are applied to the document.
    pub(crate) shown: String,
    pub(crate) max: String,
    pub(crate) windows: Vec<Opt>,
    pub(crate) scopes: Vec<Opt>,
    pub(crate) notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct BuilderView {
    pub(crate) rows: Vec<BuilderRow>,
    pub(crate) default_deny: bool,
    /// Why the builder cannot follow the document right now.
    pub(crate) paused: Option<String>,
    pub(crate) errors: Vec<String>,
}

/// The answer of "try a call".
#[derive(Debug, Clone)]
pub(crate) struct TryView {
    /// allow, deny, hidden, limit, approval, or invalid (the draft or the input has errors).
    pub(crate) kind: &'static str,
    pub(crate) title: String,
    pub(crate) lines: Vec<String>,
    pub(crate) rule: String,
    /// "lines 12–14" when the rule was found in the document.
    pub(crate) place: String,
    pub(crate) first_line: usize,
    pub(crate) span: Option<Span>,
}

#[derive(Debug)]
pub(crate) struct VersionRow {
    pub(crate) version: i32,
    pub(crate) published_by: String,
    pub(crate) comment: String,
    pub(crate) created: String,
    pub(crate) current: bool,
}

#[derive(askama::Template)]
#[template(path = "policy.html")]
pub(crate) struct EditorPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) base: String,
    pub(crate) server_id: String,
    pub(crate) server_name: String,
    pub(crate) name: String,
    pub(crate) exists: bool,
    pub(crate) can_edit: bool,
    pub(crate) notice: Option<String>,
    pub(crate) source: String,
    pub(crate) rows: usize,
    pub(crate) gutter: Vec<GutterLine>,
    pub(crate) comment: String,
    pub(crate) findings: FindingsView,
    pub(crate) builder: BuilderView,
    pub(crate) try_tools: Vec<Opt>,
    pub(crate) try_args: String,
    pub(crate) tried: Option<TryView>,
    pub(crate) versions: Vec<VersionRow>,
}

#[derive(askama::Template)]
#[template(path = "policy_builder.html")]
struct BuilderFragment<'a> {
    builder: &'a BuilderView,
    can_edit: bool,
    base: &'a str,
}

#[derive(askama::Template)]
#[template(path = "policy_findings.html")]
struct FindingsFragment<'a> {
    findings: &'a FindingsView,
}

#[derive(askama::Template)]
#[template(path = "policy_try.html")]
struct TryFragment<'a> {
    tried: &'a Option<TryView>,
}

// ---- Reading the form --------------------------------------------------------------------------

/// The editor's form: the document, the builder's settings (and what the page showed for each, so
/// only the ones a person changed are applied), "try a call", the comment.
#[derive(Debug, Default)]
pub(crate) struct EditorForm {
    source: String,
    comment: String,
    op: String,
    default: Option<String>,
    shown_default: Option<String>,
    tools: Vec<ToolFields>,
    try_tool: String,
    try_args: String,
}

#[derive(Debug, Default, Clone)]
struct ToolFields {
    name: String,
    choice: String,
    max: String,
    window: String,
    scope: String,
    shown: String,
}

impl EditorForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> EditorForm {
        let mut f = EditorForm::default();
        let mut tools: Vec<ToolFields> = Vec::new();
        for (k, v) in pairs {
            match k.as_str() {
                "source" => f.source = v,
                "comment" => f.comment = v,
                "op" => f.op = v,
                "default" => f.default = Some(v),
                "shown_default" => f.shown_default = Some(v),
                "try_tool" => f.try_tool = v,
                "try_args" => f.try_args = v,
                _ => {
                    // Builder fields: t3 (tool name), c3, m3, w3, s3, shown3.
                    let split = k.find(|c: char| c.is_ascii_digit());
                    let Some((field, index)) = split.map(|i| k.split_at(i)) else {
                        continue;
                    };
                    let Ok(index) = index.parse::<usize>() else {
                        continue;
                    };
                    if index >= 2_000 {
                        continue;
                    }
                    if tools.len() <= index {
                        tools.resize(index + 1, ToolFields::default());
                    }
                    let t = &mut tools[index];
                    match field {
                        "t" => t.name = v,
                        "c" => t.choice = v,
                        "m" => t.max = v,
                        "w" => t.window = v,
                        "s" => t.scope = v,
                        "shown" => t.shown = v,
                        _ => {}
                    }
                }
            }
        }
        f.tools = tools.into_iter().filter(|t| !t.name.is_empty()).collect();
        // Browsers send a text area's line ends as CRLF; documents are stored with LF, so versions
        // compare line by line and findings count lines the way the editor shows them.
        f.source = f.source.replace("\r\n", "\n");
        f.try_args = f.try_args.replace("\r\n", "\n");
        f
    }
}

/// A tool's setting as a compact string, so the page can say what it showed: `rate_limit:30:60:grant`.
fn setting_key(s: &Setting) -> String {
    match &s.limit {
        Some(l) if s.choice == Choice::RateLimit => {
            format!("rate_limit:{}:{}:{}", l.max, l.window_secs, l.scope)
        }
        _ => s.choice.as_str().to_owned(),
    }
}

fn parse_window(s: &str) -> Option<u64> {
    WINDOWS
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, secs)| *secs)
        .or_else(|| s.parse::<u64>().ok().filter(|s| *s > 0))
}

/// The setting a builder row submits, or why it cannot be used.
fn submitted_setting(t: &ToolFields) -> std::result::Result<Option<Setting>, String> {
    let Some(choice) = Choice::parse(&t.choice) else {
        return Ok(None);
    };
    if choice != Choice::RateLimit {
        return Ok(Some(Setting {
            choice,
            limit: None,
        }));
    }
    let max = t
        .max
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|m| (1..=MAX_LIMIT).contains(m))
        .ok_or_else(|| {
            format!(
                "`{}`: the limit needs a whole number of calls from 1 to {MAX_LIMIT}.",
                t.name
            )
        })?;
    let window_secs = parse_window(t.window.trim())
        .ok_or_else(|| format!("`{}`: choose the limit's window from the list.", t.name))?;
    let scope = Scope::ALL
        .into_iter()
        .find(|s| s.as_str() == t.scope.trim())
        .ok_or_else(|| format!("`{}`: choose the limit's scope from the list.", t.name))?;
    Ok(Some(Setting {
        choice,
        limit: Some(LimitSetting {
            max,
            window_secs,
            scope,
        }),
    }))
}

/// What applying the builder did to the document.
struct Applied {
    source: String,
    changed: bool,
    errors: Vec<String>,
}

/// Applies the settings a person changed in the builder (those that differ from what the page
/// showed) to the document. The document is rewritten only when something changed.
fn apply_builder(form: &EditorForm, tool_names: &[String]) -> Applied {
    let mut errors = Vec::new();
    let mut wanted = Vec::new();
    for t in &form.tools {
        if !tool_names.contains(&t.name) {
            continue;
        }
        match submitted_setting(t) {
            Ok(Some(s)) if setting_key(&s) != t.shown => wanted.push((t.name.as_str(), s)),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let default_changed = form.default.is_some() && form.default != form.shown_default;
    if wanted.is_empty() && !default_changed {
        return Applied {
            source: form.source.clone(),
            changed: false,
            errors,
        };
    }
    let Ok(mut doc) = serde_json::from_str::<Value>(&form.source) else {
        errors.push(
            "The builder's changes were not applied: the document is not valid JSON. Fix it first."
                .into(),
        );
        return Applied {
            source: form.source.clone(),
            changed: false,
            errors,
        };
    };
    let mut changed = false;
    let mut not_object = false;
    if default_changed {
        let deny = form.default.as_deref() != Some("allow");
        not_object |= builder::apply_default(&mut doc, deny).is_err();
        changed = true;
    }
    for (name, setting) in wanted {
        match builder::apply(&mut doc, name, &setting, tool_names) {
            Ok(c) => changed |= c,
            Err(_) => not_object = true,
        }
    }
    if not_object {
        errors.push(
            "The builder's changes were not applied: the document is not a JSON object.".into(),
        );
        return Applied {
            source: form.source.clone(),
            changed: false,
            errors,
        };
    }
    if !changed {
        return Applied {
            source: form.source.clone(),
            changed: false,
            errors,
        };
    }
    match serde_json::to_string_pretty(&doc) {
        Ok(source) => Applied {
            source,
            changed: true,
            errors,
        },
        Err(e) => {
            errors.push(format!("The builder's changes were not applied: {e}."));
            Applied {
                source: form.source.clone(),
                changed: false,
                errors,
            }
        }
    }
}

// ---- Building the page ---------------------------------------------------------------------

fn recommended_text(s: &Setting) -> String {
    match (&s.choice, &s.limit) {
        (Choice::RateLimit, Some(l)) => format!("{} / {}", l.max, window_label(l.window_secs)),
        (c, _) => c.label().to_owned(),
    }
}

fn builder_view(doc: &Value, tools: &[PinnedTool], can_edit: bool) -> BuilderView {
    let rows = tools
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let reading = builder::read(doc, &t.name);
            let recommendation = policy::recommendation(t.risk);
            let recommended = builder::recommended_setting(recommendation);
            let setting = &reading.setting;
            let limit = setting
                .limit
                .clone()
                .unwrap_or_else(|| LimitSetting::starting_point(recommendation));
            let mut windows: Vec<Opt> = WINDOWS
                .iter()
                .map(|(n, secs)| Opt {
                    value: (*n).to_owned(),
                    label: (*n).to_owned(),
                    selected: *secs == limit.window_secs,
                })
                .collect();
            if !windows.iter().any(|w| w.selected) {
                windows.push(Opt {
                    value: limit.window_secs.to_string(),
                    label: window_label(limit.window_secs),
                    selected: true,
                });
            }
            let mut options: Vec<ChoiceOpt> = Choice::OFFERED
                .into_iter()
                .map(|c| ChoiceOpt {
                    value: c.as_str(),
                    label: c.label(),
                    checked: c == setting.choice,
                    recommended: c == recommended.choice,
                })
                .collect();
            if setting.choice == Choice::Custom {
                options.push(ChoiceOpt {
                    value: Choice::Custom.as_str(),
                    label: Choice::Custom.label(),
                    checked: true,
                    recommended: false,
                });
            }
            BuilderRow {
                index,
                name: t.name.clone(),
                class: t.risk.as_str(),
                level: t.risk.level().as_str(),
                recommended: recommended_text(&recommended),
                differs: setting.choice != recommended.choice,
                options,
                shown: setting_key(setting),
                max: limit.max.to_string(),
                windows,
                scopes: Scope::ALL
                    .iter()
                    .map(|s| Opt {
                        value: s.as_str().to_owned(),
                        label: s.as_str().to_owned(),
                        selected: *s == limit.scope,
                    })
                    .collect(),
                notes: reading.notes,
            }
        })
        .collect();
    BuilderView {
        rows,
        default_deny: builder::default_denies(doc),
        paused: None,
        errors: Vec::new(),
    }
    .editable(can_edit)
}

impl BuilderView {
    fn editable(mut self, can_edit: bool) -> Self {
        if !can_edit {
            self.paused = Some("Changing the policy needs the policy_manager role.".into());
        }
        self
    }
}

/// The builder for `source`: following it when it is a JSON object, else the published document
/// with a note that the builder waits for valid JSON.
fn builder_for(source: &str, published: &str, tools: &[PinnedTool], can_edit: bool) -> BuilderView {
    match serde_json::from_str::<Value>(source) {
        Ok(doc) if doc.is_object() => builder_view(&doc, tools, can_edit),
        _ => {
            let doc = serde_json::from_str::<Value>(published).unwrap_or(Value::Null);
            let mut view = builder_view(&doc, tools, can_edit);
            view.paused = Some(
                "The document is not a valid JSON object, so the builder shows the published version and waits until the JSON is fixed."
                    .into(),
            );
            view
        }
    }
}

fn findings_view(diags: &[Diagnostic], heading: Option<String>) -> FindingsView {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    FindingsView {
        clean: heading.is_some() && diags.is_empty(),
        rows: diags.iter().map(FindingRow::from).collect(),
        errors,
        heading,
    }
}

fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn gutter(source: &str, findings: &FindingsView, rule: Option<Span>) -> Vec<GutterLine> {
    let n = source.split('\n').count();
    (1..=n)
        .map(|number| {
            let here: Vec<&FindingRow> =
                findings.rows.iter().filter(|f| f.line == number).collect();
            let mut class = Vec::new();
            if here.iter().any(|f| f.severity == "error") {
                class.push("has-finding error");
            } else if !here.is_empty() {
                class.push("has-finding warning");
            }
            if rule.is_some_and(|s| s.contains(number)) {
                class.push("rule-hit");
            }
            GutterLine {
                number,
                class: class.join(" "),
                title: here
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        })
        .collect()
}

/// What the editor shows besides what comes from the store.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    pub(crate) source: Option<String>,
    pub(crate) comment: String,
    pub(crate) diagnostics: Vec<Diagnostic>,
    pub(crate) heading: Option<String>,
    pub(crate) notice: Option<String>,
    pub(crate) builder_errors: Vec<String>,
    pub(crate) try_tool: String,
    pub(crate) try_args: String,
    pub(crate) tried: Option<TryView>,
}

pub(crate) fn editor_page<R>(
    m: &Member<R>,
    server: ServerId,
    name: &str,
    loaded: Loaded,
    draft: Draft,
) -> EditorPage {
    let can_edit = m.can(Role::PolicyManager);
    let source = draft.source.unwrap_or_else(|| loaded.published.clone());
    let mut builder = builder_for(&source, &loaded.published, &loaded.tools, can_edit);
    let mut findings = findings_view(&draft.diagnostics, draft.heading);
    findings.clean &= draft.builder_errors.is_empty();
    builder.errors = draft.builder_errors;
    let span = draft.tried.as_ref().and_then(|t| t.span);
    let try_tool = if draft.try_tool.is_empty() {
        loaded
            .tools
            .first()
            .map(|t| t.name.clone())
            .unwrap_or_default()
    } else {
        draft.try_tool
    };
    EditorPage {
        page: Page::member(format!("Policy {name}"), "servers", m),
        csrf: m.csrf.clone(),
        base: format!("/servers/{server}/policies/{name}"),
        server_id: server.to_string(),
        server_name: loaded.server_name,
        name: name.to_owned(),
        exists: loaded.exists,
        can_edit,
        notice: draft.notice,
        rows: source.split('\n').count().max(16) + 1,
        gutter: gutter(&source, &findings, span),
        source,
        comment: draft.comment,
        findings,
        builder,
        try_tools: loaded
            .tools
            .iter()
            .map(|t| Opt {
                value: t.name.clone(),
                label: t.name.clone(),
                selected: t.name == try_tool,
            })
            .collect(),
        try_args: if draft.try_args.is_empty() {
            "{}".into()
        } else {
            draft.try_args
        },
        tried: draft.tried,
        versions: loaded
            .versions
            .into_iter()
            .map(|v| VersionRow {
                current: Some(v.version) == loaded.current,
                version: v.version,
                published_by: v.published_by.unwrap_or_else(|| v.published_via.clone()),
                comment: v.comment.unwrap_or_default(),
                created: when(v.created_at),
            })
            .collect(),
    }
}

// ---- Try a call --------------------------------------------------------------------------------

fn duration_text(secs: u64) -> String {
    match secs {
        s if s.is_multiple_of(3600) && s >= 3600 => count((s / 3600) as usize, "hour"),
        s if s.is_multiple_of(60) && s >= 60 => count((s / 60) as usize, "minute"),
        s => count(s as usize, "second"),
    }
}

/// Decides a call against a validated draft, as the gateway would (limits are not consumed).
pub(crate) fn try_call(
    policy: &policy::Policy,
    source: &str,
    org: &str,
    server: &str,
    tool: &str,
    arguments: Option<&Value>,
) -> TryView {
    let call = policy::Call {
        tool,
        arguments,
        subject: policy::Subject {
            organisation: org,
            server,
            grant: "try-a-call",
            identity: "try-a-call",
            session: Some("try-a-call"),
        },
    };
    let decision = policy.decide(&call);
    let rule = decision.rule().clone();
    let approval_lines = |a: &policy::Approval| {
        vec![
            format!(
                "A policy manager has {} to approve or deny it.",
                duration_text(a.timeout_secs)
            ),
            format!(
                "The agent's request is held open for up to {}; after that it is told [APPROVAL PENDING] and retries.",
                duration_text(a.wait_secs)
            ),
        ]
    };
    let (kind, title, lines) = match &decision {
        Decision::Allow { .. } => (
            "allow",
            "Allowed".to_owned(),
            vec!["The call is forwarded to the upstream.".to_owned()],
        ),
        Decision::Deny(d) => (
            "deny",
            "Denied".to_owned(),
            vec![
                format!("The agent reads: [POLICY DENIED] {}", d.message),
                format!("Why: {}.", d.detail),
            ],
        ),
        Decision::UnknownTool { .. } => (
            "hidden",
            "Unknown tool".to_owned(),
            vec![format!(
                "The agent gets JSON-RPC error -32602 “Unknown tool: {tool}”; the tool is not in its tools/list either."
            )],
        ),
        Decision::NeedsLimits { limits, then } => {
            let mut lines: Vec<String> = limits
                .iter()
                .map(|l| {
                    format!(
                        "Counts against `{}`: at most {} per {} per {} ({}).",
                        l.counter,
                        l.max,
                        window_label(l.window_secs),
                        l.scope,
                        l.rule
                    )
                })
                .collect();
            lines.push(
                "Past the limit the agent reads: [POLICY DENIED] rate limit …, retry after N s."
                    .into(),
            );
            match then {
                Proceed::Allow { .. } => (
                    "limit",
                    "Allowed while under its rate limit".to_owned(),
                    lines,
                ),
                Proceed::NeedsApproval { approval, .. } => {
                    lines.extend(approval_lines(approval));
                    (
                        "approval",
                        "Rate-limited, then held for a human's approval".to_owned(),
                        lines,
                    )
                }
            }
        }
        Decision::NeedsApproval { approval, .. } => (
            "approval",
            "Held for a human's approval".to_owned(),
            approval_lines(approval),
        ),
    };
    let span = policy::locate(source, &rule);
    TryView {
        kind,
        title,
        lines,
        rule: rule.to_string(),
        place: match span {
            Some(s) if s.first_line == s.last_line => format!("line {}", s.first_line),
            Some(s) => format!("lines {}–{}", s.first_line, s.last_line),
            None => String::new(),
        },
        first_line: span.map_or(0, |s| s.first_line),
        span,
    }
}

fn try_invalid(title: &str, lines: Vec<String>) -> TryView {
    TryView {
        kind: "invalid",
        title: title.to_owned(),
        lines,
        rule: String::new(),
        place: String::new(),
        first_line: 0,
        span: None,
    }
}

// ---- Handlers ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path((server, name)): Path<(String, String)>,
    Query(q): Query<ShowQuery>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    let notice = match q.done.as_deref() {
        Some("published") => {
            Some("Published: grants that follow this policy use the new version now.".to_owned())
        }
        Some("rolled_back") => Some(
            "Rolled back: the older document is published as a new version, and grants use it now."
                .to_owned(),
        ),
        _ => None,
    };
    let loaded = load(&state, m.org, server, name).await?;
    let draft = Draft {
        notice,
        ..Draft::default()
    };
    Ok(render(&editor_page(&m, server, name, loaded, draft)))
}

fn check_sizes(form: &EditorForm) -> Result<()> {
    if form.source.len() > MAX_SOURCE_BYTES {
        return Err(Error::Invalid(format!(
            "The policy document is larger than {} KiB.",
            MAX_SOURCE_BYTES / 1024
        )));
    }
    if form.comment.chars().count() > 2000 {
        return Err(Error::Invalid(
            "The comment can have at most 2000 characters.".into(),
        ));
    }
    if form.try_args.len() > MAX_TRY_ARGS_BYTES {
        return Err(Error::Invalid(format!(
            "The arguments of a tried call can be at most {} KiB.",
            MAX_TRY_ARGS_BYTES / 1024
        )));
    }
    Ok(())
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path((server, name)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    let form = EditorForm::from_pairs(pairs);
    check_sizes(&form)?;
    // An unknown server is a 404 before anything is validated.
    let loaded = load(&state, m.org, server, name).await?;
    let names: Vec<String> = loaded.tools.iter().map(|t| t.name.clone()).collect();
    // Builder changes not yet applied (a form posted without JavaScript) are published too.
    let applied = apply_builder(&form, &names);
    let parsed = policy::Policy::parse(&applied.source, Some(&tool_defs(&loaded.tools)));
    let diagnostics = match parsed {
        Ok(_) if applied.errors.is_empty() => None,
        Ok(p) => Some(p.warnings().to_vec()),
        Err(d) => Some(d.0),
    };
    if let Some(diagnostics) = diagnostics {
        let errors = diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let draft = Draft {
            source: Some(applied.source),
            comment: form.comment,
            heading: Some(format!(
                "The policy was not published: {}.",
                count(errors.max(applied.errors.len()), "finding")
            )),
            diagnostics,
            builder_errors: applied.errors,
            try_tool: form.try_tool,
            try_args: form.try_args,
            ..Draft::default()
        };
        let page = editor_page(&m, server, name, loaded, draft);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let comment = Some(form.comment.trim()).filter(|c| !c.is_empty());
    let mut tx = state.store.begin(m.org).await?;
    store::policy::publish_policy_version(
        &mut tx,
        m.actor(),
        server,
        name,
        &applied.source,
        comment,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/servers/{server}/policies/{name}?done=published")).into_response())
}

/// What the live editor gets back from a draft post.
#[derive(Debug, Serialize)]
struct DraftAnswer {
    /// The document after the builder's changes; equal to what was sent when nothing changed.
    source: String,
    changed: bool,
    findings_html: String,
    /// The builder re-read from the document; absent while the document is not a JSON object
    /// and when the builder itself sent the post (it already shows what the person chose).
    builder_html: Option<String>,
    paused: bool,
    try_html: Option<String>,
    marks: Vec<Mark>,
    rule: Option<Span>,
}

#[derive(Debug, Serialize)]
struct Mark {
    line: usize,
    severity: &'static str,
    message: String,
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn fragment<T: askama::Template>(t: &T) -> Result<String> {
    t.render()
        .map_err(|e| Error::Internal(anyhow::anyhow!("a fragment failed to render: {e}")))
}

/// `op=build` (apply the builder), `op=check` (validate) or `op=try` (decide a call) on a draft.
/// Nothing is stored, so every member may use it; builder changes need the policy_manager role to
/// be published, which only the publish action checks.
pub(crate) async fn draft(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path((server, name)): Path<(String, String)>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    let form = EditorForm::from_pairs(pairs);
    check_sizes(&form)?;
    let op = match form.op.as_str() {
        "build" | "check" | "try" => form.op.clone(),
        _ => return Err(Error::Invalid("Unknown editor action.".into())),
    };
    let loaded = load(&state, m.org, server, name).await?;
    let names: Vec<String> = loaded.tools.iter().map(|t| t.name.clone()).collect();
    let applied = if m.can(Role::PolicyManager) {
        apply_builder(&form, &names)
    } else {
        Applied {
            source: form.source.clone(),
            changed: false,
            errors: Vec::new(),
        }
    };
    let parsed = policy::Policy::parse(&applied.source, Some(&tool_defs(&loaded.tools)));
    let diagnostics = match &parsed {
        Ok(p) => p.warnings().to_vec(),
        Err(d) => d.0.clone(),
    };
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let heading = if errors > 0 {
        format!("{} to fix before publishing.", count(errors, "error"))
    } else if diagnostics.is_empty() {
        "No findings: the document is ready to publish.".to_owned()
    } else {
        format!("Valid, with {}.", count(diagnostics.len(), "warning"))
    };
    let tried = (op == "try").then(|| {
        let args = form.try_args.trim();
        let arguments = if args.is_empty() {
            Ok(None)
        } else {
            match serde_json::from_str::<Value>(args) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                Ok(_) => Err("The arguments must be a JSON object, such as {\"device_id\": \"00236A-1\"}.".to_owned()),
                Err(e) => Err(format!("The arguments are not valid JSON: {e}.")),
            }
        };
        let tool = form.try_tool.trim();
        match (&parsed, arguments) {
            (_, _) if tool.is_empty() || tool.chars().count() > 200 => {
                try_invalid("Choose a tool", vec!["Pick the tool to call from the list.".into()])
            }
            (Err(_), _) => try_invalid(
                "The draft has errors",
                vec!["Fix the errors in the document first; a call is decided only against a valid policy.".into()],
            ),
            (_, Err(e)) => try_invalid("Invalid arguments", vec![e]),
            (Ok(p), Ok(arguments)) => try_call(
                p,
                &applied.source,
                &m.org.to_string(),
                &server.to_string(),
                tool,
                arguments.as_ref(),
            ),
        }
    });
    let notice = match (op.as_str(), applied.changed) {
        ("build", true) => Some(
            "The builder's choices are written into the document below. Nothing is published yet."
                .to_owned(),
        ),
        ("build", false) if applied.errors.is_empty() => {
            Some("The document already says what the builder shows.".to_owned())
        }
        _ => None,
    };
    if wants_json(&headers) {
        let can_edit = m.can(Role::PolicyManager);
        let findings = findings_view(&diagnostics, Some(heading));
        let mut findings = findings;
        if !applied.errors.is_empty() {
            findings.heading = Some(applied.errors.join(" "));
            findings.clean = false;
        }
        let object = serde_json::from_str::<Value>(&applied.source)
            .ok()
            .filter(Value::is_object);
        let builder_html = match (&object, op.as_str()) {
            (Some(doc), "check") => Some(fragment(&BuilderFragment {
                builder: &builder_view(doc, &loaded.tools, can_edit),
                can_edit,
                base: &format!("/servers/{server}/policies/{name}"),
            })?),
            _ => None,
        };
        let rule = tried.as_ref().and_then(|t| t.span);
        let try_html = if tried.is_some() {
            Some(fragment(&TryFragment { tried: &tried })?)
        } else {
            None
        };
        let answer = DraftAnswer {
            changed: applied.changed,
            findings_html: fragment(&FindingsFragment {
                findings: &findings,
            })?,
            builder_html,
            paused: object.is_none(),
            try_html,
            marks: findings
                .rows
                .iter()
                .map(|f| Mark {
                    line: f.line,
                    severity: f.severity,
                    message: f.message.clone(),
                })
                .collect(),
            rule,
            source: applied.source,
        };
        return Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response());
    }
    let draft = Draft {
        source: Some(applied.source),
        comment: form.comment,
        diagnostics,
        heading: Some(heading),
        notice,
        builder_errors: applied.errors,
        try_tool: form.try_tool,
        try_args: form.try_args,
        tried,
    };
    Ok(render(&editor_page(&m, server, name, loaded, draft)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_settings_a_person_changed_are_applied() {
        let source = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\"a\": {}, \"b\": {\"action\": \"deny\"}}\n}";
        // `a` unchanged (still shown as allow), `b` changed from deny to a limit.
        let form = EditorForm::from_pairs(pairs(&[
            ("source", source),
            ("t0", "a"),
            ("c0", "allow"),
            ("shown0", "allow"),
            ("t1", "b"),
            ("c1", "rate_limit"),
            ("m1", "5"),
            ("w1", "hour"),
            ("s1", "identity"),
            ("shown1", "deny"),
        ]));
        let names = ["a".to_owned(), "b".to_owned()];
        let applied = apply_builder(&form, &names);
        assert!(applied.changed);
        assert!(applied.errors.is_empty());
        let doc: Value = serde_json::from_str(&applied.source).unwrap();
        assert_eq!(
            doc["tools"]["b"],
            serde_json::json!({"limits": [{"counter": "b", "window": "hour", "max": 5, "scope": "identity"}]})
        );
        // Nothing changed: the text is kept byte for byte.
        let same = EditorForm::from_pairs(pairs(&[
            ("source", source),
            ("t0", "a"),
            ("c0", "allow"),
            ("shown0", "allow"),
        ]));
        let applied = apply_builder(&same, &names);
        assert!(!applied.changed);
        assert_eq!(applied.source, source);
    }

    #[test]
    fn bad_builder_input_is_named() {
        let form = EditorForm::from_pairs(pairs(&[
            ("source", "{}"),
            ("t0", "a"),
            ("c0", "rate_limit"),
            ("m0", "lots"),
            ("w0", "minute"),
            ("s0", "grant"),
            ("shown0", "allow"),
        ]));
        let applied = apply_builder(&form, &["a".to_owned()]);
        assert_eq!(
            applied.errors,
            ["`a`: the limit needs a whole number of calls from 1 to 1000000."]
        );
        assert!(!applied.changed);
        let broken = EditorForm::from_pairs(pairs(&[
            ("source", "{"),
            ("t0", "a"),
            ("c0", "deny"),
            ("shown0", "allow"),
        ]));
        let applied = apply_builder(&broken, &["a".to_owned()]);
        assert!(applied.errors[0].contains("not valid JSON"));
        assert_eq!(applied.source, "{");
    }

    #[test]
    fn try_a_call_names_the_rule_and_its_lines() {
        let source = "{\n  \"version\": \"1\",\n  \"default\": \"deny\",\n  \"tools\": {\n    \"get\": {},\n    \"set\": {\"limits\": [{\"counter\": \"w\", \"window\": \"minute\", \"max\": 3}]}\n  }\n}";
        let p = policy::Policy::parse(source, None).unwrap();
        let t = try_call(&p, source, "org", "srv", "set", None);
        assert_eq!(
            (t.kind, t.rule.as_str(), t.place.as_str()),
            ("limit", "/tools/set/limits/0", "line 6")
        );
        let t = try_call(&p, source, "org", "srv", "get", None);
        assert_eq!((t.kind, t.rule.as_str()), ("allow", "/tools/get"));
        let t = try_call(&p, source, "org", "srv", "other", None);
        assert_eq!(
            (t.kind, t.rule.as_str(), t.place.as_str()),
            ("hidden", "/default", "line 3")
        );
    }
}

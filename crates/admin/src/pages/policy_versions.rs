//! A policy's published versions: one version's document (with a rule highlighted when an audit
//! event links to it), a readable line diff against another version, and "roll back", which
//! publishes the old document again as a new version.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};
use store::{Role, ServerId};

use crate::AppState;
use crate::auth::{Member, PolicyManager, Viewer};
use crate::error::{Error, Result};
use crate::pages::policies::{Draft, editor_page, load, policy_name, tool_defs};
use crate::pages::servers::server_id;
use crate::pages::when;
use crate::views::{Page, render};

/// Unchanged lines shown around each change.
const CONTEXT_LINES: usize = 3;
/// The longest pointer accepted in `?rule=`.
const MAX_RULE_CHARS: usize = 1000;

/// One row of a diff: a line of either side, or a gap between changes.
#[derive(Debug)]
pub(crate) struct DiffRow {
    /// "equal", "insert", "delete" or "gap".
    pub(crate) kind: &'static str,
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) text: String,
}

impl DiffRow {
    pub(crate) fn sign(&self) -> &'static str {
        match self.kind {
            "insert" => "+",
            "delete" => "−",
            _ => "",
        }
    }
}

/// The line diff from `old` to `new`, changes with a little context, and the counts of added and
/// removed lines.
pub(crate) fn line_diff(old: &str, new: &str) -> (Vec<DiffRow>, usize, usize) {
    // Line ends do not count as changes (versions saved by older editors may end lines in CRLF).
    let (old, new) = (old.replace("\r\n", "\n"), new.replace("\r\n", "\n"));
    let diff = TextDiff::from_lines(&old, &new);
    let mut rows = Vec::new();
    let (mut added, mut removed) = (0, 0);
    for (i, group) in diff.grouped_ops(CONTEXT_LINES).iter().enumerate() {
        if i > 0 {
            rows.push(DiffRow {
                kind: "gap",
                old: String::new(),
                new: String::new(),
                text: "⋯".into(),
            });
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let kind = match change.tag() {
                    ChangeTag::Equal => "equal",
                    ChangeTag::Insert => {
                        added += 1;
                        "insert"
                    }
                    ChangeTag::Delete => {
                        removed += 1;
                        "delete"
                    }
                };
                let number = |n: Option<usize>| n.map(|n| (n + 1).to_string()).unwrap_or_default();
                rows.push(DiffRow {
                    kind,
                    old: number(change.old_index()),
                    new: number(change.new_index()),
                    text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
                });
            }
        }
    }
    (rows, added, removed)
}

#[derive(Debug)]
pub(crate) struct DocLine {
    pub(crate) number: usize,
    pub(crate) text: String,
    pub(crate) rule: bool,
    /// The first highlighted line carries the `#rule` anchor.
    pub(crate) anchor: bool,
}

#[derive(Debug)]
pub(crate) struct Other {
    pub(crate) version: i32,
    pub(crate) selected: bool,
}

#[derive(askama::Template)]
#[template(path = "policy_version.html")]
pub(crate) struct VersionPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    pub(crate) base: String,
    pub(crate) server_id: String,
    pub(crate) server_name: String,
    pub(crate) name: String,
    pub(crate) version: i32,
    pub(crate) current: bool,
    pub(crate) created: String,
    pub(crate) published_by: String,
    pub(crate) comment: String,
    pub(crate) can_edit: bool,
    /// The version compared with, when there is one.
    pub(crate) against: Option<i32>,
    /// "Changes from version 1", or "Changes up to version 3" against a later one.
    pub(crate) diff_title: String,
    /// The diff's column heads: the older version, then the newer.
    pub(crate) left: String,
    pub(crate) right: String,
    pub(crate) others: Vec<Other>,
    pub(crate) diff: Vec<DiffRow>,
    pub(crate) added: usize,
    pub(crate) removed: usize,
    pub(crate) rule: Option<String>,
    /// "lines 12–14", or empty when the rule is not in this version.
    pub(crate) rule_place: String,
    pub(crate) lines: Vec<DocLine>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionQuery {
    against: Option<String>,
    rule: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path((server, name, version)): Path<(String, String, String)>,
    Query(q): Query<VersionQuery>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    let version: i32 = version.parse().map_err(|_| Error::NotFound)?;
    let against = match q.against.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(a) => Some(a.parse::<i32>().map_err(|_| {
            Error::Invalid("Choose a version to compare with from the list.".into())
        })?),
    };
    let rule = q
        .rule
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if rule
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_RULE_CHARS || !r.starts_with('/'))
    {
        return Err(Error::Invalid(
            "The rule to highlight must be a JSON Pointer such as /tools/reboot_device.".into(),
        ));
    }

    let mut tx = state.store.begin(m.org).await?;
    let s = store::server::server_by_id(&mut tx, server).await?;
    let p = store::policy::policy_by_name(&mut tx, server, name).await?;
    let this = store::policy::policy_version(&mut tx, p.policy_id, version).await?;
    let versions = store::policy::list_policy_versions(&mut tx, p.policy_id).await?;
    // By default the changes this version made, i.e. against the one before it.
    let against = against.or((version > 1).then_some(version - 1));
    let other = match against {
        Some(a) if a != version => Some(
            store::policy::policy_version(&mut tx, p.policy_id, a)
                .await
                .map_err(|e| match e {
                    store::Error::NotFound { .. } => Error::Invalid(format!(
                        "Version {a} of this policy does not exist; choose one from the list."
                    )),
                    e => e.into(),
                })?,
        ),
        _ => None,
    };
    tx.commit().await?;

    let (diff, added, removed) = match &other {
        Some(o) if o.version < version => line_diff(&o.source, &this.source),
        Some(o) => line_diff(&this.source, &o.source),
        None => (Vec::new(), 0, 0),
    };
    let span = rule.as_ref().and_then(|r| {
        let mut pointer = policy::Pointer::root();
        for token in r.split('/').skip(1) {
            pointer = pointer.push(token.replace("~1", "/").replace("~0", "~"));
        }
        policy::locate(&this.source, &pointer)
    });
    let summary = versions.iter().find(|v| v.version == version);
    let view = VersionPage {
        page: Page::member(format!("Policy {name}, version {version}"), "servers", &m),
        csrf: m.csrf.clone(),
        base: format!("/servers/{server}/policies/{name}"),
        server_id: server.to_string(),
        server_name: s.name,
        name: name.to_owned(),
        version,
        current: p.current_version == Some(version),
        created: when(this.created_at),
        published_by: summary
            .map(|v| {
                v.published_by
                    .clone()
                    .unwrap_or_else(|| v.published_via.clone())
            })
            .unwrap_or_default(),
        comment: summary.and_then(|v| v.comment.clone()).unwrap_or_default(),
        can_edit: m.can(Role::PolicyManager),
        against: other.as_ref().map(|o| o.version),
        diff_title: match &other {
            Some(o) if o.version < version => format!("Changes from version {}", o.version),
            Some(o) => format!("Changes up to version {}", o.version),
            None => "Changes".into(),
        },
        left: format!(
            "v{}",
            other.as_ref().map_or(version, |o| o.version.min(version))
        ),
        right: format!(
            "v{}",
            other.as_ref().map_or(version, |o| o.version.max(version))
        ),
        others: versions
            .iter()
            .filter(|v| v.version != version)
            .map(|v| Other {
                version: v.version,
                selected: other.as_ref().is_some_and(|o| o.version == v.version),
            })
            .collect(),
        diff,
        added,
        removed,
        rule_place: match span {
            Some(s) if s.first_line == s.last_line => format!("line {}", s.first_line),
            Some(s) => format!("lines {}–{}", s.first_line, s.last_line),
            None => String::new(),
        },
        rule,
        lines: this
            .source
            .split('\n')
            .enumerate()
            .map(|(i, text)| DocLine {
                number: i + 1,
                text: text.trim_end_matches('\r').to_owned(),
                rule: span.is_some_and(|s| s.contains(i + 1)),
                anchor: span.is_some_and(|s| s.first_line == i + 1),
            })
            .collect(),
    };
    Ok(render(&view))
}

/// Publishes an older version's document as the newest version. The document is validated
/// against the server's tools as they are pinned now; when it no longer fits, the editor opens
/// with it as a draft and the findings, and nothing is published.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path((server, name, version)): Path<(String, String, String)>,
) -> Result<Response> {
    let server: ServerId = server_id(&server)?;
    let name = policy_name(&name)?;
    let version: i32 = version.parse().map_err(|_| Error::NotFound)?;
    let loaded = load(&state, m.org, server, name).await?;
    let mut tx = state.store.begin(m.org).await?;
    let p = store::policy::policy_by_name(&mut tx, server, name).await?;
    let old = store::policy::policy_version(&mut tx, p.policy_id, version).await?;
    if let Err(d) = policy::Policy::parse(&old.source, Some(&tool_defs(&loaded.tools))) {
        tx.rollback().await?;
        let errors = d.error_count();
        let draft = Draft {
            source: Some(old.source),
            comment: format!("Back to version {version}"),
            heading: Some(format!(
                "Version {version} was not rolled back to: it no longer fits the server's tools ({} error{}). Fix it here and publish, or pick another version.",
                errors,
                if errors == 1 { "" } else { "s" }
            )),
            diagnostics: d.0,
            ..Draft::default()
        };
        let page = editor_page(&m, server, name, loaded, draft);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let comment = format!("Rolled back to version {version}");
    store::policy::publish_policy_version(
        &mut tx,
        m.actor(),
        server,
        name,
        &old.source,
        Some(&comment),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!(
        "/servers/{server}/policies/{name}?done=rolled_back"
    ))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_shows_changes_with_context_and_counts() {
        let old: String = (1..=20).map(|i| format!("line {i}\n")).collect();
        let new = old
            .replace("line 2\n", "line two\n")
            .replace("line 19\n", "line 19\nline 19.5\n");
        let (rows, added, removed) = line_diff(&old, &new);
        assert_eq!((added, removed), (2, 1));
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                "equal", "delete", "insert", "equal", "equal", "equal", "gap", "equal", "equal",
                "equal", "insert", "equal"
            ]
        );
        let changed = &rows[1];
        assert_eq!(
            (
                changed.old.as_str(),
                changed.new.as_str(),
                changed.text.as_str()
            ),
            ("2", "", "line 2")
        );
        assert_eq!((rows[2].sign(), rows[2].new.as_str()), ("+", "2"));
        assert_eq!(rows[6].text, "⋯");
        assert!(line_diff(&old, &old).0.is_empty());
        assert!(line_diff(&old, &old.replace('\n', "\r\n")).0.is_empty());
    }
}

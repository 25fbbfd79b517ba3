//! Tool drifts on the server page: what the gateway found the upstream serving in place of the
//! pinned definition (or a tool never pinned), shown as a diff per field, with "review and pin"
//! (a new snapshot holding the live definition) and "dismiss" (the tool stays hidden) for policy
//! managers. Both are admin events; both announce the change to the gateways (Redis pub/sub) so
//! every replica serves the new pins within a second.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use store::ServerId;
use store::drift::Drift;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Member, PolicyManager};
use crate::error::{Error, Result};
use crate::pages::policy_versions::{DiffRow, line_diff};
use crate::pages::servers::server_id;
use crate::pages::when;

/// The fields a pin covers, in the order the diff shows them.
const FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// One drift as the server page shows it.
#[derive(Debug)]
pub(crate) struct DriftRow {
    pub(crate) id: String,
    pub(crate) tool: String,
    /// "changed" or "added".
    pub(crate) kind: String,
    pub(crate) first_seen: String,
    /// Only the fields that differ.
    pub(crate) fields: Vec<FieldDiff>,
}

/// One differing field: a word diff for text, a line diff of the pretty JSON otherwise.
#[derive(Debug)]
pub(crate) struct FieldDiff {
    pub(crate) name: &'static str,
    pub(crate) words: Vec<WordSpan>,
    pub(crate) lines: Vec<DiffRow>,
}

/// A run of words of a text diff: "equal", "insert" or "delete".
#[derive(Debug)]
pub(crate) struct WordSpan {
    pub(crate) kind: &'static str,
    pub(crate) text: String,
}

/// The drift rows of a server page.
pub(crate) fn drift_rows(drifts: &[Drift]) -> Vec<DriftRow> {
    drifts
        .iter()
        .map(|d| DriftRow {
            id: d.drift_id.to_string(),
            tool: d.tool_name.clone(),
            kind: d.kind.clone(),
            first_seen: when(d.first_seen_at),
            fields: field_diffs(d.pinned_definition.as_ref(), &d.live_definition),
        })
        .collect()
}

/// The covered fields that differ between the pinned and the live definition (absent and `null`
/// alike, as the pin treats them).
pub(crate) fn field_diffs(pinned: Option<&Value>, live: &Value) -> Vec<FieldDiff> {
    let get =
        |d: Option<&Value>, key: &str| d.and_then(|d| d.get(key)).filter(|v| !v.is_null()).cloned();
    FIELDS
        .into_iter()
        .filter_map(|name| {
            let (old, new) = (get(pinned, name), get(Some(live), name));
            if old == new {
                return None;
            }
            let text = |v: &Option<Value>| match v {
                Some(Value::String(s)) => Some(s.clone()),
                None => Some(String::new()),
                Some(_) => None,
            };
            if let (Some(a), Some(b)) = (text(&old), text(&new))
                && (matches!(old, Some(Value::String(_))) || matches!(new, Some(Value::String(_))))
            {
                return Some(FieldDiff {
                    name,
                    words: word_diff(&a, &b),
                    lines: Vec::new(),
                });
            }
            let pretty = |v: &Option<Value>| {
                v.as_ref()
                    .map(|v| serde_json::to_string_pretty(v).unwrap_or_default() + "\n")
                    .unwrap_or_default()
            };
            let (lines, _, _) = line_diff(&pretty(&old), &pretty(&new));
            Some(FieldDiff {
                name,
                words: Vec::new(),
                lines,
            })
        })
        .collect()
}

fn word_diff(old: &str, new: &str) -> Vec<WordSpan> {
    let diff = TextDiff::from_words(old, new);
    let mut spans: Vec<WordSpan> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            ChangeTag::Equal => "equal",
            ChangeTag::Insert => "insert",
            ChangeTag::Delete => "delete",
        };
        match spans.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(change.value()),
            _ => spans.push(WordSpan {
                kind,
                text: change.value().to_owned(),
            }),
        }
    }
    spans
}

/// Tells the gateways that a server's pins changed (when `REDIS_URL` is configured). A failure is
/// only logged: the change is committed, and replicas pick it up within their cache TTL.
pub(crate) async fn announce(state: &AppState, server: ServerId) {
    let published = crate::notify::publish(
        state,
        crate::INVALIDATION_CHANNEL,
        &format!("server:{server}"),
    )
    .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, "could not announce the new pins; gateways pick them up within their cache TTL");
    }
}

pub(crate) fn drift_id(text: &str) -> Result<Uuid> {
    text.parse().map_err(|_| Error::NotFound)
}

/// Re-pins drift `drift` of server `server` (the web page's and the API's "review and pin").
pub(crate) async fn repin(
    state: &AppState,
    m_org: store::OrgId,
    actor: store::Actor,
    server: ServerId,
    drift: Uuid,
) -> Result<()> {
    let mut tx = state.store.begin(m_org).await?;
    let of = store::drift::repin_drift(&mut tx, actor, drift).await?;
    if of != server {
        return Err(Error::NotFound);
    }
    tx.commit().await?;
    announce(state, server).await;
    Ok(())
}

/// Dismisses drift `drift` of server `server`.
pub(crate) async fn dismiss_one(
    state: &AppState,
    m_org: store::OrgId,
    actor: store::Actor,
    server: ServerId,
    drift: Uuid,
    comment: Option<&str>,
) -> Result<()> {
    let mut tx = state.store.begin(m_org).await?;
    let of = store::drift::dismiss_drift(&mut tx, actor, drift, comment).await?;
    if of != server {
        return Err(Error::NotFound);
    }
    tx.commit().await?;
    announce(state, server).await;
    Ok(())
}

pub(crate) async fn pin(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path((server, drift)): Path<(String, String)>,
) -> Result<Response> {
    let id = server_id(&server)?;
    repin(&state, m.org, m.actor(), id, drift_id(&drift)?).await?;
    Ok(Redirect::to(&format!("/servers/{id}?done=repinned#drifts")).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct DismissForm {
    #[serde(default)]
    comment: String,
}

pub(crate) async fn dismiss(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path((server, drift)): Path<(String, String)>,
    Form(f): Form<DismissForm>,
) -> Result<Response> {
    let id = server_id(&server)?;
    dismiss_one(
        &state,
        m.org,
        m.actor(),
        id,
        drift_id(&drift)?,
        Some(&f.comment),
    )
    .await?;
    Ok(Redirect::to(&format!("/servers/{id}?done=dismissed#drifts")).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_differing_fields_are_shown_text_by_words_and_schemas_by_lines() {
        let pinned = json!({"name": "reboot", "description": "Reboots one device.",
                            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}},
                            "outputSchema": null});
        let live = json!({"name": "reboot", "description": "Reboots every device.",
                          "inputSchema": {"type": "object", "properties": {"id": {"type": "string"},
                                                                            "all": {"type": "boolean"}}}});
        let diffs = field_diffs(Some(&pinned), &live);
        let names: Vec<_> = diffs.iter().map(|d| d.name).collect();
        assert_eq!(names, ["description", "inputSchema"]);
        let words: Vec<_> = diffs[0]
            .words
            .iter()
            .filter(|w| w.kind != "equal")
            .map(|w| (w.kind, w.text.as_str()))
            .collect();
        assert_eq!(words, [("delete", "one"), ("insert", "every")]);
        assert!(
            diffs[1]
                .lines
                .iter()
                .any(|l| l.kind == "insert" && l.text.contains("\"all\""))
        );
    }

    #[test]
    fn a_new_tool_shows_every_field_it_has() {
        let live =
            json!({"name": "wipe", "description": "Wipes.", "inputSchema": {"type": "object"}});
        let names: Vec<_> = field_diffs(None, &live).iter().map(|d| d.name).collect();
        assert_eq!(names, ["name", "description", "inputSchema"]);
    }
}

//! The policy editor's basics: the raw JSON document, validated on the server with every finding
//! shown at its line; publishing makes a new immutable version; the version history.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use policy::{Diagnostic, ToolDef};
use serde::Deserialize;
use store::{Role, ServerId};

use crate::AppState;
use crate::auth::{Member, PolicyManager, Viewer};
use crate::error::{Error, Result};
use crate::pages::servers::server_id;
use crate::pages::when;
use crate::views::{Page, PolicyPage, SourceLine, VersionRow, render};

/// The largest document accepted (the policy engine's own limit).
const MAX_SOURCE_BYTES: usize = policy::MAX_DOCUMENT_BYTES;

fn policy_name(name: &str) -> Result<&str> {
    store::policy::validate_policy_name(name).map_err(|_| Error::NotFound)?;
    Ok(name)
}

/// The server's pinned tools as the validator reads them.
async fn pinned_tool_defs(tx: &mut store::OrgTx, server: ServerId) -> Result<Vec<ToolDef>> {
    Ok(store::server::latest_pinned_tools(tx, server)
        .await?
        .into_iter()
        .filter_map(|t| serde_json::from_value(t.definition).ok())
        .collect())
}

/// What the page shows besides the document.
struct Draft {
    source: Option<String>,
    comment: String,
    findings: Vec<Diagnostic>,
    notice: Option<String>,
}

async fn policy_page<R>(
    state: &AppState,
    m: &Member<R>,
    server: ServerId,
    name: &str,
    draft: Draft,
) -> Result<PolicyPage> {
    let mut tx = state.store.begin(m.org).await?;
    let s = store::server::server_by_id(&mut tx, server).await?;
    let existing = match store::policy::policy_by_name(&mut tx, server, name).await {
        Ok(p) => Some(p),
        Err(store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let (current_source, versions, current) = match &existing {
        Some(p) => {
            let current = store::policy::current_policy_version(&mut tx, p.policy_id).await?;
            let versions = store::policy::list_policy_versions(&mut tx, p.policy_id).await?;
            (current.source, versions, p.current_version)
        }
        None => {
            let tools = pinned_tool_defs(&mut tx, server).await?;
            let doc = serde_json::to_string_pretty(&policy::recommended_policy(&tools))
                .map_err(anyhow::Error::from)?;
            (doc, Vec::new(), None)
        }
    };
    tx.commit().await?;
    let source = draft.source.unwrap_or(current_source);
    let lines = if draft.findings.is_empty() {
        Vec::new()
    } else {
        source
            .lines()
            .enumerate()
            .map(|(i, text)| SourceLine {
                number: i + 1,
                text: text.to_owned(),
                findings: draft
                    .findings
                    .iter()
                    .filter(|d| d.line == i + 1)
                    .map(|d| format!("column {}: {} ({})", d.column, d.message, d.pointer))
                    .collect(),
            })
            .collect()
    };
    Ok(PolicyPage {
        page: Page::member(format!("Policy {name}"), "servers", m),
        csrf: m.csrf.clone(),
        server_id: server.to_string(),
        server_name: s.name,
        name: name.to_owned(),
        source,
        comment: draft.comment,
        exists: existing.is_some(),
        can_edit: m.can(Role::PolicyManager),
        notice: draft.notice,
        findings: draft.findings.iter().map(ToString::to_string).collect(),
        lines,
        versions: versions
            .into_iter()
            .map(|v| VersionRow {
                current: Some(v.version) == current,
                version: v.version,
                published_by: v.published_by.unwrap_or_else(|| v.published_via.clone()),
                comment: v.comment.unwrap_or_default(),
                created: when(v.created_at),
            })
            .collect(),
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowQuery {
    done: Option<String>,
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path((server, name)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ShowQuery>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    let notice = (q.done.as_deref() == Some("published"))
        .then(|| "Published: grants that follow this policy use the new version now.".to_owned());
    let draft = Draft {
        source: None,
        comment: String::new(),
        findings: Vec::new(),
        notice,
    };
    Ok(render(&policy_page(&state, &m, server, name, draft).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PublishForm {
    #[serde(default)]
    source: String,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path((server, name)): Path<(String, String)>,
    Form(f): Form<PublishForm>,
) -> Result<Response> {
    let server = server_id(&server)?;
    let name = policy_name(&name)?;
    if f.source.len() > MAX_SOURCE_BYTES {
        return Err(Error::Invalid(format!(
            "The policy document is larger than {} KiB.",
            MAX_SOURCE_BYTES / 1024
        )));
    }
    if f.comment.chars().count() > 2000 {
        return Err(Error::Invalid(
            "The comment can have at most 2000 characters.".into(),
        ));
    }
    let mut tx = state.store.begin(m.org).await?;
    // An unknown server is a 404 before anything is validated.
    store::server::server_by_id(&mut tx, server).await?;
    let tools = pinned_tool_defs(&mut tx, server).await?;
    if let Err(diagnostics) = policy::Policy::parse(&f.source, Some(&tools)) {
        tx.rollback().await?;
        let draft = Draft {
            source: Some(f.source),
            comment: f.comment,
            findings: diagnostics.0,
            notice: None,
        };
        let page = policy_page(&state, &m, server, name, draft).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response());
    }
    let comment = Some(f.comment.trim()).filter(|c| !c.is_empty());
    store::policy::publish_policy_version(&mut tx, m.actor(), server, name, &f.source, comment)
        .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/servers/{server}/policies/{name}?done=published")).into_response())
}

//! Human approvals (DESIGN.md §4): the queue of calls the gateway holds for a person (pending and
//! decided, keyset pages of 25), one approval with the call's arguments as stored (secrets
//! already redacted by the gateway), and approve / deny with a comment for policy managers.
//! A decision is stored (with its admin event) first, then announced: on the approval channel
//! over Redis and through the in-process hook, so the call held on any replica proceeds at once.
//! The organisation's webhook for new approvals is `pages::webhook`.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use store::approval::{Approval, ApprovalCursor, ApprovalFilter, ApprovalStatus, Decision};
use store::{Actor, ApprovalId, OrgId, OrgTx, Role, ServerId};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::{Member, PolicyManager, Viewer};
use crate::error::{Error, Result};
use crate::pages::shown_once::DoneQuery;
use crate::pages::when;
use crate::views::{Page, render};

/// Approvals per page of the queue.
pub(crate) const PAGE_SIZE: i64 = 25;

/// One approval as the queue shows it.
#[derive(Debug)]
pub(crate) struct ApprovalRow {
    id: String,
    when: String,
    tool: String,
    identity: String,
    grant_label: String,
    server: String,
    status: &'static str,
    expires: String,
    decided: String,
    decider: String,
}

#[derive(Template)]
#[template(path = "approvals.html")]
pub(crate) struct ApprovalsPage {
    page: Page,
    /// `pending` or `decided`: the tab shown.
    tab: &'static str,
    rows: Vec<ApprovalRow>,
    /// The link to the next (older) page.
    next: Option<String>,
    /// Whether this is a later page (for the link back to the first).
    later: bool,
    can_decide: bool,
    is_admin: bool,
}

#[derive(Template)]
#[template(path = "approval.html")]
pub(crate) struct ApprovalPage {
    page: Page,
    csrf: String,
    id: String,
    tool: String,
    status: &'static str,
    server_id: String,
    server: String,
    identity: String,
    grant_label: String,
    grant_id: String,
    session: String,
    request_id: String,
    arguments: String,
    requested: String,
    expires: String,
    decided_at: String,
    decider: String,
    comment: String,
    consumed_at: String,
    /// Pending, and the member may decide: the form is shown.
    can_decide: bool,
    /// Pending, but the member is a viewer: say who may decide.
    read_only: bool,
    /// What was typed into the comment box, kept across a refused decision.
    draft: String,
    errors: Vec<String>,
    notice: Option<String>,
}

/// "in 14 min", "3 h ago": how far `t` is from `now`, to the minute.
fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (t - now).whole_seconds();
    let minutes = secs.unsigned_abs().div_ceil(60);
    let span = match minutes {
        0..=1 => "1 min".to_owned(),
        2..=119 => format!("{minutes} min"),
        _ if minutes < 48 * 60 => format!("{} h", minutes / 60),
        _ => format!("{} days", minutes / (24 * 60)),
    };
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// When `at` is, with how far from `now` while the approval is still live.
fn expiry(at: OffsetDateTime, now: OffsetDateTime, live: bool) -> String {
    if live {
        format!("{} ({})", when(at), relative(at, now))
    } else {
        when(at)
    }
}

/// Who decided, as pages show it.
pub(crate) fn decider(a: &Approval) -> String {
    match (&a.decided_by_email, a.decided_via.as_deref()) {
        (Some(email), _) => email.clone(),
        (None, Some("api")) => "an API key".into(),
        (None, Some("cli")) => "an operator (command line)".into(),
        (None, Some("web")) => "a deleted account".into(),
        _ => String::new(),
    }
}

/// The names of the organisation's servers, for showing a server id.
async fn server_names(tx: &mut OrgTx) -> Result<Vec<(ServerId, String)>> {
    Ok(store::server::list_servers(tx)
        .await?
        .into_iter()
        .map(|s| (s.server_id, s.name))
        .collect())
}

fn name_of(names: &[(ServerId, String)], id: ServerId) -> String {
    names
        .iter()
        .find(|(s, _)| *s == id)
        .map_or_else(|| id.to_string(), |(_, n)| n.clone())
}

/// The query of the queue: which tab, and where its page starts.
#[derive(Debug, Deserialize)]
pub(crate) struct QueueQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `pending` (the default) or `decided`, as the queue's `status` parameter names them.
pub(crate) fn filter_of(status: Option<&str>) -> Option<ApprovalFilter> {
    match status.unwrap_or("") {
        "" | "pending" => Some(ApprovalFilter::Pending),
        "decided" => Some(ApprovalFilter::Decided),
        _ => None,
    }
}

pub(crate) fn approval_id(text: &str) -> Result<ApprovalId> {
    text.parse().map_err(|_| Error::NotFound)
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(q): Query<QueueQuery>,
) -> Result<Response> {
    let filter = filter_of(q.status.as_deref())
        .ok_or_else(|| Error::Invalid("Show pending or decided approvals.".into()))?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse::<ApprovalCursor>()
                .map_err(|_| Error::Invalid("That page link is not valid.".into()))?,
        ),
    };
    let mut tx = state.store.begin(m.org).await?;
    let page = store::approval::list_approvals(&mut tx, filter, cursor, PAGE_SIZE).await?;
    let names = server_names(&mut tx).await?;
    tx.commit().await?;
    let tab = match filter {
        ApprovalFilter::Pending => "pending",
        ApprovalFilter::Decided => "decided",
    };
    let now = OffsetDateTime::now_utc();
    let rows = page
        .approvals
        .iter()
        .map(|a| ApprovalRow {
            id: a.approval_id.to_string(),
            when: when(a.created_at),
            tool: a.tool_name.clone(),
            identity: a.identity.clone(),
            grant_label: a.grant_label.clone(),
            server: name_of(&names, a.server_id),
            status: a.status.as_str(),
            expires: expiry(a.expires_at, now, a.status == ApprovalStatus::Pending),
            decided: a.decided_at.map(when).unwrap_or_default(),
            decider: decider(a),
        })
        .collect();
    Ok(render(&ApprovalsPage {
        page: Page::member("Approvals", "approvals", &m),
        tab,
        rows,
        next: page
            .next
            .map(|c| format!("/approvals?status={tab}&cursor={c}")),
        later: cursor.is_some(),
        can_decide: m.can(Role::PolicyManager),
        is_admin: m.can(Role::Admin),
    }))
}

/// The detail page of `a` (on the server named `server`) for `m`, with what a refused decision
/// left.
fn detail<R>(
    m: &Member<R>,
    (a, server): (Approval, String),
    draft: String,
    errors: Vec<String>,
    notice: Option<String>,
) -> ApprovalPage {
    let now = OffsetDateTime::now_utc();
    let pending = a.status == ApprovalStatus::Pending;
    ApprovalPage {
        page: Page::member(format!("Approval of {}", a.tool_name), "approvals", m),
        csrf: m.csrf.clone(),
        id: a.approval_id.to_string(),
        tool: a.tool_name.clone(),
        status: a.status.as_str(),
        server_id: a.server_id.to_string(),
        server,
        identity: a.identity.clone(),
        grant_label: a.grant_label.clone(),
        grant_id: a.grant_id.to_string(),
        session: a.session_id.clone().unwrap_or_default(),
        request_id: a.request_id.clone(),
        arguments: serde_json::to_string_pretty(&a.arguments).unwrap_or_default(),
        requested: when(a.created_at),
        expires: expiry(
            a.expires_at,
            now,
            matches!(a.status, ApprovalStatus::Pending | ApprovalStatus::Approved),
        ),
        decided_at: a.decided_at.map(when).unwrap_or_default(),
        decider: decider(&a),
        comment: a.comment.clone().unwrap_or_default(),
        consumed_at: a.consumed_at.map(when).unwrap_or_default(),
        can_decide: pending && m.can(Role::PolicyManager),
        read_only: pending && !m.can(Role::PolicyManager),
        draft,
        errors,
        notice,
    }
}

/// Approval `id` and the name of its server, read in one transaction.
async fn load(state: &AppState, org: OrgId, id: ApprovalId) -> Result<(Approval, String)> {
    let mut tx = state.store.begin(org).await?;
    let a = store::approval::approval_by_id(&mut tx, id).await?;
    let server = match store::server::server_by_id(&mut tx, a.server_id).await {
        Ok(server) => server.name,
        Err(store::Error::NotFound { .. }) => a.server_id.to_string(),
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    Ok((a, server))
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response> {
    let loaded = load(&state, m.org, approval_id(&id)?).await?;
    let notice = q
        .notice(
            "approved",
            "Approved. The held call goes through, or the agent's next identical call does, once.",
        )
        .or_else(|| q.notice("denied", "Denied. The agent is told your comment."));
    Ok(render(&detail(
        &m,
        loaded,
        String::new(),
        Vec::new(),
        notice,
    )))
}

/// Decides approval `id` and announces the decision once it is committed (the web page's and
/// the API's approve and deny).
pub(crate) async fn decide(
    state: &AppState,
    org: OrgId,
    actor: Actor,
    id: ApprovalId,
    decision: Decision,
    comment: Option<&str>,
) -> store::Result<Approval> {
    let mut tx = state.store.begin(org).await?;
    let approval = store::approval::decide_approval(&mut tx, actor, id, decision, comment).await?;
    tx.commit().await?;
    crate::notify::approval_decided(state, id).await;
    Ok(approval)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecisionForm {
    #[serde(default)]
    comment: String,
}

/// The message a refused decision shows on its page, with the status it is answered with; any
/// other error is returned.
fn refusal(e: store::Error) -> Result<(StatusCode, String)> {
    let sentence = |text: &str| {
        let mut chars = text.chars();
        let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
        format!("{}{}.", first.unwrap_or_default(), chars.as_str())
    };
    match e {
        store::Error::Conflict { message, .. } => Ok((StatusCode::CONFLICT, sentence(&message))),
        store::Error::Invalid { field, reason } if reason.starts_with("must") => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            sentence(&format!("the {field} {reason}")),
        )),
        store::Error::Invalid { reason, .. } => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, sentence(&reason)))
        }
        e => Err(e.into()),
    }
}

async fn decide_from_web(
    state: AppState,
    m: Member<PolicyManager>,
    id: String,
    decision: Decision,
    f: DecisionForm,
) -> Result<Response> {
    let id = approval_id(&id)?;
    let comment = f.comment.trim();
    let refused = if decision == Decision::Deny && comment.is_empty() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Deny needs a comment: the agent is told why.".to_owned(),
        )
    } else {
        match decide(&state, m.org, m.actor(), id, decision, Some(comment)).await {
            Ok(_) => {
                let done = match decision {
                    Decision::Approve => "approved",
                    Decision::Deny => "denied",
                };
                return Ok(Redirect::to(&format!("/approvals/{id}?done={done}")).into_response());
            }
            Err(e) => refusal(e)?,
        }
    };
    let (status, message) = refused;
    // The page as it is now (someone else may have decided), with the reason and the comment.
    let loaded = load(&state, m.org, id).await?;
    let draft = f.comment.chars().take(2000).collect();
    let page = detail(&m, loaded, draft, vec![message], None);
    Ok((status, render(&page)).into_response())
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Result<Response> {
    decide_from_web(state, m, id, Decision::Approve, f).await
}

pub(crate) async fn deny(
    State(state): State<AppState>,
    m: Member<PolicyManager>,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Result<Response> {
    decide_from_web(state, m, id, Decision::Deny, f).await
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn times_are_told_relative_to_now() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(relative(now + Duration::minutes(14), now), "in 14 min");
        assert_eq!(relative(now + Duration::seconds(20), now), "in 1 min");
        assert_eq!(relative(now - Duration::hours(3), now), "3 h ago");
        assert_eq!(relative(now + Duration::days(3), now), "in 3 days");
    }

    #[test]
    fn the_queue_has_two_tabs() {
        assert_eq!(filter_of(None), Some(ApprovalFilter::Pending));
        assert_eq!(filter_of(Some("pending")), Some(ApprovalFilter::Pending));
        assert_eq!(filter_of(Some("decided")), Some(ApprovalFilter::Decided));
        assert_eq!(filter_of(Some("all")), None);
    }
}

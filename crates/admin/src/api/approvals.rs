//! Human approvals: the queue (pending or decided, keyset pages), one approval, approve and deny
//! with a comment (policy managers), and the organisation's webhook for new approvals (admins;
//! its signing secret is returned once, by the `PUT` that makes it).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::approval::{Approval, ApprovalCursor, ApprovalStatus, ApprovalWebhook, Decision};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::api::auth::ApiKey;
use crate::api::problem::{ApiResult, Kind, Problem};
use crate::api::{ApiJson, ApiQuery, secret};
use crate::auth::{Admin, PolicyManager, Viewer};
use crate::pages::approvals::{PAGE_SIZE, approval_id, decide, filter_of};
use crate::pages::webhook::{check_url, current, new_secret};

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatusName {
    /// Waiting for a decision.
    Pending,
    /// Approved; the call goes through once (held, or retried before `expires_at`).
    Approved,
    /// Denied; the agent was told the comment.
    Denied,
    /// Nobody decided in time, or the approved call was not retried in time.
    Expired,
    /// Approved, and the call went through.
    Consumed,
}

impl From<ApprovalStatus> for StatusName {
    fn from(s: ApprovalStatus) -> Self {
        match s {
            ApprovalStatus::Pending => StatusName::Pending,
            ApprovalStatus::Approved => StatusName::Approved,
            ApprovalStatus::Denied => StatusName::Denied,
            ApprovalStatus::Expired => StatusName::Expired,
            ApprovalStatus::Consumed => StatusName::Consumed,
        }
    }
}

/// A `tools/call` held for a human, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApprovalOut {
    id: Uuid,
    server_id: Uuid,
    grant_id: Uuid,
    /// The grant's identity.
    identity: String,
    grant_label: String,
    tool: String,
    /// The call's arguments as the gateway stored them, secret-looking values redacted.
    #[schema(value_type = Object)]
    arguments: Value,
    /// The gateway request that opened it (its audit event carries the same id).
    request_id: String,
    /// The MCP session the call came in, when it had one.
    session_id: Option<String>,
    status: StatusName,
    /// The person who decided; absent for an API key, the command line or a deleted account.
    decided_by: Option<Uuid>,
    decided_by_email: Option<String>,
    /// `web`, `api` or `cli`.
    decided_via: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    decided_at: Option<OffsetDateTime>,
    comment: Option<String>,
    /// Pending: when it expires undecided. Approved: by when the call must be retried.
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    /// When the approved call went through.
    #[serde(with = "time::serde::rfc3339::option")]
    consumed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

fn approval_out(a: Approval) -> ApprovalOut {
    ApprovalOut {
        id: a.approval_id.as_uuid(),
        server_id: a.server_id.as_uuid(),
        grant_id: a.grant_id.as_uuid(),
        identity: a.identity,
        grant_label: a.grant_label,
        tool: a.tool_name,
        arguments: a.arguments,
        request_id: a.request_id,
        session_id: a.session_id,
        status: a.status.into(),
        decided_by: a.decided_by.map(|u| u.as_uuid()),
        decided_by_email: a.decided_by_email,
        decided_via: a.decided_via,
        decided_at: a.decided_at,
        comment: a.comment,
        expires_at: a.expires_at,
        consumed_at: a.consumed_at,
        created_at: a.created_at,
    }
}

/// Which approvals and where the page starts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueueParams {
    /// `pending` (the default: waiting and not expired) or `decided` (everything else).
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of approvals, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApprovalPageOut {
    approvals: Vec<ApprovalOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

/// The organisation's pending or decided approvals, newest first, 25 a page.
#[utoipa::path(get, path = "/approvals", tag = "approvals", security(("api_key" = ["viewer"])),
    params(QueueParams),
    responses((status = 200, body = ApprovalPageOut)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    ApiQuery(q): ApiQuery<QueueParams>,
) -> ApiResult<Json<ApprovalPageOut>> {
    let filter = filter_of(q.status.as_deref())
        .ok_or_else(|| Problem::invalid("status must be `pending` or `decided`"))?;
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::parse::<ApprovalCursor>)
        .transpose()
        .map_err(|_| Problem::invalid("cursor is not the next_cursor of a previous page"))?;
    let mut tx = state.store.begin(key.org).await?;
    let page = store::approval::list_approvals(&mut tx, filter, cursor, PAGE_SIZE).await?;
    tx.commit().await?;
    Ok(Json(ApprovalPageOut {
        approvals: page.approvals.into_iter().map(approval_out).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// One approval.
#[utoipa::path(get, path = "/approvals/{approval}", tag = "approvals", security(("api_key" = ["viewer"])),
    params(("approval" = Uuid, Path)),
    responses((status = 200, body = ApprovalOut)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalOut>> {
    let id = approval_id(&id)?;
    let mut tx = state.store.begin(key.org).await?;
    let a = store::approval::approval_by_id(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(approval_out(a)))
}

/// A decision's comment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DecisionIn {
    /// At most 2,000 characters. Optional to approve; required to deny (the agent is told it).
    comment: Option<String>,
}

async fn decide_by_key<R>(
    state: &AppState,
    key: &ApiKey<R>,
    id: &str,
    decision: Decision,
    comment: Option<&str>,
) -> ApiResult<Json<ApprovalOut>> {
    let id = approval_id(id)?;
    let a = decide(state, key.org, key.actor(), id, decision, comment).await?;
    Ok(Json(approval_out(a)))
}

/// Approves a pending approval: the held call goes through (or the agent's next identical call
/// does, once, before `expires_at`). An approval already decided or expired is a 409.
#[utoipa::path(post, path = "/approvals/{approval}/approve", tag = "approvals",
    security(("api_key" = ["policy_manager"])),
    params(("approval" = Uuid, Path)),
    request_body = DecisionIn,
    responses((status = 200, body = ApprovalOut),
              (status = 409, description = "Already decided, or expired.", body = Problem,
               content_type = "application/problem+json")))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    key: ApiKey<PolicyManager>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionIn>,
) -> ApiResult<Json<ApprovalOut>> {
    decide_by_key(
        &state,
        &key,
        &id,
        Decision::Approve,
        body.comment.as_deref(),
    )
    .await
}

/// Denies a pending approval with a comment (required): the agent is told it. An approval
/// already decided or expired is a 409.
#[utoipa::path(post, path = "/approvals/{approval}/deny", tag = "approvals",
    security(("api_key" = ["policy_manager"])),
    params(("approval" = Uuid, Path)),
    request_body = DecisionIn,
    responses((status = 200, body = ApprovalOut),
              (status = 409, description = "Already decided, or expired.", body = Problem,
               content_type = "application/problem+json")))]
pub(crate) async fn deny(
    State(state): State<AppState>,
    key: ApiKey<PolicyManager>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionIn>,
) -> ApiResult<Json<ApprovalOut>> {
    if body.comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
        return Err(Problem::invalid(
            "comment is required to deny: the agent is told it",
        ));
    }
    decide_by_key(&state, &key, &id, Decision::Deny, body.comment.as_deref()).await
}

/// Where new approvals are announced (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookOut {
    url: String,
    enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<ApprovalWebhook> for WebhookOut {
    fn from(w: ApprovalWebhook) -> Self {
        WebhookOut {
            url: w.url,
            enabled: w.enabled,
            updated_at: w.updated_at,
        }
    }
}

/// The organisation's webhook, if it has one.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookStateOut {
    /// Absent (null) when no webhook is set.
    webhook: Option<WebhookOut>,
}

/// The organisation's webhook for new approvals, without its secret.
#[utoipa::path(get, path = "/approval-webhook", tag = "approvals", security(("api_key" = ["admin"])),
    responses((status = 200, body = WebhookStateOut)))]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
) -> ApiResult<Json<WebhookStateOut>> {
    Ok(Json(WebhookStateOut {
        webhook: current(&state, key.org).await?.map(WebhookOut::from),
    }))
}

/// Where to announce new approvals.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookIn {
    /// An `https://` (or `http://`) URL, at most 2,000 characters, without credentials.
    url: String,
}

/// The webhook just set, and its signing secret (returned only here).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookSetOut {
    webhook: WebhookOut,
    /// `whsec_` and 43 characters. Each delivery carries `Gatehouse-Signature: t=<unix
    /// seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with this whole text as UTF-8.
    secret: String,
}

/// Sets (or replaces) the webhook, with a new signing secret returned once: each new approval
/// is then `POST`ed to the URL as `{"type": "approval.created", "organisation_id", "approval"}`,
/// signed, and retried with backoff until answered with a 2xx status. Replacing it ends the old
/// secret at once.
#[utoipa::path(put, path = "/approval-webhook", tag = "approvals", security(("api_key" = ["admin"])),
    request_body = WebhookIn,
    responses((status = 200, body = WebhookSetOut)))]
pub(crate) async fn set_webhook(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    ApiJson(body): ApiJson<WebhookIn>,
) -> ApiResult<Response> {
    let url = body.url.trim();
    check_url(url).map_err(Problem::invalid)?;
    let secret_text = new_secret();
    let mut tx = state.store.begin(key.org).await?;
    let webhook =
        store::approval::set_approval_webhook(&mut tx, key.actor(), url, &secret_text, true)
            .await?;
    tx.commit().await?;
    Ok(secret(
        StatusCode::OK,
        WebhookSetOut {
            webhook: webhook.into(),
            secret: secret_text.expose().clone(),
        },
    ))
}

/// Removes the webhook: new approvals are no longer announced. 404 when none is set.
#[utoipa::path(delete, path = "/approval-webhook", tag = "approvals", security(("api_key" = ["admin"])),
    responses((status = 204, description = "Removed."),
              (status = 404, description = "No webhook is set.", body = Problem,
               content_type = "application/problem+json")))]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin(key.org).await?;
    let removed = store::approval::delete_approval_webhook(&mut tx, key.actor()).await?;
    tx.commit().await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(Kind::NotFound, "No webhook is set."))
    }
}

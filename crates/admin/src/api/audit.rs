//! The audit log (query by keyset pages, export as CSV or JSON Lines streamed) and the admin events.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::OrgTx;
use store::audit::{AuditCursor, AuditDecision, AuditEvent, AuditFilter};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::api::ApiQuery;
use crate::api::auth::ApiKey;
use crate::api::problem::{ApiResult, Problem};
use crate::auth::{Admin, Viewer};

/// The longest free-text filter accepted (as on the audit page).
const MAX_FILTER_CHARS: usize = 200;
/// Events per page when `limit` is not given.
const DEFAULT_LIMIT: i64 = 50;

/// The audit viewer's filters. Every one narrows the result.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FilterParams {
    /// Events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    from: Option<OffsetDateTime>,
    /// Events before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    #[serde(default, with = "time::serde::rfc3339::option")]
    to: Option<OffsetDateTime>,
    server: Option<Uuid>,
    grant: Option<Uuid>,
    identity: Option<String>,
    tool: Option<String>,
    /// `allow`, `deny`, `hidden`, `rate_limited`, `approval_pending`, `approved`,
    /// `upstream_error` or `passthrough`.
    decision: Option<String>,
    /// Case-insensitive text in the event's message.
    text: Option<String>,
}

impl FilterParams {
    fn filter(self) -> ApiResult<AuditFilter> {
        let text = |name: &str, v: Option<String>| -> ApiResult<Option<String>> {
            let v = v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            if v.as_ref()
                .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
            {
                return Err(Problem::invalid(format!(
                    "{name} can have at most {MAX_FILTER_CHARS} characters"
                )));
            }
            Ok(v)
        };
        let decision = match self.decision.as_deref().filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(AuditDecision::parse(d).map_err(|_| {
                Problem::invalid(format!("decision `{d}` is not one of the decisions"))
            })?),
        };
        Ok(AuditFilter {
            from: self.from,
            to: self.to,
            server: self.server.map(store::ServerId::from_uuid),
            grant: self.grant.map(store::GrantId::from_uuid),
            identity: text("identity", self.identity)?,
            tool: text("tool", self.tool)?,
            decision,
            text: text("text", self.text)?,
        })
    }
}

/// Where to continue and how much to return.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Events per page, 1 to 500 (default 50).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

/// The query of [`events`]: filters and page.
#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(flatten)]
    filter: FilterParams,
    #[serde(flatten)]
    page: PageParams,
}

/// One audit event, as stored, with its place in the organisation's hash chain.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEventOut {
    audit_event_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    sequence: i64,
    server_id: Uuid,
    grant_id: Uuid,
    identity: String,
    session_id: Option<String>,
    method: String,
    tool_name: Option<String>,
    /// Argument keys, and values where the policy records them (secrets redacted).
    #[schema(value_type = Object)]
    arguments: Value,
    decision: String,
    /// The rule that decided, as a JSON Pointer into the policy.
    rule: Option<String>,
    message: Option<String>,
    policy_version: Option<i32>,
    upstream_status: Option<i32>,
    is_error: Option<bool>,
    latency_us: Option<i64>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    prev_hash: String,
    hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn event_out(e: AuditEvent) -> AuditEventOut {
    let (sequence, prev_hash, hash) = (e.sequence, hex(&e.prev_hash), hex(&e.hash));
    let e = e.event;
    AuditEventOut {
        audit_event_id: e.audit_event_id.as_uuid(),
        occurred_at: e.occurred_at,
        sequence,
        server_id: e.server_id.as_uuid(),
        grant_id: e.grant_id.as_uuid(),
        identity: e.identity,
        session_id: e.session_id,
        method: e.method,
        tool_name: e.tool_name,
        arguments: e.arguments,
        decision: e.decision.as_str().to_owned(),
        rule: e.rule,
        message: e.message,
        policy_version: e.policy_version,
        upstream_status: e.upstream_status,
        is_error: e.is_error,
        latency_us: e.latency_us,
        client_addr: e.client_addr.map(|a| a.to_string()),
        user_agent: e.user_agent,
        prev_hash,
        hash,
    }
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPageOut {
    events: Vec<AuditEventOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next_cursor: Option<String>,
}

/// The organisation's audit events matching the filters, newest first, a keyset page at a time.
#[utoipa::path(get, path = "/audit/events", tag = "audit", security(("api_key" = ["viewer"])),
    params(FilterParams, PageParams),
    responses((status = 200, body = AuditPageOut)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Json<AuditPageOut>> {
    let filter = q.filter.filter()?;
    let cursor = q
        .page
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(AuditCursor::decode)
        .transpose()
        .map_err(|_| Problem::invalid("cursor is not the next_cursor of a previous page"))?;
    // Read by hand: a flattened query struct sees every value as text.
    let limit = match q.page.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l.parse().unwrap_or(0),
    };
    if !(1..=store::audit::MAX_PAGE_SIZE).contains(&limit) {
        return Err(Problem::invalid(format!(
            "limit must be 1 to {}",
            store::audit::MAX_PAGE_SIZE
        )));
    }
    let mut tx = state.store.begin(key.org).await?;
    let page = store::audit::audit_page(&mut tx, &filter, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(AuditPageOut {
        events: page.events.into_iter().map(event_out).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

/// The export's format.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FormatParams {
    /// `csv` or `jsonl`.
    format: ExportFormat,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportQuery {
    #[serde(flatten)]
    filter: FilterParams,
    #[serde(flatten)]
    format: FormatParams,
}

/// Where a streamed export stands between pages.
struct ExportCursor {
    tx: Option<OrgTx>,
    after: Option<AuditCursor>,
    format: audit::export::Format,
    filter: AuditFilter,
    header_sent: bool,
}

/// Every event matching the filters, oldest first, as CSV or JSON Lines. The body is streamed a
/// page at a time from one read-only transaction, so an export of any size holds one page.
#[utoipa::path(get, path = "/audit/export", tag = "audit", security(("api_key" = ["viewer"])),
    params(FilterParams, FormatParams),
    responses((status = 200, description = "The events, streamed.",
               content((String = "text/csv"), (String = "application/jsonl")))))]
pub(crate) async fn export(
    State(state): State<AppState>,
    key: ApiKey<Viewer>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let filter = q.filter.filter()?;
    let (format, content_type, extension) = match q.format.format {
        ExportFormat::Csv => (audit::export::Format::Csv, "text/csv; charset=utf-8", "csv"),
        ExportFormat::Jsonl => (
            audit::export::Format::JsonLines,
            "application/jsonl",
            "jsonl",
        ),
    };
    let tx = state.store.begin(key.org).await?;
    let start = ExportCursor {
        tx: Some(tx),
        after: None,
        format,
        filter,
        header_sent: false,
    };
    let body = stream::unfold(start, next_chunk);
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"gatehouse-audit.{extension}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The next piece of an export: the CSV header first, then one page of events at a time.
async fn next_chunk(
    mut cursor: ExportCursor,
) -> Option<(Result<Vec<u8>, std::io::Error>, ExportCursor)> {
    if !cursor.header_sent {
        cursor.header_sent = true;
        if let audit::export::Format::Csv = cursor.format {
            let mut out = Vec::new();
            let written = audit::export::write_header(&mut out, cursor.format).map(|()| out);
            return Some((written, cursor));
        }
    }
    let mut tx = cursor.tx.take()?;
    let page = match store::audit::audit_export_page(
        &mut tx,
        &cursor.filter,
        cursor.after,
        audit::export::PAGE,
    )
    .await
    {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = ?e, "audit export failed");
            return Some((Err(std::io::Error::other("the export failed")), cursor));
        }
    };
    let Some(last) = page.last() else {
        // Read-only: ending the transaction either way changes nothing.
        let _ = tx.rollback().await;
        return None;
    };
    cursor.after = Some(AuditCursor {
        occurred_at: last.event.occurred_at,
        audit_event_id: last.event.audit_event_id.as_uuid(),
    });
    let mut out = Vec::new();
    for event in &page {
        if let Err(e) = audit::export::write_event(&mut out, event, cursor.format) {
            return Some((Err(e), cursor));
        }
    }
    if page.len() as i64 == audit::export::PAGE {
        cursor.tx = Some(tx);
    } else {
        let _ = tx.rollback().await;
    }
    Some((Ok(out), cursor))
}

/// One change made in the control plane.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminEventOut {
    sequence: i64,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    /// `user`, `api_key` or `cli`.
    actor: String,
    /// The email of the person who made the change, when a person did.
    actor_email: Option<String>,
    /// A dotted verb: `server.create`, `policy.publish`, `grant.revoke`, `api_key.mint`, …
    action: String,
    target_id: Option<Uuid>,
    #[schema(value_type = Object)]
    details: Value,
}

/// A page of admin events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdminEventsOut {
    events: Vec<AdminEventOut>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    next_before: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AdminEventsParams {
    /// Only events with a smaller sequence number.
    before: Option<i64>,
    /// Events per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Who changed what in the control plane, newest first.
#[utoipa::path(get, path = "/admin-events", tag = "admin events", security(("api_key" = ["admin"])),
    params(AdminEventsParams),
    responses((status = 200, body = AdminEventsOut)))]
pub(crate) async fn admin_events(
    State(state): State<AppState>,
    key: ApiKey<Admin>,
    ApiQuery(q): ApiQuery<AdminEventsParams>,
) -> ApiResult<Json<AdminEventsOut>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=500).contains(&limit) {
        return Err(Problem::invalid("limit must be 1 to 500"));
    }
    let mut tx = state.store.begin(key.org).await?;
    let events = store::admin::list_admin_events(&mut tx, q.before, limit).await?;
    tx.commit().await?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.sequence))
        .flatten();
    Ok(Json(AdminEventsOut {
        events: events
            .into_iter()
            .map(|e| AdminEventOut {
                sequence: e.sequence,
                occurred_at: e.occurred_at,
                actor: e.actor_label,
                actor_email: e.actor_email,
                action: e.action,
                target_id: e.target_id,
                details: e.details,
            })
            .collect(),
        next_before,
    }))
}

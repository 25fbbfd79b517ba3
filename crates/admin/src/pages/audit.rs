//! The audit log: filters and keyset pagination over `store::audit::audit_page`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::audit::{AuditCursor, AuditDecision, AuditFilter};
use time::{Duration, OffsetDateTime};

use crate::AppState;
use crate::auth::{Member, Viewer};
use crate::error::Result;
use crate::views::{AuditPageView, Choice, EventRow, Page, render};

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// The longest free-text filter accepted.
const MAX_FILTER_CHARS: usize = 200;

const PERIODS: [(&str, &str, Option<i64>); 5] = [
    ("1h", "last hour", Some(3600)),
    ("24h", "last 24 hours", Some(86_400)),
    ("7d", "last 7 days", Some(7 * 86_400)),
    ("30d", "last 30 days", Some(30 * 86_400)),
    ("all", "all time", None),
];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    period: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    tool: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    cursor: String,
}

fn text_filter(name: &str, value: &str, errors: &mut Vec<String>) -> Option<String> {
    let value = value.trim();
    if value.chars().count() > MAX_FILTER_CHARS {
        errors.push(format!(
            "The {name} filter can have at most {MAX_FILTER_CHARS} characters."
        ));
        return None;
    }
    Some(value.to_owned()).filter(|v| !v.is_empty())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let mut errors = Vec::new();
    let period = PERIODS
        .iter()
        .find(|(v, _, _)| *v == q.period)
        .unwrap_or(&PERIODS[2]);
    let decision = match q.decision.as_str() {
        "" => None,
        d => match AuditDecision::parse(d) {
            Ok(d) => Some(d),
            Err(_) => {
                errors.push("Choose a decision from the list.".into());
                None
            }
        },
    };
    let server = match q.server.as_str() {
        "" => None,
        s => match s.parse() {
            Ok(s) => Some(s),
            Err(_) => {
                errors.push("Choose a server from the list.".into());
                None
            }
        },
    };
    let cursor = match q.cursor.as_str() {
        "" => None,
        c => match AuditCursor::decode(c) {
            Ok(c) => Some(c),
            Err(_) => {
                errors.push("That page link is not valid; showing the newest events.".into());
                None
            }
        },
    };
    let filter = AuditFilter {
        from: period
            .2
            .map(|secs| OffsetDateTime::now_utc() - Duration::seconds(secs)),
        to: None,
        server,
        grant: None,
        identity: text_filter("identity", &q.identity, &mut errors),
        tool: text_filter("tool", &q.tool, &mut errors),
        decision,
        text: text_filter("message", &q.text, &mut errors),
    };
    let mut tx = state.store.begin(m.org).await?;
    let servers = store::server::list_servers(&mut tx).await?;
    let page = store::audit::audit_page(&mut tx, &filter, cursor, PAGE_SIZE).await?;
    tx.commit().await?;
    let server_name = |id: store::ServerId| {
        servers
            .iter()
            .find(|s| s.server_id == id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    };
    let next = page.next.map(|c| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("period", period.0)
            .append_pair("server", &q.server)
            .append_pair("decision", &q.decision)
            .append_pair("identity", filter.identity.as_deref().unwrap_or_default())
            .append_pair("tool", filter.tool.as_deref().unwrap_or_default())
            .append_pair("text", filter.text.as_deref().unwrap_or_default())
            .append_pair("cursor", &c.encode())
            .finish()
    });
    let view = AuditPageView {
        page: Page::member("Audit log", "audit", &m),
        periods: PERIODS
            .iter()
            .map(|(v, label, _)| Choice {
                value: (*v).to_owned(),
                label: (*label).to_owned(),
                selected: *v == period.0,
            })
            .collect(),
        decisions: AuditDecision::ALL
            .iter()
            .map(|d| Choice {
                value: d.as_str().to_owned(),
                label: d.as_str().replace('_', " "),
                selected: Some(*d) == decision,
            })
            .collect(),
        servers: servers
            .iter()
            .map(|s| Choice {
                value: s.server_id.to_string(),
                label: s.name.clone(),
                selected: Some(s.server_id) == server,
            })
            .collect(),
        identity: filter.identity.clone().unwrap_or_default(),
        tool: filter.tool.clone().unwrap_or_default(),
        text: filter.text.clone().unwrap_or_default(),
        events: page
            .events
            .into_iter()
            .map(|e| {
                let e = e.event;
                EventRow {
                    when: when_precise(e.occurred_at),
                    server: server_name(e.server_id),
                    identity: e.identity,
                    method: e.method,
                    tool: e.tool_name.unwrap_or_default(),
                    decision: e.decision.as_str(),
                    rule: e.rule.unwrap_or_default(),
                    message: e.message.unwrap_or_default(),
                    latency: e
                        .latency_us
                        .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
                        .unwrap_or_default(),
                    upstream_status: e.upstream_status.map(|s| s.to_string()).unwrap_or_default(),
                }
            })
            .collect(),
        next,
        errors,
    };
    let status = if view.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, render(&view)).into_response())
}

/// An event's time to the second, UTC.
fn when_precise(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

//! The audit log: filters (time range, server, grant, identity, tool, decision, text), keyset
//! pagination over `store::audit::audit_page`, the calls-per-hour chart, and the live tail.
//!
//! Every view of the log (this page, its chart, the tail, the export) reads the same query
//! string through [`Filters::parse`], so a link or a download always means what the page shows.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use store::audit::{AuditCursor, AuditDecision, AuditEvent, AuditFilter};
use store::{GrantId, ServerId};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::AppState;
use crate::auth::{Member, Viewer};
use crate::error::{Error, Result};
use crate::pages::audit_chart::{self, ChartView};
use crate::views::{Page, render};

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// The most rows one poll of the live tail returns.
const TAIL_SIZE: i64 = 100;
/// The longest free-text filter accepted.
const MAX_FILTER_CHARS: usize = 200;

pub(crate) const PERIODS: [(&str, &str, Option<i64>); 5] = [
    ("1h", "last hour", Some(3600)),
    ("24h", "last 24 hours", Some(86_400)),
    ("7d", "last 7 days", Some(7 * 86_400)),
    ("30d", "last 30 days", Some(30 * 86_400)),
    ("all", "all time", None),
];
/// The period when none is chosen.
const DEFAULT_PERIOD: usize = 2;

/// The audit log's query string, as forms and links send it.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    period: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    grant: String,
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

/// The filters of a request, checked, with every problem named.
#[derive(Debug)]
pub(crate) struct Filters {
    pub(crate) filter: AuditFilter,
    /// A period's value (`7d`) or `custom` when from/to are given.
    pub(crate) period: &'static str,
    /// What the form shows again (normalised).
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) server: String,
    pub(crate) grant: String,
    pub(crate) decision: String,
    pub(crate) cursor: Option<AuditCursor>,
    pub(crate) errors: Vec<String>,
    /// When the request was read: the end of "last N hours".
    pub(crate) now: OffsetDateTime,
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

/// A time as the form's `datetime-local` fields send it, read as UTC.
fn parse_time(name: &str, value: &str, errors: &mut Vec<String>) -> Option<OffsetDateTime> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
    ];
    let parsed = formats
        .iter()
        .find_map(|f| PrimitiveDateTime::parse(value, f).ok())
        .or_else(|| {
            time::Date::parse(value, format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|d| d.midnight())
        });
    match parsed {
        Some(t) => Some(t.assume_utc()),
        None => {
            errors.push(format!(
                "The “{name}” time must look like 2026-05-01T14:00 (UTC)."
            ));
            None
        }
    }
}

/// A time as the form's `datetime-local` fields show it.
fn form_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

impl Filters {
    pub(crate) fn parse(q: &AuditQuery) -> Filters {
        let now = OffsetDateTime::now_utc();
        let mut errors = Vec::new();
        let from = parse_time("from", &q.from, &mut errors);
        let to = parse_time("to", &q.to, &mut errors);
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            errors.push("The “from” time must be before the “to” time.".into());
        }
        let custom = from.is_some() || to.is_some();
        let period = if custom {
            None
        } else {
            Some(
                PERIODS
                    .iter()
                    .find(|(v, _, _)| *v == q.period)
                    .unwrap_or(&PERIODS[DEFAULT_PERIOD]),
            )
        };
        let (from, to) = match period {
            Some((_, _, secs)) => (secs.map(|s| now - Duration::seconds(s)), None),
            None => (from, to),
        };
        let decision = match q.decision.trim() {
            "" => None,
            d => match AuditDecision::parse(d) {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.push("Choose a decision from the list.".into());
                    None
                }
            },
        };
        let server: Option<ServerId> = match q.server.trim() {
            "" => None,
            s => match s.parse() {
                Ok(s) => Some(s),
                Err(_) => {
                    errors.push("Choose a server from the list.".into());
                    None
                }
            },
        };
        let grant: Option<GrantId> = match q.grant.trim() {
            "" => None,
            g => match g.parse() {
                Ok(g) => Some(g),
                Err(_) => {
                    errors.push("Choose a grant from the list.".into());
                    None
                }
            },
        };
        let cursor = match q.cursor.trim() {
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
            from,
            to,
            server,
            grant,
            identity: text_filter("identity", &q.identity, &mut errors),
            tool: text_filter("tool", &q.tool, &mut errors),
            decision,
            text: text_filter("message", &q.text, &mut errors),
        };
        Filters {
            period: period.map_or("custom", |p| p.0),
            from: if custom {
                filter.from.map(form_time).unwrap_or_default()
            } else {
                String::new()
            },
            to: if custom {
                filter.to.map(form_time).unwrap_or_default()
            } else {
                String::new()
            },
            server: server.map(|s| s.to_string()).unwrap_or_default(),
            grant: grant.map(|g| g.to_string()).unwrap_or_default(),
            decision: decision.map(|d| d.as_str().to_owned()).unwrap_or_default(),
            filter,
            cursor,
            errors,
            now,
        }
    }

    /// The query string of these filters (without the page cursor), for links and downloads.
    pub(crate) fn query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if self.period == "custom" {
            s.append_pair("from", &self.from)
                .append_pair("to", &self.to);
        } else {
            s.append_pair("period", self.period);
        }
        for (k, v) in [
            ("server", self.server.as_str()),
            ("grant", &self.grant),
            ("decision", &self.decision),
            (
                "identity",
                self.filter.identity.as_deref().unwrap_or_default(),
            ),
            ("tool", self.filter.tool.as_deref().unwrap_or_default()),
            ("text", self.filter.text.as_deref().unwrap_or_default()),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }

    /// The time range the chart covers: the filter's, or the last 30 days for "all time".
    fn chart_range(&self) -> (OffsetDateTime, OffsetDateTime) {
        let to = self.filter.to.unwrap_or(self.now);
        let from = self
            .filter
            .from
            .unwrap_or(to - Duration::days(audit_chart::ALL_TIME_DAYS));
        (from, to)
    }
}

/// A choice in a filter's drop-down.
#[derive(Debug)]
pub(crate) struct Choice {
    pub(crate) value: String,
    pub(crate) label: String,
    pub(crate) selected: bool,
}

/// One event in the table.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub(crate) href: String,
    pub(crate) when: String,
    pub(crate) server: String,
    pub(crate) identity: String,
    pub(crate) method: String,
    pub(crate) tool: String,
    pub(crate) decision: &'static str,
    pub(crate) decision_label: String,
    pub(crate) rule: String,
    pub(crate) message: String,
    pub(crate) latency: String,
    pub(crate) upstream_status: String,
}

/// The href of an event's detail page.
pub(crate) fn event_href(e: &AuditEvent) -> String {
    format!(
        "/audit/events/{}?at={}",
        e.event.audit_event_id,
        e.event.occurred_at.unix_timestamp_nanos() / 1_000
    )
}

/// An event's time to the second, UTC.
pub(crate) fn when_precise(t: OffsetDateTime) -> String {
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

pub(crate) fn latency_text(us: Option<i64>) -> String {
    us.map(|us| format!("{:.1} ms", us as f64 / 1000.0))
        .unwrap_or_default()
}

fn event_row(e: &AuditEvent, server_name: &dyn Fn(ServerId) -> String) -> EventRow {
    let href = event_href(e);
    let e = &e.event;
    EventRow {
        href,
        when: when_precise(e.occurred_at),
        server: server_name(e.server_id),
        identity: e.identity.clone(),
        method: e.method.clone(),
        tool: e.tool_name.clone().unwrap_or_default(),
        decision: e.decision.as_str(),
        decision_label: e.decision.as_str().replace('_', " "),
        rule: e.rule.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        latency: latency_text(e.latency_us),
        upstream_status: e.upstream_status.map(|s| s.to_string()).unwrap_or_default(),
    }
}

#[derive(askama::Template)]
#[template(path = "audit.html")]
pub(crate) struct AuditPageView {
    pub(crate) page: Page,
    pub(crate) periods: Vec<Choice>,
    pub(crate) custom: bool,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) servers: Vec<Choice>,
    pub(crate) grants: Vec<Choice>,
    pub(crate) decisions: Vec<Choice>,
    pub(crate) identity: String,
    pub(crate) tool: String,
    pub(crate) text: String,
    pub(crate) events: Vec<EventRow>,
    /// The filters as a query string (no cursor): refresh, export, tail.
    pub(crate) query: String,
    /// The query string of the next (older) page, when there is one.
    pub(crate) next: Option<String>,
    /// Whether this is a later page (the tail runs on the first page only).
    pub(crate) paged: bool,
    /// The highest chain position shown: the live tail asks for what came after it.
    pub(crate) after: i64,
    pub(crate) chart: ChartView,
    pub(crate) errors: Vec<String>,
}

#[derive(askama::Template)]
#[template(path = "audit_rows.html")]
struct RowsFragment<'a> {
    events: &'a [EventRow],
}

/// Names of the organisation's servers, and its grants as filter choices.
async fn servers_and_grants(
    tx: &mut store::OrgTx,
) -> Result<(Vec<store::server::Server>, Vec<(GrantId, String)>)> {
    let servers = store::server::list_servers(tx).await?;
    let mut grants = Vec::new();
    for s in &servers {
        for g in store::grant::list_grants(tx, s.server_id).await? {
            let label = if g.label == g.identity {
                format!("{} ({})", g.label, s.name)
            } else {
                format!("{} · {} ({})", g.identity, g.label, s.name)
            };
            grants.push((g.grant_id, label));
        }
    }
    grants.sort_by(|a, b| a.1.cmp(&b.1));
    Ok((servers, grants))
}

fn namer(servers: &[store::server::Server]) -> impl Fn(ServerId) -> String + '_ {
    move |id| {
        servers
            .iter()
            .find(|s| s.server_id == id)
            .map_or_else(|| id.to_string(), |s| s.name.clone())
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let f = Filters::parse(&q);
    let (chart_from, chart_to) = f.chart_range();
    let mut tx = state.store.begin(m.org).await?;
    let (servers, grants) = servers_and_grants(&mut tx).await?;
    let page = store::audit::audit_page(&mut tx, &f.filter, f.cursor, PAGE_SIZE).await?;
    let counts = store::audit::audit_hourly_counts(
        &mut tx,
        audit_chart::chart_start(chart_from, chart_to),
        chart_to,
        &f.filter,
    )
    .await?;
    tx.commit().await?;
    let name = namer(&servers);
    let query = f.query();
    let next = page.next.map(|c| format!("{query}&cursor={}", c.encode()));
    let view = AuditPageView {
        page: Page::member("Audit log", "audit", &m),
        periods: PERIODS
            .iter()
            .map(|(v, label, _)| Choice {
                value: (*v).to_owned(),
                label: (*label).to_owned(),
                selected: *v == f.period,
            })
            .collect(),
        custom: f.period == "custom",
        from: f.from.clone(),
        to: f.to.clone(),
        decisions: AuditDecision::ALL
            .iter()
            .map(|d| Choice {
                value: d.as_str().to_owned(),
                label: d.as_str().replace('_', " "),
                selected: Some(*d) == f.filter.decision,
            })
            .collect(),
        servers: servers
            .iter()
            .map(|s| Choice {
                value: s.server_id.to_string(),
                label: s.name.clone(),
                selected: Some(s.server_id) == f.filter.server,
            })
            .collect(),
        grants: grants
            .into_iter()
            .map(|(id, label)| Choice {
                selected: Some(id) == f.filter.grant,
                value: id.to_string(),
                label,
            })
            .collect(),
        identity: f.filter.identity.clone().unwrap_or_default(),
        tool: f.filter.tool.clone().unwrap_or_default(),
        text: f.filter.text.clone().unwrap_or_default(),
        after: page.events.iter().map(|e| e.sequence).max().unwrap_or(0),
        events: page.events.iter().map(|e| event_row(e, &name)).collect(),
        paged: f.cursor.is_some(),
        next,
        chart: audit_chart::chart(&counts, chart_from, chart_to, f.period == "all"),
        query,
        errors: f.errors,
    };
    let status = if view.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, render(&view)).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct TailQuery {
    #[serde(flatten)]
    q: AuditQuery,
    #[serde(default)]
    after: String,
}

/// What one poll of the live tail answers.
#[derive(Debug, Serialize)]
struct Tail {
    /// Table rows of the new events, newest first.
    html: String,
    count: usize,
    /// Ask for what comes after this next time.
    after: i64,
}

/// The live tail: events matching the filters stored after chain position `after`, as table
/// rows, for the page's script to prepend (polled; the page without JavaScript has a refresh link).
pub(crate) async fn tail(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(t): Query<TailQuery>,
) -> Result<Response> {
    let f = Filters::parse(&t.q);
    if let Some(e) = f.errors.first() {
        return Err(Error::Invalid(e.clone()));
    }
    let after: i64 = match t.after.trim() {
        "" => 0,
        a => a.parse().ok().filter(|a| *a >= 0).ok_or_else(|| {
            Error::Invalid("`after` must be a chain position (a whole number).".into())
        })?,
    };
    let mut tx = state.store.begin(m.org).await?;
    let servers = store::server::list_servers(&mut tx).await?;
    let events =
        store::audit::audit_events_after_sequence(&mut tx, &f.filter, after, TAIL_SIZE).await?;
    tx.commit().await?;
    let name = namer(&servers);
    let rows: Vec<EventRow> = events.iter().rev().map(|e| event_row(e, &name)).collect();
    let html = askama::Template::render(&RowsFragment { events: &rows })
        .map_err(|e| Error::Internal(anyhow::anyhow!("the tail's rows failed to render: {e}")))?;
    let answer = Tail {
        html,
        count: rows.len(),
        after: events.last().map_or(after, |e| e.sequence),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> AuditQuery {
        let s = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        serde_urlencoded_like(&s)
    }

    // The same decoding axum's Query does, through serde_json for brevity.
    fn serde_urlencoded_like(s: &str) -> AuditQuery {
        let map: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).unwrap()
    }

    #[test]
    fn a_custom_range_wins_over_the_period_and_round_trips() {
        let f = Filters::parse(&q(&[
            ("period", "1h"),
            ("from", "2026-05-01T14:00"),
            ("to", "2026-05-02"),
            ("tool", " reboot_device "),
        ]));
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.period, "custom");
        assert_eq!(
            f.filter.from,
            Some(time::macros::datetime!(2026-05-01 14:00 UTC))
        );
        assert_eq!(
            f.filter.to,
            Some(time::macros::datetime!(2026-05-02 0:00 UTC))
        );
        assert_eq!(
            f.query(),
            "from=2026-05-01T14%3A00&to=2026-05-02T00%3A00&tool=reboot_device"
        );
        let again = Filters::parse(&serde_urlencoded_like(&f.query()));
        assert_eq!(again.filter, f.filter);
    }

    #[test]
    fn bad_filters_are_named() {
        let f = Filters::parse(&q(&[
            ("from", "yesterday"),
            ("server", "x"),
            ("grant", "y"),
            ("decision", "maybe"),
        ]));
        assert_eq!(
            f.errors,
            [
                "The “from” time must look like 2026-05-01T14:00 (UTC).",
                "Choose a decision from the list.",
                "Choose a server from the list.",
                "Choose a grant from the list.",
            ]
        );
        let f = Filters::parse(&q(&[
            ("from", "2026-05-02T00:00"),
            ("to", "2026-05-01T00:00"),
        ]));
        assert_eq!(f.errors, ["The “from” time must be before the “to” time."]);
    }
}

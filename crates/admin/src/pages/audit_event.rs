//! One audit event in full (its rule linked into the policy at the version that decided it).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use store::AuditEventId;
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::{Member, Viewer};
use crate::error::{Error, Result};
use crate::pages::audit::{latency_text, when_precise};
use crate::views::{Page, render};

#[derive(askama::Template)]
#[template(path = "audit_event.html")]
pub(crate) struct EventPage {
    pub(crate) page: Page,
    pub(crate) id: String,
    pub(crate) when: String,
    pub(crate) sequence: i64,
    pub(crate) server_id: String,
    pub(crate) server: String,
    pub(crate) grant: String,
    /// The grant as its server page lists it, when it still exists.
    pub(crate) grant_label: Option<String>,
    pub(crate) identity: String,
    pub(crate) session: String,
    pub(crate) method: String,
    pub(crate) tool: String,
    pub(crate) arguments: String,
    pub(crate) decision: &'static str,
    pub(crate) decision_label: String,
    pub(crate) rule: String,
    /// The rule highlighted in the policy version that decided, when it can be found.
    pub(crate) rule_href: Option<String>,
    pub(crate) policy: String,
    pub(crate) policy_version: String,
    pub(crate) message: String,
    pub(crate) upstream_status: String,
    pub(crate) is_error: String,
    pub(crate) latency: String,
    pub(crate) client_addr: String,
    pub(crate) user_agent: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    pub(crate) identity_href: String,
    pub(crate) tool_href: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventQuery {
    /// The event's time in Unix microseconds, as the log's links carry it.
    at: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn filter_link(key: &str, value: &str) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("period", "all")
        .append_pair(key, value)
        .finish();
    format!("/audit?{q}")
}

pub(crate) async fn show(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Path(id): Path<String>,
    Query(q): Query<EventQuery>,
) -> Result<Response> {
    let id: AuditEventId = id.parse().map_err(|_| Error::NotFound)?;
    let at = match q.at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(micros) => Some(
            micros
                .parse::<i128>()
                .ok()
                .and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(us * 1_000).ok())
                .ok_or(Error::NotFound)?,
        ),
    };
    let mut tx = state.store.begin(m.org).await?;
    let stored = store::audit::audit_event(&mut tx, id, at).await?;
    let e = &stored.event;
    let server = match store::server::server_by_id(&mut tx, e.server_id).await {
        Ok(s) => Some(s),
        Err(store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let grant = match store::grant::grant_by_id(&mut tx, e.grant_id).await {
        Ok(g) => Some(g),
        Err(store::Error::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    // The policy is the grant's (a grant follows one policy); the version is the event's own.
    let policy = match &grant {
        Some(g) => match store::policy::policy_by_id(&mut tx, g.policy_id).await {
            Ok(p) => Some(p),
            Err(store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    tx.commit().await?;
    let rule_href = match (&policy, e.policy_version, &e.rule) {
        (Some(p), Some(v), Some(rule)) => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("rule", rule)
                .finish();
            Some(format!(
                "/servers/{}/policies/{}/versions/{v}?{q}#rule",
                p.server_id, p.name
            ))
        }
        _ => None,
    };
    let view = EventPage {
        page: Page::member("Audit event", "audit", &m),
        id: e.audit_event_id.to_string(),
        when: format!(
            "{}.{:06} UTC",
            when_precise(e.occurred_at),
            e.occurred_at.microsecond()
        ),
        sequence: stored.sequence,
        server_id: e.server_id.to_string(),
        server: server.map_or_else(|| e.server_id.to_string(), |s| s.name),
        grant: e.grant_id.to_string(),
        grant_label: grant.as_ref().map(|g| {
            format!(
                "{} ({}…{})",
                g.label,
                g.token_prefix,
                if g.revoked_at.is_some() {
                    ", revoked"
                } else {
                    ""
                }
            )
        }),
        identity_href: filter_link("identity", &e.identity),
        identity: e.identity.clone(),
        session: e.session_id.clone().unwrap_or_default(),
        method: e.method.clone(),
        tool_href: e
            .tool_name
            .as_deref()
            .map(|t| filter_link("tool", t))
            .unwrap_or_default(),
        tool: e.tool_name.clone().unwrap_or_default(),
        arguments: serde_json::to_string_pretty(&e.arguments).unwrap_or_default(),
        decision: e.decision.as_str(),
        decision_label: e.decision.as_str().replace('_', " "),
        rule: e.rule.clone().unwrap_or_default(),
        rule_href,
        policy: policy.map(|p| p.name).unwrap_or_default(),
        policy_version: e.policy_version.map(|v| v.to_string()).unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        upstream_status: e.upstream_status.map(|s| s.to_string()).unwrap_or_default(),
        is_error: match e.is_error {
            Some(true) => "yes".into(),
            Some(false) => "no".into(),
            None => String::new(),
        },
        latency: latency_text(e.latency_us),
        client_addr: e.client_addr.map(|a| a.to_string()).unwrap_or_default(),
        user_agent: e.user_agent.clone().unwrap_or_default(),
        prev_hash: hex(&stored.prev_hash),
        hash: hex(&stored.hash),
    };
    Ok(render(&view))
}

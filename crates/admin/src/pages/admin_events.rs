//! The admin events page: who changed what in the control plane (admins only).

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Admin, Member};
use crate::error::{Error, Result};
use crate::pages::when;
use crate::views::{AdminEventRow, AdminEventsPage, Page, render};

const PAGE_SIZE: i64 = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    before: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    m: Member<Admin>,
    Query(q): Query<EventsQuery>,
) -> Result<Response> {
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| Error::Invalid("That page link is not valid.".into()))?,
        ),
    };
    let mut tx = state.store.begin(m.org).await?;
    let events = store::admin::list_admin_events(&mut tx, before, PAGE_SIZE).await?;
    tx.commit().await?;
    let older = (events.len() as i64 == PAGE_SIZE)
        .then(|| events.last().map(|e| e.sequence))
        .flatten();
    Ok(render(&AdminEventsPage {
        page: Page::member("Admin events", "admin-events", &m),
        events: events
            .into_iter()
            .map(|e| AdminEventRow {
                sequence: e.sequence,
                when: when(e.occurred_at),
                actor: e.actor_email.unwrap_or(e.actor_label),
                action: e.action,
                target: e.target_id.map(|t| t.to_string()).unwrap_or_default(),
                details: e.details.to_string(),
            })
            .collect(),
        older,
    }))
}

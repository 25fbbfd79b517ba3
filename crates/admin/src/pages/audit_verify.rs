//! "Verify integrity": the organisation's hash chain recomputed in the background, with its
//! progress and its result explained.
//!
//! The page never reads the chain: it shows the row `store::audit_verify` keeps of the latest run
//! (one read, whatever the log's size). "Verify now" starts a run, which a task of this process
//! advances a chunk of events at a time, each chunk its own short transaction; while it runs the
//! page refreshes itself. Every run re-reads the whole chain from its first stored event, so an
//! event altered after an earlier run checked it is still found.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use store::audit::ChainProblem;
use store::audit_verify::{VERIFY_CHUNK, Verification};
use store::{OrgId, Store};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Member, Viewer};
use crate::error::Result;
use crate::pages::audit::when_precise;
use crate::views::{Page, render};

#[derive(askama::Template)]
#[template(path = "audit_verify.html")]
pub(crate) struct VerifyPage {
    pub(crate) page: Page,
    pub(crate) csrf: String,
    /// "none", "running", "stopped", "intact", "broken" or "empty".
    pub(crate) outcome: &'static str,
    pub(crate) headline: String,
    pub(crate) details: Vec<String>,
    /// The event to look at, when the problem names one.
    pub(crate) event_href: Option<String>,
    /// How far a run got: events read of those it checks, and the share in per cent.
    pub(crate) progress: Option<(i64, i64, u8)>,
    /// What the run covered and when, for a finished run.
    pub(crate) summary: Option<String>,
}

/// The latest verification as the page explains it. A read of one row, so a GET.
pub(crate) async fn page(State(state): State<AppState>, m: Member<Viewer>) -> Result<Response> {
    let mut tx = state.store.begin(m.org).await?;
    let latest = store::audit_verify::audit_verification(&mut tx).await?;
    tx.commit().await?;
    let now = OffsetDateTime::now_utc();
    let mut view = VerifyPage {
        page: Page::member("Verify the audit log", "audit", &m),
        csrf: m.csrf.clone(),
        outcome: "none",
        headline: "This log has not been verified yet.".to_owned(),
        details: Vec::new(),
        event_href: None,
        progress: None,
        summary: None,
    };
    let Some(v) = latest else {
        return Ok(render(&view));
    };
    let running = v.is_running(now);
    if v.finished_at.is_none() {
        view.progress = Some(progress(&v));
        if running {
            view.outcome = "running";
            view.headline = format!(
                "Verifying: started {} UTC, up to event #{}.",
                when_precise(v.started_at),
                v.target_sequence
            );
        } else {
            view.outcome = "stopped";
            view.headline = format!(
                "The verification started {} UTC stopped before it finished (last progress {} UTC). Start it again.",
                when_precise(v.started_at),
                when_precise(v.heartbeat_at)
            );
        }
    } else {
        explain(&v, &mut view);
    }
    let mut answer = render(&view);
    if running {
        // Browsers reload a page with this header by themselves, with or without JavaScript.
        answer
            .headers_mut()
            .insert(header::REFRESH, header::HeaderValue::from_static("2"));
    }
    Ok(answer)
}

/// Starts a verification (or finds the one running) and goes back to the page. Starting one
/// changes nothing in the log, so any member may.
pub(crate) async fn start(State(state): State<AppState>, m: Member<Viewer>) -> Result<Response> {
    let mut tx = state.store.begin(m.org).await?;
    let started = store::audit_verify::start_audit_verification(&mut tx).await?;
    tx.commit().await?;
    if started.new {
        tokio::spawn(run(state.store.clone(), m.org, started.run_id));
    }
    Ok(Redirect::to("/audit/verify").into_response())
}

/// Advances run `run_id` a chunk per transaction until it finishes or another run replaces it.
/// On an error the run stays unfinished: the page says it stopped once its heartbeat is old.
async fn run(store: Store, org: OrgId, run_id: Uuid) {
    loop {
        let step = async {
            let mut tx = store.begin(org).await?;
            let v = store::audit_verify::continue_audit_verification(&mut tx, run_id, VERIFY_CHUNK)
                .await?;
            tx.commit().await?;
            Ok::<_, store::Error>(v)
        }
        .await;
        match step {
            Ok(Some(v)) if v.finished_at.is_none() => {}
            Ok(_) => return,
            Err(e) => {
                tracing::error!(%org, %run_id, error = %e, "audit verification stopped");
                return;
            }
        }
    }
}

fn progress(v: &Verification) -> (i64, i64, u8) {
    let first = v.first_sequence.unwrap_or(1);
    let total = (v.target_sequence - first + 1).max(0);
    let done = (v.read_through - first + 1).clamp(0, total);
    let share = if total == 0 { 100 } else { done * 100 / total };
    (done, total, u8::try_from(share).unwrap_or(100))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The finished run's result in words.
fn explain(v: &Verification, view: &mut VerifyPage) {
    let checked = v.checked;
    if let Some(first) = v.first_sequence.filter(|f| *f > 1) {
        view.details.push(format!(
            "The stored chain starts at event #{first}: older events were removed by the retention setting, and where it cut is itself recorded, so that is not a break."
        ));
    }
    let event = |id: &Uuid| Some(format!("/audit/events/{id}"));
    let (outcome, headline, event_href) = match (&v.problem, checked) {
        (None, 0) => (
            "empty",
            "No events yet: there is nothing to verify.".to_owned(),
            None,
        ),
        (None, n) => (
            "intact",
            format!(
                "Intact: all {n} event{} check out, each linked to the one before by its hash.",
                plural(n)
            ),
            None,
        ),
        (
            Some(ChainProblem::Altered {
                sequence,
                audit_event_id,
            }),
            _,
        ) => (
            "broken",
            format!("Broken: event #{sequence} was changed after it was recorded."),
            event(audit_event_id),
        ),
        (
            Some(ChainProblem::Inserted {
                sequence,
                audit_event_id,
            }),
            _,
        ) => (
            "broken",
            format!(
                "Broken: at event #{sequence} the chain does not link to the event before it: an event was inserted or the chain rewritten there."
            ),
            event(audit_event_id),
        ),
        (Some(ChainProblem::Removed { from, to }), _) if from == to => (
            "broken",
            format!("Broken: event #{from} was removed."),
            None,
        ),
        (Some(ChainProblem::Removed { from, to }), _) => (
            "broken",
            format!("Broken: events #{from} to #{to} were removed."),
            None,
        ),
    };
    if outcome == "broken" {
        view.details.push(format!(
            "{checked} event{} before it verified. Treat the log from that point on as untrustworthy and compare it with an earlier export.",
            plural(checked)
        ));
    }
    let finished = v.finished_at.unwrap_or(v.heartbeat_at);
    let took = (finished - v.started_at).as_seconds_f64();
    view.summary = Some(format!(
        "Checked {checked} event{} up to event #{} in {}, finished {} UTC. Events recorded after it started are checked by the next verification.",
        plural(checked),
        v.target_sequence,
        if took < 1.0 {
            format!("{:.0} ms", took * 1000.0)
        } else {
            format!("{took:.1} s")
        },
        when_precise(finished)
    ));
    view.outcome = outcome;
    view.headline = headline;
    view.event_href = event_href;
}

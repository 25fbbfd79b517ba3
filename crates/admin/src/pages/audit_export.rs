//! Export of the audit log's current filter as CSV or JSON Lines, streamed: the rows are read in
//! keyset pages and written out page by page (in the format of `audit::export`, the same as
//! `gatehouse audit export`), so an export of any size holds one page in memory.

use audit::export::{Format, write_event, write_header};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::audit::{AuditCursor, AuditFilter};

use crate::AppState;
use crate::auth::{Member, Viewer};
use crate::error::{Error, Result};
use crate::pages::audit::{AuditQuery, Filters};

/// Rows read per page of the stream.
const PAGE: i64 = 2_000;

#[derive(Debug, Deserialize)]
pub(crate) struct ExportQuery {
    #[serde(flatten)]
    q: AuditQuery,
    #[serde(default)]
    format: String,
}

/// Where the stream is.
struct Cursor {
    tx: Option<store::OrgTx>,
    filter: AuditFilter,
    format: Format,
    after: Option<AuditCursor>,
    started: bool,
}

/// The next chunk of the export: the header with the first page, then one page per chunk.
async fn next_chunk(mut c: Cursor) -> Result<Option<(Bytes, Cursor)>, std::io::Error> {
    let Some(tx) = c.tx.as_mut() else {
        return Ok(None);
    };
    let page = store::audit::audit_export_page(tx, &c.filter, c.after, PAGE)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "audit export failed part-way");
            std::io::Error::other("the audit export failed part-way")
        })?;
    let mut out = Vec::with_capacity(page.len() * 400);
    if !c.started {
        write_header(&mut out, c.format)?;
        c.started = true;
    }
    for event in &page {
        write_event(&mut out, event, c.format)?;
    }
    if (page.len() as i64) < PAGE {
        // The last page: end the transaction now rather than when the body is dropped.
        if let Some(tx) = c.tx.take() {
            let _ = tx.rollback().await;
        }
    } else if let Some(last) = page.last() {
        c.after = Some(AuditCursor {
            occurred_at: last.event.occurred_at,
            audit_event_id: last.event.audit_event_id.as_uuid(),
        });
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some((Bytes::from(out), c)))
}

pub(crate) async fn export(
    State(state): State<AppState>,
    m: Member<Viewer>,
    Query(e): Query<ExportQuery>,
) -> Result<Response> {
    let (format, content_type, extension) = match e.format.as_str() {
        "csv" => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        "jsonl" => (
            Format::JsonLines,
            "application/jsonl; charset=utf-8",
            "jsonl",
        ),
        _ => {
            return Err(Error::Invalid(
                "Choose an export format: csv or jsonl.".into(),
            ));
        }
    };
    let f = Filters::parse(&e.q);
    if let Some(problem) = f.errors.first() {
        return Err(Error::Invalid(problem.clone()));
    }
    let tx = state.store.begin(m.org).await?;
    let cursor = Cursor {
        tx: Some(tx),
        filter: f.filter,
        format,
        after: None,
        started: false,
    };
    let stream = futures_util::stream::try_unfold(cursor, next_chunk);
    let now = time::OffsetDateTime::now_utc();
    let filename = format!(
        "gatehouse-audit-{:04}{:02}{:02}-{:02}{:02}.{extension}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

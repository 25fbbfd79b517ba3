//! Export of an organisation's audit events as CSV or JSON Lines, oldest first, in keyset pages:
//! memory holds one page whatever the size of the export.

use std::io::Write;

use serde_json::{Value, json};
use store::audit::{AuditCursor, AuditEvent, AuditFilter, audit_export_page};
use store::{OrgId, Store};
use time::format_description::well_known::Rfc3339;

use crate::Error;

/// Rows read per page.
pub const PAGE: i64 = 5_000;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 4180 CSV with a header row; `arguments` as JSON text.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "occurred_at",
    "audit_event_id",
    "sequence",
    "server_id",
    "grant_id",
    "identity",
    "session_id",
    "method",
    "tool_name",
    "arguments",
    "decision",
    "rule",
    "message",
    "policy_version",
    "upstream_status",
    "is_error",
    "latency_us",
    "client_addr",
    "user_agent",
    "prev_hash",
    "hash",
];

/// Writes every event of `org` matching `filter` to `out`; returns how many.
pub async fn export(
    store: &Store,
    org: OrgId,
    filter: &AuditFilter,
    format: Format,
    out: &mut impl Write,
) -> Result<u64, Error> {
    write_header(out, format).map_err(Error::Io)?;
    let mut tx = store.begin(org).await?;
    let mut after: Option<AuditCursor> = None;
    let mut written = 0_u64;
    loop {
        let page = audit_export_page(&mut tx, filter, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(AuditCursor {
            occurred_at: last.event.occurred_at,
            audit_event_id: last.event.audit_event_id.as_uuid(),
        });
        let full = page.len() as i64 == PAGE;
        for event in &page {
            write_event(out, event, format).map_err(Error::Io)?;
            written += 1;
        }
        if !full {
            break;
        }
    }
    tx.rollback().await?;
    Ok(written)
}

/// What comes before the first event: the CSV header row (nothing for JSON Lines).
pub fn write_header(out: &mut impl Write, format: Format) -> std::io::Result<()> {
    match format {
        // RFC 4180 ends every record with CRLF, the header too.
        Format::Csv => write!(out, "{}\r\n", CSV_COLUMNS.join(",")),
        Format::JsonLines => Ok(()),
    }
}

/// One event as a CSV row or a JSON line, as [`export`] writes it (for callers that stream an
/// export page by page themselves, like the admin API).
pub fn write_event(
    out: &mut impl Write,
    event: &AuditEvent,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Csv => write_csv_row(out, event),
        Format::JsonLines => serde_json::to_writer(&mut *out, event)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n")),
    }
}

fn write_csv_row(out: &mut impl Write, event: &AuditEvent) -> std::io::Result<()> {
    let e = &event.event;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let time = e.occurred_at.format(&Rfc3339).unwrap_or_default();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let fields: [String; 21] = [
        time,
        e.audit_event_id.to_string(),
        event.sequence.to_string(),
        e.server_id.to_string(),
        e.grant_id.to_string(),
        e.identity.clone(),
        opt(e.session_id.clone()),
        e.method.clone(),
        opt(e.tool_name.clone()),
        e.arguments.to_string(),
        e.decision.as_str().to_owned(),
        opt(e.rule.clone()),
        opt(e.message.clone()),
        opt(e.policy_version.map(|v| v.to_string())),
        opt(e.upstream_status.map(|v| v.to_string())),
        opt(e.is_error.map(|v| v.to_string())),
        opt(e.latency_us.map(|v| v.to_string())),
        opt(e.client_addr.map(|v| v.to_string())),
        opt(e.user_agent.clone()),
        hex(&event.prev_hash),
        hex(&event.hash),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_field(f).as_bytes())?;
    }
    out.write_all(b"\r\n")
}

/// A field quoted when it must be (RFC 4180). Fields that a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) are quoted and prefixed with `'`, since identities, messages and
/// user agents come from agents.
pub fn csv_field(text: &str) -> String {
    let formula = text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err();
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if formula || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A JSON Lines record as [`export`] writes it, for readers that want the same shape.
pub fn json_line(event: &AuditEvent) -> Value {
    json!(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
        assert_eq!(csv_field("-5"), "-5");
    }

    #[test]
    fn the_csv_header_ends_like_every_row() {
        let mut out = Vec::new();
        write_header(&mut out, Format::Csv).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("occurred_at,audit_event_id,"));
        assert!(text.ends_with("hash\r\n"), "{text:?}");
        let mut none = Vec::new();
        write_header(&mut none, Format::JsonLines).unwrap();
        assert!(none.is_empty());
    }
}

//! Export streams in keyset pages: a large range is written with bounded memory.

use std::io::Write;

use audit::export::{Format, export};
use sqlx::PgPool;
use store::audit::{AuditDecision, AuditFilter, NewAuditEvent};
use time::{Duration, OffsetDateTime};

use crate::{org, record, store};

/// Counts what is written and keeps nothing; remembers the first lines.
#[derive(Default)]
struct Sink {
    bytes: usize,
    head: Vec<u8>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        if self.head.len() < 4096 {
            self.head.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_large_export_streams_with_bounded_memory(pool: PgPool) {
    const N: usize = 100_000;
    let store = store(pool);
    let org = org(&store).await;
    let start = OffsetDateTime::now_utc() - Duration::hours(2);
    let template = {
        let mut r = record(org, "x");
        r.outcome = crate::ok_outcome();
        r.to_new_event()
    };
    for chunk in 0..N / 10_000 {
        let batch: Vec<NewAuditEvent> = (0..10_000)
            .map(|i| {
                let n = chunk * 10_000 + i;
                let mut e = template.clone();
                e.audit_event_id = store::AuditEventId::new();
                e.occurred_at = start + Duration::milliseconds(n as i64);
                if n % 10 == 0 {
                    e.decision = AuditDecision::Deny;
                    e.message = Some("denied, \"quoted\"".into());
                }
                e
            })
            .collect();
        store.insert_audit_batch(&batch).await.unwrap();
    }

    let before = rss_kib();
    let mut sink = Sink::default();
    let n = export(
        &store,
        org,
        &AuditFilter::default(),
        Format::JsonLines,
        &mut sink,
    )
    .await
    .unwrap();
    let grown_kib = rss_kib().saturating_sub(before);
    assert_eq!(n, N as u64);
    assert!(sink.bytes > 50 * 1024 * 1024, "wrote {} bytes", sink.bytes);
    // Far less than the output: pages, not the whole result, are held.
    assert!(
        grown_kib < 40 * 1024,
        "memory grew by {grown_kib} KiB while writing {} bytes",
        sink.bytes
    );
    let first: serde_json::Value =
        serde_json::from_slice(sink.head.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["sequence"], 1);

    // Filters and CSV: every tenth event is a denial, with its message quoted.
    let mut csv = Vec::new();
    let filter = AuditFilter {
        decision: Some(AuditDecision::Deny),
        from: Some(start),
        to: Some(start + Duration::seconds(10)),
        ..AuditFilter::default()
    };
    let n = export(&store, org, &filter, Format::Csv, &mut csv)
        .await
        .unwrap();
    assert_eq!(n, 1_000);
    let text = String::from_utf8(csv).unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("occurred_at,audit_event_id,sequence,")
    );
    let row = lines.next().unwrap();
    assert!(row.contains(",deny,"), "{row}");
    assert!(row.contains("\"denied, \"\"quoted\"\"\""), "{row}");
    assert_eq!(text.lines().count(), 1_001);
}

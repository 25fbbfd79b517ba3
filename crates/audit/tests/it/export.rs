//! Export streams in keyset pages: a large range is written with bounded memory.

use std::io::Write;

use audit::export::{Format, export};
use sqlx::PgPool;
use store::audit::{AuditDecision, AuditFilter};
use time::{Duration, OffsetDateTime};

use crate::{org, store};

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
    let store = store(pool.clone());
    let org = org(&store).await;
    let start = OffsetDateTime::now_utc() - Duration::hours(2);
    // Seeded in one statement: this test is about reading, and the chain does not matter to it.
    let start_micros = start.unix_timestamp_nanos() / 1_000;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"
        insert into audit_event (audit_event_id, organisation_id, occurred_at, sequence, prev_hash,
            hash, server_id, access_grant_id, identity, method, tool_name, arguments, decision,
            message, upstream_status, is_error, latency_us, user_agent)
        select gen_random_uuid(), '{org}'::uuid, to_timestamp({start_micros}::float8 / 1e6) + n * interval '1 millisecond', n + 1, decode('00', 'hex'), decode('00', 'hex'),
            gen_random_uuid(), gen_random_uuid(), 'noc-agent', 'tools/call', 'reboot_device',
            '{{"device_id": "00236A-1", "password": "[REDACTED]"}}',
            (case when n % 10 = 0 then 'deny' else 'allow' end)::audit_decision,
            case when n % 10 = 0 then 'denied, "quoted"' end, 200, false, 1234,
            'claude-code/1.0 (a user agent long enough to make each line a few hundred bytes)'
        from generate_series(0, {N} - 1) as n
        "#
    )))
    .execute(&pool)
    .await
    .unwrap();

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

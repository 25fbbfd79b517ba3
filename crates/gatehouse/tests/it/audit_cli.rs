//! `gatehouse ingest`, `gatehouse audit verify | export | retention`, run as the built binary
//! against a fresh database and the shared Redis (streams under a prefix of this test's own).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use audit::{AuditRecord, Journal, Outcome, StreamConfig};
use sqlx::{Connection as _, Executor as _, PgConnection};
use store::audit::AuditDecision;
use store::{GrantId, OrgId, ServerId};
use time::OffsetDateTime;

use crate::store_cli::{FreshDatabase, gatehouse, json, ok_json};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn record(org: OrgId, i: usize) -> AuditRecord {
    AuditRecord {
        occurred_at: OffsetDateTime::now_utc(),
        request_id: uuid::Uuid::new_v4().to_string(),
        organisation_id: org,
        server_id: ServerId::new(),
        grant_id: GrantId::new(),
        identity: format!("agent-{i}"),
        session: None,
        method: "tools/call".into(),
        tool: Some("get_parameter".into()),
        arguments: serde_json::json!(["device_id"]),
        decision: AuditDecision::Allow,
        rule: None,
        message: Some(format!("=call {i}, \"quoted\"")),
        policy_version: Some(1),
        outcome: Outcome::Pending,
        client_addr: None,
        user_agent: None,
    }
}

#[tokio::test]
async fn ingest_then_verify_export_and_tamper_through_the_cli() {
    let db = FreshDatabase::create().await;
    let url = db.url.clone();
    let run = |args: &[&str]| gatehouse(&url, args, &[]);
    ok_json(&run(&["migrate", "--json"]));
    let org_id = ok_json(&run(&["org", "create", "Acme ISP", "--json"]))["organisation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let org: OrgId = org_id.parse().unwrap();

    // Configuration errors are named, every one, before anything runs.
    let out = gatehouse(
        &url,
        &["ingest"],
        &[
            ("REDIS_URL", "http://127.0.0.1:6379"),
            ("GATEHOUSE_INGEST_BATCH", "0"),
            ("GATEHOUSE_AUDIT_SHARDS", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "REDIS_URL",
        "GATEHOUSE_INGEST_BATCH",
        "GATEHOUSE_AUDIT_SHARDS",
    ] {
        assert!(stderr.contains(var), "{var} not named: {stderr}");
    }

    let prefix = format!("test:cli:{}", uuid::Uuid::new_v4().simple());
    let streams = StreamConfig {
        prefix: prefix.clone(),
        shards: 2,
        ..StreamConfig::default()
    };
    let journal = Journal::connect(&redis_url(), streams).await.unwrap();
    for i in 0..3 {
        let t = journal.write_ahead(record(org, i)).await.unwrap();
        journal
            .record_outcome(
                t,
                Outcome::Known {
                    upstream_status: Some(200),
                    is_error: Some(false),
                    latency_us: 900,
                },
            )
            .await
            .unwrap();
    }

    let mut ingest = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "ingest",
            "--stream-prefix",
            &prefix,
            "--shards",
            "2",
            "--consumer",
            "cli-test",
        ])
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", redis_url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let out = run(&["audit", "export", "--org", &org_id, "--format", "jsonl"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        if text.lines().count() >= 3 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    ingest.kill().unwrap();
    ingest.wait().unwrap();
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{lines}");
    assert_eq!(events[0]["sequence"], 1);
    assert_eq!(events[0]["upstream_status"], 200);

    let out = run(&[
        "audit",
        "export",
        "--org",
        &org_id,
        "--format",
        "csv",
        "--identity",
        "agent-1",
    ]);
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains(",\"'=call 1, \"\"quoted\"\"\","), "{csv}");

    let report = ok_json(&run(&["audit", "verify", "--org", &org_id, "--json"]));
    assert_eq!(report["ok"], true);
    assert_eq!(report["organisations"][0]["report"]["checked"], 3);

    // Tampering is named, with exit code 1, for one organisation and for all.
    let mut conn = PgConnection::connect(&url).await.unwrap();
    conn.execute("update audit_event set identity = 'nobody' where sequence = 2")
        .await
        .unwrap();
    let out = run(&["audit", "verify", "--org", &org_id, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["organisations"][0]["report"]["problem"]["kind"],
        "altered"
    );
    assert_eq!(
        report["organisations"][0]["report"]["problem"]["audit_event_id"],
        events[1]["audit_event_id"]
    );
    let out = run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BROKEN") && text.contains("sequence 2) was altered"),
        "{text}"
    );

    let set = ok_json(&run(&[
        "audit",
        "retention",
        "set",
        "--org",
        &org_id,
        "--days",
        "30",
        "--json",
    ]));
    assert_eq!(set["audit_retention_days"], 30);
    let applied = ok_json(&run(&["audit", "retention", "apply", "--json"]));
    assert!(applied["cuts"].as_array().unwrap().is_empty());

    drop(conn);
    db.drop().await;
}

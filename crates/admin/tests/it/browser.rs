//! The journey in a real browser: Chromium driven by playwright-core (tests/peers), against the
//! app and the simulator started here on port 0. Screenshots land in target/screenshots/admin.
//!
//! Calls through the gateway are not part of this journey yet: once the browser has published
//! version 2 of the policy, this test stores audit events for the grant the browser minted (as the
//! ingester would), so the audit pages have something to show.

use std::path::PathBuf;
use std::time::Duration;

use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use store::audit::{AuditDecision, NewAuditEvent};
use store::{AuditEventId, GrantId, OrgId, ServerId, Store};
use time::OffsetDateTime;

use crate::support::{spawn_app, spawn_sim};

/// Waits until the browser has minted a grant and published version 2, then stores a day of
/// calls under that grant, each decided by a rule version 2 has.
async fn store_calls_after_publish(store: Store) {
    let grant = loop {
        let found: Option<(uuid::Uuid, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
            "select g.access_grant_id, g.server_id, g.organisation_id from access_grant g \
             join policy p on p.policy_id = g.policy_id where p.current_version >= 2",
        )
        .fetch_optional(store.pool())
        .await
        .unwrap();
        match found {
            Some(g) => break g,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let (grant, server, org) = grant;
    let now = OffsetDateTime::now_utc();
    let calls = [
        (
            "get_parameter",
            AuditDecision::Allow,
            "/tools/get_parameter",
            None,
        ),
        (
            "set_parameter",
            AuditDecision::RateLimited,
            "/tools/set_parameter/limits/0",
            Some("rate limit `set_parameter` reached (10 per minute per grant), retry after 20 s"),
        ),
        (
            "download_firmware",
            AuditDecision::Deny,
            "/tools/download_firmware/action",
            Some("`download_firmware` is denied by this server's policy"),
        ),
        (
            "reboot_device",
            AuditDecision::ApprovalPending,
            "/tools/reboot_device/action",
            Some("approval pending"),
        ),
    ];
    let events: Vec<NewAuditEvent> = (0..96_i64)
        .rev()
        .map(|i| {
            // Mostly reads, a few of everything else, spread over the last day.
            let (tool, decision, rule, message) = calls[match i % 8 {
                0 => 2,
                3 => 1,
                5 => 3,
                _ => 0,
            }];
            NewAuditEvent {
                audit_event_id: AuditEventId::new(),
                organisation_id: OrgId::from_uuid(org),
                occurred_at: now - time::Duration::minutes(15 * i + 1),
                server_id: ServerId::from_uuid(server),
                grant_id: GrantId::from_uuid(grant),
                identity: "noc-agent".into(),
                session_id: Some("s-1".into()),
                method: "tools/call".into(),
                tool_name: Some(tool.into()),
                arguments: json!({"device_id": null}),
                decision,
                rule: Some(rule.into()),
                message: message.map(Into::into),
                policy_version: Some(2),
                upstream_status: (decision == AuditDecision::Allow).then_some(200),
                is_error: (decision == AuditDecision::Allow).then_some(false),
                latency_us: Some(900 + 37 * i),
                client_addr: Some("127.0.0.1".parse().unwrap()),
                user_agent: Some("noc-agent/1.0".into()),
            }
        })
        .collect();
    store.insert_audit_batch(&events).await.unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sign_up_register_and_mint_in_chromium(pool: PgPool) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let peers = root.join("tests/peers");
    assert!(
        peers.join("node_modules/playwright-core").is_dir(),
        "tests/peers/node_modules is missing: run `scripts/test` (it runs `npm ci` in tests/peers), \
         or `cd tests/peers && npm ci`"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run `scripts/test` (it installs Debian's chromium), or `apt-get install -y chromium`"
    );
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let seeder = tokio::spawn(store_calls_after_publish(app.store.clone()));
    let shots = root.join("target/screenshots/admin");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(peers.join("admin-journey.mjs"))
        .arg(&app.url)
        .arg(&sim.url)
        .arg(&shots)
        .current_dir(&peers)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the browser journey finishes within 2 minutes")
        .unwrap();
    if seeder.is_finished() {
        seeder.await.expect("the calls were stored");
    } else {
        seeder.abort();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "journey failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("journey ok"), "{stdout}\n{stderr}");
    for page in [
        "1-signup",
        "2-servers-empty",
        "3-register-tested",
        "4-server",
        "5-grant-token",
        "6-audit-empty",
        "7-policy",
        "7b-policy-errors",
        "7c-policy-builder",
        "7d-try-a-call",
        "7e-policy-diff",
        "8-audit",
        "8b-audit-event",
        "8c-policy-rule",
        "8d-audit-verify",
        "9-admin-events",
    ] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
    // What the browser minted is a working grant.
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token "))
        .expect("the script prints the token it saw");
    assert!(
        app.store
            .grant_by_token(token.trim())
            .await
            .unwrap()
            .is_some()
    );
}

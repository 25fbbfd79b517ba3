//! The journey in a real browser: Chromium driven by playwright-core (tests/peers), against the
//! app, a real gateway and the simulator started here on port 0. Screenshots land in
//! target/screenshots/admin.
//!
//! The gateway writes every request's event ahead into Postgres's `audit_outbox` and the
//! `OutboxIngester` moves them into the hash-chained audit log, as `gatehouse up` does without
//! Redis: the calls the journey makes through the gateway with the TypeScript SDK client are the
//! ones its audit pages then show.

use std::path::PathBuf;
use std::time::Duration;

use admin::AdminConfig;
use gateway::{Gateway, Settings};
use genieacs_sim::SimConfig;
use sqlx::PgPool;

use crate::support::{spawn_app_with, spawn_sim};

/// A gateway over the app's store (one database, one keyring), on `listener`, with the durable
/// audit path of a single process: the outbox journal and its ingester.
fn spawn_gateway(
    store: &store::Store,
    listener: tokio::net::TcpListener,
) -> Vec<tokio::task::JoinHandle<()>> {
    let settings = Settings {
        // A policy published in the browser is seen at once, without Redis announcements.
        config_ttl: Duration::from_millis(200),
        ..Settings::local()
    };
    let gateway = Gateway::new(
        settings,
        store.clone(),
        limits::InProcessLimiter::new().into(),
        mcp::session::SessionKey::derive(b"admin journey: the deployment secret"),
        audit::Journal::outbox(store.clone(), Duration::from_secs(10)),
        None,
    )
    .expect("gateway");
    let ingester = audit::OutboxIngester::new(store.clone(), &audit::IngestConfig::default());
    vec![
        tokio::spawn(async move {
            gateway::serve(listener, gateway).await.expect("gateway");
        }),
        tokio::spawn(async move {
            ingester
                .run(std::future::pending())
                .await
                .expect("ingester");
        }),
    ]
}

/// Waits for the journey's grant (`noc-agent`), then opens an approval of a reboot through it with
/// a redacted argument, as the gateway does for a call whose rule requires approval.
async fn seed_approval(store: store::Store) -> store::ApprovalId {
    let grant = loop {
        let found: Option<(uuid::Uuid, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
            "select organisation_id, server_id, access_grant_id from access_grant where identity = 'noc-agent'",
        )
        .fetch_optional(store.pool())
        .await
        .unwrap();
        match found {
            Some(found) => break found,
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let (org, server, grant) = grant;
    crate::support::open_approval(
        &store,
        store::OrgId::from_uuid(org),
        store::GrantId::from_uuid(grant),
        store::ServerId::from_uuid(server),
        "reboot_device",
        serde_json::json!({"device_id": "00236A-SmartRG585-SMRT00236a42", "password": "[REDACTED]"}),
        Duration::from_secs(600),
    )
    .await
    .approval_id
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sign_up_register_mint_and_call_through_the_gateway_in_chromium(pool: PgPool) {
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
    // The gateway's address is the app's public URL, so the proxy URL the page shows is real.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_url = format!("http://{}", listener.local_addr().unwrap());
    let app = spawn_app_with(pool, AdminConfig::for_public_url(&gateway_url, true)).await;
    let tasks = spawn_gateway(&app.store, listener);
    // The approval the journey decides: opened for the grant the browser mints, as the gateway
    // opens one for a held call.
    let seeding = tokio::spawn(seed_approval(app.store.clone()));
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
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the browser journey finishes within 2 minutes")
        .unwrap();
    for t in tasks {
        assert!(
            !t.is_finished(),
            "the gateway and the ingester kept running"
        );
        t.abort();
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
        "8a-audit-filtered",
        "8b-audit-event",
        "8c-policy-rule",
        "8d-audit-verify",
        "9-admin-events",
        "10-members",
        "10b-invitation-link",
        "10c-invitations",
        "11-api-key",
        "11b-api-keys",
        "11c-approvals",
        "11d-approval",
        "11e-approval-approved",
        "11f-approvals-decided",
        "11g-webhook-secret",
        "11h-webhook",
        "12-account",
        "13-login",
    ] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
    // The calls reached the upstream only when the policy allowed them: two set_parameter tasks
    // and nothing for the denied firmware download (get_parameter reads the ACS, queues nothing).
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token "))
        .expect("the script prints the token it saw");
    let grant = app
        .store
        .grant_by_token(token.trim())
        .await
        .unwrap()
        .expect("what the browser minted is a working grant");
    // The approval was decided in the browser: approved, with its comment, by the person.
    let approval = seeding.await.unwrap();
    let mut tx = app.store.begin(grant.organisation_id).await.unwrap();
    let decided = store::approval::approval_by_id(&mut tx, approval)
        .await
        .unwrap();
    assert_eq!(decided.status, store::approval::ApprovalStatus::Approved);
    assert_eq!(
        decided.comment.as_deref(),
        Some("Maintenance window, ticket NOC-4711")
    );
    assert_eq!(
        decided.decided_by_email.as_deref(),
        Some("noc-lead@acme-isp.example")
    );
    let page = store::audit::audit_page(&mut tx, &Default::default(), None, 1000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut calls: Vec<(String, String)> = page
        .events
        .iter()
        .filter(|e| e.event.method == "tools/call")
        .map(|e| {
            (
                e.event.tool_name.clone().unwrap_or_default(),
                format!("{:?}", e.event.decision),
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        [
            ("download_firmware".to_owned(), "Deny".to_owned()),
            ("get_parameter".to_owned(), "Allow".to_owned()),
            ("set_parameter".to_owned(), "Allow".to_owned()),
            ("set_parameter".to_owned(), "Allow".to_owned()),
            ("set_parameter".to_owned(), "RateLimited".to_owned()),
        ],
        "exactly the journey's calls are in the audit log"
    );
}

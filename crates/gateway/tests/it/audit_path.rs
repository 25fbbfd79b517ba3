//! The audit path fails closed: when the journal cannot be written, nothing is forwarded and the
//! agent is told why (DESIGN.md §6, §7); when it can, every request has exactly one event.

use std::time::Duration;

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use store::audit::AuditDecision;

use crate::support::*;

const REFUSED: &str =
    "Gatehouse cannot reach its audit log; the call was refused and did not reach the upstream";

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn nothing_is_forwarded_when_the_audit_log_is_unreachable(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow","tools":{"reboot_device":{"action":"deny"}}}"#;
    let seed = seed(&store, &sim.url, policy).await;
    // A journal whose Postgres is not there: no event can be written.
    let nowhere = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .expect("lazy pool");
    let journal = audit::Journal::outbox(
        store::Store::new(nowhere, store.keyring().clone()),
        Duration::from_millis(500),
    );
    let gw = gateway_with(
        &store,
        Settings::local(),
        Limits::InProcess,
        None,
        Some(journal),
    )
    .await;
    let url = gw.url(&seed);
    let t = Some(seed.token.as_str());

    // Forwarded requests are refused before they leave: not even a session is opened upstream.
    let init = post(&url, t, initialize_body(), &[]).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let init: serde_json::Value = serde_json::from_str(&init.body).unwrap();
    assert_eq!(init["error"]["code"], -32603);
    assert_eq!(init["error"]["message"], REFUSED);
    assert_eq!(sim.state.session_count(), 0);

    // A decision the gateway makes itself is not given either: its event could not be kept.
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"reboot_device","arguments":{"device_id":"d1"}}});
    let denied = post(
        &url,
        t,
        call.to_string(),
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    let denied: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(denied["id"], 7);
    assert_eq!(denied["error"]["message"], REFUSED);

    // A GET stream has no request id: 503.
    let get = http()
        .get(&url)
        .bearer_auth(&seed.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 503);
    assert!(sim.state.calls().is_empty());
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn every_request_has_one_event_with_redacted_values(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow","record_arguments":true,"tools":{"reboot_device":{"action":"deny"}}}"#;
    let seed = seed(&store, &sim.url, policy).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);
    let mut session = Session::open(&url, &seed.token).await;
    let ok = session
        .call(
            "set_parameter",
            json!({"device_id":"d1","name":"Device.Users.User.1.Password","value":"x","password":"hunter2"}),
        )
        .await;
    assert_eq!(ok.status, 200);
    let denied = session
        .call("reboot_device", json!({"device_id":"d1"}))
        .await;
    assert_eq!(denied.status, 200);

    let events = gw.audit_events(seed.org).await;
    // initialize, notifications/initialized, the two calls.
    let calls: Vec<_> = events.iter().filter(|e| e.method == "tools/call").collect();
    assert_eq!(calls.len(), 2, "{events:#?}");
    let set = calls[0];
    assert_eq!(set.decision, AuditDecision::Allow);
    assert_eq!(set.upstream_status, Some(200));
    assert_eq!(set.arguments["device_id"], "d1");
    assert_eq!(set.arguments["password"], "[REDACTED]");
    assert_eq!(calls[1].decision, AuditDecision::Deny);
    assert_eq!(
        calls[1].rule.as_deref(),
        Some("/tools/reboot_device/action")
    );
    assert_eq!(calls[1].upstream_status, None);
    assert!(events.iter().any(|e| e.method == "initialize"));
    let ids: std::collections::HashSet<_> =
        events.iter().map(|e| e.audit_event_id.as_uuid()).collect();
    assert_eq!(ids.len(), events.len(), "one event per request");
}

//! The audit log's fault drill from issue 6, with the real binaries: a `gatehouse gateway` replica
//! is killed with SIGKILL while the upstream is working on calls it forwarded; afterwards every
//! call the upstream received (genieacs-sim's call log) has exactly one audit event, stored by
//! `gatehouse ingest` with the decision and an unknown outcome, and calls through a fresh replica
//! are stored complete, once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use genieacs_sim::{SimConfig, SimState};
use serde_json::{Value, json};
use store::audit::{AuditDecision, AuditEvent, AuditFilter, NewAuditEvent};
use store::secret::{Keyring, SealingKey};
use store::{OrgId, Store};

use crate::gateway_cli::{free_port, mcp, spawn, wait_for};
use crate::store_cli::{FreshDatabase, KEY, gatehouse, ok_json, provision};

const REDIS_URL: &str = "redis://127.0.0.1:6379";
const CALLS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_after_forwarding_loses_no_event() {
    let db = FreshDatabase::create().await;
    let url = db.url.clone();
    // Streams of this test only, so no other ingester on the machine's Redis takes its entries.
    let prefix = format!("gh:audit-drill:{}", uuid::Uuid::new_v4().simple());
    let gateway_port = free_port();
    let public = format!("http://127.0.0.1:{gateway_port}");
    let env = [
        ("GATEHOUSE_SECRET_KEY", KEY),
        ("GATEHOUSE_PUBLIC_URL", public.as_str()),
    ];
    let run = |args: &[&str]| gatehouse(&url, args, &env);

    // The upstream takes its time over retry_task, so calls are in flight when the replica dies.
    let mut config = SimConfig::default();
    config
        .latency
        .insert("retry_task".into(), Duration::from_millis(1500));
    let sim = SimState::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(genieacs_sim::serve(listener, sim.clone()));

    ok_json(&run(&["migrate", "--json"]));
    // Argument values are recorded, so each event can be matched with the call the upstream saw.
    let made = provision(
        &run,
        "Acme ISP",
        &upstream_url,
        r#"{"version":"1","default":"allow","record_arguments":true}"#,
    );
    let (proxy_url, token) = (made.proxy_url.clone(), made.token.clone());

    let listen = format!("127.0.0.1:{gateway_port}");
    let gateway_env = [
        ("DATABASE_URL", url.as_str()),
        ("REDIS_URL", REDIS_URL),
        ("GATEHOUSE_AUDIT_STREAM_PREFIX", prefix.as_str()),
        ("GATEHOUSE_SECRET_KEY", KEY),
        ("GATEHOUSE_PUBLIC_URL", public.as_str()),
        ("GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS", "true"),
    ];
    let mut gateway = spawn(&["gateway", "--listen", &listen], &gateway_env);
    wait_for(&format!("{public}/readyz")).await;

    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"drill","version":"0"}}});
    let (status, session, _) = mcp(&proxy_url, &token, None, init.clone()).await;
    assert_eq!(status, 200);
    let session = session.expect("session id");

    // CALLS calls in flight at the upstream…
    let mut inflight = Vec::new();
    for n in 0..CALLS {
        let (proxy_url, token, session) = (proxy_url.clone(), token.clone(), session.clone());
        inflight.push(tokio::spawn(async move {
            let call = json!({"jsonrpc":"2.0","id":n + 1,"method":"tools/call","params":{"name":"retry_task","arguments":{"task_id":format!("killed-{n}")}}});
            reqwest::Client::new()
                .post(&proxy_url)
                .bearer_auth(&token)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .header("mcp-session-id", &session)
                .json(&call)
                .send()
                .await
        }));
    }
    let started = Instant::now();
    while sim.call_count() < CALLS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "calls never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // …when the replica is killed outright: no outcome is ever written for them.
    gateway.kill_now();
    for call in inflight {
        assert!(
            call.await.unwrap().is_err(),
            "the killed replica cannot have answered"
        );
    }

    // A fresh replica serves more calls, which complete normally.
    let _gateway = spawn(&["gateway", "--listen", &listen], &gateway_env);
    wait_for(&format!("{public}/readyz")).await;
    let (status, session, _) = mcp(&proxy_url, &token, None, init).await;
    assert_eq!(status, 200);
    let session = session.expect("session id");
    for n in 0..3 {
        let call = json!({"jsonrpc":"2.0","id":100 + n,"method":"tools/call","params":{"name":"get_device","arguments":{"device_id":format!("after-{n}")}}});
        let (status, _, answer) = mcp(&proxy_url, &token, Some(&session), call).await;
        assert_eq!(status, 200, "{answer}");
    }

    // The ingester stores everything: the killed calls once their (short) grace period is over.
    let _ingest = spawn(
        &["ingest"],
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", REDIS_URL),
            ("GATEHOUSE_AUDIT_STREAM_PREFIX", prefix.as_str()),
            ("GATEHOUSE_AUDIT_GRACE_SECS", "2"),
        ],
    );
    let store = Store::connect(&url, Keyring::new(SealingKey::generate(1)))
        .await
        .unwrap();
    let org: OrgId = made.org.parse().unwrap();
    let started = Instant::now();
    let events = loop {
        let events = tool_calls(&store, org).await;
        if events.len() >= CALLS + 3 {
            break events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {} events stored: {events:#?}",
            events.len(),
            CALLS + 3
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Exactly one event per call, matched by the argument values the policy records.
    let mut by_value: HashMap<String, Vec<&NewAuditEvent>> = HashMap::new();
    for e in events.iter().map(|e| &e.event) {
        let value = e
            .arguments
            .as_object()
            .and_then(|a| a.values().next())
            .and_then(Value::as_str);
        by_value
            .entry(value.unwrap_or_default().to_owned())
            .or_default()
            .push(e);
    }
    for n in 0..CALLS {
        let got = &by_value[&format!("killed-{n}")];
        assert_eq!(got.len(), 1, "{got:#?}");
        let e = got[0];
        assert_eq!(e.decision, AuditDecision::Allow);
        assert_eq!(e.upstream_status, None);
        assert!(
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("outcome unknown")),
            "{e:#?}"
        );
    }
    for n in 0..3 {
        let got = &by_value[&format!("after-{n}")];
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0].upstream_status, Some(200));
    }
    // Every call the upstream saw finish has its event (the killed ones may not have finished).
    for call in sim.calls() {
        let value = call
            .arguments
            .as_object()
            .and_then(|a| a.values().next())
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(by_value[value].len(), 1, "{call:?}");
    }
    let chain = store::audit::verify_audit_chain(&mut store.begin(org).await.unwrap())
        .await
        .unwrap();
    assert!(chain.problem.is_none(), "{chain:?}");
    db.drop().await;
}

/// The stored `tools/call` events of `org`.
async fn tool_calls(store: &Store, org: OrgId) -> Vec<AuditEvent> {
    let mut tx = store.begin(org).await.unwrap();
    let page = store::audit::audit_page(&mut tx, &AuditFilter::default(), None, 200)
        .await
        .unwrap();
    page.events
        .into_iter()
        .filter(|e| e.event.method == "tools/call")
        .collect()
}

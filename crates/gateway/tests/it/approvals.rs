//! Calls held for a human approval (issue 8): approved within the wait, denied with the
//! approver's comment, a wait that runs out (pending, then exactly once after approval), and a
//! decision taken elsewhere reaching the replica that holds the call through Redis; the same
//! end to end with the TypeScript SDK client over two replicas (progress keep-alives, the audit
//! events of every step), and the signed webhook with its retry.

use std::time::{Duration, Instant};

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use store::approval::{self, Approval, ApprovalFilter, Decision};
use store::{Actor, Store};

use crate::support::*;

fn policy(wait: &str) -> String {
    format!(
        r#"{{"version":"1","default":"allow","tools":{{"reboot_device":{{"approval":{{"wait":"{wait}","timeout":"10m"}}}}}}}}"#
    )
}

/// How many `reboot_device` calls reached the upstream.
fn reboots(sim: &Sim) -> usize {
    sim.state
        .calls()
        .iter()
        .filter(|c| c.tool == "reboot_device")
        .count()
}

/// Waits until the organisation has a pending approval, and returns it.
async fn pending(store: &Store, seed: &Seed) -> Approval {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut tx = store.begin(seed.org).await.unwrap();
        let page = approval::list_approvals(&mut tx, ApprovalFilter::Pending, None, 10)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if let Some(a) = page.approvals.into_iter().next() {
            return a;
        }
        assert!(Instant::now() < deadline, "no approval was opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn decide(
    store: &Store,
    seed: &Seed,
    a: &Approval,
    decision: Decision,
    comment: Option<&str>,
) {
    let mut tx = store.begin(seed.org).await.unwrap();
    approval::decide_approval(&mut tx, Actor::Operator, a.approval_id, decision, comment)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn reboot() -> Value {
    json!({"device_id": "d1"})
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_approval_within_the_wait_lets_the_call_through_once(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);

    let mut session = Session::open(&url, &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    assert_eq!(a.tool_name, "reboot_device");
    assert_eq!(reboots(&sim), 0, "nothing is forwarded while held");
    let decided = Instant::now();
    decide(&store, &seed, &a, Decision::Approve, Some("go ahead")).await;
    gw.signal.notify();

    let answer = held.await.unwrap();
    assert!(
        decided.elapsed() < Duration::from_secs(3),
        "{:?}",
        decided.elapsed()
    );
    let text = text_of(&answer.json()).to_owned();
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);

    // The approval is spent: the same call again needs a new one.
    let mut tx = store.begin(seed.org).await.unwrap();
    let again = approval::approval_by_id(&mut tx, a.approval_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again.status, approval::ApprovalStatus::Consumed);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_denial_reaches_the_agent_with_the_approvers_comment(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);

    let mut session = Session::open(&url, &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    decide(
        &store,
        &seed,
        &a,
        Decision::Deny,
        Some("not during business hours"),
    )
    .await;
    gw.signal.notify();

    let answer = held.await.unwrap().json();
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = text_of(&answer);
    assert!(text.starts_with("[POLICY DENIED]"), "{text}");
    assert!(text.contains("not during business hours"), "{text}");
    assert_eq!(reboots(&sim), 0);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_wait_that_runs_out_is_pending_then_goes_through_exactly_once(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("1s")).await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let url = gw.url(&seed);
    let mut session = Session::open(&url, &seed.token).await;

    let first = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&first).to_owned();
    assert!(text.starts_with("[APPROVAL PENDING]"), "{text}");
    let a = pending(&store, &seed).await;
    assert!(text.contains(&a.approval_id.to_string()), "{text}");
    assert_eq!(reboots(&sim), 0);

    // Asking again before anyone decided finds the same approval.
    let again = session.call("reboot_device", reboot()).await.json();
    assert!(text_of(&again).contains(&a.approval_id.to_string()));

    decide(&store, &seed, &a, Decision::Approve, None).await;
    let approved = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&approved);
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);

    // Once: the next identical call needs a new approval.
    let next = session.call("reboot_device", reboot()).await.json();
    let text = text_of(&next);
    assert!(text.starts_with("[APPROVAL PENDING]"), "{text}");
    assert!(!text.contains(&a.approval_id.to_string()), "{text}");
    assert_eq!(reboots(&sim), 1);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_decision_elsewhere_reaches_the_replica_holding_the_call_through_redis(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("20s")).await;
    // The safety-net re-read is pushed out of the way: only the Redis announcement can wake
    // the held call in time.
    let approvals_channel = format!("gatehouse:approvals:test:{}", seed.org);
    let settings = |s: Settings| Settings {
        approval_channel: approvals_channel.clone(),
        approval_poll: Duration::from_secs(30),
        ..s
    };
    let a_gw = gateway(
        &store,
        settings(Settings::local()),
        Limits::Redis { channel: channel() },
    )
    .await;
    let _b_gw = gateway(
        &store,
        settings(Settings::local()),
        Limits::Redis { channel: channel() },
    )
    .await;

    let mut session = Session::open(&a_gw.url(&seed), &seed.token).await;
    let held = tokio::spawn(async move { session.call("reboot_device", reboot()).await });
    let a = pending(&store, &seed).await;
    // Let the replica's subscriber settle before announcing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    decide(&store, &seed, &a, Decision::Approve, None).await;
    let decided = Instant::now();
    let redis = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    gateway::approval::publish_decision(&redis, &approvals_channel, a.approval_id)
        .await
        .unwrap();

    let answer = held.await.unwrap().json();
    assert!(
        decided.elapsed() < Duration::from_secs(2),
        "{:?}",
        decided.elapsed()
    );
    let text = text_of(&answer);
    assert!(
        !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]"),
        "{text}"
    );
    assert_eq!(reboots(&sim), 1);
}

/// The TypeScript SDK's client, driven line by line (`tests/peers/sdk-driven.mjs`), with one
/// session per named gateway URL: calls start without waiting, so the test can decide while
/// they are held.
struct DrivenClient {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    ended: std::collections::HashMap<String, Value>,
}

impl DrivenClient {
    async fn start(token: &str, urls: &[(&str, String)]) -> DrivenClient {
        use tokio::io::AsyncBufReadExt;
        let dir = peers_dir();
        assert!(
            dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
            "tests/peers/node_modules is missing: run scripts/test (npm ci)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("sdk-driven.mjs")
            .arg(token)
            .args(urls.iter().map(|(name, url)| format!("{name}={url}")))
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let stdin = child.stdin.take();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = DrivenClient {
            child,
            stdin,
            lines,
            ended: Default::default(),
        };
        let ready = client.line().await;
        assert_eq!(
            ready["ready"].as_array().map(Vec::len),
            Some(urls.len()),
            "{ready}"
        );
        client
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the SDK client answers within a minute")
            .expect("read")
            .expect("the SDK client ended early");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Starts a `tools/call` through the session `via`; `progress` asks for progress notifications.
    async fn start_call(
        &mut self,
        id: &str,
        via: &str,
        tool: &str,
        arguments: Value,
        progress: bool,
    ) {
        use tokio::io::AsyncWriteExt;
        let command = json!({"id": id, "via": via, "tool": tool, "arguments": arguments, "progress": progress});
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for the end of the call `id`.
    async fn ended(&mut self, id: &str) -> Value {
        loop {
            if let Some(v) = self.ended.remove(id) {
                assert!(v["error"].is_null(), "call {id} failed in the SDK: {v}");
                return v;
            }
            let v = self.line().await;
            let key = v["id"].as_str().expect("a call's end").to_owned();
            self.ended.insert(key, v);
        }
    }

    async fn call(&mut self, id: &str, via: &str, tool: &str, arguments: Value) -> Value {
        self.start_call(id, via, tool, arguments, false).await;
        self.ended(id).await
    }

    /// Closes the sessions and waits for the client to exit.
    async fn finish(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the SDK client exits")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

fn forwarded(end: &Value) -> bool {
    let text = end["text"].as_str().unwrap_or("");
    !text.starts_with("[POLICY DENIED]") && !text.starts_with("[APPROVAL PENDING]")
}

/// Decides `a` as the admin app on another machine would: in the store, then announced on Redis.
async fn decide_and_announce(
    store: &Store,
    seed: &Seed,
    channel: &str,
    a: &Approval,
    decision: Decision,
    comment: Option<&str>,
) {
    decide(store, seed, a, decision, comment).await;
    let redis = redis::Client::open(REDIS_URL).unwrap();
    gateway::approval::publish_decision(&redis, channel, a.approval_id)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn the_typescript_sdk_client_sees_approvals_end_to_end_across_two_replicas(pool: PgPool) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let policy = r#"{"version":"1","default":"allow","tools":{
        "reboot_device":{"approval":{"wait":"20s","timeout":"10m"}},
        "download_firmware":{"approval":{"wait":"1s","timeout":"10m"}}}}"#;
    let seed = seed(&store, &sim.url, policy).await;
    // Two replicas sharing Redis; their safety-net re-read is pushed out of the way, so only the
    // Redis announcement can wake a held call in time. Keep-alives every 200 ms.
    let approvals_channel = format!("gatehouse:approvals:test:{}", seed.org);
    let settings = || Settings {
        approval_channel: approvals_channel.clone(),
        approval_poll: Duration::from_secs(30),
        approval_keepalive: Duration::from_millis(200),
        ..Settings::local()
    };
    let redis = || Limits::Redis { channel: channel() };
    let a_gw = gateway(&store, settings(), redis()).await;
    let b_gw = gateway(&store, settings(), redis()).await;
    let mut sdk = DrivenClient::start(
        &seed.token,
        &[("a", a_gw.url(&seed)), ("b", b_gw.url(&seed))],
    )
    .await;
    // Let both replicas' subscribers settle before anything is announced.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Approved within the wait, decided "on another replica": the call held on a goes through,
    // and the client that asked for progress got keep-alives while it waited.
    let device = json!({"device_id": "00236A-SmartRG585-SMRT00236a42"});
    sdk.start_call("approve", "a", "reboot_device", device.clone(), true)
        .await;
    let a = pending(&store, &seed).await;
    assert_eq!(a.tool_name, "reboot_device");
    assert_eq!(a.arguments, device);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(reboots(&sim), 0, "nothing is forwarded while held");
    let decided = Instant::now();
    decide_and_announce(
        &store,
        &seed,
        &approvals_channel,
        &a,
        Decision::Approve,
        Some("go"),
    )
    .await;
    let approved = sdk.ended("approve").await;
    assert!(
        decided.elapsed() < Duration::from_secs(2),
        "{:?}",
        decided.elapsed()
    );
    assert!(forwarded(&approved), "{approved}");
    assert_eq!(approved["isError"], false, "{approved}");
    assert_eq!(reboots(&sim), 1);
    let progress = approved["progress"].as_array().unwrap();
    assert!(progress.len() >= 2, "keep-alives while held: {approved}");
    assert!(
        progress.iter().all(|p| p["message"]
            .as_str()
            .is_some_and(|m| m.contains(&a.approval_id.to_string()))),
        "each keep-alive names the approval: {approved}"
    );

    // Denied: the agent reads the approver's comment; nothing reaches the upstream.
    sdk.start_call(
        "deny",
        "b",
        "reboot_device",
        json!({"device_id": "d2"}),
        false,
    )
    .await;
    let d = pending(&store, &seed).await;
    decide_and_announce(
        &store,
        &seed,
        &approvals_channel,
        &d,
        Decision::Deny,
        Some("not during business hours"),
    )
    .await;
    let denied = sdk.ended("deny").await;
    assert_eq!(denied["isError"], true, "{denied}");
    let text = denied["text"].as_str().unwrap();
    assert!(text.starts_with("[POLICY DENIED]"), "{text}");
    assert!(text.contains("not during business hours"), "{text}");
    assert_eq!(reboots(&sim), 1);

    // The wait runs out on a: pending with the approval's id. Approved later, the same call
    // through b goes through exactly once; the next identical call needs a new approval.
    let firmware = json!({"device_id": "d1", "file_id": "fw-2.1.bin"});
    let first = sdk
        .call("late-1", "a", "download_firmware", firmware.clone())
        .await;
    let text = first["text"].as_str().unwrap();
    assert!(text.starts_with("[APPROVAL PENDING]"), "{first}");
    let late = pending(&store, &seed).await;
    assert!(text.contains(&late.approval_id.to_string()), "{text}");
    decide_and_announce(
        &store,
        &seed,
        &approvals_channel,
        &late,
        Decision::Approve,
        None,
    )
    .await;
    let through = sdk
        .call("late-2", "b", "download_firmware", firmware.clone())
        .await;
    assert!(forwarded(&through), "{through}");
    let again = sdk.call("late-3", "a", "download_firmware", firmware).await;
    let text = again["text"].as_str().unwrap();
    assert!(text.starts_with("[APPROVAL PENDING]"), "{again}");
    assert!(
        !text.contains(&late.approval_id.to_string()),
        "a new approval: {text}"
    );
    let downloads = sim
        .state
        .calls()
        .iter()
        .filter(|c| c.tool == "download_firmware")
        .count();
    assert_eq!(downloads, 1, "exactly once");
    sdk.finish().await;

    // Every step is audited: each replica's streams ingested, the calls read back in order.
    a_gw.audit_events(seed.org).await;
    let events = b_gw.audit_events(seed.org).await;
    let calls: Vec<(&str, &str, Option<&str>)> = events
        .iter()
        .filter(|e| e.method == "tools/call")
        .map(|e| {
            (
                e.tool_name.as_deref().unwrap(),
                e.decision.as_str(),
                e.message.as_deref(),
            )
        })
        .collect();
    let decisions: Vec<_> = calls.iter().map(|(tool, d, _)| (*tool, *d)).collect();
    assert_eq!(
        decisions,
        [
            ("reboot_device", "approved"),
            ("reboot_device", "deny"),
            ("download_firmware", "approval_pending"),
            ("download_firmware", "approved"),
            ("download_firmware", "approval_pending"),
        ],
        "{events:#?}"
    );
    assert!(
        calls[1]
            .2
            .is_some_and(|m| m.contains("not during business hours")),
        "the denial keeps the approver's comment: {:?}",
        calls[1]
    );
    for (i, approval_id) in [
        (0, a.approval_id),
        (2, late.approval_id),
        (3, late.approval_id),
    ] {
        assert!(
            calls[i]
                .2
                .is_some_and(|m| m.contains(&approval_id.to_string())),
            "event {i} names its approval: {:?}",
            calls[i]
        );
    }
}

/// One delivery the webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    signature: String,
    body: bytes::Bytes,
    at: Instant,
}

/// A webhook receiver on loopback that answers 500 to its first `failures` deliveries, then 204.
async fn webhook_receiver(
    failures: usize,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Delivery>::new()));
    let record = got.clone();
    let app = axum::Router::new().route(
        "/hooks/approvals",
        axum::routing::post(move |headers: HeaderMap, body: bytes::Bytes| {
            let record = record.clone();
            async move {
                let mut got = record.lock().unwrap();
                got.push(Delivery {
                    signature: headers
                        .get("gatehouse-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body,
                    at: Instant::now(),
                });
                if got.len() <= failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks/approvals"), got)
}

/// What a receiver does with `Gatehouse-Signature: t=…,v1=…`: recompute HMAC-SHA256 of
/// "<t>.<body>" with the shared secret, compare, and refuse old times.
fn signature_holds(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<u64>().ok(),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(t) > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == v1
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_new_approval_is_announced_to_the_signed_webhook_and_retried_after_a_failure(
    pool: PgPool,
) {
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, &policy("1s")).await;
    let (hook_url, deliveries) = webhook_receiver(1).await;
    let secret = "whsec_test-secret-of-this-organisation";
    let mut tx = store.begin(seed.org).await.unwrap();
    approval::set_approval_webhook(
        &mut tx,
        Actor::Operator,
        &hook_url,
        &store::secret::Redacted::new(secret.to_owned()),
        true,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let backoff = Duration::from_millis(300);
    let gw = gateway(
        &store,
        Settings {
            webhook_attempts: 3,
            webhook_backoff: backoff,
            ..Settings::local()
        },
        Limits::InProcess,
    )
    .await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;

    let args = json!({"device_id": "d1", "password": "hunter2"});
    let answer = session.call("reboot_device", args.clone()).await.json();
    assert!(
        text_of(&answer).starts_with("[APPROVAL PENDING]"),
        "{answer}"
    );
    let a = pending(&store, &seed).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the webhook was not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Asking again finds the same approval: it is announced once, not per call.
    let again = session.call("reboot_device", args).await.json();
    assert!(text_of(&again).contains(&a.approval_id.to_string()));
    tokio::time::sleep(backoff * 2).await;

    let got = deliveries.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        2,
        "one failure, one success, nothing after: {got:?}"
    );
    assert!(
        got[1].at - got[0].at >= backoff,
        "retried after the backoff"
    );
    for d in &got {
        assert!(signature_holds(secret, &d.signature, &d.body), "{d:?}");
        assert!(!signature_holds("another secret", &d.signature, &d.body));
    }
    assert_eq!(got[0].body, got[1].body, "the same announcement");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "approval.created");
    assert_eq!(body["organisation_id"], seed.org.to_string());
    assert_eq!(body["approval"]["approval_id"], a.approval_id.to_string());
    assert_eq!(body["approval"]["tool_name"], "reboot_device");
    assert_eq!(body["approval"]["arguments"]["device_id"], "d1");
    assert!(
        !String::from_utf8_lossy(&got[0].body).contains("hunter2"),
        "secret-looking values are redacted: {body}"
    );
    assert_eq!(reboots(&sim), 0);
}

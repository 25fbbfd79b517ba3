//! Two gateway replicas sharing Redis, 200 concurrent clients hammering one limited tool: no
//! window-long interval holds more than `max` admissions. Checked from timestamps taken outside
//! the gateway, never from its counters: each admitted call was admitted after its client sent it
//! and before the upstream received it, so `max + 1` calls that were all sent and received within
//! one window prove a violation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::Settings;
use sqlx::PgPool;

use crate::support::*;

const WINDOW: Duration = Duration::from_secs(2);
const MAX: usize = 40;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn two_replicas_never_admit_more_than_max_per_window(pool: PgPool) {
    let store = store(pool);
    let (recorder, url, _upstream) = recorder().await;
    let policy = format!(
        r#"{{"version":"1","default":"deny","tools":{{"retry_task":{{"limits":[{{"counter":"hammer","window":{},"max":{MAX},"scope":"server"}}]}}}}}}"#,
        WINDOW.as_secs()
    );
    let seed = seed(&store, &url, &policy).await;
    let a = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let b = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let urls = [a.url(&seed), b.url(&seed)];
    let client = reqwest::Client::new();
    let admitted = Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
    let denied = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + WINDOW * 5 / 2;
    let mut clients = Vec::new();
    for i in 0..200 {
        let url = urls[i % 2].clone();
        let token = seed.token.clone();
        let client = client.clone();
        let (admitted, denied) = (admitted.clone(), denied.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"c{i}-{n}"}}}}}}"#
                );
                let task = format!("c{i}-{n}");
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let text = response.text().await.expect("body");
                if text.contains("[POLICY DENIED]") {
                    denied.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                } else {
                    assert!(text.contains(r#""text":"ok""#), "{text}");
                    admitted.lock().unwrap().insert(task, sent);
                }
            }
        }));
    }
    for c in clients {
        c.await.expect("client");
    }
    let sent = admitted.lock().unwrap().clone();
    let arrivals = recorder.arrivals.lock().unwrap().clone();
    assert_eq!(
        arrivals.len(),
        sent.len(),
        "every admitted call reached the upstream once"
    );
    assert!(denied.load(Ordering::Relaxed) > 0);
    assert!(
        arrivals.len() >= 2 * MAX,
        "too few admitted: {}",
        arrivals.len()
    );
    // (sent, arrived) per admitted call, by send time.
    let mut spans: Vec<(Instant, Instant)> = arrivals
        .iter()
        .map(|(task, arrived)| (sent[task], *arrived))
        .collect();
    spans.sort();
    let mut worst = 0;
    for (i, (start, _)) in spans.iter().enumerate() {
        let inside = spans[i..]
            .iter()
            .filter(|(_, arrived)| arrived.duration_since(*start) < WINDOW)
            .count();
        worst = worst.max(inside);
    }
    assert!(
        worst <= MAX,
        "{worst} calls were sent and arrived within one window (max {MAX})"
    );
    let latency = spans
        .iter()
        .map(|(s, a)| a.duration_since(*s))
        .max()
        .unwrap();
    eprintln!(
        "admitted {} denied {} worst window {worst}/{MAX}, slowest forward {latency:?}",
        arrivals.len(),
        denied.load(Ordering::Relaxed)
    );
}

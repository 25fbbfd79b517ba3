//! A gateway told to stop (SIGTERM, Ctrl-C) answers the calls it already forwarded and writes
//! their audit outcomes before it returns, so a rolling restart loses no outcome.

use std::time::{Duration, Instant};

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_stopping_gateway_answers_the_calls_in_flight_and_writes_their_outcomes(pool: PgPool) {
    let store = store(pool);
    let slow = Duration::from_millis(600);
    let mut config = SimConfig::default();
    config.latency.insert("retry_task".into(), slow);
    let sim = sim(config).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let mut gw = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;
    let mut session = Session::open(&gw.url(&seed), &seed.token).await;
    let started = Instant::now();
    let in_flight = tokio::spawn(async move {
        session
            .call("retry_task", json!({"task_id": "t-1"}))
            .await
            .json()
    });
    // The call is at the upstream when the gateway is told to stop.
    tokio::time::sleep(slow / 3).await;
    let url = gw.url(&seed);
    {
        let stopping = gw.stop();
        tokio::pin!(stopping);
        tokio::select! {
            () = &mut stopping => panic!("the gateway stopped before answering the call in flight"),
            () = tokio::time::sleep(slow / 3) => {}
        }
        // Meanwhile no new connection is accepted.
        let refused = http()
            .post(&url)
            .bearer_auth(&seed.token)
            .body(initialize_body())
            .send()
            .await;
        assert!(
            refused.is_err(),
            "a stopping gateway took a new request: {refused:?}"
        );
        stopping.await;
    }
    let answer = in_flight.await.unwrap();
    assert!(started.elapsed() >= slow);
    assert!(
        answer["result"]["content"].is_array(),
        "the call in flight was answered by the upstream: {answer}"
    );
    // Its outcome is known (the journal's flush at stop is proven in the audit crate's tests).
    let events = gw.audit_events(seed.org).await;
    let call = events
        .iter()
        .find(|e| e.tool_name.as_deref() == Some("retry_task"))
        .expect("the call's event");
    assert_eq!(call.upstream_status, Some(200));
    assert!(call.latency_us.unwrap() >= slow.as_micros() as u64 as i64);
}

//! The seed scenario driven by the TypeScript SDK's client (`tests/peers/gateway-seed.mjs`).

use gateway::Settings;
use genieacs_sim::SimConfig;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sdk_client_seed_scenario(pool: PgPool) {
    let dir = peers_dir();
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "tests/peers/node_modules is missing: run scripts/test (npm ci)"
    );
    let store = store(pool);
    let sim = sim(SimConfig::default()).await;
    let seed = seed(&store, &sim.url, SEED_POLICY).await;
    let gw = gateway(
        &store,
        Settings::local(),
        Limits::Redis { channel: channel() },
    )
    .await;

    let out = tokio::process::Command::new("node")
        .args(["gateway-seed.mjs", &gw.url(&seed), &seed.token, "31"])
        .current_dir(&dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gateway-seed.mjs failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(result["tools"], serde_json::json!(["retry_task"]));
    let retry = result["retry"].as_array().unwrap();
    assert_eq!(retry.len(), 31);
    for (i, r) in retry[..30].iter().enumerate() {
        assert!(
            !r["text"].as_str().unwrap().starts_with("[POLICY DENIED]"),
            "call {i}: {r}"
        );
    }
    let last = &retry[30];
    assert_eq!(last["isError"], true);
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .starts_with("[POLICY DENIED] rate limit"),
        "{last}"
    );
    assert!(
        last["meta"]["io.gatehouse/decision"]["retry_after_ms"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(result["reboot"]["error"]["code"], -32602, "{result}");
    assert!(
        result["reboot"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool: reboot_device")
    );
    assert_eq!(sim.state.calls().len(), 30);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sdk_client_sampling_round_trip_through_the_gateway(pool: PgPool) {
    let store = store(pool);
    let upstream = everything().await;
    let seed = seed(
        &store,
        &upstream.url,
        r#"{"version":"1","default":"allow","hide":["get-env"]}"#,
    )
    .await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let out = tokio::process::Command::new("node")
        .args(["gateway-sampling.mjs", &gw.url(&seed), &seed.token])
        .current_dir(peers_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gateway-sampling.mjs failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).expect("JSON");
    let tools: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"echo") && tools.contains(&"trigger-sampling-request"),
        "{tools:?}"
    );
    assert!(
        !tools.contains(&"get-env"),
        "hidden tools are not listed: {tools:?}"
    );
    assert!(
        result["echo"]
            .as_str()
            .unwrap()
            .contains("hello through the gateway"),
        "{result}"
    );
    assert_eq!(result["sampled"].as_array().unwrap().len(), 1, "{result}");
    assert!(
        result["sampling"]
            .as_str()
            .unwrap()
            .contains("canned answer 42"),
        "{result}"
    );
    assert_eq!(result["getEnv"]["error"]["code"], -32602, "{result}");
}

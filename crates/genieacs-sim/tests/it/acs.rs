//! The simulated ACS behind the tools: error shapes, searches, task and fault semantics,
//! presets and provisions, and the test hooks (overrides, injection, call log, cheap mode).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use genieacs_sim::{Behaviour, SimConfig};
use serde_json::{Value, json};

use crate::support::{Session, spawn, spawn_default};

const DEV0: &str = "00236A-SmartRG585-SMRT00236a42";

#[tokio::test]
async fn error_shapes_match_the_real_server() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;
    let cases = [
        (
            "reboot_device",
            json!({"device_id": "nope"}),
            "ACS error 404: No such device",
        ),
        (
            "connection_request",
            json!({"device_id": "nope"}),
            "ACS error 404: No such device",
        ),
        (
            "tag_device",
            json!({"device_id": "nope", "tag": "x", "action": "add"}),
            "ACS error 404: No such device",
        ),
        (
            "delete_task",
            json!({"task_id": "000000000000000000000000"}),
            "ACS error 404: Task not found",
        ),
        (
            "retry_task",
            json!({"task_id": "000000000000000000000000"}),
            "ACS error 404: Task not found",
        ),
        (
            "search_devices",
            json!({"query": "{bad"}),
            "ACS error 400: Invalid JSON",
        ),
        (
            "search_devices",
            json!({"query": "{\"a\":{\"$where\":1}}"}),
            "ACS error 400: unknown operator",
        ),
        (
            "set_parameter",
            json!({"device_id": DEV0, "parameter_values": "[[oops"}),
            "ACS error 400: Invalid JSON",
        ),
        (
            "manage_preset",
            json!({"action": "put", "name": "p", "body": "nope"}),
            "ACS error 400: Invalid JSON",
        ),
        (
            "manage_provision",
            json!({"action": "put", "name": "p", "script": "declare(\"x\", {value: 1}"}),
            "ACS error 400: SyntaxError: Unexpected end of input",
        ),
        (
            "reboot_device",
            json!({}),
            "required argument \"device_id\" not found",
        ),
        (
            "tag_device",
            json!({"device_id": DEV0, "tag": "x", "action": "toggle"}),
            "invalid action",
        ),
    ];
    for (tool, args, prefix) in cases {
        let (text, is_error) = s.call(tool, args.clone()).await;
        assert!(is_error, "{tool}({args}) should fail, got {text}");
        assert!(
            text.starts_with(prefix),
            "{tool}({args}): {text:?} does not start with {prefix:?}"
        );
    }
    // A device that never answers: connection requests time out with 504.
    let offline = sim
        .state
        .with_acs(|a| a.device_with(|b| b == Behaviour::Offline))
        .unwrap();
    let (text, is_error) = s
        .call("connection_request", json!({"device_id": offline}))
        .await;
    assert!(is_error && text.starts_with("ACS error 504: "), "{text}");
}

#[tokio::test]
async fn fleet_is_seeded_and_deterministic() {
    let a = spawn_default().await;
    let b = spawn_default().await;
    let ids_a: Vec<_> = a.state.with_acs(|acs| acs.devices());
    let ids_b: Vec<_> = b.state.with_acs(|acs| acs.devices());
    assert_eq!(ids_a, ids_b);
    assert_eq!(ids_a.len(), 50);
    assert!(ids_a.iter().any(|(id, _)| id == DEV0));
    let c = spawn(SimConfig {
        seed: 7,
        devices: 10,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(c.state.with_acs(|acs| acs.devices()).len(), 10);

    let doc = a
        .state
        .with_acs(|acs| acs.device_doc(DEV0).cloned())
        .unwrap();
    assert_eq!(doc["_deviceId"]["_OUI"], json!("00236A"));
    assert!(doc["InternetGatewayDevice"]["DeviceInfo"]["SoftwareVersion"]["_value"].is_string());
    assert!(doc["_lastInform"].as_str().unwrap().ends_with('Z'));
    // Both data models are present.
    let s = Session::open(&a.url).await;
    let tr181 = s
        .call_ok(
            "search_devices",
            json!({"query": "{\"Device\":{\"$exists\":true}}"}),
        )
        .await;
    let tr098 = s
        .call_ok(
            "search_devices",
            json!({"query": "{\"InternetGatewayDevice\":{\"$exists\":true}}"}),
        )
        .await;
    assert!(!tr181.as_array().unwrap().is_empty() && !tr098.as_array().unwrap().is_empty());
    assert_eq!(
        tr181.as_array().unwrap().len() + tr098.as_array().unwrap().len(),
        50
    );
}

#[tokio::test]
async fn search_queries() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let q = |q: Value| json!({"query": q.to_string(), "limit": "100"});

    assert_eq!(
        ids(&s.call_ok("search_devices", q(json!({"_id": DEV0}))).await),
        vec![DEV0]
    );
    let all = s.call_ok("search_devices", json!({"query": "{}"})).await;
    assert_eq!(all.as_array().unwrap().len(), 50, "default limit is 50");
    let five = s
        .call_ok("search_devices", json!({"query": "{}", "limit": "5"}))
        .await;
    assert_eq!(five.as_array().unwrap().len(), 5);

    let smartrg = ids(&s
        .call_ok("search_devices", q(json!({"_id": {"$regex": "^00236A-"}})))
        .await);
    assert!(smartrg.iter().all(|i| i.starts_with("00236A-")) && smartrg.contains(&DEV0.to_owned()));
    let lab = ids(&s
        .call_ok("search_devices", q(json!({"_tags": "lab"})))
        .await);
    assert!(lab.contains(&DEV0.to_owned()));
    let not_lab = ids(&s
        .call_ok("search_devices", q(json!({"_tags": {"$ne": "lab"}})))
        .await);
    assert_eq!(lab.len() + not_lab.len(), 50);
    let either = ids(&s
        .call_ok(
            "search_devices",
            q(json!({"$or": [{"_tags": "lab"}, {"_id": {"$in": smartrg}}]})),
        )
        .await);
    assert!(either.len() >= lab.len());
    let version = s
        .call_ok("search_devices", q(json!({"InternetGatewayDevice.DeviceInfo.SoftwareVersion._value": {"$in": ["2.5.0.7", "2.6.1.3", "2.6.2.1"]}})))
        .await;
    assert!(ids(&version).iter().all(|i| i.starts_with("00236A-")));
    let busy = s.call_ok("search_devices", q(json!({"InternetGatewayDevice.LANDevice.1.Hosts.HostNumberOfEntries": {"$gte": 0, "$lt": 1000}}))).await;
    assert_eq!(
        busy.as_array().unwrap().len(),
        ids(&s
            .call_ok(
                "search_devices",
                q(json!({"InternetGatewayDevice": {"$exists": true}}))
            )
            .await)
        .len()
    );

    // Offline devices have not informed for more than a day.
    let now = sim.state.with_acs(|a| a.now());
    let day_ago = iso(now - 86_400_000);
    let stale = ids(&s
        .call_ok(
            "search_devices",
            q(json!({"_lastInform": {"$lt": day_ago}})),
        )
        .await);
    let offline: Vec<String> = sim
        .state
        .with_acs(|a| a.devices())
        .into_iter()
        .filter(|(_, b)| *b == Behaviour::Offline)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stale.len(), offline.len());
    assert!(stale.iter().all(|i| offline.contains(i)));
    let nothing = s
        .call_ok(
            "search_devices",
            q(json!({"$and": [{"_tags": "lab"}, {"_tags": {"$nin": ["lab"]}}]})),
        )
        .await;
    assert_eq!(nothing, json!([]));
}

fn iso(ms: i64) -> String {
    // Reuse the server's formatting through a round trip: search by a value the sim printed.
    let secs = ms / 1000;
    let (days, tod) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        ms % 1000
    )
}

#[tokio::test]
async fn tasks_faults_retry_and_delete() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;

    // Online device: the task runs at once and is deleted (completed tasks do not stay).
    let task = s.call_ok("reboot_device", json!({"device_id": DEV0})).await;
    assert_eq!(task["name"], json!("reboot"));
    assert_eq!(task["_id"].as_str().unwrap().len(), 24);
    assert_eq!(s.read(&format!("genieacs://tasks/{DEV0}")).await, json!([]));
    let up = s
        .call_ok(
            "get_parameter",
            json!({"device_id": DEV0, "parameter_path": "InternetGatewayDevice.DeviceInfo.UpTime"}),
        )
        .await;
    assert_eq!(
        up[0]["InternetGatewayDevice"]["DeviceInfo"]["UpTime"]["_value"],
        json!(0),
        "rebooted"
    );

    // Offline device: the task stays queued, no fault.
    let offline = sim
        .state
        .with_acs(|a| a.device_with(|b| b == Behaviour::Offline))
        .unwrap();
    let queued = s
        .call_ok(
            "refresh_parameter",
            json!({"device_id": offline, "parameter": "Device.DeviceInfo.UpTime"}),
        )
        .await;
    let tasks = s.read(&format!("genieacs://tasks/{offline}")).await;
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["_id"] == queued["_id"])
    );

    // Fault-prone device: the task faults with a CWMP code; the fault names the task.
    let faulty = sim
        .state
        .with_acs(|a| a.device_with(|b| matches!(b, Behaviour::Faulty(_))))
        .unwrap();
    let t = s
        .call_ok("reboot_device", json!({"device_id": faulty}))
        .await;
    let tid = t["_id"].as_str().unwrap().to_owned();
    let fault_id = format!("{faulty}:task_{tid}");
    let faults = s.read(&format!("genieacs://faults/{faulty}")).await;
    let fault = faults
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["_id"] == json!(fault_id))
        .expect("fault")
        .clone();
    let code = fault["code"].as_str().unwrap();
    assert!(code.starts_with("cwmp.90"), "{code}");
    assert_eq!(fault["retries"], json!(0));
    assert!(
        fault["detail"]["faultCode"]
            .as_str()
            .unwrap()
            .starts_with("90")
    );

    // retry_task only clears the fault: the task stays until the device's next session.
    s.call_ok("retry_task", json!({"task_id": tid})).await;
    let faults = s.read(&format!("genieacs://faults/{faulty}")).await;
    assert!(
        !faults
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["_id"] == json!(fault_id))
    );
    let tasks = s.read(&format!("genieacs://tasks/{faulty}")).await;
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["_id"] == json!(tid))
    );
    // Retrying a task without a fault changes nothing, and succeeds.
    s.call_ok("retry_task", json!({"task_id": tid})).await;
    // The next session runs it again; this device faults again.
    s.call_ok("connection_request", json!({"device_id": faulty}))
        .await;
    let faults = s.read(&format!("genieacs://faults/{faulty}")).await;
    assert!(
        faults
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["_id"] == json!(fault_id))
    );

    // delete_task removes the task and its fault; a second delete is 404.
    s.call_ok("delete_task", json!({"task_id": tid})).await;
    let tasks = s.read(&format!("genieacs://tasks/{faulty}")).await;
    assert!(
        !tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["_id"] == json!(tid))
    );
    let faults = s.read(&format!("genieacs://faults/{faulty}")).await;
    assert!(
        !faults
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["_id"] == json!(fault_id))
    );
    let (text, is_error) = s.call("delete_task", json!({"task_id": tid})).await;
    assert!(
        is_error && text == "ACS error 404: Task not found",
        "{text}"
    );

    // The seeded backlog: fault-prone devices start with a faulted download.
    assert!(
        sim.state
            .with_acs(|a| a.all_faults())
            .iter()
            .any(|f| f["retries"] == json!(1))
    );
}

#[tokio::test]
async fn parameters_firmware_tags_presets_provisions() {
    let sim = spawn_default().await;
    let s = Session::open(&sim.url).await;
    let ssid = "InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID";
    s.call_ok("set_parameter", json!({"device_id": DEV0, "parameter_values": json!([[ssid, "Guest", "xsd:string"]]).to_string()})).await;
    let got = s.call_ok("get_parameter", json!({"device_id": DEV0, "parameter_path": format!("{ssid}, InternetGatewayDevice.DeviceInfo.SerialNumber")})).await;
    assert_eq!(
        got[0]["InternetGatewayDevice"]["LANDevice"]["1"]["WLANConfiguration"]["1"]["SSID"]["_value"],
        json!("Guest")
    );
    assert_eq!(
        got[0]["InternetGatewayDevice"]["DeviceInfo"]["SerialNumber"]["_value"],
        json!("SMRT00236a42")
    );

    // A read-only parameter: the CPE faults 9008 and the task stays with its fault.
    let t = s.call_ok("set_parameter", json!({"device_id": DEV0, "parameter_values": json!([["InternetGatewayDevice.DeviceInfo.SerialNumber", "X"]]).to_string()})).await;
    let faults = s.read(&format!("genieacs://faults/{DEV0}")).await;
    let f = faults
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["channel"] == json!(format!("task_{}", t["_id"].as_str().unwrap())))
        .unwrap()
        .clone();
    assert_eq!(f["code"], json!("cwmp.9008"));
    // An unknown parameter: 9005.
    s.call_ok(
        "refresh_parameter",
        json!({"device_id": DEV0, "parameter": "InternetGatewayDevice.Nope"}),
    )
    .await;
    assert!(
        s.read(&format!("genieacs://faults/{DEV0}"))
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == json!("cwmp.9005"))
    );

    // Firmware: a stored image is flashed and the version changes.
    let files = s.read("genieacs://file/SmartRG585-2.6.2.1.bin").await;
    assert_eq!(files[0]["metadata"]["version"], json!("2.6.2.1"));
    s.call_ok(
        "download_firmware",
        json!({"device_id": DEV0, "file_id": "SmartRG585-2.6.2.1.bin", "filename": "fw.bin"}),
    )
    .await;
    let v = s.call_ok("get_parameter", json!({"device_id": DEV0, "parameter_path": "InternetGatewayDevice.DeviceInfo.SoftwareVersion"})).await;
    assert_eq!(
        v[0]["InternetGatewayDevice"]["DeviceInfo"]["SoftwareVersion"]["_value"],
        json!("2.6.2.1")
    );

    // Tags.
    s.call_ok(
        "tag_device",
        json!({"device_id": DEV0, "tag": "maintenance", "action": "add"}),
    )
    .await;
    let found = s
        .call_ok(
            "search_devices",
            json!({"query": "{\"_tags\":\"maintenance\"}"}),
        )
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    s.call_ok(
        "tag_device",
        json!({"device_id": DEV0, "tag": "maintenance", "action": "remove"}),
    )
    .await;
    assert_eq!(
        s.call_ok(
            "search_devices",
            json!({"query": "{\"_tags\":\"maintenance\"}"})
        )
        .await,
        json!([])
    );

    // Presets and provisions by name.
    s.call_ok("manage_preset", json!({"action": "put", "name": "wifi", "body": "{\"weight\":1,\"precondition\":\"\",\"configurations\":[]}"})).await;
    assert!(
        s.read("genieacs://presets/list")
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["_id"] == json!("wifi"))
    );
    s.call_ok("manage_preset", json!({"action": "delete", "name": "wifi"}))
        .await;
    assert!(
        !s.read("genieacs://presets/list")
            .await
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["_id"] == json!("wifi"))
    );
    s.call_ok("manage_provision", json!({"action": "put", "name": "ntp", "script": "declare(\"Device.Time.NTPServer1\", {value: Date.now()}, {value: \"ntp.example\"});"})).await;
    let provs = s.read("genieacs://provisions/list").await;
    assert!(
        provs
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["_id"] == json!("ntp")
                && p["script"].as_str().unwrap().contains("NTPServer1"))
    );
    s.call_ok(
        "manage_provision",
        json!({"action": "delete", "name": "ntp"}),
    )
    .await;

    // Resources: the device list and a device document.
    let list = s.read("genieacs://devices/list").await;
    assert_eq!(list.as_array().unwrap().len(), 50);
    let dev = s.read(&format!("genieacs://device/{DEV0}")).await;
    assert_eq!(dev[0]["_id"], json!(DEV0));
}

#[tokio::test]
async fn description_override_latency_failures_and_call_log() {
    let dir = std::env::temp_dir().join(format!("genieacs-sim-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("calls.jsonl");
    let _ = std::fs::remove_file(&log_path);
    let sim = spawn(SimConfig {
        tool_descriptions: HashMap::from([(
            "reboot_device".to_owned(),
            "Pinned? Not any more.".to_owned(),
        )]),
        latency: HashMap::from([("get_parameter".to_owned(), Duration::from_millis(150))]),
        failure_rate: HashMap::from([("tag_device".to_owned(), 1.0)]),
        call_log: Some(log_path.clone()),
        ..SimConfig::default()
    })
    .await;
    let s = Session::open(&sim.url).await;
    let tools = s.request("tools/list", json!({})).await;
    let reboot = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == json!("reboot_device"))
        .unwrap()
        .clone();
    assert_eq!(reboot["description"], json!("Pinned? Not any more."));

    let start = Instant::now();
    s.call_ok(
        "get_parameter",
        json!({"device_id": DEV0, "parameter_path": "InternetGatewayDevice.DeviceInfo.UpTime"}),
    )
    .await;
    assert!(start.elapsed() >= Duration::from_millis(150));

    let (text, is_error) = s
        .call(
            "tag_device",
            json!({"device_id": DEV0, "tag": "x", "action": "add"}),
        )
        .await;
    assert!(is_error && text.starts_with("ACS error 503: "), "{text}");

    let calls = sim.state.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].tool, "get_parameter");
    assert_eq!(calls[0].session_id, s.id);
    assert_eq!(calls[1].arguments["tag"], json!("x"));
    assert!(calls[1].is_error);
    let lines: Vec<Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["tool"], json!("tag_device"));
    assert_eq!(lines[0]["seq"], json!(1));
}

#[tokio::test]
async fn cheap_mode_returns_a_fixed_result_without_touching_the_acs() {
    let sim = spawn(SimConfig {
        cheap: true,
        ..SimConfig::default()
    })
    .await;
    let s = Session::open(&sim.url).await;
    for _ in 0..20 {
        let (text, is_error) = s
            .call("reboot_device", json!({"device_id": "anything"}))
            .await;
        assert_eq!((text.as_str(), is_error), ("{\"ok\":true}", false));
    }
    assert_eq!(sim.state.call_count(), 20);
    assert!(
        sim.state.calls().is_empty(),
        "cheap mode keeps no records in memory"
    );
    // Unknown tools are still refused.
    let v = s
        .request("tools/call", json!({"name": "nope", "arguments": {}}))
        .await;
    assert_eq!(v["error"]["code"], json!(-32602));
}

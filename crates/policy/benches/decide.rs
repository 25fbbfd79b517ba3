//! Median decision time for a 12-tool GenieACS policy with conditions and limits
//! (budget: ≤ 2 µs, DESIGN.md §11), beside a baseline every gateway request pays anyway:
//! parsing the same `tools/call` body with serde_json.
//!
//! Run: `cargo bench -p policy --bench decide`. Prints criterion's figures, then the medians
//! and the ratio of each decision to the baseline.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use policy::{Call, Policy, Subject};
use serde_json::{Value, json};

const SUBJECT: Subject<'static> = Subject {
    organisation: "0b6f3c1e-5d0a-4c43-9f0e-2f1f5a7c9d11",
    server: "7d1e9a44-2c55-4a9b-8b7e-31c0d1a2b3c4",
    grant: "e3a1c2d4-9b8f-4e6d-a1b2-c3d4e5f60718",
    identity: "noc-agent",
    session: Some("s-1"),
};

/// All 12 GenieACS tools, with conditions, limits, an approval, a denial and a hidden tool.
fn genieacs_policy() -> Policy {
    let text = json!({
        "version": "1",
        "default": "deny",
        "on_deny": "Ask the NOC lead before touching devices.",
        "hide": ["delete_task"],
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 120}]},
        "tools": {
            "search_devices": {"deny_if": [{"path": "args.limit", "op": "gt", "value": 500}]},
            "get_parameter": {
                "require": [{"path": "args.device_id", "op": "regex", "value": "^[0-9A-F]{6}-[A-Za-z0-9]+-[A-Za-z0-9]+$"}],
                "limits": [{"counter": "reads", "window": "minute", "max": 60}]
            },
            "refresh_parameter": {"limits": [{"counter": "reads", "window": "minute", "max": 60}]},
            "retry_task": {"limits": [{"counter": "retry_task_rate", "window": "minute", "max": 30}]},
            "set_parameter": {
                "require": [{"path": "args.device_id", "op": "regex", "value": "^00236A-"}],
                "deny_if": [
                    {"path": "args.parameter_values", "op": "contains", "value": "Password"},
                    {"path": "args.parameter_values", "op": "contains", "value": "ManagementServer"}
                ],
                "on_deny": "Passwords are changed by the provisioning team only."
            },
            "tag_device": {"require": [{"path": "args.action", "op": "in", "value": ["add", "remove"]}]},
            "reboot_device": {"approval": {"timeout": "10m"}},
            "connection_request": {"limits": [{"counter": "cr", "window": 10, "max": 5, "scope": "server"}]},
            "manage_preset": {"require": [{"path": "args.action", "op": "eq", "value": "put"}]},
            "manage_provision": {"action": "deny", "reason": "Provisions are reviewed code."},
            "download_firmware": {"action": "deny", "reason": "Firmware rollouts go through change control."},
            "delete_task": {}
        }
    });
    Policy::parse(&text.to_string(), None).expect("benchmark policy is valid")
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    let policy = genieacs_policy();
    let set_parameter = json!({
        "device_id": "00236A-SmartRG585-SMRT00236a42",
        "parameter_values": "[[\"InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID\",\"home\",\"xsd:string\"]]"
    });
    let get_parameter = json!({"device_id": "00236A-SmartRG585-SMRT00236a42", "parameter_path": "InternetGatewayDevice.DeviceInfo.SoftwareVersion"});
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "set_parameter", "arguments": set_parameter}})
    .to_string();

    let cases: [(&str, &str, Value); 4] = [
        (
            "set_parameter (regex + 2 contains + limit)",
            "set_parameter",
            set_parameter,
        ),
        (
            "get_parameter (regex + 2 limits)",
            "get_parameter",
            get_parameter,
        ),
        (
            "reboot_device (limit + approval)",
            "reboot_device",
            json!({"device_id": "00236A-x-y"}),
        ),
        (
            "download_firmware (denied)",
            "download_firmware",
            json!({"device_id": "d", "file_id": "f"}),
        ),
    ];

    let mut group = c.benchmark_group("policy");
    group.bench_function("baseline: serde_json parse of the tools/call body", |b| {
        b.iter(|| black_box(serde_json::from_str::<Value>(black_box(&body)).expect("valid")))
    });
    for (label, tool, args) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| {
                black_box(policy.decide(black_box(&Call {
                    tool,
                    arguments: Some(args),
                    subject: SUBJECT,
                })))
            })
        });
    }
    group.finish();
    c.final_summary();

    let median = |name: &str| -> Option<f64> {
        let dir = name.replace([':', '/'], "_");
        let path = out.join("policy").join(dir).join("new/estimates.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let Some(baseline) = median("baseline: serde_json parse of the tools/call body") else {
        // `cargo bench -- --list` and filtered runs measure nothing to compare.
        return;
    };
    println!("\npolicy decision, median (budget ≤ 2000 ns):");
    println!(
        "  {:52} {:>9.0} ns  1.00× baseline",
        "baseline: serde_json parse of the tools/call body", baseline
    );
    for (label, _, _) in &cases {
        if let Some(m) = median(label) {
            let verdict = if m <= 2000.0 {
                "within budget"
            } else {
                "OVER BUDGET"
            };
            println!(
                "  {label:52} {m:>9.0} ns  {:.2}× baseline  {verdict}",
                m / baseline
            );
        }
    }
}

//! Classifying a `tools/call` body with `mcp::message::parse` (method, id, name and arguments,
//! nothing re-serialised) beside the baseline of parsing the whole body into a `serde_json::Value`.
//!
//! Run: `cargo bench -p mcp --bench classify`. Prints criterion's figures, then the medians and
//! the ratio of each to its baseline.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::Criterion;
use mcp::message::{self, Body};
use serde_json::{Value, json};

/// A typical GenieACS `tools/call`, with `_meta` as the TypeScript SDK sends it.
fn typical() -> String {
    json!({
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": "set_parameter",
            "arguments": {
                "device_id": "00236A-SmartRG585-SMRT00236a42",
                "parameter_values": "[[\"InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID\",\"home\",\"xsd:string\"]]"
            },
            "_meta": {"progressToken": 7}
        }
    })
    .to_string()
}

/// A `tools/call` with small arguments but a large unknown member (a client extension, a
/// 2026-07-28 `_meta` with capabilities): the classifier skips what the decision does not need.
fn with_large_extras() -> String {
    let capabilities: Vec<Value> = (0..200)
        .map(|i| json!({"name": format!("cap-{i}"), "settings": {"enabled": true, "level": i}}))
        .collect();
    json!({
        "jsonrpc": "2.0",
        "id": "req-19",
        "method": "tools/call",
        "params": {
            "name": "get_parameter",
            "arguments": {"device_id": "00236A-x-y", "parameter_path": "InternetGatewayDevice.DeviceInfo.SoftwareVersion"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"extensions": capabilities}
            }
        }
    })
    .to_string()
}

fn classify(body: &[u8]) -> usize {
    match message::parse(body).expect("valid") {
        Body::Single(m) => m.tool_call().expect("a tools/call").name.len(),
        Body::Batch(_) => unreachable!("a single message"),
    }
}

fn main() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    let cases = [
        ("typical", typical()),
        ("large extras", with_large_extras()),
    ];
    let mut group = c.benchmark_group("classify");
    for (label, body) in &cases {
        group.bench_function(format!("{label}: serde_json Value (baseline)"), |b| {
            b.iter(|| {
                black_box(
                    serde_json::from_slice::<Value>(black_box(body.as_bytes())).expect("valid"),
                )
            })
        });
        group.bench_function(format!("{label}: mcp::message::parse"), |b| {
            b.iter(|| black_box(classify(black_box(body.as_bytes()))))
        });
    }
    group.finish();
    c.final_summary();

    let median = |name: &str| -> Option<f64> {
        let dir = name.replace([':', '/'], "_");
        let path = out.join("classify").join(dir).join("new/estimates.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    println!("\nclassifying a tools/call body, median:");
    for (label, body) in &cases {
        let (Some(baseline), Some(ours)) = (
            median(&format!("{label}: serde_json Value (baseline)")),
            median(&format!("{label}: mcp::message::parse")),
        ) else {
            // `cargo bench -- --list` and filtered runs measure nothing to compare.
            continue;
        };
        println!(
            "  {label:13} ({:>5} bytes)  serde_json Value {baseline:>8.0} ns   mcp::message::parse {ours:>8.0} ns   ratio {:.2}×",
            body.len(),
            ours / baseline
        );
    }
}

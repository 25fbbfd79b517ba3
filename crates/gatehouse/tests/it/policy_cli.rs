//! `gatehouse policy check|explain|recommend` and `gatehouse tools classify`.

use std::path::PathBuf;
use std::process::{Command, Output};

use expect_test::expect;
use serde_json::Value;

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn gatehouse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data"))
        .output()
        .expect("gatehouse runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[test]
fn check_prints_a_summary_and_exits_0_for_a_valid_policy() {
    let out = gatehouse(&[
        "policy",
        "check",
        "policy-design.json",
        "--tools",
        "genieacs-tools.json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    expect![[r#"
        policy-design.json: valid policy
          default:   deny
          tools:     search_devices, get_parameter, retry_task, set_parameter, reboot_device, download_firmware
          hidden:    delete_task
          denied:    download_firmware
          approval:  reboot_device
          limits:    3
    "#]].assert_eq(&stdout(&out));
}

#[test]
fn check_prints_every_error_with_pointer_and_position_and_exits_1() {
    let out = gatehouse(&["policy", "check", "policy-bad.json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    expect![[r#"
        policy-bad.json:2:14: error at /version: expected the string "1", found the number 1; write "version": "1"
        policy-bad.json:5:24: error at /tools/reboot_device/acton: unknown field `acton`; did you mean `action`? (expected one of `action`, `reason`, `on_deny`, `require`, `deny_if`, `limits`, `approval`, `record_arguments`)
        policy-bad.json:6:60: error at /tools/retry_task/limits/0/window: expected "second", "minute", "hour", "day" or a whole number of seconds, found "minutes"; did you mean `minute`?
        policy-bad.json:6:78: error at /tools/retry_task/limits/0/max: `max` must be at least 1; to refuse every call, use "action": "deny"
        policy-bad.json:7:46: error at /tools/set_parameter/require/0/path: a condition path starts with `args.` and names an argument, such as "args.device_id"; found "device_id"
        policy-bad.json:7:83: error at /tools/set_parameter/require/0/value: invalid regular expression: unclosed group
        policy-bad.json: 6 errors
    "#]].assert_eq(&stdout(&out));

    let json = gatehouse(&["policy", "check", "policy-bad.json", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["valid"], false);
    let first = &v["diagnostics"][0];
    assert_eq!(first["pointer"], "/version");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(2), Some(14))
    );
}

#[test]
fn check_against_the_tools_finds_unknown_tools() {
    let dir = tempdir();
    let file = dir.join("typo.json");
    std::fs::write(
        &file,
        r#"{"version": "1", "default": "deny", "tools": {"reboot_devices": {}}}"#,
    )
    .unwrap();
    let out = gatehouse(&[
        "policy",
        "check",
        file.to_str().unwrap(),
        "--tools",
        &data("genieacs-tools.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(":1:47: error at /tools/reboot_devices: the server has no tool `reboot_devices`; did you mean `reboot_device`?"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = gatehouse(&["policy", "check", "no-such-file.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading no-such-file.json"));
}

#[test]
fn explain_prints_the_decision_and_its_rule() {
    let explain = |tool: &str, args: &str| {
        let out = gatehouse(&[
            "policy",
            "explain",
            "policy-design.json",
            "--tool",
            tool,
            "--args",
            args,
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        stdout(&out)
    };
    expect![[r#"
        deny (rule /tools/download_firmware/action): [POLICY DENIED] Firmware rollouts go through change control.
          because: `download_firmware` is denied by this server's policy
    "#]].assert_eq(&explain("download_firmware", r#"{"device_id": "d", "file_id": "f"}"#));
    expect![[r#"
        unknown tool (rule /hide/0): the agent gets JSON-RPC error -32602 "Unknown tool: delete_task"
    "#]].assert_eq(&explain("delete_task", r#"{"task_id": "t"}"#));
    expect![[r#"
        deny (rule /tools/set_parameter/deny_if/0): [POLICY DENIED] Passwords are changed by the provisioning team only.
          because: denied because args.parameter_values contains "Password"
    "#]].assert_eq(&explain("set_parameter", r#"{"device_id": "00236A-x", "parameter_values": "[[\"Device.Users.User.1.Password\",\"x\"]]"}"#));
    expect![[r#"
        rate limited: the call consumes these counters, atomically:
          calls (rule /all_tools/limits/0): at most 120 per 60 s per grant
          retry_task_rate (rule /tools/retry_task/limits/0): at most 30 per 60 s per grant
        then, if every counter admits it: allow (rule /tools/retry_task)
    "#]]
    .assert_eq(&explain("retry_task", r#"{"task_id": "t"}"#));
    expect![[r#"
        rate limited: the call consumes these counters, atomically:
          calls (rule /all_tools/limits/0): at most 120 per 60 s per grant
        then, if every counter admits it: approval (rule /tools/reboot_device/approval), held up to 600 s
    "#]].assert_eq(&explain("reboot_device", r#"{"device_id": "d"}"#));

    let json = gatehouse(&[
        "policy",
        "explain",
        "policy-design.json",
        "--tool",
        "search_devices",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["decision"], "needs_limits");
    assert_eq!(v["then"]["rule"], "/tools/search_devices");

    let bad = gatehouse(&[
        "policy",
        "explain",
        "policy-design.json",
        "--tool",
        "x",
        "--args",
        "[1]",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn classify_prints_class_level_and_signals() {
    let out = gatehouse(&["tools", "classify", "genieacs-tools.json", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let classes: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tool"].as_str().unwrap().to_string(),
                t["class"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(classes.len(), 12);
    let class_of = |name: &str| {
        classes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    };
    assert_eq!(class_of("search_devices"), Some("read"));
    assert_eq!(class_of("delete_task"), Some("destructive"));
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|t| t["level"].is_string() && t["signals"].is_array())
    );

    let text = gatehouse(&["tools", "classify", "genieacs-tools.json"]);
    let text = stdout(&text);
    assert!(text.starts_with("tool"), "{text}");
    assert_eq!(text.lines().count(), 13);
}

#[test]
fn recommend_prints_a_policy_that_validates_against_the_same_tools() {
    let out = gatehouse(&["policy", "recommend", "genieacs-tools.json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dir = tempdir();
    let file = dir.join("recommended.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = gatehouse(&[
        "policy",
        "check",
        file.to_str().unwrap(),
        "--tools",
        &data("genieacs-tools.json"),
    ]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["default"], "deny");
    assert_eq!(v["tools"]["search_devices"], serde_json::json!({}));
    assert!(
        v["hide"]
            .as_array()
            .unwrap()
            .contains(&Value::from("delete_task"))
    );
}

/// A fresh directory under the target dir's temp area, unique per test.
fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "policy-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! Helpers shared by the test modules.

use policy::{Call, Decision, Policy, Subject, ToolDef};
use serde_json::Value;

pub(crate) const SUBJECT: Subject<'static> = Subject {
    organisation: "org-1",
    server: "srv-1",
    grant: "grant-1",
    identity: "noc-agent",
    session: Some("sess-1"),
};

pub(crate) fn policy(text: &str) -> Policy {
    Policy::parse(text, None).unwrap_or_else(|d| panic!("policy should be valid:\n{d}\n{text}"))
}

pub(crate) fn decide(policy: &Policy, tool: &str, args: Value) -> Decision {
    policy.decide(&Call {
        tool,
        arguments: Some(&args),
        subject: SUBJECT,
    })
}

/// Every finding for a document, one per line, as `policy check` prints them.
pub(crate) fn diagnostics(text: &str, tools: Option<&[ToolDef]>) -> String {
    match Policy::parse(text, tools) {
        Ok(p) => p.warnings().iter().map(|d| format!("{d}\n")).collect(),
        Err(d) => d.0.iter().map(|d| format!("{d}\n")).collect(),
    }
}

/// The 12 GenieACS tools with their real parameter names (all strings), as test data.
pub(crate) fn genieacs_tools() -> Vec<ToolDef> {
    let params: &[(&str, &[&str], &[&str])] = &[
        ("reboot_device", &["device_id"], &["device_id"]),
        (
            "download_firmware",
            &["device_id", "file_id", "filename"],
            &["device_id", "file_id"],
        ),
        (
            "refresh_parameter",
            &["device_id", "parameter"],
            &["device_id", "parameter"],
        ),
        (
            "set_parameter",
            &["device_id", "parameter_values"],
            &["device_id", "parameter_values"],
        ),
        (
            "get_parameter",
            &["device_id", "parameter_path"],
            &["device_id", "parameter_path"],
        ),
        (
            "manage_preset",
            &["action", "name", "body"],
            &["action", "name"],
        ),
        (
            "manage_provision",
            &["action", "name", "script"],
            &["action", "name"],
        ),
        ("search_devices", &["query", "limit"], &["query"]),
        (
            "tag_device",
            &["device_id", "tag", "action"],
            &["device_id", "tag", "action"],
        ),
        ("connection_request", &["device_id"], &["device_id"]),
        ("delete_task", &["task_id"], &["task_id"]),
        ("retry_task", &["task_id"], &["task_id"]),
    ];
    params
        .iter()
        .map(|(name, props, required)| {
            let properties: serde_json::Map<String, Value> = props
                .iter()
                .map(|p| (p.to_string(), serde_json::json!({"type": "string"})))
                .collect();
            serde_json::from_value(serde_json::json!({
                "name": name,
                "description": format!("GenieACS {name}"),
                "inputSchema": {"type": "object", "properties": properties, "required": required},
            }))
            .expect("valid tool")
        })
        .collect()
}

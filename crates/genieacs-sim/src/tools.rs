//! The 12 tools of the GenieACS MCP server: the same names, parameters, required sets and
//! string types as the real server, with descriptions of our own and honest annotations, and
//! the glue from a `tools/call` to the simulated NBI.
//!
//! Result shapes follow the real server: a success is one text content item holding JSON the
//! NBI would return; an NBI error is `isError: true` with `ACS error <code>: <body>`; a missing
//! argument is `isError: true` with `required argument "<name>" not found`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::acs::{Acs, AcsError};

/// One parameter: name, required, description.
type Param = (&'static str, bool, &'static str);

/// A tool's static definition.
#[derive(Debug)]
pub struct ToolDef {
    /// The tool name, as the real server spells it.
    pub name: &'static str,
    /// Our own description (overridable with `--tool-description`).
    pub description: &'static str,
    params: &'static [Param],
    read_only: bool,
    destructive: bool,
    idempotent: bool,
}

const DEVICE_ID: Param = (
    "device_id",
    true,
    "GenieACS device id (`_id`), usually OUI-ProductClass-SerialNumber, e.g. 00236A-SmartRG585-SMRT00236a42.",
);

/// The 12 tools, in the order the real server registers them.
pub const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "reboot_device",
        description: "Queue a reboot task for a CPE and ask it to connect now. The device drops service while it restarts. Returns the task document; if the device is unreachable the task stays queued.",
        params: &[DEVICE_ID],
        read_only: false,
        destructive: true,
        idempotent: false,
    },
    ToolDef {
        name: "download_firmware",
        description: "Queue a download task that makes a CPE fetch a file from the ACS and apply it, typically a firmware image that it flashes. Returns the task document.",
        params: &[
            DEVICE_ID,
            (
                "file_id",
                true,
                "Id of the file stored on the ACS (see genieacs://file/{name}).",
            ),
            (
                "filename",
                false,
                "Target file name reported to the CPE (optional).",
            ),
        ],
        read_only: false,
        destructive: true,
        idempotent: false,
    },
    ToolDef {
        name: "refresh_parameter",
        description: "Ask a CPE to report the current value of a parameter or subtree (getParameterValues task), so the ACS copy is fresh. Returns the task document.",
        params: &[
            DEVICE_ID,
            (
                "parameter",
                true,
                "Full parameter path, e.g. InternetGatewayDevice.DeviceInfo.UpTime.",
            ),
        ],
        // It queues a task, but the task only reads from the device.
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    ToolDef {
        name: "set_parameter",
        description: "Change writable parameters on a CPE (setParameterValues task). parameter_values is a JSON array of [path, value] or [path, value, xsdType] entries. Returns the task document.",
        params: &[
            DEVICE_ID,
            (
                "parameter_values",
                true,
                "JSON array such as [[\"Device.WiFi.SSID.1.SSID\",\"Guest\",\"xsd:string\"]].",
            ),
        ],
        read_only: false,
        destructive: true,
        idempotent: true,
    },
    ToolDef {
        name: "get_parameter",
        description: "Read parameter values as last reported to the ACS, without contacting the device. Returns the device document projected onto the requested paths.",
        params: &[
            DEVICE_ID,
            (
                "parameter_path",
                true,
                "One or more comma-separated parameter paths.",
            ),
        ],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    ToolDef {
        name: "manage_preset",
        description: "Create, replace or delete a preset: a fleet-wide rule that applies configurations to every matching device at its next inform.",
        params: &[
            (
                "action",
                true,
                "\"put\" to create or replace, \"delete\" to remove.",
            ),
            ("name", true, "Preset name."),
            ("body", false, "Preset document as JSON (needed for put)."),
        ],
        read_only: false,
        destructive: true,
        idempotent: true,
    },
    ToolDef {
        name: "manage_provision",
        description: "Create, replace or delete a provision: a JavaScript script that the ACS runs during device sessions.",
        params: &[
            (
                "action",
                true,
                "\"put\" to create or replace, \"delete\" to remove.",
            ),
            ("name", true, "Provision name."),
            (
                "script",
                false,
                "JavaScript source (needed for put); checked for syntax errors.",
            ),
        ],
        read_only: false,
        destructive: true,
        idempotent: true,
    },
    ToolDef {
        name: "search_devices",
        description: "Find devices with a MongoDB-style query on device fields, e.g. {\"_tags\":\"lab\"} or {\"_lastInform\":{\"$lt\":\"2025-01-01T00:00:00.000Z\"}}. Returns matching device documents.",
        params: &[
            ("query", true, "MongoDB-style query as JSON."),
            (
                "limit",
                false,
                "Maximum number of devices to return (default 50).",
            ),
        ],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    ToolDef {
        name: "tag_device",
        description: "Add a tag to or remove a tag from a device. Tags drive presets and searches.",
        params: &[
            DEVICE_ID,
            ("tag", true, "Tag name."),
            ("action", true, "\"add\" or \"remove\"."),
        ],
        read_only: false,
        destructive: false,
        idempotent: true,
    },
    ToolDef {
        name: "connection_request",
        description: "Wake a CPE so it opens a session now and runs its queued tasks. Fails with 504 when the device cannot be reached.",
        params: &[DEVICE_ID],
        read_only: false,
        destructive: false,
        idempotent: false,
    },
    ToolDef {
        name: "delete_task",
        description: "Delete a queued or faulted task, together with its fault.",
        params: &[("task_id", true, "Task id.")],
        read_only: false,
        destructive: true,
        idempotent: true,
    },
    ToolDef {
        name: "retry_task",
        description: "Clear the fault of a faulted task so it runs again at the device's next session.",
        params: &[("task_id", true, "Task id.")],
        read_only: false,
        destructive: false,
        idempotent: true,
    },
];

/// Looks a tool up by name.
pub fn find(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The `tools/list` result, with description overrides applied.
pub fn list_result(overrides: &HashMap<String, String>) -> Value {
    let tools: Vec<Value> = TOOLS
        .iter()
        .map(|t| {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (name, req, desc) in t.params {
                props.insert(
                    (*name).into(),
                    json!({"type": "string", "description": desc}),
                );
                if *req {
                    required.push(*name);
                }
            }
            let description = overrides.get(t.name).map_or(t.description, String::as_str);
            json!({
                "name": t.name,
                "description": description,
                "inputSchema": {"type": "object", "properties": props, "required": required},
                "annotations": {
                    "readOnlyHint": t.read_only,
                    "destructiveHint": t.destructive,
                    "idempotentHint": t.idempotent,
                    // Every tool reaches real devices through the ACS.
                    "openWorldHint": true,
                },
            })
        })
        .collect();
    json!({ "tools": tools })
}

/// A tool's result: the text and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The single text content item.
    pub text: String,
    /// `isError` in the result.
    pub is_error: bool,
}

impl ToolOutcome {
    fn ok(v: &Value) -> Self {
        Self {
            text: v.to_string(),
            is_error: false,
        }
    }

    pub(crate) fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: true,
        }
    }

    /// The `CallToolResult` JSON.
    pub fn to_result(&self) -> Value {
        json!({"content": [{"type": "text", "text": self.text}], "isError": self.is_error})
    }
}

impl From<AcsError> for ToolOutcome {
    fn from(e: AcsError) -> Self {
        ToolOutcome::error(e.to_string())
    }
}

struct ArgReader<'a>(&'a Map<String, Value>);

impl ArgReader<'_> {
    fn required(&self, name: &str) -> Result<&str, ToolOutcome> {
        match self.0.get(name) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(ToolOutcome::error(format!(
                "argument \"{name}\" is not a string"
            ))),
            None => Err(ToolOutcome::error(format!(
                "required argument \"{name}\" not found"
            ))),
        }
    }

    fn optional(&self, name: &str) -> &str {
        self.0.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// Runs a known tool against the ACS.
pub fn call(acs: &mut Acs, tool: &ToolDef, args: &Map<String, Value>) -> ToolOutcome {
    match run(acs, tool.name, &ArgReader(args)) {
        Ok(o) | Err(o) => o,
    }
}

fn run(acs: &mut Acs, name: &str, a: &ArgReader<'_>) -> Result<ToolOutcome, ToolOutcome> {
    let out = match name {
        "reboot_device" => {
            let id = a.required("device_id")?;
            ToolOutcome::ok(&acs.queue_task(id, json!({"name": "reboot"}))?.task)
        }
        "download_firmware" => {
            let id = a.required("device_id")?;
            let file = a.required("file_id")?;
            let mut task = json!({"name": "download", "file": file});
            let target = a.optional("filename");
            if !target.is_empty() {
                task["targetFileName"] = json!(target);
            }
            ToolOutcome::ok(&acs.queue_task(id, task)?.task)
        }
        "refresh_parameter" => {
            let id = a.required("device_id")?;
            let p = a.required("parameter")?;
            let task = json!({"name": "getParameterValues", "parameterNames": [p]});
            ToolOutcome::ok(&acs.queue_task(id, task)?.task)
        }
        "set_parameter" => {
            let id = a.required("device_id")?;
            let raw = a.required("parameter_values")?;
            // The real server forwards the text inside the task body, so the NBI rejects bad JSON.
            let values: Value = serde_json::from_str(raw).map_err(|e| AcsError {
                status: 400,
                body: format!("Invalid JSON: {e}"),
            })?;
            let task = json!({"name": "setParameterValues", "parameterValues": values});
            ToolOutcome::ok(&acs.queue_task(id, task)?.task)
        }
        "get_parameter" => {
            let id = a.required("device_id")?;
            let paths: Vec<&str> = a
                .required("parameter_path")?
                .split(',')
                .map(str::trim)
                .collect();
            ToolOutcome::ok(&acs.find_devices(&json!({"_id": id}), Some(&paths), 1)?)
        }
        "manage_preset" => {
            let action = a.required("action")?;
            let name = a.required("name")?;
            match action {
                "put" => acs.put_preset(name, a.optional("body"))?,
                "delete" => acs.delete_preset(name),
                other => {
                    return Err(ToolOutcome::error(format!(
                        "invalid action \"{other}\": use put or delete"
                    )));
                }
            }
            ToolOutcome::ok(&json!({"preset": name, "action": action, "status": "ok"}))
        }
        "manage_provision" => {
            let action = a.required("action")?;
            let name = a.required("name")?;
            match action {
                "put" => acs.put_provision(name, a.optional("script"))?,
                "delete" => acs.delete_provision(name),
                other => {
                    return Err(ToolOutcome::error(format!(
                        "invalid action \"{other}\": use put or delete"
                    )));
                }
            }
            ToolOutcome::ok(&json!({"provision": name, "action": action, "status": "ok"}))
        }
        "search_devices" => {
            let raw = a.required("query")?;
            let query: Value = serde_json::from_str(raw).map_err(|e| AcsError {
                status: 400,
                body: format!("Invalid JSON: {e}"),
            })?;
            let limit = match a.optional("limit") {
                "" => 50,
                l => l.trim().parse::<usize>().map_err(|_| {
                    ToolOutcome::error(format!("invalid limit \"{l}\": expected a whole number"))
                })?,
            };
            ToolOutcome::ok(&acs.find_devices(&query, None, limit)?)
        }
        "tag_device" => {
            let id = a.required("device_id")?;
            let tag = a.required("tag")?;
            let add = match a.required("action")? {
                "add" => true,
                "remove" => false,
                other => {
                    return Err(ToolOutcome::error(format!(
                        "invalid action \"{other}\": use add or remove"
                    )));
                }
            };
            acs.tag(id, tag, add)?;
            ToolOutcome::ok(
                &json!({"device": id, "tag": tag, "action": if add { "add" } else { "remove" }, "status": "ok"}),
            )
        }
        "connection_request" => {
            let id = a.required("device_id")?;
            ToolOutcome::ok(&acs.connection_request(id)?)
        }
        "delete_task" => {
            let id = a.required("task_id")?;
            acs.delete_task(id)?;
            ToolOutcome::ok(&json!({"task": id, "deleted": true}))
        }
        "retry_task" => {
            let id = a.required("task_id")?;
            acs.retry_task(id)?;
            ToolOutcome::ok(&json!({"task": id, "retried": true}))
        }
        other => ToolOutcome::error(format!("tool {other} is not implemented")),
    };
    Ok(out)
}

//! The in-memory ACS behind the tools: a seeded fleet of CPEs, the task and fault collections,
//! presets, provisions and files, with the NBI's observable behaviour (status codes, bodies,
//! "completed tasks are deleted", "retry only clears the fault").
//!
//! Every operation returns either the NBI's success body as JSON or an [`AcsError`] carrying the
//! HTTP status and body the NBI would have sent; the tool layer turns the latter into the real
//! server's `ACS error <code>: <body>` text.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::query::{Query, project};
use crate::util::{Rng, iso8601, now_ms};

/// What the NBI would have answered with an HTTP status ≥ 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcsError {
    /// The HTTP status code (400, 404, 503, 504...).
    pub status: u16,
    /// The response body, verbatim.
    pub body: String,
}

impl AcsError {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
        }
    }
}

impl std::fmt::Display for AcsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The real GenieACS MCP server's exact error text.
        write!(f, "ACS error {}: {}", self.status, self.body)
    }
}

/// How a simulated CPE reacts to a connection request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers connection requests and runs its tasks successfully (unless the task itself is invalid).
    Online,
    /// Never answers: tasks stay queued, connection requests time out (504).
    Offline,
    /// Answers, but every task it runs faults with this CWMP fault code.
    Faulty(u16),
}

/// The outcome of queuing a task, as the NBI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskResult {
    /// 200 when the device ran the task, 202 otherwise.
    pub status: u16,
    /// The HTTP reason phrase GenieACS sets: "OK", "Task queued but not processed" or "Task faulted".
    pub reason: &'static str,
    /// The task document (the NBI's response body).
    pub task: Value,
}

/// CWMP fault codes (TR-069 Amendment 6, table A.5.1) and their fault strings.
pub const CWMP_FAULTS: &[(u16, &str)] = &[
    (9001, "Request denied (no reason specified)"),
    (9002, "Internal error"),
    (9003, "Invalid arguments"),
    (9004, "Resources exceeded"),
    (9005, "Invalid parameter name"),
    (9006, "Invalid parameter type"),
    (9007, "Invalid parameter value"),
    (9008, "Attempt to set a non-writable parameter"),
    (9009, "Notification request rejected"),
    (9010, "Download failure"),
    (9011, "Upload failure"),
    (9012, "File transfer server authentication failure"),
    (9013, "Unsupported protocol for file transfer"),
    (9014, "Download failure: unable to join multicast group"),
    (9015, "Download failure: unable to contact file server"),
    (9016, "Download failure: unable to access file"),
    (9017, "Download failure: unable to complete download"),
    (9018, "Download failure: file corrupted"),
    (9019, "Download failure: file authentication failure"),
];

fn fault_string(code: u16) -> &'static str {
    CWMP_FAULTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("Unknown fault", |(_, s)| s)
}

/// Faulted tasks retry by themselves after `300 s × 2^retries`, as in GenieACS.
const RETRY_BASE_MS: i64 = 300_000;

const TASK_NAMES: &[&str] = &[
    "reboot",
    "factoryReset",
    "download",
    "getParameterValues",
    "setParameterValues",
    "refreshObject",
    "addObject",
    "deleteObject",
];

#[derive(Debug)]
struct DeviceEntry {
    doc: Value,
    behaviour: Behaviour,
}

/// The simulated ACS. Not thread-safe by itself; the server keeps it behind a mutex.
#[derive(Debug)]
pub struct Acs {
    devices: BTreeMap<String, DeviceEntry>,
    /// Pending and faulted tasks, keyed by task id (ids sort by creation).
    tasks: BTreeMap<String, Value>,
    /// Faults keyed by `"<device>:task_<task id>"`.
    faults: BTreeMap<String, Value>,
    presets: BTreeMap<String, Value>,
    provisions: BTreeMap<String, Value>,
    files: BTreeMap<String, Value>,
    rng: Rng,
    task_seq: u64,
    /// Simulated time is `epoch_ms + (wall clock - started_ms)`.
    epoch_ms: i64,
    started_ms: i64,
}

impl Acs {
    /// Builds a seeded fleet of `devices` CPEs. The same seed and epoch give the same ACS.
    /// `epoch_ms` is the simulated "now" at start; `None` uses the wall clock.
    pub fn seeded(seed: u64, devices: usize, epoch_ms: Option<i64>) -> Self {
        let started_ms = now_ms();
        let mut acs = Acs {
            devices: BTreeMap::new(),
            tasks: BTreeMap::new(),
            faults: BTreeMap::new(),
            presets: BTreeMap::new(),
            provisions: BTreeMap::new(),
            files: BTreeMap::new(),
            rng: Rng::new(seed),
            task_seq: 0,
            epoch_ms: epoch_ms.unwrap_or(started_ms),
            started_ms,
        };
        crate::fleet::populate(&mut acs, devices);
        acs
    }

    /// The simulated current time, in Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.epoch_ms + (now_ms() - self.started_ms)
    }

    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub(crate) fn insert_device(&mut self, doc: Value, behaviour: Behaviour) {
        let id = doc["_id"].as_str().unwrap_or_default().to_owned();
        self.devices.insert(id, DeviceEntry { doc, behaviour });
    }

    pub(crate) fn insert_file(&mut self, doc: Value) {
        let id = doc["_id"].as_str().unwrap_or_default().to_owned();
        self.files.insert(id, doc);
    }

    pub(crate) fn insert_preset(&mut self, name: &str, mut doc: Value) {
        doc["_id"] = json!(name);
        self.presets.insert(name.to_owned(), doc);
    }

    pub(crate) fn insert_provision(&mut self, name: &str, script: &str) {
        self.provisions
            .insert(name.to_owned(), json!({"_id": name, "script": script}));
    }

    /// Device ids in order, with their simulated behaviour (for tests and demos).
    pub fn devices(&self) -> Vec<(String, Behaviour)> {
        self.devices
            .iter()
            .map(|(id, d)| (id.clone(), d.behaviour))
            .collect()
    }

    /// The first device with the given behaviour, if any.
    pub fn device_with(&self, behaviour: fn(Behaviour) -> bool) -> Option<String> {
        self.devices
            .iter()
            .find(|(_, d)| behaviour(d.behaviour))
            .map(|(id, _)| id.clone())
    }

    /// A device document, unprojected.
    pub fn device_doc(&self, id: &str) -> Option<&Value> {
        self.devices.get(id).map(|d| &d.doc)
    }

    /// All pending and faulted tasks.
    pub fn all_tasks(&self) -> Vec<Value> {
        self.tasks.values().cloned().collect()
    }

    /// All faults.
    pub fn all_faults(&self) -> Vec<Value> {
        self.faults.values().cloned().collect()
    }

    // ---- devices -------------------------------------------------------------------------

    /// `GET /devices/?query=…&projection=…&limit=…`
    pub fn find_devices(
        &self,
        query: &Value,
        projection: Option<&[&str]>,
        limit: usize,
    ) -> Result<Value, AcsError> {
        let q = Query::parse(query).map_err(|e| AcsError::new(400, e.0))?;
        let docs = self
            .devices
            .values()
            .filter(|d| q.matches(&d.doc))
            .take(limit)
            .map(|d| match projection {
                Some(p) => project(&d.doc, p),
                None => d.doc.clone(),
            })
            .collect();
        Ok(Value::Array(docs))
    }

    /// `POST /devices/{id}/tags/{tag}` and `DELETE …`.
    pub fn tag(&mut self, device_id: &str, tag: &str, add: bool) -> Result<(), AcsError> {
        let dev = self
            .devices
            .get_mut(device_id)
            .ok_or_else(|| AcsError::new(404, "No such device"))?;
        let tags = dev.doc["_tags"].as_array_mut();
        let tags = match tags {
            Some(t) => t,
            None => {
                dev.doc["_tags"] = json!([]);
                dev.doc["_tags"]
                    .as_array_mut()
                    .unwrap_or_else(|| unreachable!())
            }
        };
        let present = tags.iter().any(|t| t == tag);
        if add && !present {
            tags.push(json!(tag));
        } else if !add && present {
            tags.retain(|t| t != tag);
        }
        if tags.is_empty()
            && let Value::Object(map) = &mut dev.doc
        {
            map.remove("_tags");
        }
        Ok(())
    }

    // ---- tasks ---------------------------------------------------------------------------

    /// `POST /devices/{id}/tasks?timeout=3000&connection_request` with a task body.
    pub fn queue_task(&mut self, device_id: &str, task: Value) -> Result<TaskResult, AcsError> {
        if !self.devices.contains_key(device_id) {
            return Err(AcsError::new(404, "No such device"));
        }
        let Value::Object(mut fields) = task else {
            return Err(AcsError::new(400, "Invalid task"));
        };
        match fields.get("name").and_then(Value::as_str) {
            Some(n) if TASK_NAMES.contains(&n) => {}
            Some(n) => return Err(AcsError::new(400, format!("Invalid task name: {n}"))),
            None => return Err(AcsError::new(400, "Missing task name")),
        }
        let id = self.next_task_id();
        let now = self.now();
        fields.insert("_id".into(), json!(id));
        fields.insert("device".into(), json!(device_id));
        fields.insert("timestamp".into(), json!(iso8601(now)));
        // Keep `_id` first, as MongoDB documents print.
        let mut doc = Map::new();
        for k in ["_id", "name", "device", "timestamp"] {
            if let Some(v) = fields.remove(k) {
                doc.insert(k.into(), v);
            }
        }
        doc.extend(fields);
        let doc = Value::Object(doc);
        self.tasks.insert(id.clone(), doc.clone());

        if self.devices[device_id].behaviour == Behaviour::Offline {
            return Ok(TaskResult {
                status: 202,
                reason: "Task queued but not processed",
                task: doc,
            });
        }
        self.inform(device_id);
        let (status, reason) = if self.tasks.contains_key(&id) {
            (202, "Task faulted")
        } else {
            (200, "OK")
        };
        Ok(TaskResult {
            status,
            reason,
            task: doc,
        })
    }

    /// A connection request without a task: the device opens a session and runs what is pending.
    pub fn connection_request(&mut self, device_id: &str) -> Result<Value, AcsError> {
        let dev = self
            .devices
            .get(device_id)
            .ok_or_else(|| AcsError::new(404, "No such device"))?;
        if dev.behaviour == Behaviour::Offline {
            return Err(AcsError::new(
                504,
                "Connection request error: no response from device",
            ));
        }
        let pending_before = self.tasks_of(device_id).len();
        self.inform(device_id);
        let pending_after = self.tasks_of(device_id).len();
        Ok(json!({
            "device": device_id,
            "connectionRequest": "succeeded",
            "tasksCompleted": pending_before - pending_after,
            "tasksRemaining": pending_after,
        }))
    }

    /// `DELETE /tasks/{id}`: deletes the task and its fault.
    pub fn delete_task(&mut self, task_id: &str) -> Result<(), AcsError> {
        let task = self
            .tasks
            .remove(task_id)
            .ok_or_else(|| AcsError::new(404, "Task not found"))?;
        let device = task["device"].as_str().unwrap_or_default();
        self.faults.remove(&fault_id(device, task_id));
        Ok(())
    }

    /// `POST /tasks/{id}/retry`: clears the task's fault only; the task runs at the next inform.
    pub fn retry_task(&mut self, task_id: &str) -> Result<(), AcsError> {
        let task = self
            .tasks
            .get(task_id)
            .ok_or_else(|| AcsError::new(404, "Task not found"))?;
        let device = task["device"].as_str().unwrap_or_default();
        self.faults.remove(&fault_id(device, task_id));
        Ok(())
    }

    /// `GET /tasks/?query={"device": id}`
    pub fn tasks_of(&self, device_id: &str) -> Vec<Value> {
        self.tasks
            .values()
            .filter(|t| t["device"] == device_id)
            .cloned()
            .collect()
    }

    /// `GET /faults/?query={"device": id}`
    pub fn faults_of(&self, device_id: &str) -> Vec<Value> {
        self.faults
            .values()
            .filter(|f| f["device"] == device_id)
            .cloned()
            .collect()
    }

    /// Seeds a task that has already faulted (for a realistic starting state).
    pub(crate) fn seed_faulted_task(
        &mut self,
        device_id: &str,
        task: Value,
        code: u16,
        retries: u32,
    ) {
        let id = self.next_task_id();
        let mut task = task;
        task["_id"] = json!(id);
        task["device"] = json!(device_id);
        task["timestamp"] = json!(iso8601(self.now() - 3_600_000));
        self.tasks.insert(id.clone(), task);
        let ts = self.now() - 600_000;
        self.insert_fault(device_id, &id, code, "", retries, ts);
    }

    pub(crate) fn seed_pending_task(&mut self, device_id: &str, task: Value) {
        let id = self.next_task_id();
        let mut task = task;
        task["_id"] = json!(id);
        task["device"] = json!(device_id);
        task["timestamp"] = json!(iso8601(self.now() - 7_200_000));
        self.tasks.insert(id, task);
    }

    fn next_task_id(&mut self) -> String {
        self.task_seq += 1;
        // MongoDB ObjectId shape: 4 bytes of seconds, then 8 bytes that only need to be unique.
        let secs = (self.now() / 1000) as u32;
        let salt = self.rng.next_u64() & 0xFFFF_FFFF_0000_0000;
        format!("{secs:08x}{:016x}", salt | self.task_seq)
    }

    fn insert_fault(
        &mut self,
        device: &str,
        task_id: &str,
        code: u16,
        detail: &str,
        retries: u32,
        ts: i64,
    ) {
        let message = fault_string(code);
        let fault = json!({
            "_id": fault_id(device, task_id),
            "device": device,
            "channel": format!("task_{task_id}"),
            "code": format!("cwmp.{code}"),
            "message": message,
            "detail": {"faultCode": code.to_string(), "faultString": if detail.is_empty() { message.to_owned() } else { format!("{message}: {detail}") }},
            "retries": retries,
            "timestamp": iso8601(ts),
        });
        self.faults.insert(fault_id(device, task_id), fault);
    }

    /// The device informs: every pending task without a fault runs, and faulted tasks whose
    /// back-off has expired run again. Completed tasks are deleted.
    fn inform(&mut self, device_id: &str) {
        let now = self.now();
        if let Some(dev) = self.devices.get_mut(device_id) {
            dev.doc["_lastInform"] = json!(iso8601(now));
        }
        let due: Vec<(String, Value, Option<u32>)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t["device"] == device_id)
            .filter_map(|(id, t)| match self.faults.get(&fault_id(device_id, id)) {
                None => Some((id.clone(), t.clone(), None)),
                Some(f) => {
                    let retries = f["retries"].as_u64().unwrap_or(0) as u32;
                    let at = parse_iso_ms(f["timestamp"].as_str().unwrap_or(""))
                        + RETRY_BASE_MS * (1i64 << retries.min(20));
                    (now >= at).then(|| (id.clone(), t.clone(), Some(retries + 1)))
                }
            })
            .collect();
        for (id, task, retries) in due {
            match self.execute(device_id, &task) {
                Ok(()) => {
                    self.tasks.remove(&id);
                    self.faults.remove(&fault_id(device_id, &id));
                }
                Err((code, detail)) => {
                    self.insert_fault(device_id, &id, code, &detail, retries.unwrap_or(0), now);
                }
            }
        }
    }

    /// Runs one task on the simulated CPE; `Err((cwmp fault code, detail))` when it faults.
    fn execute(&mut self, device_id: &str, task: &Value) -> Result<(), (u16, String)> {
        let now = iso8601(self.now());
        let behaviour = self.devices[device_id].behaviour;
        if let Behaviour::Faulty(code) = behaviour {
            return Err((code, String::new()));
        }
        let name = task["name"].as_str().unwrap_or("");
        match name {
            "reboot" => {
                let doc = &mut self
                    .devices
                    .get_mut(device_id)
                    .ok_or((9002, String::new()))?
                    .doc;
                for root in ["InternetGatewayDevice", "Device"] {
                    if let Some(p) = doc.pointer_mut(&format!("/{root}/DeviceInfo/UpTime")) {
                        p["_value"] = json!(0);
                        p["_timestamp"] = json!(now);
                    }
                }
                Ok(())
            }
            "download" => {
                let file_id = task["file"].as_str().unwrap_or("");
                let Some(file) = self.files.get(file_id) else {
                    return Err((9016, format!("no such file: {file_id}")));
                };
                let version = file["metadata"]["version"].clone();
                let is_firmware = file["metadata"]["fileType"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("1 "));
                let doc = &mut self
                    .devices
                    .get_mut(device_id)
                    .ok_or((9002, String::new()))?
                    .doc;
                if is_firmware && version.is_string() {
                    for root in ["InternetGatewayDevice", "Device"] {
                        if let Some(p) =
                            doc.pointer_mut(&format!("/{root}/DeviceInfo/SoftwareVersion"))
                        {
                            p["_value"] = version.clone();
                            p["_timestamp"] = json!(now);
                        }
                    }
                }
                Ok(())
            }
            "getParameterValues" | "refreshObject" => {
                let names: Vec<String> = match name {
                    "refreshObject" => vec![task["objectName"].as_str().unwrap_or("").to_owned()],
                    _ => task["parameterNames"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                let doc = &mut self
                    .devices
                    .get_mut(device_id)
                    .ok_or((9002, String::new()))?
                    .doc;
                for n in &names {
                    let node = doc
                        .pointer_mut(&to_pointer(n))
                        .ok_or_else(|| (9005, n.clone()))?;
                    touch(node, &now);
                }
                Ok(())
            }
            "setParameterValues" => {
                let values = task["parameterValues"]
                    .as_array()
                    .ok_or((9003, "parameterValues must be an array".to_owned()))?;
                let doc = &mut self
                    .devices
                    .get_mut(device_id)
                    .ok_or((9002, String::new()))?
                    .doc;
                // Check everything first: a CPE applies a SetParameterValues atomically.
                let mut updates = Vec::with_capacity(values.len());
                for entry in values {
                    let (path, value) = match entry.as_array().map(Vec::as_slice) {
                        Some([p, v, ..]) if p.is_string() => (p.as_str().unwrap_or(""), v),
                        _ => return Err((9003, format!("bad parameter value entry: {entry}"))),
                    };
                    let node = doc
                        .pointer(&to_pointer(path))
                        .ok_or_else(|| (9005, path.to_owned()))?;
                    if node.get("_value").is_none() {
                        return Err((9005, path.to_owned()));
                    }
                    if node["_writable"] != json!(true) {
                        return Err((9008, path.to_owned()));
                    }
                    let ty = node["_type"].as_str().unwrap_or("xsd:string");
                    let coerced = coerce(value, ty).ok_or_else(|| (9007, path.to_owned()))?;
                    updates.push((to_pointer(path), coerced));
                }
                for (ptr, v) in updates {
                    if let Some(node) = doc.pointer_mut(&ptr) {
                        node["_value"] = v;
                        node["_timestamp"] = json!(now);
                    }
                }
                Ok(())
            }
            // Tasks the tools never send; accept them without effect.
            _ => Ok(()),
        }
    }

    // ---- presets, provisions, files ------------------------------------------------------

    /// `PUT /presets/{name}` with a JSON body.
    pub fn put_preset(&mut self, name: &str, body: &str) -> Result<(), AcsError> {
        let doc: Value = serde_json::from_str(body)
            .map_err(|e| AcsError::new(400, format!("Invalid JSON: {e}")))?;
        if !doc.is_object() {
            return Err(AcsError::new(400, "Invalid preset: expected a JSON object"));
        }
        self.insert_preset(name, doc);
        Ok(())
    }

    /// `DELETE /presets/{name}`; like GenieACS, deleting a missing preset is not an error.
    pub fn delete_preset(&mut self, name: &str) {
        self.presets.remove(name);
    }

    /// `PUT /provisions/{name}` with a JavaScript body, syntax-checked.
    pub fn put_provision(&mut self, name: &str, script: &str) -> Result<(), AcsError> {
        check_script(script).map_err(|e| AcsError::new(400, e))?;
        self.insert_provision(name, script);
        Ok(())
    }

    /// `DELETE /provisions/{name}`; deleting a missing provision is not an error.
    pub fn delete_provision(&mut self, name: &str) {
        self.provisions.remove(name);
    }

    /// `GET /presets/`
    pub fn presets(&self) -> Value {
        Value::Array(self.presets.values().cloned().collect())
    }

    /// `GET /provisions/`
    pub fn provisions(&self) -> Value {
        Value::Array(self.provisions.values().cloned().collect())
    }

    /// `GET /files/?query={"filename": name}`
    pub fn files_named(&self, name: &str) -> Value {
        Value::Array(
            self.files
                .values()
                .filter(|f| f["filename"] == name)
                .cloned()
                .collect(),
        )
    }
}

fn fault_id(device: &str, task_id: &str) -> String {
    format!("{device}:task_{task_id}")
}

/// `A.B.C` → `/A/B/C` (parameter names never contain `/` or `~`).
fn to_pointer(path: &str) -> String {
    let mut s = String::with_capacity(path.len() + 1);
    for seg in path.trim_end_matches('.').split('.') {
        s.push('/');
        s.push_str(seg);
    }
    s
}

/// Refreshes the timestamp of a parameter or of every parameter below an object.
fn touch(node: &mut Value, now: &str) {
    if let Value::Object(map) = node {
        if map.contains_key("_timestamp") {
            map.insert("_timestamp".into(), json!(now));
        }
        for (k, v) in map.iter_mut() {
            if !k.starts_with('_') {
                touch(v, now);
            }
        }
    }
}

/// Converts a value to a parameter's xsd type the way a CPE would accept it, or `None` (fault 9007).
fn coerce(value: &Value, ty: &str) -> Option<Value> {
    match ty {
        "xsd:boolean" => match value {
            Value::Bool(b) => Some(json!(b)),
            Value::String(s) if s == "true" || s == "1" => Some(json!(true)),
            Value::String(s) if s == "false" || s == "0" => Some(json!(false)),
            Value::Number(n) => n.as_u64().filter(|n| *n <= 1).map(|n| json!(n == 1)),
            _ => None,
        },
        "xsd:unsignedInt" | "xsd:int" => {
            let n = match value {
                Value::Number(n) => n.as_i64()?,
                Value::String(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            (ty == "xsd:int" || n >= 0).then(|| json!(n))
        }
        _ => match value {
            Value::String(s) => Some(json!(s)),
            Value::Number(_) | Value::Bool(_) => Some(json!(value.to_string())),
            _ => None,
        },
    }
}

fn parse_iso_ms(s: &str) -> i64 {
    // Only ever parses our own `iso8601` output: YYYY-MM-DDTHH:MM:SS.mmmZ.
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms
}

/// A deliberately simple syntax check for provision scripts: balanced brackets, terminated
/// strings and comments. Messages follow V8's wording, as GenieACS reports them.
/// Regular-expression literals are not recognised (a `/[/` in a script may be misjudged).
pub fn check_script(script: &str) -> Result<(), String> {
    let mut stack: Vec<char> = Vec::new();
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                if !closed {
                    return Err("SyntaxError: Invalid or unexpected token".into());
                }
            }
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some(s) = chars.next() {
                    match s {
                        '\\' => {
                            chars.next();
                        }
                        '\n' if c != '`' => break,
                        s if s == c => {
                            closed = true;
                            break;
                        }
                        _ => {}
                    }
                }
                if !closed {
                    return Err("SyntaxError: Invalid or unexpected token".into());
                }
            }
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("SyntaxError: Unexpected token '{c}'"));
                }
            }
            _ => {}
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err("SyntaxError: Unexpected end of input".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_check() {
        assert!(check_script("const x = declare(\"Device.X\", {value: 1});").is_ok());
        assert!(check_script("// (\nlet s = ')';/* { */").is_ok());
        assert_eq!(
            check_script("if (x }").unwrap_err(),
            "SyntaxError: Unexpected token '}'"
        );
        assert_eq!(
            check_script("f(").unwrap_err(),
            "SyntaxError: Unexpected end of input"
        );
        assert_eq!(
            check_script("f())").unwrap_err(),
            "SyntaxError: Unexpected token ')'"
        );
        assert_eq!(
            check_script("let s = 'abc").unwrap_err(),
            "SyntaxError: Invalid or unexpected token"
        );
    }

    #[test]
    fn iso_round_trip() {
        for ms in [0, 1_748_779_200_123, 951_782_400_000] {
            assert_eq!(parse_iso_ms(&iso8601(ms)), ms);
        }
    }
}

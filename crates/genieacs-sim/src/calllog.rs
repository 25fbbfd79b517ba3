//! The record of every `tools/call` the simulator received, so tests can check that what a
//! gateway let through is exactly what reached the upstream (and that each has an audit event).

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

/// One received tool call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// 1-based order of arrival.
    pub seq: u64,
    /// Wall-clock arrival time, ISO 8601.
    pub timestamp: String,
    /// The MCP session the call came in.
    pub session_id: String,
    /// The JSON-RPC request id, as sent.
    pub request_id: Value,
    /// The tool name, as sent (also for unknown tools).
    pub tool: String,
    /// The arguments, as sent (`null` when absent).
    pub arguments: Value,
    /// Whether the result had `isError: true` (or the call was a JSON-RPC error).
    pub is_error: bool,
}

#[derive(Debug)]
pub(crate) struct CallLog {
    count: AtomicU64,
    /// `None` in cheap mode: benchmarks must not grow memory per call.
    records: Option<Mutex<Vec<CallRecord>>>,
    file: Option<Mutex<File>>,
}

impl CallLog {
    pub(crate) fn new(keep_in_memory: bool, file: Option<File>) -> Self {
        Self {
            count: AtomicU64::new(0),
            records: keep_in_memory.then(|| Mutex::new(Vec::new())),
            file: file.map(Mutex::new),
        }
    }

    /// Whether a full record is wanted (else only the counter moves).
    pub(crate) fn wants_records(&self) -> bool {
        self.records.is_some() || self.file.is_some()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.count.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn push(&self, record: CallRecord) {
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(&record).unwrap_or_default();
            line.push(b'\n');
            // One write per line with O_APPEND, so readers never see half a record.
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            let _ = f.write_all(&line);
        }
        if let Some(records) = &self.records {
            records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<CallRecord> {
        self.records
            .as_ref()
            .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

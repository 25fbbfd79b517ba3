//! Command-line flags (each also an environment variable with the `GENIEACS_SIM_` prefix) and
//! the validated configuration built from them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::tools;

/// How a request's response is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResponseMode {
    /// One `application/json` body (what the real Go server sends).
    #[default]
    Json,
    /// A `text/event-stream` body with one `message` event holding the response.
    Sse,
}

/// Flags of `gatehouse demo-upstream` (and of anything else embedding the simulator).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on. Beyond loopback, `--auth-token` is required (as in the real server).
    #[arg(long, env = "GENIEACS_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Seed for the simulated fleet; the same seed gives the same devices, tags and faults.
    #[arg(long, env = "GENIEACS_SIM_SEED", default_value_t = 42)]
    pub seed: u64,

    /// Number of simulated devices.
    #[arg(long, env = "GENIEACS_SIM_DEVICES", default_value_t = 50)]
    pub devices: usize,

    /// Cap on the devices listed by `genieacs://devices/list` (the real server's DEVICE_LIMIT).
    #[arg(long, env = "GENIEACS_SIM_DEVICE_LIMIT", default_value_t = 500)]
    pub device_limit: usize,

    /// Deliver responses as one JSON body or as an SSE stream with one `message` event.
    #[arg(long, env = "GENIEACS_SIM_RESPONSE_MODE", value_enum, default_value_t = ResponseMode::Json)]
    pub response_mode: ResponseMode,

    /// Require `Authorization: Bearer <TOKEN>` on every request (401 otherwise).
    #[arg(long, env = "GENIEACS_SIM_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Host names accepted in `Host` and `Origin` (403 otherwise); `*` accepts any.
    #[arg(long = "allowed-host", env = "GENIEACS_SIM_ALLOWED_HOSTS", value_delimiter = ',',
          default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
    pub allowed_hosts: Vec<String>,

    /// Replace a tool's description: `NAME=TEXT` (repeatable; the variable holds one).
    #[arg(
        long = "tool-description",
        env = "GENIEACS_SIM_TOOL_DESCRIPTION",
        value_name = "NAME=TEXT"
    )]
    pub tool_descriptions: Vec<String>,

    /// Added latency per tool call: `TOOL=MILLISECONDS`, `*` for every tool (repeatable or comma-separated).
    #[arg(
        long,
        env = "GENIEACS_SIM_LATENCY",
        value_name = "TOOL=MS",
        value_delimiter = ','
    )]
    pub latency: Vec<String>,

    /// Injected failure rate per tool call: `TOOL=RATE` with RATE in 0..=1, `*` for every tool.
    /// A failed call returns `ACS error 503: …` (seeded, so runs repeat).
    #[arg(
        long,
        env = "GENIEACS_SIM_FAILURE_RATE",
        value_name = "TOOL=RATE",
        value_delimiter = ','
    )]
    pub failure_rate: Vec<String>,

    /// Cheap mode for gateway benchmarks: tool calls skip the ACS and return one fixed small result.
    #[arg(long, env = "GENIEACS_SIM_CHEAP")]
    pub cheap: bool,

    /// Append every `tools/call` received to this JSONL file.
    #[arg(long, env = "GENIEACS_SIM_CALL_LOG", value_name = "PATH")]
    pub call_log: Option<PathBuf>,

    /// Answer `GET /mcp` of a session with an idle SSE stream (keep-alive comments only) instead
    /// of 405, so a proxy's cost per open stream can be measured.
    #[arg(long, env = "GENIEACS_SIM_GET_STREAMS")]
    pub get_streams: bool,
}

/// The validated configuration of a simulator instance.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Fleet seed.
    pub seed: u64,
    /// Fleet size.
    pub devices: usize,
    /// Cap for `genieacs://devices/list`.
    pub device_limit: usize,
    /// Simulated "now" at start, in Unix milliseconds; `None` uses the wall clock.
    pub epoch_ms: Option<i64>,
    /// JSON or SSE responses.
    pub response_mode: ResponseMode,
    /// The bearer token every request must carry, if any.
    pub auth_token: Option<String>,
    /// Accepted host names (`*` for any), without ports.
    pub allowed_hosts: Vec<String>,
    /// Description overrides by tool name.
    pub tool_descriptions: HashMap<String, String>,
    /// Latency by tool name (`*` for all).
    pub latency: HashMap<String, Duration>,
    /// Failure rate by tool name (`*` for all).
    pub failure_rate: HashMap<String, f64>,
    /// Fixed results, no ACS work, no in-memory call records.
    pub cheap: bool,
    /// JSONL call log file.
    pub call_log: Option<PathBuf>,
    /// Idle SSE streams on `GET /mcp` instead of 405.
    pub get_streams: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            devices: 50,
            device_limit: 500,
            epoch_ms: None,
            response_mode: ResponseMode::Json,
            auth_token: None,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            tool_descriptions: HashMap::new(),
            latency: HashMap::new(),
            failure_rate: HashMap::new(),
            cheap: false,
            call_log: None,
            get_streams: false,
        }
    }
}

impl SimConfig {
    /// Validates the flags; every bad flag is reported, by name.
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        let mut problems = Vec::new();
        let mut tool_descriptions = HashMap::new();
        for item in &args.tool_descriptions {
            match split_pair(item, "--tool-description") {
                Ok((name, text)) => {
                    tool_descriptions.insert(name, text);
                }
                Err(e) => problems.push(e),
            }
        }
        let mut latency = HashMap::new();
        for item in &args.latency {
            match split_pair(item, "--latency").and_then(|(k, v)| {
                let ms: u64 = v.parse().map_err(|_| {
                    format!("--latency {item}: milliseconds must be a whole number")
                })?;
                Ok((k, Duration::from_millis(ms)))
            }) {
                Ok((k, d)) => {
                    latency.insert(k, d);
                }
                Err(e) => problems.push(e),
            }
        }
        let mut failure_rate = HashMap::new();
        for item in &args.failure_rate {
            match split_pair(item, "--failure-rate").and_then(|(k, v)| {
                let rate: f64 = v
                    .parse()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("--failure-rate {item}: rate must be between 0 and 1")
                    })?;
                Ok((k, rate))
            }) {
                Ok((k, r)) => {
                    failure_rate.insert(k, r);
                }
                Err(e) => problems.push(e),
            }
        }
        if !args.listen.ip().is_loopback() && args.auth_token.is_none() {
            problems.push(format!(
                "--auth-token (GENIEACS_SIM_AUTH_TOKEN) is required when listening beyond loopback ({})",
                args.listen
            ));
        }
        if !problems.is_empty() {
            bail!("invalid configuration:\n  {}", problems.join("\n  "));
        }
        Ok(Self {
            seed: args.seed,
            devices: args.devices,
            device_limit: args.device_limit,
            epoch_ms: None,
            response_mode: args.response_mode,
            auth_token: args.auth_token.clone(),
            allowed_hosts: args.allowed_hosts.clone(),
            tool_descriptions,
            latency,
            failure_rate,
            cheap: args.cheap,
            call_log: args.call_log.clone(),
            get_streams: args.get_streams,
        })
    }

    /// The latency to add to a call of `tool`.
    pub(crate) fn latency_for(&self, tool: &str) -> Option<Duration> {
        self.latency
            .get(tool)
            .or_else(|| self.latency.get("*"))
            .copied()
    }

    /// The failure rate for `tool`.
    pub(crate) fn failure_rate_for(&self, tool: &str) -> f64 {
        self.failure_rate
            .get(tool)
            .or_else(|| self.failure_rate.get("*"))
            .copied()
            .unwrap_or(0.0)
    }
}

fn split_pair(item: &str, flag: &str) -> Result<(String, String), String> {
    let (k, v) = item
        .split_once('=')
        .ok_or_else(|| format!("{flag} {item}: expected NAME=VALUE"))?;
    let k = k.trim();
    if k != "*" && tools::find(k).is_none() {
        return Err(format!("{flag} {item}: unknown tool {k:?}"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Opens the call-log file for appending.
pub(crate) fn open_call_log(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening call log {}", path.display()))
}

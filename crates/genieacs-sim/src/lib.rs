//! `genieacs-sim`: a faithful stand-in for the GenieACS MCP server ("GenieACS MCP Bridge") in
//! front of a GenieACS ACS with a simulated fleet, for Gatehouse's demo, tests and benchmarks.
//!
//! It serves MCP Streamable HTTP at `/mcp` with the real server's 12 tools and 7 resources, its
//! error shapes (`ACS error <code>: <body>`), its optional bearer token and Host/Origin guard, and
//! adds test hooks: a deterministic seed, injected latency and failures, description overrides,
//! a call log, and a cheap mode for benchmarks. See the crate README for protocol edge cases.
//!
//! It must never talk to a real ACS or any other network peer, never persist state beyond the
//! optional call log, and never be deployed as a real device manager: everything it knows is made up.
#![forbid(unsafe_code)]

pub mod acs;
pub mod calllog;
mod config;
mod fleet;
pub mod query;
mod resources;
pub mod tools;
mod transport;
mod util;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;

pub use acs::{Acs, AcsError, Behaviour};
pub use calllog::CallRecord;
pub use config::{Args, ResponseMode, SimConfig};
pub use transport::SUPPORTED_VERSIONS;

/// Shared state of one simulator instance; cheap to clone.
#[derive(Debug, Clone)]
pub struct SimState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    acs: Mutex<Acs>,
    /// Session id → negotiated protocol version.
    sessions: Mutex<HashMap<String, &'static str>>,
    calls: calllog::CallLog,
    /// The `tools/list` result, serialised once.
    tools_list: String,
    failures: Mutex<util::Rng>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave these structures half-updated in a way that
    // matters to a simulator, so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    /// Builds the simulated ACS and opens the call log, if any.
    pub fn new(config: SimConfig) -> anyhow::Result<Self> {
        let file = config
            .call_log
            .as_deref()
            .map(config::open_call_log)
            .transpose()?;
        let acs = Acs::seeded(config.seed, config.devices, config.epoch_ms);
        let tools_list = tools::list_result(&config.tool_descriptions).to_string();
        Ok(Self(Arc::new(Inner {
            calls: calllog::CallLog::new(!config.cheap, file),
            failures: Mutex::new(util::Rng::new(config.seed ^ 0x5EED_FA11)),
            acs: Mutex::new(acs),
            sessions: Mutex::new(HashMap::new()),
            tools_list,
            config,
        })))
    }

    /// The configuration this instance runs with.
    pub fn config(&self) -> &SimConfig {
        &self.0.config
    }

    /// Runs `f` with the ACS locked (tests use it to look devices up or inspect tasks).
    pub fn with_acs<R>(&self, f: impl FnOnce(&mut Acs) -> R) -> R {
        f(&mut lock(&self.0.acs))
    }

    /// Every tool call received so far (empty in cheap mode, which keeps no records in memory).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.0.calls.snapshot()
    }

    /// How many tool calls were received (counted in every mode).
    pub fn call_count(&self) -> u64 {
        self.0.calls.count()
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        lock(&self.0.sessions).len()
    }

    pub(crate) fn call_log(&self) -> &calllog::CallLog {
        &self.0.calls
    }

    pub(crate) fn tools_list(&self) -> &str {
        &self.0.tools_list
    }

    pub(crate) fn new_session(&self, version: &'static str) -> String {
        let id = util::session_id();
        lock(&self.0.sessions).insert(id.clone(), version);
        id
    }

    pub(crate) fn has_session(&self, id: &str) -> bool {
        lock(&self.0.sessions).contains_key(id)
    }

    pub(crate) fn end_session(&self, id: &str) -> bool {
        lock(&self.0.sessions).remove(id).is_some()
    }

    pub(crate) fn injected_failure(&self, tool: &str) -> bool {
        let rate = self.0.config.failure_rate_for(tool);
        rate > 0.0 && lock(&self.0.failures).unit() < rate
    }
}

/// The HTTP routes (`/mcp`), separate from serving so tests can bind port 0 or call it directly.
pub fn router(state: SimState) -> axum::Router {
    transport::router(state)
}

/// Serves `state` on an already-bound listener until the process is interrupted.
pub async fn serve(listener: tokio::net::TcpListener, state: SimState) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving MCP")
}

/// Validates `args`, builds the simulator and serves it on `args.listen` until Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = SimConfig::from_args(&args)?;
    let state = SimState::new(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    eprintln!(
        "genieacs-sim: {} simulated devices (seed {}), MCP at http://{addr}/mcp{}",
        args.devices,
        args.seed,
        if args.cheap { " (cheap mode)" } else { "" }
    );
    serve(listener, state).await
}

//! The `gatehouse` binary: one executable, one subcommand per role. This file only parses the
//! command line and dispatches; each command lives in its own module.
#![forbid(unsafe_code)]

mod policy_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Gatehouse: a policy-enforcing gateway and control plane for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, explain and recommend policies (offline; no database needed).
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Inspect an MCP server's tools (offline; reads a saved `tools/list` answer).
    #[command(subcommand)]
    Tools(policy_cmd::ToolsCommand),
    /// Serve a simulated GenieACS MCP server (fleet, tasks, faults) for demos, tests and benchmarks.
    DemoUpstream(genieacs_sim::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run_policy(cmd),
        Command::Tools(cmd) => policy_cmd::run_tools(cmd),
        Command::DemoUpstream(args) => serve(genieacs_sim::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a long-lived service on a multi-threaded runtime until it stops or fails.
fn serve(
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(service)?;
    Ok(ExitCode::SUCCESS)
}

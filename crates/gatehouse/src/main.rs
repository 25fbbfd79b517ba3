//! The `gatehouse` binary: one executable, one subcommand per role.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Gatehouse: a policy-enforcing gateway and control plane for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a simulated GenieACS MCP server (fleet, tasks, faults) for demos, tests and benchmarks.
    DemoUpstream(genieacs_sim::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::DemoUpstream(args)) => {
            tokio::runtime::Runtime::new()?.block_on(genieacs_sim::run(args))
        }
        None => Ok(()),
    }
}

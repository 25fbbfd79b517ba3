//! The `gatehouse` binary: one executable, one subcommand per role.
#![forbid(unsafe_code)]

use clap::Parser;

/// Gatehouse: a policy-enforcing gateway and control plane for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}

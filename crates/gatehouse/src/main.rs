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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run_policy(cmd),
        Command::Tools(cmd) => policy_cmd::run_tools(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! The `gatehouse` binary: one executable, one subcommand per role. This file only parses the
//! command line and dispatches; each command lives in its own module (`policy_cmd` for the offline
//! policy tools, `ops` for the operator commands over the store, `audit_cmd` for the audit
//! ingester, verification, export and retention). It never contains SQL.
#![forbid(unsafe_code)]

mod admin_cmd;
mod audit_cmd;
mod config;
mod gateway_cmd;
mod local_pg;
mod ops;
mod policy_cmd;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Gatehouse: a policy-enforcing gateway and control plane for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every store command shares.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Postgres URL of the control-plane database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Redis URL: configuration changes are announced there so every gateway replica drops its
    /// cache at once (without it, replicas notice within their cache TTL).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply database migrations and create the audit log's partitions ahead of time.
    Migrate(#[command(flatten)] StoreArgs),
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Upstream MCP servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Check, explain and recommend policies (offline), and publish them (database).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect an MCP server's tools (offline; reads a saved `tools/list` answer).
    #[command(subcommand)]
    Tools(policy_cmd::ToolsCommand),
    /// Run everything in one process on this machine (private database if DATABASE_URL is unset);
    /// with --demo, also the GenieACS demo upstream, registered with a policy and a grant.
    Up(up::UpArgs),
    /// Run a gateway replica: the policy-enforcing MCP proxy at `/mcp/{server_id}`.
    Gateway(gateway_cmd::GatewayArgs),
    /// Serve a simulated GenieACS MCP server (fleet, tasks, faults) for demos, tests and benchmarks.
    DemoUpstream(genieacs_sim::Args),
    /// Grants (bearer tokens for agents).
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Secret keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Approvals: tool calls held for a human to approve or deny.
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// Audit log: verification, export, retention, partitions.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the audit ingester: move events from the Redis streams into Postgres.
    Ingest(audit_cmd::IngestArgs),
    /// Serve the admin web app (sign up, servers, grants, policies, audit log).
    Admin(admin_cmd::AdminArgs),
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organisation and print its id.
    Create {
        /// The organisation's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Register an upstream MCP server and print its id and proxy URL.
    Add {
        /// The organisation id.
        #[arg(long, env = "GATEHOUSE_ORG")]
        org: String,
        /// A name unique within the organisation.
        #[arg(long)]
        name: String,
        /// The upstream's Streamable HTTP URL.
        #[arg(long)]
        url: String,
        /// A static header sent upstream, as 'Name: value' (repeatable); sealed at rest.
        #[arg(long = "header", value_name = "'K: V'")]
        headers: Vec<String>,
        #[command(flatten)]
        secrets: SecretArgs,
        #[command(flatten)]
        public: PublicUrlArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    #[command(flatten)]
    Offline(policy_cmd::PolicyCommand),
    /// Validate a policy document and publish it as the policy's next version.
    Publish {
        /// The server id.
        #[arg(long)]
        server: String,
        /// The policy's name.
        #[arg(long = "policy", default_value = "default")]
        policy: String,
        /// The policy document (JSON, comments allowed); `-` reads standard input.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// Mint a grant; prints its token once, and the proxy URL.
    Mint {
        /// The server id.
        #[arg(long)]
        server: String,
        /// The identity the grant speaks for (noc-agent, alice-laptop).
        #[arg(long)]
        label: String,
        /// The server's policy the grant follows.
        #[arg(long = "policy", default_value = "default")]
        policy: String,
        /// How long the grant lives (e.g. 90d, 12h, 30m, 3600s, 2w); forever when absent.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        public: PublicUrlArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replace a grant's token; the old one stops working at once. Prints the new token once.
    Rotate {
        /// The grant id.
        id: String,
        #[command(flatten)]
        public: PublicUrlArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a grant; its token stops working at once.
    Revoke {
        /// The grant id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ApprovalCommand {
    /// List approvals, newest first: id, status, tool, identity and grant, when created and when
    /// it expires, and the call's arguments (secrets redacted).
    List {
        /// One organisation; all of them when absent.
        #[arg(long)]
        org: Option<String>,
        /// Pending (waiting for a decision) or decided (approved, denied, consumed, expired).
        #[arg(long, value_enum, default_value_t = ApprovalStatusArg::Pending)]
        status: ApprovalStatusArg,
        /// At most this many approvals of each organisation (1 to 500).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Approve a pending approval: the agent's held call proceeds, or its retry goes through once.
    Approve {
        /// The approval id.
        id: String,
        /// A note kept with the decision.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        channel: ApprovalChannelArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Deny a pending approval; the agent is told the comment.
    Deny {
        /// The approval id.
        id: String,
        /// Why: shown to the agent (required).
        #[arg(long, required = true)]
        comment: String,
        #[command(flatten)]
        channel: ApprovalChannelArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which approvals `approval list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ApprovalStatusArg {
    Pending,
    Decided,
}

/// Where decisions are announced, so a gateway replica holding the call proceeds at once.
#[derive(Debug, Clone, Args)]
struct ApprovalChannelArgs {
    /// The Redis channel approval decisions are published on (with REDIS_URL).
    #[arg(
        long,
        env = "GATEHOUSE_APPROVAL_CHANNEL",
        default_value = gateway::DEFAULT_APPROVAL_CHANNEL
    )]
    approval_channel: String,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-seal every stored secret under the current key (GATEHOUSE_SECRET_KEY), opening old rows
    /// with GATEHOUSE_PREVIOUS_SECRET_KEYS.
    Rotate {
        #[command(flatten)]
        secrets: SecretArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Create the audit log's partitions ahead of time and, with --retain-days, drop whole
    /// partitions older than that.
    Partitions {
        /// Keep this many days of audit events (whole days, UTC); keep everything when absent.
        #[arg(long, env = "GATEHOUSE_AUDIT_RETAIN_DAYS")]
        retain_days: Option<u32>,
        #[command(flatten)]
        store: StoreArgs,
    },
    #[command(flatten)]
    Store(audit_cmd::AuditStoreCommand),
}

/// The keys that seal secrets at rest.
#[derive(Debug, Clone, Args)]
struct SecretArgs {
    /// 32 random bytes, base64: seals upstream credentials and (in the gateway) session ids;
    /// every replica must be given the same one.
    #[arg(long, env = "GATEHOUSE_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// The current key's version, recorded beside every row it seals.
    #[arg(long, env = "GATEHOUSE_SECRET_KEY_VERSION", default_value = "1")]
    secret_key_version: String,
    /// Older keys still needed to open rows: 'VERSION:BASE64,VERSION:BASE64'.
    #[arg(long, env = "GATEHOUSE_PREVIOUS_SECRET_KEYS", hide_env_values = true)]
    previous_secret_keys: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct PublicUrlArgs {
    /// The gateway's public base URL, used in proxy URLs.
    #[arg(
        long,
        env = "GATEHOUSE_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    public_url: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let offline = match cli.command {
        Command::Policy(PolicyCommand::Offline(cmd)) => policy_cmd::run_policy(cmd),
        Command::Tools(cmd) => policy_cmd::run_tools(cmd),
        Command::DemoUpstream(args) => serve(genieacs_sim::run(args)),
        Command::Gateway(args) => return gateway_cmd::run(args),
        Command::Up(args) => return up::run(args),
        Command::Ingest(args) => return audit_cmd::run_ingest(args),
        Command::Audit(AuditCommand::Store(cmd)) => return audit_cmd::run_audit(cmd),
        Command::Admin(args) => serve(admin_cmd::run(args)),
        command => return run_with_store(command),
    };
    match offline {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_with_store(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(ops::run(command))
}

/// Runs a long-lived service on a multi-threaded runtime until it stops or fails.
fn serve(
    service: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(service)?;
    Ok(ExitCode::SUCCESS)
}

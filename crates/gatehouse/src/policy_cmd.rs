//! `gatehouse policy …` and `gatehouse tools …`: the policy engine on files, for people writing
//! policies and for scripts. Exit codes: 0 success, 1 the policy is invalid, 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use policy::{Call, Decision, Policy, Proceed, Subject, ToolDef};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy document; print a summary, or every error with its place.
    Check {
        /// The policy document (JSON).
        file: PathBuf,
        #[command(flatten)]
        tools: ToolsArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the decision a policy makes for one call, and the rule that makes it.
    Explain {
        /// The policy document (JSON).
        file: PathBuf,
        /// The tool being called.
        #[arg(long)]
        tool: String,
        /// The call's arguments as a JSON object.
        #[arg(long, default_value = "{}")]
        args: String,
        #[command(flatten)]
        tools: ToolsArg,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the recommended policy for a server's tools (from a saved `tools/list` answer).
    Recommend {
        /// A `tools/list` result, the JSON-RPC response holding it, or an array of tools.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCommand {
    /// Classify each tool's risk and show the signals behind it.
    Classify {
        /// A `tools/list` result, the JSON-RPC response holding it, or an array of tools.
        file: PathBuf,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ToolsArg {
    /// The server's tools (a saved `tools/list` answer): tool names and condition arguments
    /// are then checked against them.
    #[arg(long = "tools", value_name = "TOOLS.json")]
    path: Option<PathBuf>,
}

impl ToolsArg {
    fn load(&self) -> Result<Option<Vec<ToolDef>>> {
        self.path.as_deref().map(load_tools).transpose()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn load_tools(path: &Path) -> Result<Vec<ToolDef>> {
    policy::parse_tool_list(&read(path)?)
        .with_context(|| format!("reading the tool list in {}", path.display()))
}

pub(crate) fn run_policy(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file, tools, json } => check(&file, tools.load()?.as_deref(), json),
        PolicyCommand::Explain {
            file,
            tool,
            args,
            tools,
            json,
        } => explain(&file, &tool, &args, tools.load()?.as_deref(), json),
        PolicyCommand::Recommend { file } => {
            let tools = load_tools(&file)?;
            let recommended = policy::recommended_policy(&tools);
            println!("{}", serde_json::to_string_pretty(&recommended)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn run_tools(cmd: ToolsCommand) -> Result<ExitCode> {
    match cmd {
        ToolsCommand::Classify { file, json } => classify(&file, json),
    }
}

fn check(file: &Path, tools: Option<&[ToolDef]>, as_json: bool) -> Result<ExitCode> {
    let text = read(file)?;
    let name = file.display();
    match Policy::parse(&text, tools) {
        Ok(policy) => {
            if as_json {
                let out = json!({"valid": true, "summary": summary_json(&policy), "warnings": policy.warnings()});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{name}: valid policy");
                print!("{}", summary_text(&policy));
                for w in policy.warnings() {
                    println!("{}", located(&name.to_string(), w));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            if as_json {
                let out = json!({"valid": false, "diagnostics": diagnostics});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for d in &diagnostics.0 {
                    println!("{}", located(&name.to_string(), d));
                }
                let n = diagnostics.error_count();
                println!("{name}: {n} error{}", if n == 1 { "" } else { "s" });
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `file:line:column: error at /pointer: message`, the shape editors and CI logs link from.
fn located(file: &str, d: &policy::Diagnostic) -> String {
    let kind = match d.severity {
        policy::Severity::Error => "error",
        policy::Severity::Warning => "warning",
    };
    format!(
        "{file}:{}:{}: {kind} at {}: {}",
        d.line, d.column, d.pointer, d.message
    )
}

fn summary_json(policy: &Policy) -> Value {
    let doc = policy.document();
    let approvals: Vec<&str> = doc
        .tool_order
        .iter()
        .filter(|t| doc.tools[*t].approval.is_some())
        .map(String::as_str)
        .collect();
    let denied: Vec<&str> = doc
        .tool_order
        .iter()
        .filter(|t| doc.tools[*t].action == policy::Action::Deny)
        .map(String::as_str)
        .collect();
    let limits =
        doc.all_tools_limits.len() + doc.tools.values().map(|r| r.limits.len()).sum::<usize>();
    json!({
        "default": doc.default,
        "tools": doc.tool_order,
        "hidden": doc.hide.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "denied": denied,
        "approval": approvals,
        "limits": limits,
        "record_arguments": doc.record_arguments,
    })
}

fn summary_text(policy: &Policy) -> String {
    let s = summary_json(policy);
    let list = |key: &str| -> String {
        let items: Vec<&str> = s[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if items.is_empty() {
            "none".into()
        } else {
            items.join(", ")
        }
    };
    format!(
        "  default:   {}\n  tools:     {}\n  hidden:    {}\n  denied:    {}\n  approval:  {}\n  limits:    {}\n",
        s["default"].as_str().unwrap_or_default(),
        list("tools"),
        list("hidden"),
        list("denied"),
        list("approval"),
        s["limits"],
    )
}

fn explain(
    file: &Path,
    tool: &str,
    args: &str,
    tools: Option<&[ToolDef]>,
    as_json: bool,
) -> Result<ExitCode> {
    let text = read(file)?;
    let policy = match Policy::parse(&text, tools) {
        Ok(p) => p,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(ExitCode::from(1));
        }
    };
    let arguments: Value = serde_json::from_str(args).context("--args is not valid JSON")?;
    if !arguments.is_object() {
        bail!("--args must be a JSON object, such as '{{\"device_id\": \"00236A-…\"}}'");
    }
    let call = Call {
        tool,
        arguments: Some(&arguments),
        subject: Subject {
            organisation: "ORG",
            server: "SERVER",
            grant: "GRANT",
            identity: "IDENTITY",
            session: Some("SESSION"),
        },
    };
    let decision = policy.decide(&call);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        println!("{}", explain_text(tool, &decision));
    }
    Ok(ExitCode::SUCCESS)
}

fn explain_text(tool: &str, decision: &Decision) -> String {
    match decision {
        Decision::Allow { rule } => format!("allow (rule {rule}): the call is forwarded"),
        Decision::Deny(d) => format!(
            "deny (rule {}): [POLICY DENIED] {}\n  because: {}",
            d.rule, d.message, d.detail
        ),
        Decision::UnknownTool { rule } => {
            format!(
                "unknown tool (rule {rule}): the agent gets JSON-RPC error -32602 \"Unknown tool: {tool}\""
            )
        }
        Decision::NeedsApproval { rule, approval } => format!(
            "approval (rule {rule}): held for a human for up to {} s; the agent waits up to {} s",
            approval.timeout_secs, approval.wait_secs
        ),
        Decision::NeedsLimits { limits, then } => {
            let mut out =
                String::from("rate limited: the call consumes these counters, atomically:\n");
            for l in limits {
                out.push_str(&format!(
                    "  {} (rule {}): at most {} per {} s per {}\n",
                    l.counter, l.rule, l.max, l.window_secs, l.scope
                ));
            }
            let next = match then {
                Proceed::Allow { rule } => format!("allow (rule {rule})"),
                Proceed::NeedsApproval { rule, approval } => {
                    format!(
                        "approval (rule {rule}), held up to {} s",
                        approval.timeout_secs
                    )
                }
            };
            out.push_str(&format!("then, if every counter admits it: {next}"));
            out
        }
    }
}

fn classify(file: &Path, as_json: bool) -> Result<ExitCode> {
    let tools = load_tools(file)?;
    let risks: Vec<(String, policy::Risk)> = tools
        .iter()
        .map(|t| (t.name.clone(), policy::classify(t)))
        .collect();
    if as_json {
        let out: Vec<Value> = risks
            .iter()
            .map(|(name, risk)| json!({"tool": name, "class": risk.class, "level": risk.level, "signals": risk.signals}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = risks.iter().map(|(n, _)| n.len()).max().unwrap_or(4).max(4);
    println!("{:width$}  {:11}  {:8}  signals", "tool", "class", "level");
    for (name, risk) in &risks {
        let signals: Vec<String> = risk.signals.iter().map(|s| s.detail.clone()).collect();
        let signals = if signals.is_empty() {
            "none".to_string()
        } else {
            signals.join("; ")
        };
        println!(
            "{name:width$}  {:11}  {:8}  {signals}",
            risk.class.to_string(),
            risk.level.to_string()
        );
    }
    Ok(ExitCode::SUCCESS)
}

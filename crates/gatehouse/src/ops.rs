//! Operator commands over the store: for self-hosters, scripts and black-box tests. Each prints
//! text for people or, with `--json`, one JSON object on standard output; errors go to standard
//! error (and, with `--json`, also as `{"error": …}` on standard output).

use std::process::ExitCode;

use anyhow::Context as _;
use serde_json::{Value, json};
use store::approval::{Approval, ApprovalFilter, Decision};
use store::secret::{Keyring, Redacted, SealingKey};
use store::{Actor, ApprovalId, GrantId, OrgId, ServerId, Store};
use time::format_description::well_known::Rfc3339;

use crate::config::{self, Problems};
use crate::{
    ApprovalChannelArgs, ApprovalCommand, ApprovalStatusArg, AuditCommand, Command, GrantCommand,
    KeysCommand, OrgCommand, PolicyCommand, ServerCommand, StoreArgs,
};

/// Why a command failed, which decides its exit code and how it is reported.
#[derive(Debug)]
enum Failure {
    /// Bad configuration, every problem named by its variable. Exit code 2.
    Config(Problems),
    /// The store refused (not found, conflict, invalid) or failed. Exit code 1.
    Store(store::Error),
    /// The policy document did not validate. Exit code 1.
    Policy(policy::Diagnostics),
    /// Anything else (reading a file...). Exit code 1.
    Other(anyhow::Error),
}

impl From<store::Error> for Failure {
    fn from(e: store::Error) -> Self {
        Failure::Store(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

type Outcome = Result<(Value, String), Failure>;

/// Runs one command and reports its outcome.
pub(crate) async fn run(command: Command) -> ExitCode {
    let json = match &command {
        Command::Migrate(s)
        | Command::Org(OrgCommand::Create { store: s, .. })
        | Command::Server(ServerCommand::Add { store: s, .. })
        | Command::Policy(PolicyCommand::Publish { store: s, .. })
        | Command::Grant(
            GrantCommand::Mint { store: s, .. }
            | GrantCommand::Revoke { store: s, .. }
            | GrantCommand::Rotate { store: s, .. },
        )
        | Command::Keys(KeysCommand::Rotate { store: s, .. })
        | Command::Approval(
            ApprovalCommand::List { store: s, .. }
            | ApprovalCommand::Approve { store: s, .. }
            | ApprovalCommand::Deny { store: s, .. },
        )
        | Command::Audit(AuditCommand::Partitions { store: s, .. }) => s.json,
        Command::Policy(PolicyCommand::Offline(_))
        | Command::Tools(_)
        | Command::DemoUpstream(_)
        | Command::Admin(_)
        | Command::Gateway(_)
        | Command::Up(_)
        | Command::Ingest(_)
        | Command::Audit(AuditCommand::Store(_)) => {
            unreachable!("offline, service and audit commands are run by main without this module")
        }
    };
    match dispatch(command).await {
        Ok((value, text)) => {
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => report(failure, json),
    }
}

fn report(failure: Failure, json: bool) -> ExitCode {
    let (kind, message, extra, code) = match failure {
        Failure::Config(problems) => {
            let message = problems.0.join("; ");
            for p in &problems.0 {
                eprintln!("error: configuration: {p}");
            }
            ("configuration", message, Value::Null, 2)
        }
        Failure::Policy(diagnostics) => {
            eprintln!("error: the policy is not valid:\n{diagnostics}");
            let extra = serde_json::to_value(&diagnostics).unwrap_or(Value::Null);
            (
                "invalid_policy",
                "the policy is not valid".to_owned(),
                extra,
                1,
            )
        }
        Failure::Store(e) => {
            let (kind, extra) = match &e {
                store::Error::NotFound { .. } => ("not_found", Value::Null),
                store::Error::Conflict { constraint, .. } => {
                    ("conflict", json!({ "constraint": constraint }))
                }
                store::Error::Invalid { .. } => ("invalid", Value::Null),
                _ => ("internal", Value::Null),
            };
            eprintln!("error: {e}");
            (kind, e.to_string(), extra, 1)
        }
        Failure::Other(e) => {
            eprintln!("error: {e:#}");
            ("internal", format!("{e:#}"), Value::Null, 1)
        }
    };
    if json {
        let mut error = json!({ "kind": kind, "message": message });
        match extra {
            Value::Null => {}
            // A conflict names the rule it broke (`approval_decided`, `approval_expired`...).
            Value::Object(fields) if kind == "conflict" => {
                error.as_object_mut().expect("an object").extend(fields);
            }
            extra => error["diagnostics"] = extra,
        }
        println!("{}", json!({ "error": error }));
    }
    ExitCode::from(code)
}

/// Commands that never seal or open a secret still need a keyring to build a store; this one is
/// random, used for nothing, and forgotten when the process ends.
fn unused_keyring() -> Keyring {
    Keyring::new(SealingKey::generate(1))
}

async fn connect(
    args: &StoreArgs,
    keyring: Option<Keyring>,
    mut problems: Problems,
) -> Result<Store, Failure> {
    let url = config::database_url(args, &mut problems);
    if !problems.0.is_empty() {
        return Err(Failure::Config(problems));
    }
    let url = url.expect("checked above");
    Ok(Store::connect(&url, keyring.unwrap_or_else(unused_keyring)).await?)
}

/// Tells every gateway replica to drop its cached configuration, when `REDIS_URL` is set. A failure
/// is only a warning: the change is committed, and replicas notice it within their cache TTL.
async fn announce(args: &StoreArgs, what: &str) {
    if let Err(e) = publish(args, gateway::DEFAULT_INVALIDATION_CHANNEL, what).await {
        eprintln!(
            "warning: could not announce the change on REDIS_URL ({e}); gateways pick it up within their cache TTL"
        );
    }
}

/// Publishes `what` on `channel` when `REDIS_URL` is set; `Ok(false)` when it is not.
async fn publish(args: &StoreArgs, channel: &str, what: &str) -> redis::RedisResult<bool> {
    let Some(url) = args.redis_url.as_deref().filter(|u| !u.trim().is_empty()) else {
        return Ok(false);
    };
    let client = redis::Client::open(url)?;
    gateway::invalidate::publish(&client, channel, what).await?;
    Ok(true)
}

/// Tells the gateway replica holding the decided call to re-read its approval, when `REDIS_URL`
/// is set. A failure is only a warning: the decision is committed, and held calls re-read their
/// approval about once a second anyway (a retried call reads it then).
async fn announce_decision(args: &StoreArgs, channel: &ApprovalChannelArgs, id: ApprovalId) {
    if let Err(e) = publish(args, &channel.approval_channel, &id.to_string()).await {
        eprintln!(
            "warning: could not announce the decision on REDIS_URL ({e}); a held call notices it when it next re-reads the approval"
        );
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Who the approval's call came from: the identity, and the grant's label when it differs.
fn who(a: &Approval) -> String {
    if a.identity == a.grant_label {
        a.identity.clone()
    } else {
        format!("{} (grant {})", a.identity, a.grant_label)
    }
}

/// One approval for people: the line `approval list` prints, and what a decision prints.
fn approval_text(a: &Approval) -> String {
    let mut text = format!(
        "{}  {}  {}  {}  created {}  expires {}\n    arguments: {}",
        a.approval_id,
        a.status,
        a.tool_name,
        who(a),
        rfc3339(a.created_at),
        rfc3339(a.expires_at),
        a.arguments,
    );
    if let Some(at) = a.decided_at {
        let by = a
            .decided_by_email
            .clone()
            .or_else(|| a.decided_via.clone())
            .unwrap_or_else(|| "unknown".into());
        text.push_str(&format!("\n    decided {} by {by}", rfc3339(at)));
        if let Some(comment) = &a.comment {
            text.push_str(&format!(": {comment}"));
        }
    }
    text
}

async fn decide(
    id: &str,
    decision: Decision,
    comment: Option<&str>,
    channel: &ApprovalChannelArgs,
    args: &StoreArgs,
) -> Outcome {
    let store = connect(args, None, Problems::default()).await?;
    let id: ApprovalId = parse_id(id)?;
    let org = store.organisation_of_approval(id).await?;
    let mut tx = store.begin(org).await?;
    let approval =
        store::approval::decide_approval(&mut tx, Actor::Operator, id, decision, comment).await?;
    tx.commit().await?;
    announce_decision(args, channel, id).await;
    let text = match decision {
        Decision::Approve => format!(
            "approved {id}: the call goes through once, if made again before {}\n{}",
            rfc3339(approval.expires_at),
            approval_text(&approval)
        ),
        Decision::Deny => format!(
            "denied {id}; the agent is told your comment\n{}",
            approval_text(&approval)
        ),
    };
    let mut value = serde_json::to_value(&approval).context("serialising the approval")?;
    value["organisation_id"] = json!(org);
    Ok((value, text))
}

fn parse_id<T: std::str::FromStr<Err = store::Error>>(text: &str) -> Result<T, Failure> {
    Ok(text.parse::<T>()?)
}

async fn dispatch(command: Command) -> Outcome {
    match command {
        Command::Migrate(args) => {
            let store = connect(&args, None, Problems::default()).await?;
            store.migrate().await?;
            Ok((json!({ "migrated": true }), "migrations applied".into()))
        }
        Command::Org(OrgCommand::Create { name, store: args }) => {
            let store = connect(&args, None, Problems::default()).await?;
            let org = store.create_organisation(Actor::Operator, &name).await?;
            let text = org.organisation_id.to_string();
            Ok((
                serde_json::to_value(&org).context("serialising the organisation")?,
                text,
            ))
        }
        Command::Server(ServerCommand::Add {
            org,
            name,
            url,
            headers,
            secrets,
            public,
            store: args,
        }) => {
            let mut problems = Problems::default();
            let keyring = config::keyring(&secrets, !headers.is_empty(), &mut problems);
            let public_url = config::public_url(&public, &mut problems);
            let store = connect(&args, keyring, problems).await?;
            let public_url = public_url.expect("checked by connect");
            let org: OrgId = parse_id(&org)?;
            let headers = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .ok_or_else(|| {
                            Failure::Store(store::Error::Invalid {
                                field: "header",
                                reason: format!("`{h}` is not in the form 'Name: value'"),
                            })
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut tx = store.begin(org).await?;
            let new = store::server::NewServer {
                name,
                upstream_url: url,
                headers: Redacted::new(headers),
            };
            let server = store::server::create_server(&mut tx, Actor::Operator, &new).await?;
            tx.commit().await?;
            let proxy_url = format!("{public_url}/mcp/{}", server.server_id);
            let mut value = serde_json::to_value(&server).context("serialising the server")?;
            value["proxy_url"] = json!(proxy_url);
            Ok((
                value,
                format!("server id: {}\nproxy URL: {proxy_url}", server.server_id),
            ))
        }
        Command::Policy(PolicyCommand::Publish {
            server,
            policy: name,
            file,
            store: args,
        }) => {
            let store = connect(&args, None, Problems::default()).await?;
            let server: ServerId = parse_id(&server)?;
            let source = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("reading the policy from standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let org = store.organisation_of_server(server).await?;
            let mut tx = store.begin(org).await?;
            // Validated against the pinned tools when there are some, so a misspelt tool name is
            // caught; a server whose tools were never pinned gets the document checked alone.
            let pinned = store::server::latest_pinned_tools(&mut tx, server).await?;
            let tools = pinned
                .into_iter()
                .map(|t| serde_json::from_value::<policy::ToolDef>(t.definition))
                .collect::<Result<Vec<_>, _>>()
                .context("reading the pinned tool definitions")?;
            let parsed = policy::Policy::parse(&source, (!tools.is_empty()).then_some(&tools[..]))
                .map_err(Failure::Policy)?;
            for warning in parsed.warnings() {
                eprintln!("{warning}");
            }
            let version = store::policy::publish_policy_version(
                &mut tx,
                Actor::Operator,
                server,
                &name,
                &source,
                None,
            )
            .await?;
            tx.commit().await?;
            announce(&args, &format!("policy:{}", version.policy_id)).await;
            let text = format!(
                "published policy `{}` version {}",
                version.name, version.version
            );
            Ok((
                json!({ "server_id": server, "policy_id": version.policy_id, "policy": version.name,
                        "version": version.version, "warnings": parsed.warnings() }),
                text,
            ))
        }
        Command::Grant(GrantCommand::Mint {
            server,
            label,
            policy: policy_name,
            expires,
            public,
            store: args,
        }) => {
            let mut problems = Problems::default();
            let public_url = config::public_url(&public, &mut problems);
            let expires = match expires.as_deref().map(config::duration).transpose() {
                Ok(d) => d,
                Err(e) => {
                    return Err(Failure::Store(store::Error::Invalid {
                        field: "--expires",
                        reason: e,
                    }));
                }
            };
            let store = connect(&args, None, problems).await?;
            let public_url = public_url.expect("checked by connect");
            let server: ServerId = parse_id(&server)?;
            let org = store.organisation_of_server(server).await?;
            let mut tx = store.begin(org).await?;
            let new = store::grant::NewGrant {
                server,
                policy_name,
                label,
                identity: None,
                expires_at: expires.map(|d| time::OffsetDateTime::now_utc() + d),
            };
            let minted = store::grant::mint_grant(&mut tx, Actor::Operator, &new).await?;
            tx.commit().await?;
            let proxy_url = format!("{public_url}/mcp/{server}");
            let token = minted.token.expose();
            let snippet = json!({ "mcpServers": { "gatehouse": {
                "url": proxy_url, "headers": { "Authorization": format!("Bearer {token}") } } } });
            let mut value = serde_json::to_value(&minted.grant).context("serialising the grant")?;
            value["token"] = json!(token);
            value["proxy_url"] = json!(proxy_url);
            value["client_config"] = snippet.clone();
            let text = format!(
                "grant id: {}\ntoken (shown once, store it now): {token}\nproxy URL: {proxy_url}\nclient config:\n{}",
                minted.grant.grant_id,
                serde_json::to_string_pretty(&snippet).context("formatting the client config")?
            );
            Ok((value, text))
        }
        Command::Grant(GrantCommand::Revoke { id, store: args }) => {
            let store = connect(&args, None, Problems::default()).await?;
            let grant: GrantId = parse_id(&id)?;
            let org = store.organisation_of_grant(grant).await?;
            let mut tx = store.begin(org).await?;
            let revoked = store::grant::revoke_grant(&mut tx, Actor::Operator, grant).await?;
            tx.commit().await?;
            announce(&args, &format!("grant:{grant}")).await;
            let text = format!("revoked grant {grant}");
            Ok((
                serde_json::to_value(&revoked).context("serialising the grant")?,
                text,
            ))
        }
        Command::Grant(GrantCommand::Rotate {
            id,
            public,
            store: args,
        }) => {
            let mut problems = Problems::default();
            let public_url = config::public_url(&public, &mut problems);
            let store = connect(&args, None, problems).await?;
            let public_url = public_url.expect("checked by connect");
            let grant: GrantId = parse_id(&id)?;
            let org = store.organisation_of_grant(grant).await?;
            let mut tx = store.begin(org).await?;
            let minted = store::grant::rotate_grant(&mut tx, Actor::Operator, grant).await?;
            tx.commit().await?;
            announce(&args, &format!("grant:{grant}")).await;
            let proxy_url = format!("{public_url}/mcp/{}", minted.grant.server_id);
            let token = minted.token.expose();
            let mut value = serde_json::to_value(&minted.grant).context("serialising the grant")?;
            value["token"] = json!(token);
            value["proxy_url"] = json!(proxy_url);
            let text = format!(
                "rotated grant {grant}; the old token no longer works\ntoken (shown once, store it now): {token}\nproxy URL: {proxy_url}"
            );
            Ok((value, text))
        }
        Command::Keys(KeysCommand::Rotate {
            secrets,
            store: args,
        }) => {
            let mut problems = Problems::default();
            let keyring = config::keyring(&secrets, true, &mut problems);
            let store = connect(&args, keyring, problems).await?;
            let report = store.reseal_secrets().await?;
            let text = format!(
                "re-sealed {} server credential(s) and {} webhook secret(s) under key version {}",
                report.servers, report.approval_webhooks, report.key_version
            );
            Ok((
                serde_json::to_value(report).context("serialising the report")?,
                text,
            ))
        }
        Command::Approval(ApprovalCommand::List {
            org,
            status,
            limit,
            store: args,
        }) => {
            let store = connect(&args, None, Problems::default()).await?;
            let orgs = match org {
                Some(org) => vec![parse_id::<OrgId>(&org)?],
                None => store.organisation_ids().await?,
            };
            let filter = match status {
                ApprovalStatusArg::Pending => ApprovalFilter::Pending,
                ApprovalStatusArg::Decided => ApprovalFilter::Decided,
            };
            let mut approvals = Vec::new();
            let mut lines = Vec::new();
            let mut more = Vec::new();
            for org in orgs {
                let mut tx = store.begin(org).await?;
                let page = store::approval::list_approvals(&mut tx, filter, None, limit).await?;
                tx.commit().await?;
                for a in &page.approvals {
                    let mut value = serde_json::to_value(a).context("serialising an approval")?;
                    value["organisation_id"] = json!(org);
                    approvals.push(value);
                    lines.push(approval_text(a));
                }
                if page.next.is_some() {
                    lines.push(format!(
                        "(organisation {org} has more than {limit}; raise --limit to see more)"
                    ));
                    more.push(org);
                }
            }
            let which = match status {
                ApprovalStatusArg::Pending => "pending",
                ApprovalStatusArg::Decided => "decided",
            };
            let text = if approvals.is_empty() {
                format!("no {which} approvals")
            } else {
                lines.join("\n")
            };
            Ok((json!({ "approvals": approvals, "more_in": more }), text))
        }
        Command::Approval(ApprovalCommand::Approve {
            id,
            comment,
            channel,
            store: args,
        }) => decide(&id, Decision::Approve, comment.as_deref(), &channel, &args).await,
        Command::Approval(ApprovalCommand::Deny {
            id,
            comment,
            channel,
            store: args,
        }) => decide(&id, Decision::Deny, Some(&comment), &channel, &args).await,
        Command::Policy(PolicyCommand::Offline(_))
        | Command::Tools(_)
        | Command::DemoUpstream(_)
        | Command::Admin(_)
        | Command::Gateway(_)
        | Command::Up(_)
        | Command::Ingest(_)
        | Command::Audit(AuditCommand::Store(_)) => {
            unreachable!("offline, service and audit commands are run by main without this module")
        }
        Command::Audit(AuditCommand::Partitions {
            retain_days,
            store: args,
        }) => {
            let store = connect(&args, None, Problems::default()).await?;
            let created = store::audit::ensure_partitions_ahead(store.pool()).await?;
            let dropped = match retain_days {
                Some(days) => {
                    let before = time::OffsetDateTime::now_utc().date()
                        - time::Duration::days(i64::from(days));
                    store::audit::drop_partitions_before(store.pool(), before).await?
                }
                None => Vec::new(),
            };
            let text = format!(
                "created {} partition(s), dropped {}",
                created.len(),
                dropped.len()
            );
            Ok((json!({ "created": created, "dropped": dropped }), text))
        }
    }
}

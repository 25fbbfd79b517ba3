//! `gatehouse approval list | approve | deny`, run as the built binary against a fresh database:
//! approvals are opened through the store (as the gateway opens them), then listed and decided
//! from the command line, and each decision is announced on Redis.

use std::time::Duration;

use serde_json::{Value, json};
use store::approval::{ApprovalStatus, NewApproval};
use store::secret::{Keyring, SealingKey};
use store::{ApprovalId, GrantId, OrgId, ServerId, Store};

use crate::store_cli::{FreshDatabase, KEY, gatehouse, json, ok_json, provision};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// An organisation with one server, its policy and one grant, made with the CLI.
fn org_server_grant(
    run: &dyn Fn(&[&str]) -> std::process::Output,
    name: &str,
    policy: &str,
) -> (OrgId, ServerId, GrantId) {
    let made = provision(run, name, "http://10.0.0.5:7557/mcp", policy);
    (
        made.org.parse().unwrap(),
        made.server_id.parse().unwrap(),
        made.grant_id.parse().unwrap(),
    )
}

/// Opens an approval of one call as the gateway does.
async fn open(
    store: &Store,
    (org, server, grant): (OrgId, ServerId, GrantId),
    tool: &str,
    arguments: Value,
    timeout: Duration,
) -> ApprovalId {
    let mut tx = store.begin(org).await.unwrap();
    let new = NewApproval {
        grant,
        server,
        tool,
        arguments_redacted: &arguments,
        arguments_hash: store::approval::arguments_hash(Some(&arguments)),
        request_id: "req-1",
        session_id: None,
        timeout,
    };
    let opened = store::approval::open_approval(&mut tx, &new).await.unwrap();
    tx.commit().await.unwrap();
    assert!(opened.created);
    opened.approval.approval_id
}

async fn status_of(store: &Store, id: ApprovalId) -> store::approval::Approval {
    let org = store.organisation_of_approval(id).await.unwrap();
    let mut tx = store.begin(org).await.unwrap();
    let approval = store::approval::approval_by_id(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    approval
}

fn ids(list: &Value) -> Vec<String> {
    list["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["approval_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn approvals_are_listed_and_decided_from_the_command_line() {
    let db = FreshDatabase::create().await;
    let url = db.url.clone();
    // A channel of this test only, so no gateway on the machine's Redis sees its messages.
    let channel = format!("gh:approvals-cli:{}", uuid::Uuid::new_v4().simple());
    let redis = redis_url();
    let env = [
        ("GATEHOUSE_SECRET_KEY", KEY),
        ("REDIS_URL", redis.as_str()),
        ("GATEHOUSE_APPROVAL_CHANNEL", channel.as_str()),
    ];
    let run = |args: &[&str]| gatehouse(&url, args, &env);

    let policy = r#"{"version": "1", "default": "deny", "tools": {"reboot_device": {"approval": {"timeout": "10m"}}}}"#;

    ok_json(&run(&["migrate", "--json"]));
    let acme = org_server_grant(&run, "Acme ISP", policy);
    let other = org_server_grant(&run, "Other ISP", policy);
    let store = Store::connect(&db.url, Keyring::new(SealingKey::generate(1)))
        .await
        .unwrap();
    let minutes = Duration::from_secs(600);
    let reboot = open(
        &store,
        acme,
        "reboot_device",
        json!({ "device_id": "CPE-0001", "password": "[REDACTED]" }),
        minutes,
    )
    .await;
    let reset = open(
        &store,
        acme,
        "factory_reset",
        json!({ "device_id": "CPE-0002" }),
        minutes,
    )
    .await;
    let elsewhere = open(
        &store,
        other,
        "reboot_device",
        json!({ "device_id": "X-1" }),
        minutes,
    )
    .await;
    let stale = open(
        &store,
        acme,
        "set_parameter",
        json!({}),
        Duration::from_millis(1),
    )
    .await;

    // Without --org: every organisation's pending approvals; with it, that organisation's only.
    let all = ok_json(&run(&["approval", "list", "--json"]));
    let mut listed = ids(&all);
    listed.sort();
    let mut expected = vec![reboot.to_string(), reset.to_string(), elsewhere.to_string()];
    expected.sort();
    assert_eq!(listed, expected, "the expired one is not pending: {all}");
    let acme_only = ok_json(&run(&[
        "approval",
        "list",
        "--org",
        &acme.0.to_string(),
        "--json",
    ]));
    assert_eq!(
        ids(&acme_only),
        [reset.to_string(), reboot.to_string()],
        "newest first"
    );
    let first = &acme_only["approvals"][1];
    assert_eq!(first["status"], "pending");
    assert_eq!(first["tool_name"], "reboot_device");
    assert_eq!(first["identity"], "noc-agent");
    assert_eq!(first["grant_label"], "noc-agent");
    assert_eq!(first["organisation_id"], acme.0.to_string());
    assert_eq!(first["arguments"]["password"], "[REDACTED]");
    assert!(first["created_at"].is_string() && first["expires_at"].is_string());

    let text = run(&["approval", "list", "--org", &acme.0.to_string()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!(
            "{reboot}  pending  reboot_device  noc-agent  created "
        )) && text.contains(r#""password":"[REDACTED]""#)
            && text.contains(r#""device_id":"CPE-0001""#),
        "{text}"
    );

    // Approve, announced on the approvals channel with the approval's id.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(&channel).unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let approved = ok_json(&run(&[
        "approval",
        "approve",
        &reboot.to_string(),
        "--comment",
        "go ahead",
        "--json",
    ]));
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["comment"], "go ahead");
    assert_eq!(approved["decided_via"], "cli");
    let message = pubsub.get_message().unwrap();
    assert_eq!(message.get_channel_name(), channel);
    assert_eq!(message.get_payload::<String>().unwrap(), reboot.to_string());
    drop(pubsub);
    let stored = status_of(&store, reboot).await;
    assert_eq!(stored.status, ApprovalStatus::Approved);
    assert_eq!(stored.decided_via.as_deref(), Some("cli"));
    assert_eq!(stored.comment.as_deref(), Some("go ahead"));

    // A second decision is refused, clearly, with a non-zero exit.
    let again = run(&["approval", "approve", &reboot.to_string(), "--json"]);
    assert_eq!(again.status.code(), Some(1));
    let error = &json(&again)["error"];
    assert_eq!(error["kind"], "conflict");
    assert_eq!(error["constraint"], "approval_decided");
    let again = run(&["approval", "deny", &reboot.to_string(), "--comment", "no"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!(
            "error: approval {reboot} was already decided (approved)"
        )),
        "{stderr}"
    );

    // A denial needs a comment: clap refuses it without one, the store with an empty one.
    let bare = run(&["approval", "deny", &reset.to_string()]);
    assert_eq!(bare.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(stderr.contains("--comment"), "{stderr}");
    let blank = run(&[
        "approval",
        "deny",
        &reset.to_string(),
        "--comment",
        " ",
        "--json",
    ]);
    assert_eq!(blank.status.code(), Some(1));
    assert_eq!(json(&blank)["error"]["kind"], "invalid");
    assert_eq!(
        status_of(&store, reset).await.status,
        ApprovalStatus::Pending
    );

    let denied = run(&[
        "approval",
        "deny",
        &reset.to_string(),
        "--comment",
        "not during business hours",
    ]);
    assert!(
        denied.status.success(),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert!(String::from_utf8_lossy(&denied.stdout).starts_with(&format!("denied {reset}")));
    let stored = status_of(&store, reset).await;
    assert_eq!(stored.status, ApprovalStatus::Denied);
    assert_eq!(stored.comment.as_deref(), Some("not during business hours"));

    // An expired approval cannot be decided.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = run(&["approval", "approve", &stale.to_string(), "--json"]);
    assert_eq!(late.status.code(), Some(1));
    assert_eq!(json(&late)["error"]["constraint"], "approval_expired");

    // Unknown and malformed ids.
    let unknown = run(&[
        "approval",
        "approve",
        &uuid::Uuid::new_v4().to_string(),
        "--json",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(json(&unknown)["error"]["kind"], "not_found");
    assert_eq!(json(&unknown)["error"]["message"], "approval not found");
    let malformed = run(&["approval", "approve", "not-an-id", "--json"]);
    assert_eq!(malformed.status.code(), Some(1));
    assert_eq!(json(&malformed)["error"]["kind"], "invalid");

    // What is left pending, and what was decided.
    let pending = ok_json(&run(&["approval", "list", "--json"]));
    assert_eq!(ids(&pending), [elsewhere.to_string()]);
    let decided = ok_json(&run(&[
        "approval",
        "list",
        "--org",
        &acme.0.to_string(),
        "--status",
        "decided",
        "--json",
    ]));
    let statuses: Vec<_> = decided["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["approval_id"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (stale.to_string(), "expired".to_owned()),
            (reset.to_string(), "denied".to_owned()),
            (reboot.to_string(), "approved".to_owned()),
        ]
    );
    let limited = ok_json(&run(&[
        "approval", "list", "--status", "decided", "--limit", "1", "--json",
    ]));
    assert_eq!(ids(&limited), [stale.to_string()]);
    assert_eq!(limited["more_in"], json!([acme.0.to_string()]));

    // Without REDIS_URL the decision is made all the same.
    let quiet = gatehouse(
        &url,
        &["approval", "approve", &elsewhere.to_string(), "--json"],
        &[],
    );
    assert_eq!(ok_json(&quiet)["status"], "approved");

    db.drop().await;
}

#[test]
fn approval_commands_explain_themselves() {
    let help = |args: &[&str]| {
        let out = gatehouse("postgres://unused", args, &[]);
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&["approval", "--help"]);
    for command in ["list", "approve", "deny"] {
        assert!(top.contains(command), "{top}");
    }
    let list = help(&["approval", "list", "--help"]);
    for option in ["--org", "--status", "pending, decided", "--limit", "--json"] {
        assert!(list.contains(option), "{option}: {list}");
    }
    let approve = help(&["approval", "approve", "--help"]);
    for option in [
        "<ID>",
        "--comment",
        "GATEHOUSE_APPROVAL_CHANNEL",
        "gatehouse:approvals",
        "REDIS_URL",
    ] {
        assert!(approve.contains(option), "{option}: {approve}");
    }
    let deny = help(&["approval", "deny", "--help"]);
    assert!(deny.contains("--comment <COMMENT> <ID>"), "{deny}");
    assert!(deny.contains("GATEHOUSE_APPROVAL_CHANNEL"), "{deny}");
}

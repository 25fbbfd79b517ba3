//! `gatehouse migrate | org create | server add | policy publish | grant mint | grant revoke | admin`,
//! run as the built binary against a fresh database, reading their `--json` output.

use std::process::{Command, Output};

use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

/// A database created for one test and dropped at its end.
pub(crate) struct FreshDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl FreshDatabase {
    pub(crate) async fn create() -> Self {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("gatehouse_cli_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .expect("DATABASE_URL reaches Postgres");
        conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
            .await
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self {
            admin_url,
            name,
            url,
        }
    }

    pub(crate) async fn drop(self) {
        let mut conn = PgConnection::connect(&self.admin_url).await.unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "drop database {} with (force)",
            self.name
        )))
        .await
        .unwrap();
    }
}

pub(crate) fn gatehouse(db: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args)
        .env_clear()
        .env("DATABASE_URL", db)
        .env("GATEHOUSE_PUBLIC_URL", "https://gw.example.net");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("gatehouse runs")
}

pub(crate) fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub(crate) fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

pub(crate) const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, base64

#[tokio::test]
async fn org_server_policy_grant_and_revoke_through_the_cli() {
    let db = FreshDatabase::create().await;
    let url = db.url.clone();
    let run = |args: &[&str]| gatehouse(&url, args, &[("GATEHOUSE_SECRET_KEY", KEY)]);

    assert_eq!(ok_json(&run(&["migrate", "--json"]))["migrated"], true);
    let org = ok_json(&run(&["org", "create", "Acme ISP", "--json"]));
    let org_id = org["organisation_id"].as_str().unwrap().to_owned();
    assert_eq!(org["name"], "Acme ISP");

    let server = ok_json(&run(&[
        "server",
        "add",
        "--org",
        &org_id,
        "--name",
        "genieacs",
        "--url",
        "http://10.0.0.5:7557/mcp",
        "--header",
        "Authorization: Bearer upstream-secret",
        "--json",
    ]));
    let server_id = server["server_id"].as_str().unwrap().to_owned();
    assert_eq!(
        server["proxy_url"],
        format!("https://gw.example.net/mcp/{server_id}")
    );
    assert_eq!(server["has_credentials"], true);
    assert!(
        !server.to_string().contains("upstream-secret"),
        "credentials are never printed"
    );

    let dup = run(&[
        "server",
        "add",
        "--org",
        &org_id,
        "--name",
        "genieacs",
        "--url",
        "http://x/mcp",
        "--json",
    ]);
    assert!(!dup.status.success());
    assert_eq!(json(&dup)["error"]["kind"], "conflict");

    let dir = std::env::temp_dir().join(format!("gatehouse-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"version": "1", "default": "maybe"}"#).unwrap();
    let refused = run(&[
        "policy",
        "publish",
        "--server",
        &server_id,
        bad.to_str().unwrap(),
        "--json",
    ]);
    assert!(!refused.status.success());
    let error = &json(&refused)["error"];
    assert_eq!(error["kind"], "invalid_policy");
    assert_eq!(error["diagnostics"][0]["pointer"], "/default");

    let good = dir.join("policy.json");
    std::fs::write(
        &good,
        r#"{"version": "1", "default": "deny", "tools": {"search_devices": {}}}"#,
    )
    .unwrap();
    let published = ok_json(&run(&[
        "policy",
        "publish",
        "--server",
        &server_id,
        good.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (published["policy"].as_str(), published["version"].as_i64()),
        (Some("default"), Some(1))
    );
    let published = ok_json(&run(&[
        "policy",
        "publish",
        "--server",
        &server_id,
        good.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(published["version"], 2);

    let grant = ok_json(&run(&[
        "grant",
        "mint",
        "--server",
        &server_id,
        "--label",
        "noc-agent",
        "--expires",
        "30d",
        "--json",
    ]));
    let token = grant["token"].as_str().unwrap().to_owned();
    let grant_id = grant["grant_id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ghg_") && token.len() >= 47, "{token}");
    assert_eq!(
        grant["proxy_url"],
        format!("https://gw.example.net/mcp/{server_id}")
    );
    assert_eq!(
        grant["client_config"]["mcpServers"]["gatehouse"]["headers"]["Authorization"],
        format!("Bearer {token}")
    );
    assert!(grant["expires_at"].is_string());

    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    let (stored_hash, revoked): (Vec<u8>, bool) =
        sqlx::query_as("select token_hash, revoked_at is not null from access_grant where access_grant_id = $1::uuid")
            .bind(&grant_id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((stored_hash.len(), revoked), (32, false));

    let revoked = ok_json(&run(&["grant", "revoke", &grant_id, "--json"]));
    assert!(revoked["revoked_at"].is_string());
    let revoked: bool = sqlx::query_scalar(
        "select revoked_at is not null from access_grant where access_grant_id = $1::uuid",
    )
    .bind(&grant_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(revoked);
    let missing = run(&[
        "grant",
        "revoke",
        &uuid::Uuid::new_v4().to_string(),
        "--json",
    ]);
    assert_eq!(json(&missing)["error"]["kind"], "not_found");
    conn.close().await.unwrap();

    std::fs::remove_dir_all(&dir).unwrap();
    db.drop().await;
}

#[test]
fn configuration_errors_name_the_variable() {
    let out = gatehouse(
        "mysql://nope",
        &[
            "server",
            "add",
            "--org",
            "x",
            "--name",
            "n",
            "--url",
            "http://x/",
            "--header",
            "A: b",
        ],
        &[
            ("GATEHOUSE_PUBLIC_URL", "gw.example.net"),
            ("GATEHOUSE_SECRET_KEY", "c2hvcnQ="),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "DATABASE_URL",
        "GATEHOUSE_PUBLIC_URL",
        "GATEHOUSE_SECRET_KEY",
    ] {
        assert!(
            stderr.contains(&format!("{var}:")),
            "{var} not named in: {stderr}"
        );
    }
}

#[tokio::test]
async fn admin_names_every_bad_variable_and_serves_the_web_app() {
    let out = gatehouse(
        "mysql://nope",
        &["admin", "--listen", "not-an-address"],
        &[("GATEHOUSE_SECRET_KEY", "short")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "DATABASE_URL:",
        "GATEHOUSE_SECRET_KEY:",
        "GATEHOUSE_ADMIN_LISTEN:",
    ] {
        assert!(stderr.contains(var), "{var} in {stderr}");
    }

    let db = FreshDatabase::create().await;
    ok_json(&gatehouse(&db.url, &["migrate", "--json"], &[]));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["admin", "--allow-private-upstreams", "false"])
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .env("GATEHOUSE_PUBLIC_URL", "https://gw.example.net")
        .env("GATEHOUSE_ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "GATEHOUSE_SECRET_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /signup HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                .unwrap();
            s.read_to_string(&mut answer).unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    db.drop().await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Create your organisation"));
    // An https public URL makes every cookie Secure.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("set-cookie: gatehouse_presession=")
            && answer.contains("; Secure"),
        "{answer}"
    );
}

/// What [`provision`] made through the CLI.
pub(crate) struct Provisioned {
    pub(crate) org: String,
    pub(crate) server_id: String,
    pub(crate) proxy_url: String,
    pub(crate) grant_id: String,
    pub(crate) token: String,
}

/// What an operator does before an agent can call: `org create`, `server add` for
/// `upstream_url`, `policy publish` of the document `policy`, and `grant mint` (label
/// `noc-agent`), each with `--json` and each required to succeed.
pub(crate) fn provision(
    run: &dyn Fn(&[&str]) -> Output,
    org_name: &str,
    upstream_url: &str,
    policy: &str,
) -> Provisioned {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap().to_owned();
    let org = text(
        &ok_json(&run(&["org", "create", org_name, "--json"])),
        "organisation_id",
    );
    let server = ok_json(&run(&[
        "server",
        "add",
        "--org",
        &org,
        "--name",
        "genieacs",
        "--url",
        upstream_url,
        "--json",
    ]));
    let server_id = text(&server, "server_id");
    let file = std::env::temp_dir().join(format!(
        "gatehouse-policy-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, policy).unwrap();
    ok_json(&run(&[
        "policy",
        "publish",
        "--server",
        &server_id,
        file.to_str().unwrap(),
        "--json",
    ]));
    let _ = std::fs::remove_file(&file);
    let grant = ok_json(&run(&[
        "grant",
        "mint",
        "--server",
        &server_id,
        "--label",
        "noc-agent",
        "--json",
    ]));
    Provisioned {
        org,
        proxy_url: text(&server, "proxy_url"),
        server_id,
        grant_id: text(&grant, "grant_id"),
        token: text(&grant, "token"),
    }
}

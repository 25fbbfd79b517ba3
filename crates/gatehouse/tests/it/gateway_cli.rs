//! `gatehouse gateway` as the built binary: configured from the environment, serving the proxy
//! URLs `server add` prints, and seeing `policy publish` and `grant revoke` within a second
//! (announced by the CLI over Redis).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::store_cli::{FreshDatabase, KEY, gatehouse, ok_json, provision};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub(crate) struct Killed(Child);

impl Killed {
    /// SIGTERM, as a service manager stops it; the exit status once it has exited (within 15 s).
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-s", "TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "still running 15 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub(crate) fn kill_now(&mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("wait");
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(args)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Killed(cmd.spawn().expect("gatehouse starts"))
}

pub(crate) async fn wait_for(url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn mcp(
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let value = resp.json().await.unwrap_or(Value::Null);
    (status, sid, value)
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn gateway_serves_proxy_urls_and_sees_cli_changes_within_a_second() {
    let db = FreshDatabase::create().await;
    let url = db.url.clone();
    let upstream_port = free_port();
    let gateway_port = free_port();
    let public = format!("http://127.0.0.1:{gateway_port}");
    let env = [
        ("GATEHOUSE_SECRET_KEY", KEY),
        ("REDIS_URL", REDIS_URL),
        ("GATEHOUSE_PUBLIC_URL", public.as_str()),
    ];
    let run = |args: &[&str]| gatehouse(&url, args, &env);
    ok_json(&run(&["migrate", "--json"]));
    let upstream_url = format!("http://127.0.0.1:{upstream_port}/mcp");
    let made = provision(
        &run,
        "Acme ISP",
        &upstream_url,
        r#"{"version":"1","default":"deny","tools":{"retry_task":{"limits":[{"counter":"retry_task_rate","window":"minute","max":30,"scope":"grant"}]}}}"#,
    );
    let (server_id, proxy_url, token, grant_id) =
        (made.server_id, made.proxy_url, made.token, made.grant_id);
    let dir = std::env::temp_dir().join(format!("gatehouse-gw-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    let listen_upstream = format!("127.0.0.1:{upstream_port}");
    let _upstream = spawn(&["demo-upstream", "--listen", &listen_upstream], &[]);
    let listen = format!("127.0.0.1:{gateway_port}");
    // This test's own audit streams: nothing ingests them, and no other test's ingester sees them.
    let audit_prefix = format!("gh:audit-test:{}", uuid::Uuid::new_v4().simple());
    let mut gateway = spawn(
        &["gateway", "--listen", &listen],
        &[
            ("DATABASE_URL", url.as_str()),
            ("REDIS_URL", REDIS_URL),
            ("GATEHOUSE_AUDIT_STREAM_PREFIX", &audit_prefix),
            ("GATEHOUSE_SECRET_KEY", KEY),
            ("GATEHOUSE_PUBLIC_URL", public.as_str()),
            ("GATEHOUSE_CONFIG_TTL_MS", "600000"),
            // The demo upstream listens on loopback.
            ("GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS", "true"),
        ],
    );
    wait_for(&format!("{public}/readyz")).await;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(&listen_upstream)
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "demo upstream did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cli-it","version":"0"}}});
    let (status, session, _) = mcp(&proxy_url, &token, None, init).await;
    assert_eq!(status, 200);
    let session = session.expect("session id");
    let list = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
    let (_, _, tools) = mcp(&proxy_url, &token, Some(&session), list.clone()).await;
    assert_eq!(names(&tools), vec!["retry_task"]);

    let open = dir.join("open.json");
    std::fs::write(&open, r#"{"version":"1","default":"allow"}"#).unwrap();
    ok_json(&run(&[
        "policy",
        "publish",
        "--server",
        &server_id,
        open.to_str().unwrap(),
        "--json",
    ]));
    let published = Instant::now();
    loop {
        let (_, _, tools) = mcp(&proxy_url, &token, Some(&session), list.clone()).await;
        if names(&tools).len() > 1 {
            break;
        }
        assert!(
            published.elapsed() < Duration::from_secs(1),
            "policy publish not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    ok_json(&run(&["grant", "revoke", &grant_id, "--json"]));
    let revoked = Instant::now();
    loop {
        let (status, _, _) = mcp(&proxy_url, &token, Some(&session), list.clone()).await;
        if status == 401 {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "revocation not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing in flight: SIGTERM stops it at once, cleanly.
    let status = gateway.terminate();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
    db.drop().await;
}

#[test]
fn gateway_configuration_errors_name_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["gateway"])
        .env_clear()
        .env("GATEHOUSE_LISTEN", "not-an-address")
        .env("GATEHOUSE_MAX_STREAMS_PER_ORG", "0")
        .env("GATEHOUSE_MAX_BUFFERED_BYTES", "1024")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for var in [
        "DATABASE_URL",
        "GATEHOUSE_SECRET_KEY",
        "GATEHOUSE_LISTEN",
        "GATEHOUSE_MAX_STREAMS_PER_ORG",
        "GATEHOUSE_MAX_BUFFERED_BYTES",
    ] {
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
}

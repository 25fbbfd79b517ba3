//! `gatehouse up --demo` as a newcomer runs it: no DATABASE_URL (a private PostgreSQL from the
//! machine's binaries), no secret key, no Redis. The banner's proxy URL and token then work with
//! the TypeScript SDK's client: allowed, denied, hidden, and the upstream's credentials injected.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::secret::{Keyring, SealingKey};
use store::{Actor, OrgId, Role, ServerId, Store};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops `up` the way a person does (Ctrl-C), so it stops its private PostgreSQL too.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peers_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
        "the npm test peers are not installed: run scripts/test (or `npm ci` in tests/peers)"
    );
    dir
}

/// `gatehouse up --demo` on ports of its own, with `extra` arguments and environment; returns
/// the process and its banner once it printed "Stop with Ctrl-C".
struct Started {
    /// Stopped (Ctrl-C) when the test drops it.
    _up: Up,
    banner: String,
    public_url: String,
    admin_port: u16,
}

impl Started {
    fn field(&self, label: &str) -> String {
        self.banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("banner lacks {label}:\n{}", self.banner))
            .trim()
            .to_owned()
    }

    fn proxy_url(&self) -> String {
        self.field("Proxy URL")
    }

    fn token(&self) -> String {
        self.field("Grant token")
            .trim_start_matches("Authorization: Bearer ")
            .to_owned()
    }
}

fn start_up(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Started {
    let (gateway_port, upstream_port, admin_port) = (free_port(), free_port(), free_port());
    let public_url = format!("http://127.0.0.1:{gateway_port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    command
        .args(["up", "--demo", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{gateway_port}"),
            "--public-url",
            &public_url,
        ])
        .args([
            "--demo-upstream-listen",
            &format!("127.0.0.1:{upstream_port}"),
        ])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("GATEHOUSE_SECRET_KEY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().expect("gatehouse up starts");
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    let started = Instant::now();
    while !banner.contains("Stop with Ctrl-C") {
        let line = rx
            .recv_timeout(Duration::from_secs(60).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("no banner within 60 s; printed so far:\n{banner}"));
        banner.push_str(&line);
        banner.push('\n');
    }
    Started {
        _up: up,
        banner,
        public_url,
        admin_port,
    }
}

/// Runs the TypeScript SDK client with `plan` against `proxy_url`; its JSON report.
fn sdk_client(proxy_url: &str, plan: &Value) -> std::process::Child {
    Command::new("node")
        .arg(peers_dir().join("sdk-client.mjs"))
        .arg(proxy_url)
        .arg(plan.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs")
}

fn report(out: std::process::Output) -> Value {
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{result:#}");
    result
}

#[test]
fn up_demo_serves_the_demo_upstream_through_the_gateway() {
    // A short path: the private cluster's Unix socket lives in it.
    let data_dir = std::env::temp_dir().join(format!("gh-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let started = start_up(&data_dir, &[], &[]);
    let (banner, public_url, admin_port) =
        (&started.banner, &started.public_url, started.admin_port);
    let proxy_url = started.proxy_url();
    let token = started.token();
    assert!(
        proxy_url.starts_with(&format!("{public_url}/mcp/")),
        "{banner}"
    );
    assert!(token.starts_with("ghg_"), "{banner}");
    assert!(
        banner.contains("--cli"),
        "the banner shows an inspector command line:\n{banner}"
    );
    assert!(
        data_dir.join("secret-key").is_file() && data_dir.join("postgres/PG_VERSION").is_file()
    );
    let signup_url = format!("http://127.0.0.1:{admin_port}/signup");
    assert!(banner.contains(&signup_url), "{banner}");
    let signup = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &signup_url])
        .output()
        .expect("curl runs");
    assert_eq!(
        String::from_utf8_lossy(&signup.stdout),
        "200",
        "the admin app serves its sign-up page"
    );

    let plan = json!({
        "token": token,
        "calls": [
            {"name": "get_parameter", "arguments": {
                "device_id": "00236A-SmartRG585-SMRT00236a42",
                "parameter_path": "InternetGatewayDevice.DeviceInfo.SoftwareVersion"}},
            {"name": "download_firmware", "arguments": {"device_id": "00236A-SmartRG585-SMRT00236a42", "file_id": "fw.bin"}},
        ]
    });
    let result = report(sdk_client(&proxy_url, &plan).wait_with_output().unwrap());

    let tools: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"get_parameter") && tools.contains(&"download_firmware"),
        "{tools:?}"
    );
    assert!(
        !tools.contains(&"delete_task"),
        "hidden by the starter policy: {tools:?}"
    );
    assert!(
        !tools.contains(&"connection_request"),
        "unlisted under default deny: {tools:?}"
    );

    let allowed = &result["calls"][0]["result"];
    assert_eq!(allowed["isError"], false, "{allowed:#}");
    assert!(
        allowed["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("SoftwareVersion"),
        "{allowed:#}"
    );
    let denied = &result["calls"][1]["result"];
    assert_eq!(denied["isError"], true);
    assert_eq!(
        denied["content"][0]["text"],
        "[POLICY DENIED] Firmware rollouts go through change control."
    );
    assert_eq!(
        denied["_meta"]["io.gatehouse/decision"]["rule"],
        "/tools/download_firmware/action"
    );

    drop(started);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `up` is one process, so a decision in its admin app wakes the call its gateway holds at once
/// through the in-process hook: no Redis, and the store is re-read only every ten minutes, so
/// the call can only come back quickly through the hook.
#[tokio::test]
async fn up_wakes_a_held_call_the_moment_its_admin_app_decides() {
    let db = crate::store_cli::FreshDatabase::create().await;
    let data_dir = std::env::temp_dir().join(format!("gh-up-approve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let started = start_up(
        &data_dir,
        &["--approval-poll-ms", "600000"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("GATEHOUSE_SECRET_KEY", crate::store_cli::KEY),
        ],
    );
    let demo: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("demo.json")).unwrap())
            .unwrap();
    let org: OrgId = demo["organisation_id"].as_str().unwrap().parse().unwrap();
    let server: ServerId = demo["server_id"].as_str().unwrap().parse().unwrap();

    // The grant's policy now holds reboots for a human, and a policy manager's API key decides.
    let key = SealingKey::from_base64(1, crate::store_cli::KEY).unwrap();
    let store = Store::connect(&db.url, Keyring::new(key)).await.unwrap();
    let mut tx = store.begin(org).await.unwrap();
    store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        server,
        "default",
        r#"{"version": "1", "default": "deny", "tools": {"reboot_device": {"approval": {"timeout": "10m", "wait": "20s"}}}}"#,
        Some("reboots need an approval"),
    )
    .await
    .unwrap();
    let api_key = store::api_key::mint_api_key(
        &mut tx,
        Actor::Operator,
        "noc lead",
        Role::PolicyManager,
        None,
    )
    .await
    .unwrap()
    .token
    .expose()
    .clone();
    tx.commit().await.unwrap();
    // An edit reaches the gateway within a second (DESIGN.md §11).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let plan = json!({
        "token": started.token(),
        "calls": [{"name": "reboot_device", "arguments": {"device_id": "00236A-SmartRG585-SMRT00236a42"}}],
    });
    let agent = sdk_client(&started.proxy_url(), &plan);

    let api = format!("http://127.0.0.1:{}/api/v1", started.admin_port);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let approval = loop {
        let page: Value = http
            .get(format!("{api}/approvals?status=pending"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = page["approvals"][0]["id"].as_str() {
            assert_eq!(page["approvals"][0]["tool"], "reboot_device", "{page:#}");
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "no approval opened: {page:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let approved_at = Instant::now();
    http.post(format!("{api}/approvals/{approval}/approve"))
        .bearer_auth(&api_key)
        .json(&json!({"comment": "maintenance window"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();

    let out = tokio::task::spawn_blocking(move || agent.wait_with_output().unwrap())
        .await
        .unwrap();
    let woke_after = approved_at.elapsed();
    let result = report(out);
    let call = &result["calls"][0]["result"];
    assert_eq!(call["isError"], false, "{call:#}");
    assert!(
        !call["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("[APPROVAL PENDING]"),
        "the approved reboot went through, not a pending answer: {call:#}"
    );
    assert!(
        woke_after < Duration::from_secs(3),
        "the held call came back {woke_after:?} after the approval (the poll is ten minutes, the wait 20 s): {call:#}"
    );

    drop(started);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop().await;
}

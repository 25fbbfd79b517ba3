//! `gatehouse up --demo` as a newcomer runs it: no DATABASE_URL (a private PostgreSQL from the
//! machine's binaries), no secret key, no Redis. The banner's proxy URL and token then work with
//! the TypeScript SDK's client: allowed, denied, hidden, and the upstream's credentials injected.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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

#[test]
fn up_demo_serves_the_demo_upstream_through_the_gateway() {
    // A short path: the private cluster's Unix socket lives in it.
    let data_dir = std::env::temp_dir().join(format!("gh-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let (gateway_port, upstream_port, admin_port) = (free_port(), free_port(), free_port());
    let public_url = format!("http://127.0.0.1:{gateway_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["up", "--demo", "--data-dir"])
        .arg(&data_dir)
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
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("GATEHOUSE_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gatehouse up starts");
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);

    // The banner names the proxy URL and the token.
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
    let field = |label: &str| -> String {
        banner
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("banner lacks {label}:\n{banner}"))
            .trim()
            .to_owned()
    };
    let proxy_url = field("Proxy URL");
    let token = field("Grant token")
        .trim_start_matches("Authorization: Bearer ")
        .to_owned();
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
    let out = Command::new("node")
        .arg(peers_dir().join("sdk-client.mjs"))
        .arg(&proxy_url)
        .arg(plan.to_string())
        .output()
        .expect("node runs");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{result:#}");

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

    drop(up);
    let _ = std::fs::remove_dir_all(&data_dir);
}

//! Test helpers: start a simulator on port 0, open MCP sessions, call tools.

use std::net::SocketAddr;
use std::path::PathBuf;

use genieacs_sim::{SimConfig, SimState};
use serde_json::{Value, json};

pub(crate) struct Sim {
    pub(crate) state: SimState,
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn spawn(config: SimConfig) -> Sim {
    let state = SimState::new(config).expect("simulator state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = genieacs_sim::router(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Sim {
        state,
        url: format!("http://{addr}/mcp"),
        addr,
        server,
    }
}

pub(crate) async fn spawn_default() -> Sim {
    spawn(SimConfig::default()).await
}

/// A raw HTTP answer: status, headers we care about, and the JSON-RPC message (SSE unwrapped).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) session_id: Option<String>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        let text = if self.content_type.starts_with("text/event-stream") {
            let data: Vec<&str> = self
                .body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect();
            assert_eq!(
                data.len(),
                1,
                "expected exactly one SSE data line: {}",
                self.body
            );
            data[0].to_owned()
        } else {
            self.body.clone()
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs a body with the headers a spec-following client sends, plus `extra`.
pub(crate) async fn post(url: &str, body: &str, extra: &[(&str, &str)]) -> Answer {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    answer(req.send().await.expect("send")).await
}

pub(crate) async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let session_id = header("mcp-session-id");
    let body = resp.text().await.expect("body");
    Answer {
        status,
        content_type,
        session_id,
        body,
    }
}

pub(crate) fn initialize_body(version: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "it", "version": "0"}}})
    .to_string()
}

/// An initialised MCP session speaking 2025-11-25.
pub(crate) struct Session {
    pub(crate) url: String,
    pub(crate) id: String,
    pub(crate) version: String,
    next_id: std::sync::atomic::AtomicU64,
}

impl Session {
    pub(crate) async fn open(url: &str) -> Session {
        Self::open_with(url, "2025-11-25", &[]).await
    }

    pub(crate) async fn open_with(url: &str, version: &str, extra: &[(&str, &str)]) -> Session {
        let a = post(url, &initialize_body(version), extra).await;
        assert_eq!(a.status, 200, "initialize: {}", a.body);
        let id = a.session_id.clone().expect("Mcp-Session-Id on initialize");
        let negotiated = a.json()["result"]["protocolVersion"]
            .as_str()
            .expect("protocolVersion")
            .to_owned();
        let s = Session {
            url: url.to_owned(),
            id,
            version: negotiated,
            next_id: 1.into(),
        };
        let n = s
            .post_raw(
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
                extra,
            )
            .await;
        assert_eq!(n.status, 202);
        s
    }

    pub(crate) async fn post_raw(&self, body: &str, extra: &[(&str, &str)]) -> Answer {
        let mut headers = vec![
            ("mcp-session-id", self.id.as_str()),
            ("mcp-protocol-version", self.version.as_str()),
        ];
        headers.extend_from_slice(extra);
        post(&self.url, body, &headers).await
    }

    /// Sends a request and returns the whole JSON-RPC response.
    pub(crate) async fn request(&self, method: &str, params: Value) -> Value {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let a = self.post_raw(&body.to_string(), &[]).await;
        assert_eq!(a.status, 200, "{method}: {}", a.body);
        let v = a.json();
        assert_eq!(v["id"], json!(id));
        v
    }

    /// Calls a tool; returns (text, isError).
    pub(crate) async fn call(&self, tool: &str, args: Value) -> (String, bool) {
        let v = self
            .request("tools/call", json!({"name": tool, "arguments": args}))
            .await;
        let result = &v["result"];
        assert!(result.is_object(), "tools/call {tool}: {v}");
        let text = result["content"][0]["text"]
            .as_str()
            .expect("text")
            .to_owned();
        (text, result["isError"] == json!(true))
    }

    /// Calls a tool that must succeed and parses its JSON text.
    pub(crate) async fn call_ok(&self, tool: &str, args: Value) -> Value {
        let (text, is_error) = self.call(tool, args.clone()).await;
        assert!(!is_error, "{tool}({args}) failed: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{tool} text is not JSON ({e}): {text}"))
    }

    /// Reads a resource and parses its JSON text.
    pub(crate) async fn read(&self, uri: &str) -> Value {
        let v = self.request("resources/read", json!({"uri": uri})).await;
        let text = v["result"]["contents"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("read {uri}: {v}"));
        serde_json::from_str(text).expect("resource JSON")
    }
}

/// `tests/peers` at the repository root; fails with instructions when `npm ci` has not run.
pub(crate) fn peers_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/sdk").is_dir(),
        "tests/peers/node_modules is missing: run `scripts/test` (it runs `npm ci` in tests/peers \
         via scripts/lib.sh ensure_node_peers), or `cd tests/peers && npm ci`"
    );
    dir
}

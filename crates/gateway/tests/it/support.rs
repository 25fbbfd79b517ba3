//! Test helpers: a seeded store, real upstreams (genieacs-sim, a recording upstream, broken
//! upstreams) and gateways on port 0, and a small raw MCP client.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::{Gateway, Settings};
use genieacs_sim::{SimConfig, SimState};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::audit::NewAuditEvent;
use store::secret::{Keyring, Redacted, SealingKey};
use store::{Actor, GrantId, OrgId, ServerId, Store};

pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The policy of issue 5's seed scenario.
pub(crate) const SEED_POLICY: &str = r#"{"version":"1","default":"deny","tools":{"retry_task":{"limits":[{"counter":"retry_task_rate","window":"minute","max":30,"scope":"grant"}]}}}"#;

pub(crate) fn store(pool: PgPool) -> Store {
    Store::new(pool, Keyring::new(SealingKey::generate(1)))
}

pub(crate) fn session_key() -> mcp::session::SessionKey {
    mcp::session::SessionKey::derive(b"gateway tests: the deployment secret")
}

pub(crate) struct Sim {
    pub(crate) state: SimState,
    pub(crate) url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn sim(config: SimConfig) -> Sim {
    let state = SimState::new(config).expect("simulator state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = genieacs_sim::router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Sim {
        state,
        url: format!("http://{addr}/mcp"),
        task,
    }
}

/// An organisation with one server, one published policy and one grant.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    pub(crate) org: OrgId,
    pub(crate) server: ServerId,
    pub(crate) grant: GrantId,
    pub(crate) token: String,
}

pub(crate) async fn seed(store: &Store, upstream_url: &str, policy: &str) -> Seed {
    seed_with_headers(store, upstream_url, policy, Vec::new()).await
}

pub(crate) async fn seed_with_headers(
    store: &Store,
    upstream_url: &str,
    policy: &str,
    headers: Vec<(String, String)>,
) -> Seed {
    let name = format!("org-{}", uuid::Uuid::new_v4().simple());
    let org = store
        .create_organisation(Actor::Operator, &name)
        .await
        .expect("organisation")
        .organisation_id;
    let mut tx = store.begin(org).await.expect("tx");
    let server = store::server::create_server(
        &mut tx,
        Actor::Operator,
        &store::server::NewServer {
            name: "genieacs".into(),
            upstream_url: upstream_url.into(),
            headers: Redacted::new(headers),
        },
    )
    .await
    .expect("server")
    .server_id;
    store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        server,
        "default",
        policy,
        None,
    )
    .await
    .expect("policy");
    tx.commit().await.expect("commit");
    let (grant, token) = mint(store, org, server, "noc-agent").await;
    Seed {
        org,
        server,
        grant,
        token,
    }
}

pub(crate) async fn mint(
    store: &Store,
    org: OrgId,
    server: ServerId,
    label: &str,
) -> (GrantId, String) {
    let mut tx = store.begin(org).await.expect("tx");
    let minted = store::grant::mint_grant(
        &mut tx,
        Actor::Operator,
        &store::grant::NewGrant {
            server,
            policy_name: "default".into(),
            label: label.into(),
            identity: None,
            expires_at: None,
        },
    )
    .await
    .expect("grant");
    tx.commit().await.expect("commit");
    (minted.grant.grant_id, minted.token.expose().clone())
}

/// Revokes the seed's grant, as `gatehouse grant revoke` does (without announcing it).
pub(crate) async fn revoke(store: &Store, seed: &Seed) {
    let mut tx = store.begin(seed.org).await.expect("tx");
    store::grant::revoke_grant(&mut tx, Actor::Operator, seed.grant)
        .await
        .expect("revoke");
    tx.commit().await.expect("commit");
}

pub(crate) async fn publish(store: &Store, seed: &Seed, policy: &str) {
    let mut tx = store.begin(seed.org).await.expect("tx");
    store::policy::publish_policy_version(
        &mut tx,
        Actor::Operator,
        seed.server,
        "default",
        policy,
        None,
    )
    .await
    .expect("policy");
    tx.commit().await.expect("commit");
}

/// A running gateway. Its audit journal is Redis (streams of its own) when its limits are, else
/// Postgres's `audit_outbox` in the test's database.
pub(crate) struct Gw {
    pub(crate) base: String,
    /// Wakes the calls this gateway holds for approval, as the admin app in one process does.
    pub(crate) signal: gateway::ApprovalSignal,
    store: Store,
    streams: Option<audit::StreamConfig>,
    task: Option<tokio::task::JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    listener_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
        if let Some(t) = &self.listener_task {
            t.abort();
        }
    }
}

impl Gw {
    pub(crate) fn url(&self, seed: &Seed) -> String {
        format!("{}/mcp/{}", self.base, seed.server)
    }

    /// Tells the gateway to stop (as SIGTERM does) and waits until it has: the requests in
    /// flight answered (within [`DRAIN`]) and the queued audit outcomes written.
    pub(crate) async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the gateway stopped cleanly");
        }
    }

    /// The audit events of `org`, as stored in the audit log once the journal was ingested
    /// (outcomes are appended off the request path, so this waits for them), oldest first.
    pub(crate) async fn audit_events(&self, org: OrgId) -> Vec<NewAuditEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let config = audit::IngestConfig {
            stream: self.streams.clone().unwrap_or_default(),
            ..audit::IngestConfig::default()
        };
        match &self.streams {
            Some(streams) => {
                let mut ingester = audit::Ingester::connect(REDIS_URL, self.store.clone(), config)
                    .await
                    .expect("ingester");
                loop {
                    let step = ingester.step().await.expect("ingest");
                    if step.read == 0 && pending_entries(streams).await == 0 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "audit outcomes never arrived");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => {
                let mut ingester = audit::OutboxIngester::new(self.store.clone(), &config);
                loop {
                    ingester.step().await.expect("ingest");
                    if self
                        .store
                        .audit_outbox_of(org)
                        .await
                        .expect("outbox")
                        .is_empty()
                    {
                        break;
                    }
                    assert!(Instant::now() < deadline, "audit outcomes never arrived");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let mut tx = self.store.begin(org).await.expect("begin");
        let page = store::audit::audit_page(&mut tx, &Default::default(), None, 1000)
            .await
            .expect("audit page");
        page.events.into_iter().rev().map(|e| e.event).collect()
    }
}

/// `XPENDING key group`: count, smallest and greatest id, and the count per consumer.
type XPendingSummary = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

/// Stream entries read but not acknowledged (write-aheads waiting for their outcome).
async fn pending_entries(streams: &audit::StreamConfig) -> u64 {
    let client = redis::Client::open(REDIS_URL).expect("redis");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut total = 0;
    for shard in 0..streams.shards {
        let (count, ..): XPendingSummary = redis::cmd("XPENDING")
            .arg(streams.stream_key(shard))
            .arg(audit::GROUP)
            .query_async(&mut con)
            .await
            .expect("XPENDING");
        total += count;
    }
    total
}

/// How a test gateway counts limits.
pub(crate) enum Limits {
    InProcess,
    /// Redis at [`REDIS_URL`], also used for invalidations on `channel`.
    Redis {
        channel: String,
    },
}

pub(crate) async fn gateway(store: &Store, settings: Settings, limits: Limits) -> Gw {
    gateway_with_limiter(store, settings, limits, None).await
}

pub(crate) async fn gateway_with_limiter(
    store: &Store,
    settings: Settings,
    limits: Limits,
    limiter: Option<limits::Limiter>,
) -> Gw {
    gateway_with(store, settings, limits, limiter, None).await
}

/// A gateway with the given limiter and audit journal (or the defaults of `limits`).
pub(crate) async fn gateway_with(
    store: &Store,
    mut settings: Settings,
    limits: Limits,
    limiter: Option<limits::Limiter>,
    journal: Option<audit::Journal>,
) -> Gw {
    let (limiter, redis) = match limits {
        Limits::InProcess => (
            limiter.unwrap_or_else(|| limits::InProcessLimiter::new().into()),
            None,
        ),
        Limits::Redis { channel } => {
            settings.invalidation_channel = channel;
            let limiter = match limiter {
                Some(l) => l,
                None => limits::RedisLimiter::connect(REDIS_URL, limits::RedisConfig::default())
                    .await
                    .expect("redis limiter")
                    .into(),
            };
            (
                limiter,
                Some(redis::Client::open(REDIS_URL).expect("redis client")),
            )
        }
    };
    let (journal, streams) = match (journal, &redis) {
        (Some(journal), _) => (journal, None),
        (None, Some(_)) => {
            let streams = audit::StreamConfig {
                prefix: format!("gh:audit-test:{}", uuid::Uuid::new_v4().simple()),
                ..audit::StreamConfig::default()
            };
            let journal = audit::Journal::connect(REDIS_URL, streams.clone())
                .await
                .expect("audit journal");
            (journal, Some(streams))
        }
        (None, None) => (
            audit::Journal::outbox(store.clone(), Duration::from_secs(10)),
            None,
        ),
    };
    let gateway = Gateway::new(
        settings,
        store.clone(),
        limiter,
        session_key(),
        journal,
        redis,
    )
    .expect("gateway");
    let listener_task = gateway.spawn_invalidation_listener();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let g = gateway.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        gateway::serve_until(listener, g, stop, DRAIN)
            .await
            .expect("serve");
    });
    Gw {
        base: format!("http://{addr}"),
        signal: gateway.approval_signal(),
        store: store.clone(),
        streams,
        task: Some(task),
        stop: Some(stop),
        listener_task,
    }
}

/// How long a test gateway told to stop waits for the requests in flight.
pub(crate) const DRAIN: Duration = Duration::from_secs(10);

/// A unique pub/sub channel per test, so tests do not flush each other's caches.
pub(crate) fn channel() -> String {
    format!("gatehouse:test:{}", uuid::Uuid::new_v4().simple())
}

/// A raw HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn session_id(&self) -> Option<String> {
        self.header("mcp-session-id").map(str::to_owned)
    }

    /// The JSON-RPC message (the last SSE `data:` that parses, for streams).
    pub(crate) fn json(&self) -> Value {
        let ct = self.header("content-type").unwrap_or_default();
        if ct.starts_with("text/event-stream") {
            self.body
                .lines()
                .rev()
                .filter_map(|l| l.strip_prefix("data:"))
                .find_map(|d| serde_json::from_str::<Value>(d.trim_start()).ok())
                .unwrap_or_else(|| panic!("no JSON event in: {}", self.body))
        } else {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
        }
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// POSTs with the headers a spec-following client sends, `Authorization` when `token` is given,
/// plus `extra`.
pub(crate) async fn post(
    url: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    answer(req.send().await.expect("send")).await
}

pub(crate) async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn initialize_body() -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "gateway-it", "version": "0"}}})
    .to_string()
}

/// An initialised session through a gateway.
pub(crate) struct Session {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) id: String,
    next_id: u64,
}

impl Session {
    pub(crate) async fn open(url: &str, token: &str) -> Session {
        let init = post(url, Some(token), initialize_body(), &[]).await;
        assert_eq!(init.status, 200, "initialize: {}", init.body);
        let id = init.session_id().expect("a session id");
        let note = post(
            url,
            Some(token),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &[
                ("mcp-session-id", &id),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await;
        assert_eq!(note.status, 202, "initialized: {}", note.body);
        Session {
            url: url.to_owned(),
            token: token.to_owned(),
            id,
            next_id: 1,
        }
    }

    pub(crate) async fn request(&mut self, method: &str, params: Value) -> Answer {
        self.next_id += 1;
        let body =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        post(
            &self.url,
            Some(&self.token),
            body.to_string(),
            &[
                ("mcp-session-id", &self.id),
                ("mcp-protocol-version", "2025-11-25"),
            ],
        )
        .await
    }

    pub(crate) async fn call(&mut self, tool: &str, arguments: Value) -> Answer {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
    }

    pub(crate) async fn tool_names(&mut self) -> Vec<String> {
        let list = self.request("tools/list", json!({})).await;
        assert_eq!(list.status, 200, "{}", list.body);
        list.json()["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().expect("name").to_owned())
            .collect()
    }
}

/// The text of a `tools/call` result's first content block.
pub(crate) fn text_of(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

/// A minimal upstream that answers every request with an empty successful tool result and
/// remembers when each `tools/call` arrived. No sessions: the gateway needs none.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    /// `(params.arguments.task_id, when it arrived)` of every `tools/call`.
    pub(crate) arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
}

pub(crate) async fn recorder() -> (Recorder, String, tokio::task::JoinHandle<()>) {
    recorder_listing(json!([])).await
}

/// A recorder whose `tools/list` answers `tools` (one page).
pub(crate) async fn recorder_listing(
    tools: Value,
) -> (Recorder, String, tokio::task::JoinHandle<()>) {
    let recorder = Recorder::default();
    let r = recorder.clone();
    let tools = Arc::new(tools);
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(move |body: axum::body::Bytes| {
            let r = r.clone();
            let tools = tools.clone();
            async move {
                let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if message["method"] == "tools/list" {
                    let reply = json!({"jsonrpc": "2.0", "id": message["id"],
                        "result": {"tools": *tools}});
                    return (
                        [(http::header::CONTENT_TYPE, "application/json")],
                        reply.to_string(),
                    );
                }
                if message["method"] == "tools/call" {
                    let task = message["params"]["arguments"]["task_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    r.arrivals
                        .lock()
                        .expect("lock")
                        .push((task, Instant::now()));
                }
                let reply = json!({"jsonrpc": "2.0", "id": message["id"],
                    "result": {"content": [{"type": "text", "text": "ok"}], "isError": false}});
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    reply.to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (recorder, format!("http://{addr}/mcp"), task)
}

/// A TCP server that accepts connections and answers each with `reply` (or never, if `None`).
pub(crate) async fn raw_upstream(
    reply: Option<&'static [u8]>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    raw_upstream_with(reply, false).await
}

/// Like [`raw_upstream`], but keeps the connection open, silent, after writing `reply`.
pub(crate) async fn raw_upstream_with(
    reply: Option<&'static [u8]>,
    hang_after_reply: bool,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = socket.read(&mut buf).await;
                match reply {
                    Some(bytes) => {
                        let _ = socket.write_all(bytes).await;
                        if hang_after_reply {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        let _ = socket.shutdown().await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    (addr, task)
}

/// A loopback address nothing listens on.
pub(crate) async fn dead_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

/// A TCP relay to `target` that can be cut: every open connection and every new one fails.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub(crate) async fn start(target: &'static str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, watch) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut watch = watch.clone();
                if *watch.borrow() {
                    continue; // dropped: connection closed at once
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { addr, cut, task }
    }

    pub(crate) fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pass-through in front of a gateway that adds `Authorization: Bearer <token>` to every request
/// and forwards everything else as it came (the conformance suite cannot send the header).
pub(crate) async fn bearer_adding_proxy(
    target: String,
    token: String,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use axum::extract::Request;
    use futures_util::TryStreamExt as _;
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, target, token) = (client.clone(), target.clone(), token.clone());
        async move {
            let (parts, body) = request.into_parts();
            let mut headers = parts.headers.clone();
            headers.remove(http::header::CONNECTION);
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.remove(http::header::CONTENT_LENGTH);
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
            let body = reqwest::Body::wrap_stream(body.into_data_stream());
            let upstream = client
                .request(parts.method, target)
                .headers(headers)
                .body(body)
                .send()
                .await;
            match upstream {
                Ok(response) => {
                    let mut out = http::Response::builder().status(response.status());
                    for (k, v) in response.headers() {
                        if k != http::header::TRANSFER_ENCODING && k != http::header::CONNECTION {
                            out = out.header(k, v);
                        }
                    }
                    out.body(Body::from_stream(
                        response.bytes_stream().map_err(std::io::Error::other),
                    ))
                    .expect("response")
                }
                Err(e) => http::Response::builder()
                    .status(502)
                    .body(Body::from(e.to_string()))
                    .expect("response"),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}/mcp"), task)
}

/// `tests/peers`, where the npm peers are installed.
pub(crate) fn peers_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

/// `@modelcontextprotocol/server-everything` over Streamable HTTP on a loopback port.
pub(crate) struct Everything {
    pub(crate) url: String,
    _child: tokio::process::Child,
}

pub(crate) async fn everything() -> Everything {
    let port = dead_address().await.port();
    let child = tokio::process::Command::new("node")
        .args([
            "-r",
            "./loopback.cjs",
            "node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            "streamableHttp",
        ])
        .env("PORT", port.to_string())
        .current_dir(peers_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node server-everything");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server-everything did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Everything {
        url: format!("http://127.0.0.1:{port}/mcp"),
        _child: child,
    }
}

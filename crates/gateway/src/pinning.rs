//! Tool pinning (DESIGN.md §8): a tool is served only while its live definition is the pinned one.
//!
//! - **The pins** are the pin hashes (`mcp::pin`) of the tools of the server's latest snapshot,
//!   computed from the stored definitions when a grant's view is loaded (`GrantView::pins`), so a
//!   re-pin reaches every replica with the configuration invalidation. A server that has no
//!   snapshot at all is not pinned (every registration path pins in the transaction that creates
//!   the server, so only servers made directly through the store lack one).
//! - **The live definitions** are what the upstream answered to `tools/list`, learnt from every
//!   list a client asked for (JSON and SSE, every page) and kept per server for [`LIVE_TTL`].
//!   A `tools/call` whose tool the replica has no fresh live definition of makes the gateway ask
//!   the upstream itself ([`fetch_tools`]: initialize, every page, end of session; one fetch per
//!   server at a time), so a client cannot bypass pinning by never listing.
//!   `notifications/tools/list_changed` from the upstream forgets the server's live definitions
//!   and fetches them again in the background.
//! - **A tool whose live hash differs from its pin, or that is not pinned**, is cut out of every
//!   list like a hidden tool and its calls are answered `Unknown tool` (DESIGN.md §5).
//! - **Each drift is recorded** (`store::drift::record_drift`, deduplicated by the database and
//!   audited there exactly once) off the request path; a replica reports each (server, tool,
//!   live hash) once per [`REPORT_MEMORY`] unless recording failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, header};
use mcp::message::{Kind, Outcome};
use mcp::tools_list::ListedTool;
use serde_json::{Value, json};

use crate::cache::GrantView;

/// How long a live definition learnt from a list is trusted for a call.
pub(crate) const LIVE_TTL: Duration = Duration::from_secs(10);
/// How long a replica remembers having reported a drift (the store dedupes anyway).
const REPORT_MEMORY: Duration = Duration::from_secs(600);
/// The most drifts remembered as reported; beyond it the memory is emptied.
const MAX_REPORTED: usize = 10_000;
/// At most this many pages and tools when the gateway lists an upstream's tools itself.
const MAX_PAGES: usize = 50;
const MAX_TOOLS: usize = 2000;
/// The revision the gateway's own requests ask for (the upstream may answer with an older one).
const PROTOCOL_VERSION: &str = "2025-11-25";

/// The pin hashes of a server's latest snapshot, by tool name.
pub(crate) type Pins = HashMap<String, [u8; 32]>;

/// The pins of a view, from the stored definitions.
pub(crate) fn pins_of(tools: &[store::server::PinnedTool]) -> Option<Arc<Pins>> {
    (!tools.is_empty()).then(|| {
        Arc::new(
            tools
                .iter()
                .map(|t| (t.name.clone(), mcp::pin::pin_hash(&t.definition)))
                .collect(),
        )
    })
}

/// Whether the pins admit this live definition (always, for a server without pins).
pub(crate) fn admits(view: &GrantView, name: &str, definition: &Value) -> bool {
    match &view.pins {
        None => true,
        Some(pins) => pins.get(name) == Some(&mcp::pin::pin_hash(definition)),
    }
}

type DriftKey = (String, String, [u8; 32]);

/// What the gateway knows of one server's live tools.
#[derive(Debug)]
struct Live {
    at: Instant,
    tools: HashMap<String, [u8; 32]>,
    /// Every page was seen (the gateway listed the upstream itself): a tool missing from
    /// `tools` is not offered. Pages a client asked for may be only some of them.
    complete: bool,
}

/// One replica's live definitions and its memory of reported drifts.
#[derive(Debug)]
pub(crate) struct Registry {
    store: store::Store,
    http: reqwest::Client,
    response_timeout: Duration,
    max_response_bytes: usize,
    max_event_bytes: usize,
    allow_private: bool,
    live: Mutex<HashMap<String, Live>>,
    /// (server, tool, live hash) → when reported.
    reported: Mutex<HashMap<DriftKey, Instant>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A `tools/call` against the pins.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallCheck {
    /// Pinned, and the live definition is the pinned one (or the server is not pinned).
    Pinned,
    /// Not pinned, changed since pinned, or not offered by the upstream: an unknown tool.
    Unknown(&'static str),
}

impl Registry {
    pub(crate) fn new(
        store: store::Store,
        http: reqwest::Client,
        settings: &crate::Settings,
    ) -> Self {
        Registry {
            store,
            http,
            response_timeout: settings.response_timeout,
            max_response_bytes: settings.max_response_bytes,
            max_event_bytes: settings.max_sse_event_bytes,
            allow_private: settings.allow_private_upstreams,
            live: Mutex::new(HashMap::new()),
            reported: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    /// Learns the live definitions of one `tools/list` page and reports the drifts in it.
    pub(crate) fn observe(self: &Arc<Self>, view: &GrantView, tools: &[ListedTool]) {
        let hashes: Vec<(String, [u8; 32])> = tools
            .iter()
            .map(|t| (t.name.clone(), mcp::pin::pin_hash(&t.definition)))
            .collect();
        {
            let mut live = self.live.lock().expect("live tools lock");
            let entry = live.entry(view.server.clone()).or_insert_with(|| Live {
                at: Instant::now(),
                tools: HashMap::new(),
                complete: false,
            });
            entry.at = Instant::now();
            entry.tools.extend(hashes.iter().cloned());
        }
        let Some(pins) = &view.pins else {
            return;
        };
        for (tool, (name, hash)) in tools.iter().zip(&hashes) {
            let pinned = pins.get(name);
            if pinned != Some(hash) {
                self.report(view, name, pinned.copied(), *hash, &tool.definition);
            }
        }
    }

    /// Forgets a server's live definitions (its upstream said its list changed).
    pub(crate) fn forget(&self, server: &str) {
        self.live.lock().expect("live tools lock").remove(server);
    }

    /// The live hash of `tool` when the replica has a fresh list of the server that settles
    /// it: `Some(None)` when a complete list does not have the tool; `None` when the replica
    /// must list the upstream to know.
    fn live_hash(&self, server: &str, tool: &str) -> Option<Option<[u8; 32]>> {
        let live = self.live.lock().expect("live tools lock");
        let entry = live.get(server).filter(|l| l.at.elapsed() < LIVE_TTL)?;
        match entry.tools.get(tool) {
            Some(hash) => Some(Some(*hash)),
            None if entry.complete => Some(None),
            None => None,
        }
    }

    /// Checks a call of `tool` against the pins, listing the upstream's tools first when the
    /// replica has no fresh list of them. An upstream that cannot be listed is an error: the
    /// call cannot be checked, so it is refused.
    pub(crate) async fn check_call(
        self: &Arc<Self>,
        view: &GrantView,
        tool: &str,
    ) -> Result<CallCheck, mcp::reply::UpstreamFailure> {
        let Some(pins) = &view.pins else {
            return Ok(CallCheck::Pinned);
        };
        let Some(pinned) = pins.get(tool) else {
            return Ok(CallCheck::Unknown("not pinned"));
        };
        let live = match self.live_hash(&view.server, tool) {
            Some(live) => live,
            None => {
                let gate = self
                    .fetching
                    .lock()
                    .expect("fetching lock")
                    .entry(view.server.clone())
                    .or_default()
                    .clone();
                let result = async {
                    let _turn = gate.lock().await;
                    if let Some(live) = self.live_hash(&view.server, tool) {
                        return Ok(live);
                    }
                    self.refresh(view).await?;
                    Ok(self.live_hash(&view.server, tool).flatten())
                }
                .await;
                let mut fetching = self.fetching.lock().expect("fetching lock");
                if Arc::strong_count(&gate) <= 2 {
                    fetching.remove(&view.server);
                }
                result?
            }
        };
        Ok(match live {
            Some(live) if live == *pinned => CallCheck::Pinned,
            Some(_) => CallCheck::Unknown("its live definition differs from the pinned one"),
            None => CallCheck::Unknown("the upstream does not list it"),
        })
    }

    /// Lists the upstream's tools (every page) and learns them as if a client had listed them.
    async fn refresh(
        self: &Arc<Self>,
        view: &GrantView,
    ) -> Result<(), mcp::reply::UpstreamFailure> {
        let tools = self.fetch_tools(view).await?;
        {
            // A fresh, complete list replaces what the replica knew of the server.
            let mut live = self.live.lock().expect("live tools lock");
            live.insert(
                view.server.clone(),
                Live {
                    at: Instant::now(),
                    tools: HashMap::new(),
                    complete: true,
                },
            );
        }
        self.observe(view, &tools);
        Ok(())
    }

    /// The upstream said its tools changed: forget them and list them again in the background,
    /// so drifts are found even when no client lists.
    pub(crate) fn list_changed(self: &Arc<Self>, view: Arc<GrantView>) {
        self.forget(&view.server);
        let registry = self.clone();
        tokio::spawn(async move {
            if let Err(failure) = registry.refresh(&view).await {
                tracing::warn!(?failure, server = %view.server, "could not re-list the upstream's tools after list_changed");
            }
        });
    }

    fn report(
        self: &Arc<Self>,
        view: &GrantView,
        name: &str,
        pinned: Option<[u8; 32]>,
        live_hash: [u8; 32],
        definition: &Value,
    ) {
        let key = (view.server.clone(), name.to_owned(), live_hash);
        {
            let mut reported = self.reported.lock().expect("reported lock");
            if reported
                .get(&key)
                .is_some_and(|at| at.elapsed() < REPORT_MEMORY)
            {
                return;
            }
            if reported.len() >= MAX_REPORTED {
                reported.clear();
            }
            reported.insert(key.clone(), Instant::now());
        }
        tracing::warn!(server = %view.server, tool = name, "tool definition differs from its pin; hidden until re-pinned");
        let drift = store::drift::ObservedDrift {
            server: view.grant.server_id,
            tool_name: name.to_owned(),
            pinned_hash: pinned,
            live_hash,
            live_definition: definition.clone(),
        };
        let org = view.grant.organisation_id;
        let registry = self.clone();
        tokio::spawn(async move {
            let recorded = async {
                let mut tx = registry.store.begin(org).await?;
                let new = store::drift::record_drift(&mut tx, &drift).await?;
                tx.commit().await?;
                Ok::<bool, store::Error>(new)
            }
            .await;
            match recorded {
                Ok(true) => tracing::info!(tool = %drift.tool_name, "tool drift recorded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, tool = %drift.tool_name, "could not record a tool drift; it is reported again when seen");
                    registry
                        .reported
                        .lock()
                        .expect("reported lock")
                        .remove(&key);
                }
            }
        });
    }
}

impl Registry {
    /// Lists an upstream's tools the way a client would: `initialize`,
    /// `notifications/initialized`, `tools/list` page by page, and `DELETE` of the session when
    /// it has one.
    async fn fetch_tools(
        &self,
        view: &GrantView,
    ) -> Result<Vec<ListedTool>, mcp::reply::UpstreamFailure> {
        use mcp::reply::UpstreamFailure as F;
        let egress = crate::egress::Egress {
            allow_private: self.allow_private,
        };
        egress
            .check_url(&view.upstream_url)
            .map_err(|_| F::Unreachable)?;
        let deadline = Instant::now() + self.response_timeout;
        let mut session: Option<HeaderValue> = None;
        let mut version: Option<String> = None;
        let init = self
            .request(
                view,
                &mut session,
                version.as_deref(),
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                    "clientInfo": {"name": "gatehouse-gateway", "version": env!("CARGO_PKG_VERSION")}}}),
                Some(0),
                deadline,
            )
            .await?;
        version = init
            .and_then(|r| {
                r.get("protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| Some(PROTOCOL_VERSION.to_owned()));
        self.request(
            view,
            &mut session,
            version.as_deref(),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            None,
            deadline,
        )
        .await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        let mut outcome = Err(F::BadResponse);
        for page in 1..=MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let id = page as u64;
            let result = self
                .request(
                    view,
                    &mut session,
                    version.as_deref(),
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}),
                    Some(id),
                    deadline,
                )
                .await?
                .ok_or(F::BadResponse)?;
            let text = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
            let listed = mcp::tools_list::filter(text.as_bytes(), |_, _| true)
                .map_err(|_| F::BadResponse)?;
            tools.extend(listed.tools);
            if tools.len() > MAX_TOOLS {
                break;
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            if cursor.is_none() {
                outcome = Ok(());
                break;
            }
        }
        if let Some(id) = &session {
            let mut headers = self.headers(view, Some(id), version.as_deref());
            headers.remove(header::CONTENT_TYPE);
            let _ = tokio::time::timeout_at(
                deadline.into(),
                self.http
                    .delete(view.upstream_url.clone())
                    .headers(headers)
                    .send(),
            )
            .await;
        }
        outcome.map(|()| tools)
    }

    fn headers(
        &self,
        view: &GrantView,
        session: Option<&HeaderValue>,
        version: Option<&str>,
    ) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        out.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(id) = session {
            out.insert(mcp::headers::MCP_SESSION_ID, id.clone());
        }
        if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
            out.insert("mcp-protocol-version", v);
        }
        for (name, value) in &view.upstream_headers {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// Sends one message; for a request (`id`), returns its result (`None` for an error answer).
    async fn request(
        &self,
        view: &GrantView,
        session: &mut Option<HeaderValue>,
        version: Option<&str>,
        body: Value,
        id: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<Value>, mcp::reply::UpstreamFailure> {
        use mcp::reply::UpstreamFailure as F;
        let send = self
            .http
            .post(view.upstream_url.clone())
            .headers(self.headers(view, session.as_ref(), version))
            .body(body.to_string())
            .send();
        let mut response = match tokio::time::timeout_at(deadline.into(), send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_connect() => return Err(F::Unreachable),
            Ok(Err(_)) => return Err(F::BadResponse),
            Err(_) => return Err(F::Timeout),
        };
        let status = response.status();
        if !status.is_success() {
            return Err(F::Status(status.as_u16()));
        }
        if session.is_none()
            && let Some(sid) = response.headers().get(mcp::headers::MCP_SESSION_ID)
        {
            *session = Some(sid.clone());
        }
        let Some(id) = id else {
            return Ok(None);
        };
        let sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
        let read = async {
            let mut buf = BytesMut::new();
            let mut parser = mcp::SseParser::new(self.max_event_bytes);
            while let Some(chunk) = response.chunk().await.map_err(|_| F::BadResponse)? {
                if sse {
                    for event in parser.feed(&chunk).map_err(|_| F::BadResponse)? {
                        if let Some(found) = event.message_data().and_then(|d| answer_of(d, id)) {
                            return Ok(found);
                        }
                    }
                } else {
                    if buf.len() + chunk.len() > self.max_response_bytes {
                        return Err(F::BadResponse);
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
            if sse {
                return Err(F::BadResponse);
            }
            std::str::from_utf8(&buf)
                .ok()
                .and_then(|text| answer_of(text, id))
                .ok_or(F::BadResponse)
        };
        tokio::time::timeout_at(deadline.into(), read)
            .await
            .unwrap_or(Err(F::Timeout))
    }
}

/// The answer to request `id` in one message: `Some(Some(result))`, `Some(None)` for an error.
fn answer_of(text: &str, id: u64) -> Option<Option<Value>> {
    let message = mcp::message::parse_message(text).ok()?;
    let Kind::Response(response) = message.kind else {
        return None;
    };
    if response.id.map(|i| i.raw().to_owned()) != Some(id.to_string()) {
        return None;
    }
    Some(match response.outcome {
        Outcome::Result(raw) => serde_json::from_str(raw.get()).ok(),
        Outcome::Error(_) => None,
    })
}

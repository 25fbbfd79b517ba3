//! A small MCP client for the control plane: connect to an upstream over Streamable HTTP, list its
//! tools, and nothing else. Registration, "test connection" and "refresh" use it; so can anyone
//! else who needs an upstream's tool list ([`discover_tools`]).
//!
//! Every connection first passes the address rules of DESIGN.md §9 ([`AddressPolicy`]): the host is
//! resolved, *every* address it resolves to is checked, and the request is then sent to exactly
//! those addresses (never resolved again, so a name cannot change its answer between the check and
//! the connection). Link-local and cloud-metadata addresses are always refused; private and
//! loopback ones only when the deployment says so. Redirects are never followed and no proxy from
//! the environment is used, so the checked address is the one reached.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// The protocol revision we ask for; the upstream may answer with an older one it supports.
const PROTOCOL_VERSION: &str = "2025-11-25";
/// The most bytes read from one upstream answer (a large `tools/list` page fits easily).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// At most this many `tools/list` pages, and tools in all, so an upstream cannot keep us paging.
const MAX_PAGES: usize = 50;
const MAX_TOOLS: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which upstream addresses a deployment may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Allow loopback and private-network addresses (self-hosted GenieACS usually lives on one).
    /// Link-local and metadata addresses are refused whatever this says.
    pub allow_private: bool,
}

/// Why an upstream could not be used. Every message is written for the person registering it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The URL itself is unusable (scheme, host, header syntax).
    #[error("{0}")]
    Invalid(String),
    /// The address rules refuse it (SSRF protection).
    #[error("{0}")]
    Refused(String),
    /// Nothing answered: DNS, connection refused, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// Something answered, but not as an MCP server does.
    #[error("{0}")]
    NotMcp(String),
    /// The upstream refused us (HTTP 401/403): usually missing or wrong upstream headers.
    #[error("{0}")]
    Rejected(String),
}

/// What an upstream told us about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    pub server_name: Option<String>,
    pub server_version: Option<String>,
    pub protocol_version: String,
    /// Every tool definition exactly as the upstream sent it, across all pages.
    pub tools: Vec<Value>,
}

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// Loopback or a private network: allowed only when the deployment allows private upstreams.
    Private,
    /// Never reachable from Gatehouse; the reason is shown.
    Forbidden(&'static str),
}

/// Classifies one address. IPv4 addresses embedded in IPv6 (mapped, NAT64) are judged as IPv4.
pub fn classify_address(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let o = v6.octets();
                return classify_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            // AWS's IPv6 instance metadata endpoint.
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                return AddressClass::Forbidden("a cloud metadata address");
            }
            if v6.is_unspecified() {
                return AddressClass::Forbidden("the unspecified address");
            }
            if (s[0] & 0xffc0) == 0xfe80 {
                return AddressClass::Forbidden("a link-local address");
            }
            if v6.is_multicast() {
                return AddressClass::Forbidden("a multicast address");
            }
            if v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
                return AddressClass::Private;
            }
            AddressClass::Public
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    if ip.is_link_local() {
        // 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata) is in here.
        return AddressClass::Forbidden("a link-local address (cloud metadata lives there)");
    }
    // Alibaba Cloud's and Oracle Cloud's metadata endpoints.
    if o == [100, 100, 100, 200] || o == [192, 0, 0, 192] {
        return AddressClass::Forbidden("a cloud metadata address");
    }
    if o[0] == 0 {
        return AddressClass::Forbidden("an address of \"this network\" (0.0.0.0/8)");
    }
    if ip.is_broadcast() || ip.is_multicast() || o[0] >= 240 {
        return AddressClass::Forbidden("a broadcast, multicast or reserved address");
    }
    let private = ip.is_loopback()
        || ip.is_private()
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT, 100.64.0.0/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || (o[0] == 192 && o[1] == 0 && o[2] == 0); // IETF protocol assignments
    if private {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// Names that are metadata endpoints whatever they resolve to.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Parses an upstream URL and checks it against the address rules, resolving its host. Returns the
/// URL and the addresses a connection may use.
pub async fn check_url(
    url: &str,
    policy: AddressPolicy,
) -> Result<(Url, Vec<SocketAddr>), UpstreamError> {
    let url = url.trim();
    if url.len() > 2000 {
        return Err(UpstreamError::Invalid(
            "The URL is longer than 2000 characters.".into(),
        ));
    }
    let parsed = Url::parse(url).map_err(|e| {
        UpstreamError::Invalid(format!(
            "This is not a valid URL ({e}). Use the form http://host:port/mcp."
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UpstreamError::Invalid(
            "Only http:// and https:// upstream URLs are supported.".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UpstreamError::Invalid(
            "Put credentials in the upstream headers, not in the URL.".into(),
        ));
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match parsed.host() {
        None => return Err(UpstreamError::Invalid("The URL has no host.".into())),
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => {
            let lower = name.trim_end_matches('.').to_ascii_lowercase();
            if METADATA_NAMES.contains(&lower.as_str()) {
                return Err(UpstreamError::Refused(format!(
                    "`{name}` is a cloud metadata endpoint; Gatehouse never connects to one."
                )));
            }
            let found: Vec<SocketAddr> = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::lookup_host((lower.as_str(), port)),
            )
            .await
            .map_err(|_| UpstreamError::Unreachable(format!("Looking up `{name}` timed out.")))?
            .map_err(|e| {
                UpstreamError::Unreachable(format!(
                    "The host `{name}` could not be resolved ({e})."
                ))
            })?
            .collect();
            if found.is_empty() {
                return Err(UpstreamError::Unreachable(format!(
                    "The host `{name}` has no addresses."
                )));
            }
            found
        }
    };
    for addr in &addrs {
        match classify_address(addr.ip()) {
            AddressClass::Public => {}
            AddressClass::Private if policy.allow_private => {}
            AddressClass::Private => {
                return Err(UpstreamError::Refused(format!(
                    "{} is a private or loopback address, and this deployment does not allow \
                     private upstreams (GATEHOUSE_ALLOW_PRIVATE_UPSTREAMS).",
                    addr.ip()
                )));
            }
            AddressClass::Forbidden(why) => {
                return Err(UpstreamError::Refused(format!(
                    "{} is {why}; Gatehouse never connects to such addresses.",
                    addr.ip()
                )));
            }
        }
    }
    Ok((parsed, addrs))
}

/// Connects to an MCP server over Streamable HTTP, initialises a session and lists every tool
/// (following `nextCursor`), then ends the session.
pub async fn discover_tools(
    url: &str,
    headers: &[(String, String)],
    policy: AddressPolicy,
) -> Result<Discovery, UpstreamError> {
    let (url, addrs) = check_url(url, policy).await?;
    let mut base = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| UpstreamError::Invalid(format!("`{name}` is not a valid header name.")))?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            UpstreamError::Invalid(format!(
                "The value of `{name}` is not a valid header value."
            ))
        })?;
        value.set_sensitive(true);
        base.insert(name, value);
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if let Some(url::Host::Domain(name)) = url.host() {
        builder = builder.resolve_to_addrs(name, &addrs);
    }
    let client = builder
        .build()
        .map_err(|e| UpstreamError::Unreachable(format!("Cannot make an HTTP client: {e}")))?;
    let mut session = Session {
        client,
        url,
        base,
        session_id: None,
        protocol_version: None,
    };

    let init = session
        .request(
            0,
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "gatehouse-admin", "version": env!("CARGO_PKG_VERSION")},
            }),
        )
        .await?;
    let protocol_version = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            UpstreamError::NotMcp(
                "The upstream answered `initialize` without a protocolVersion.".into(),
            )
        })?
        .to_owned();
    session.protocol_version = Some(protocol_version.clone());
    let info = init.get("serverInfo");
    let text = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (server_name, server_version) = (text("name"), text("version"));
    session.notify("notifications/initialized").await?;

    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 1..=MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let result = session.request(page as u64, "tools/list", params).await?;
        let items = result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                UpstreamError::NotMcp(
                    "The upstream's `tools/list` result has no `tools` array.".into(),
                )
            })?;
        tools.extend(items.iter().cloned());
        if tools.len() > MAX_TOOLS {
            return Err(UpstreamError::NotMcp(format!(
                "The upstream lists more than {MAX_TOOLS} tools."
            )));
        }
        cursor = result
            .get("nextCursor")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
        if page == MAX_PAGES {
            return Err(UpstreamError::NotMcp(format!(
                "The upstream's tool list goes on for more than {MAX_PAGES} pages."
            )));
        }
    }
    session.close().await;
    Ok(Discovery {
        server_name,
        server_version,
        protocol_version,
        tools,
    })
}

struct Session {
    client: reqwest::Client,
    url: Url,
    base: HeaderMap,
    session_id: Option<HeaderValue>,
    protocol_version: Option<String>,
}

impl Session {
    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.base.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(id) = &self.session_id {
            req = req.header("mcp-session-id", id.clone());
        }
        if let Some(v) = &self.protocol_version {
            req = req.header("mcp-protocol-version", v.as_str());
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, UpstreamError> {
        let resp = req
            .send()
            .await
            .map_err(|e| describe_send_error(&self.url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        Err(match status.as_u16() {
            401 | 403 => UpstreamError::Rejected(format!(
                "The upstream refused the request (HTTP {status}). Check the upstream headers \
                 (for example `Authorization: Bearer …`)."
            )),
            404 | 405 => UpstreamError::NotMcp(format!(
                "The upstream answered HTTP {status}: is this the MCP endpoint (often ending in /mcp)?"
            )),
            300..=399 => UpstreamError::NotMcp(format!(
                "The upstream answered with a redirect (HTTP {status}); Gatehouse does not follow \
                 redirects. Use the final URL."
            )),
            _ => UpstreamError::NotMcp(format!("The upstream answered HTTP {status}.")),
        })
    }

    /// Sends a request and returns its `result`.
    async fn request(
        &mut self,
        id: u64,
        method: &str,
        params: Value,
    ) -> Result<Value, UpstreamError> {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let resp = self.send(self.post(&body)).await?;
        if self.session_id.is_none()
            && let Some(sid) = resp.headers().get("mcp-session-id")
        {
            self.session_id = Some(sid.clone());
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let message = if content_type.starts_with("application/json") {
            let bytes = read_capped(resp).await?;
            serde_json::from_slice::<Value>(&bytes).map_err(|_| {
                UpstreamError::NotMcp(format!("The upstream's answer to `{method}` is not JSON."))
            })?
        } else if content_type.starts_with("text/event-stream") {
            first_sse_response(resp, id, method).await?
        } else {
            return Err(UpstreamError::NotMcp(format!(
                "The upstream answered `{method}` with `{}`, not JSON or an event stream: this \
                 does not look like an MCP Streamable HTTP endpoint.",
                if content_type.is_empty() {
                    "no content type"
                } else {
                    &content_type
                }
            )));
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(UpstreamError::NotMcp(format!(
                "The upstream's answer to `{method}` is not a JSON-RPC 2.0 message."
            )));
        }
        if let Some(error) = message.get("error") {
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or_default();
            let text = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            let text: String = text.chars().take(300).collect();
            return Err(UpstreamError::NotMcp(format!(
                "The upstream answered `{method}` with error {code}: {text}"
            )));
        }
        message
            .get("result")
            .filter(|r| r.is_object())
            .cloned()
            .ok_or_else(|| {
                UpstreamError::NotMcp(format!(
                    "The upstream's answer to `{method}` has no result."
                ))
            })
    }

    async fn notify(&self, method: &str) -> Result<(), UpstreamError> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        self.send(self.post(&body)).await.map(drop)
    }

    /// Ends the session politely; failures do not matter.
    async fn close(&self) {
        if let Some(id) = &self.session_id {
            let mut req = self
                .client
                .delete(self.url.clone())
                .headers(self.base.clone())
                .header("mcp-session-id", id.clone());
            if let Some(v) = &self.protocol_version {
                req = req.header("mcp-protocol-version", v.as_str());
            }
            let _ = req.send().await;
        }
    }
}

fn describe_send_error(url: &Url, e: &reqwest::Error) -> UpstreamError {
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    );
    if e.is_timeout() {
        UpstreamError::Unreachable(format!("{target} did not answer in time."))
    } else if e.is_connect() {
        let https = if url.scheme() == "https" {
            " (this build of Gatehouse speaks plain http:// to upstreams only)"
        } else {
            ""
        };
        UpstreamError::Unreachable(format!(
            "Could not connect to {target}: nothing is listening there or it is unreachable{https}."
        ))
    } else {
        UpstreamError::Unreachable(format!("The request to {target} failed."))
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| UpstreamError::Unreachable("The upstream's answer was cut off.".into()))?
    {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::NotMcp(format!(
                "The upstream's answer is larger than {} MiB.",
                MAX_ANSWER_BYTES / 1024 / 1024
            )));
        }
    }
    Ok(out)
}

/// Reads an event stream until the JSON-RPC response with our id arrives; requests and
/// notifications from the server before it are skipped.
async fn first_sse_response(
    mut resp: reqwest::Response,
    id: u64,
    method: &str,
) -> Result<Value, UpstreamError> {
    let mut parser = mcp::SseParser::new(MAX_ANSWER_BYTES);
    let mut read = 0usize;
    let cut_off = || {
        UpstreamError::NotMcp(format!(
            "The upstream's event stream for `{method}` ended without an answer."
        ))
    };
    loop {
        let chunk = resp.chunk().await.map_err(|_| cut_off())?;
        let ended = chunk.is_none();
        let events = match chunk {
            Some(chunk) => {
                read += chunk.len();
                if read > MAX_ANSWER_BYTES {
                    return Err(UpstreamError::NotMcp(
                        "The upstream's event stream is too large.".into(),
                    ));
                }
                parser.feed(&chunk)
            }
            None => parser.finish().map(|e| e.into_iter().collect()),
        }
        .map_err(|e| {
            UpstreamError::NotMcp(format!("The upstream's event stream is malformed: {e}"))
        })?;
        for event in &events {
            let Some(data) = event.message_data() else {
                continue;
            };
            let Ok(message) = serde_json::from_str::<Value>(data) else {
                return Err(UpstreamError::NotMcp(format!(
                    "An event in the upstream's answer to `{method}` is not JSON."
                )));
            };
            if message.get("id") == Some(&json!(id))
                && (message.get("result").is_some() || message.get("error").is_some())
            {
                return Ok(message);
            }
        }
        if ended {
            return Err(cut_off());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify_address(s.parse().unwrap())
    }

    #[test]
    fn link_local_and_metadata_are_always_forbidden() {
        for a in [
            "169.254.169.254",
            "169.254.0.1",
            "100.100.100.200",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(matches!(class(a), AddressClass::Forbidden(_)), "{a}");
        }
    }

    #[test]
    fn private_and_loopback_are_private() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd12::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(class(a), AddressClass::Private, "{a}");
        }
        for a in ["8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(class(a), AddressClass::Public, "{a}");
        }
    }
}

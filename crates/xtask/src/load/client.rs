//! How the harness calls tools and names what a client saw.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::HeaderMap;

use crate::bench_gateway::{Target, session_headers};

/// What one `tools/call` came back as, from the client's side.
pub(crate) fn classify(status: u16, body: &str) -> &'static str {
    if !(200..300).contains(&status) {
        return match status {
            400 => "http_400",
            401 => "http_401",
            403 => "http_403",
            404 => "http_404",
            500 => "http_500",
            502 => "http_502",
            503 => "http_503",
            504 => "http_504",
            _ => "http_other",
        };
    }
    if body.contains("[POLICY DENIED] rate limit") {
        "rate_limited"
    } else if body.contains("[POLICY DENIED]") {
        "denied"
    } else if body.contains("cannot reach its rate limiter") {
        "limiter_unavailable"
    } else if body.contains("cannot reach its audit") {
        "audit_unavailable"
    } else if body.contains("cannot reach its") {
        "unavailable"
    } else if body.contains(r#""upstream":"timeout""#) {
        "upstream_timeout"
    } else if body.contains(r#""upstream":"#) {
        "upstream_error"
    } else if body.contains(r#""error":"#) {
        "jsonrpc_error"
    } else if body.contains(r#""isError":true"#) {
        "tool_error"
    } else {
        "ok"
    }
}

/// An MCP session of one client: its own connection pool, its session headers.
pub(crate) struct Client {
    http: reqwest::Client,
    target: Target,
    headers: Option<HeaderMap>,
    next_id: u64,
}

impl Client {
    /// A client of `target` whose calls give up after `timeout`; the session opens on first use.
    pub(crate) fn new(target: Target, timeout: Duration) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(timeout)
            .build()?;
        Ok(Client {
            http,
            target,
            headers: None,
            next_id: 1,
        })
    }

    pub(crate) async fn open(&mut self) -> anyhow::Result<()> {
        let headers = session_headers(&self.http, &self.target)
            .await
            .with_context(|| format!("opening a session on {}", self.target.name))?;
        self.headers = Some(headers);
        Ok(())
    }

    /// Calls `retry_task` with `task_id` and names the answer. A session the server no longer
    /// knows (404), or none yet, is (re)opened before the next call.
    pub(crate) async fn call(&mut self, task_id: &str) -> &'static str {
        if self.headers.is_none() && self.open().await.is_err() {
            return "session_failed";
        }
        let id = self.next_id;
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"retry_task","arguments":{{"task_id":"{task_id}"}}}}}}"#
        );
        let sent = self
            .http
            .post(&self.target.url)
            .headers(self.headers.clone().unwrap_or_default())
            .body(body)
            .send()
            .await;
        let kind = match sent {
            Err(e) if e.is_timeout() => "client_timeout",
            Err(e) if e.is_connect() => "connect_error",
            Err(_) => "connection_error",
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(body) => classify(status, &body),
                    Err(e) if e.is_timeout() => "client_timeout",
                    Err(_) => "connection_error",
                }
            }
        };
        if kind == "http_404" {
            self.headers = None;
        }
        kind
    }
}

/// Counts of answers by kind.
pub(crate) type Tally = BTreeMap<&'static str, u64>;

pub(crate) fn merge(into: &mut Tally, from: &Tally) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn answers_are_named() {
        let result = |text: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"result":{text}}}"#);
        assert_eq!(
            classify(200, &result(r#"{"content":[],"isError":false}"#)),
            "ok"
        );
        assert_eq!(
            classify(200, &result(r#"{"content":[],"isError":true}"#)),
            "tool_error"
        );
        assert_eq!(
            classify(
                200,
                &result(
                    r#"{"content":[{"type":"text","text":"[POLICY DENIED] rate limit `x` reached"}],"isError":true}"#
                )
            ),
            "rate_limited"
        );
        assert_eq!(
            classify(
                200,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"The upstream MCP server timed out","data":{"upstream":"timeout"}}}"#
            ),
            "upstream_timeout"
        );
        assert_eq!(
            classify(
                200,
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"Gatehouse cannot reach its rate limiter; the call was refused"}}"#
            ),
            "limiter_unavailable"
        );
        assert_eq!(classify(503, "{}"), "http_503");
    }
}

//! What a gateway replica is configured with, beyond its connections: who may address it
//! (Host/Origin), how much it reads, how long it waits.

use std::time::Duration;

/// Limits, timeouts and allow-lists of one replica. Built by `gatehouse gateway` from flags and
/// environment variables; tests build it with [`Settings::local`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host names (without port, lower case) the gateway answers to; `*` allows any. Requests with
    /// another `Host` get 403 (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`, lower case) allowed besides those whose host is in
    /// `allowed_hosts`; `*` allows any. A request with another `Origin` gets 403.
    pub allowed_origins: Vec<String>,
    /// The largest request body read (413 beyond).
    pub max_body_bytes: usize,
    /// The largest upstream JSON response the gateway reads (a `tools/list` page, a JSON result).
    pub max_response_bytes: usize,
    /// The largest single SSE event the gateway parses (on `tools/list` streams).
    pub max_sse_event_bytes: usize,
    /// How long connecting to an upstream may take.
    pub connect_timeout: Duration,
    /// How long an upstream may take to answer (headers, and the whole body of a JSON answer).
    pub response_timeout: Duration,
    /// How long cached configuration is trusted without an invalidation (the safety net); a view
    /// in use is read again in the background after half of it.
    pub config_ttl: Duration,
    /// The most SSE streams (GET streams and requests answered with a stream) open at once on
    /// this replica (503 beyond).
    pub max_streams: usize,
    /// The most SSE streams one organisation may hold open on this replica, so one tenant cannot
    /// take every slot.
    pub max_streams_per_org: usize,
    /// How long a GET stream may stay silent (no byte from the upstream, keep-alive comments
    /// included) before the gateway ends it. A request's stream ends after `response_timeout` of
    /// silence, with the request's timeout error.
    pub stream_idle_timeout: Duration,
    /// The longest any SSE stream is kept open; clients resume GET streams with `Last-Event-ID`.
    pub stream_max_lifetime: Duration,
    /// The most bytes of request bodies and upstream JSON answers held in memory at once across
    /// all requests of this replica (503 / a JSON-RPC error beyond).
    pub max_buffered_bytes: usize,
    /// How long a client may take to send its whole request body (408 beyond).
    pub body_timeout: Duration,
    /// How long an unknown, revoked or expired token is remembered as such, so repeated junk
    /// tokens do not each read the store.
    pub unknown_token_ttl: Duration,
    /// How many tokens from one client address (an IPv6 /64) may fail per minute before that
    /// address's uncached lookups are refused with 429.
    pub auth_failures_per_minute: u32,
    /// The Redis pub/sub channel configuration changes are announced on.
    pub invalidation_channel: String,
    /// Whether upstreams on loopback and private networks may be reached. Link-local and cloud
    /// metadata addresses are refused whatever this says (DESIGN.md §9).
    pub allow_private_upstreams: bool,
    /// The Redis pub/sub channel approval decisions are announced on.
    pub approval_channel: String,
    /// How often a held call re-reads its approval whatever the signals say (the safety net).
    pub approval_poll: Duration,
    /// How often a held call answered on SSE gets a `notifications/progress` keep-alive.
    pub approval_keepalive: Duration,
    /// The longest a call is held, whatever its rule's `approval.wait` says.
    pub approval_max_wait: Duration,
    /// How many times a new approval is offered to the organisation's webhook.
    pub webhook_attempts: u32,
    /// The pause before the webhook's second attempt; each later one waits twice as long.
    pub webhook_backoff: Duration,
}

/// The channel `gatehouse` commands publish configuration changes on.
pub const DEFAULT_INVALIDATION_CHANNEL: &str = "gatehouse:config";

impl Settings {
    /// Defaults for a gateway reached on loopback: localhost names only, 1 MiB bodies,
    /// 5 s connect and 30 s response timeouts, upstreams on loopback and private networks allowed;
    /// 1,000 streams (100 per organisation) idle at most 5 min and open at most 1 h; 256 MiB of
    /// buffered bodies; 10 s to send a body; unknown tokens remembered 10 s; 60 failed tokens per
    /// client address and minute; held calls re-read their approval every second, get a
    /// keep-alive every 5 s on SSE and are held at most 1 min; webhooks tried 5 times from 1 s apart.
    pub fn local() -> Settings {
        Settings {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            max_sse_event_bytes: 4 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(30),
            config_ttl: Duration::from_secs(5),
            max_streams: 1000,
            max_streams_per_org: 100,
            stream_idle_timeout: Duration::from_secs(300),
            stream_max_lifetime: Duration::from_secs(3600),
            max_buffered_bytes: 256 * 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            unknown_token_ttl: Duration::from_secs(10),
            auth_failures_per_minute: 60,
            invalidation_channel: DEFAULT_INVALIDATION_CHANNEL.into(),
            allow_private_upstreams: true,
            approval_channel: crate::approval::DEFAULT_APPROVAL_CHANNEL.into(),
            approval_poll: Duration::from_secs(1),
            approval_keepalive: Duration::from_secs(5),
            approval_max_wait: Duration::from_secs(60),
            webhook_attempts: 5,
            webhook_backoff: Duration::from_secs(1),
        }
    }

    pub(crate) fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|h| h == "*" || *h == host)
    }

    pub(crate) fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || *o == origin)
        {
            return true;
        }
        let Some((_, rest)) = origin.split_once("://") else {
            return false;
        };
        host_of_authority(rest).is_some_and(|h| self.host_allowed(h))
    }
}

/// The host of `host[:port]` or `[v6][:port]`; `None` when empty.
pub(crate) fn host_of_authority(authority: &str) -> Option<&str> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

//! Configuration as the gateway needs it per grant token: the grant, its server's upstream URL and
//! credentials, and its policy's current version compiled. Read from the store on first use,
//! kept for at most the TTL, and dropped at once when an invalidation arrives (Redis pub/sub).
//!
//! A view past half its TTL is read again in the background by the first request that uses it
//! (one read per token at a time), while that request and the ones after it go on with the view
//! they have: a busy grant never waits for the store once it is cached, and no view is used
//! longer than the TTL. Only a view past its whole TTL (a grant unused for that long, or a store
//! that failed to answer the refresh) is read on a request's path. After a refresh fails, none
//! starts for a second, so a store that is down is not asked at the rate requests arrive.
//!
//! A generation counter closes the race between a load and an invalidation: a load that started
//! before the latest invalidation does not put its (possibly stale) answer in the cache.
//!
//! Tokens that turned out unknown, revoked or expired are remembered too, for a short TTL and in a
//! bounded map (a negative cache), so a client repeating a junk token does not read the store each
//! time. A store error is never remembered: the next request asks again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::{HeaderName, HeaderValue};
use store::Store;
use store::grant::TokenGrant;
use store::secret::TokenHash;

/// Everything one grant's requests need, ready to use.
#[derive(Debug)]
pub(crate) struct GrantView {
    /// The SHA-256 of the grant token this view was read for (the cache key).
    pub(crate) token_key: [u8; 32],
    pub(crate) grant: TokenGrant,
    pub(crate) organisation: String,
    pub(crate) server: String,
    pub(crate) grant_id: String,
    pub(crate) upstream_url: reqwest::Url,
    /// The server's own upstream credentials, injected into every forwarded request.
    pub(crate) upstream_headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) policy: policy::Policy,
    pub(crate) policy_version: u32,
    /// The pinned `inputSchema` of each tool that mirrors arguments into `Mcp-Param-*` headers
    /// (an `x-mcp-header` on a property), by tool name; `None` when the server has no pinned
    /// snapshot, so no tool's schema is known.
    pub(crate) param_schemas: Option<HashMap<String, serde_json::Value>>,
    /// The pin hash of each tool of the server's latest snapshot (`pinning`); `None` when the
    /// server has no snapshot.
    pub(crate) pins: Option<Arc<crate::pinning::Pins>>,
}

impl GrantView {
    /// Whether `other` reaches the same upstream the same way (URL and credentials): a stream
    /// opened under `self` may go on under `other`.
    pub(crate) fn same_upstream(&self, other: &GrantView) -> bool {
        self.server == other.server
            && self.upstream_url == other.upstream_url
            && self.upstream_headers == other.upstream_headers
    }
}

/// What a token turned out to be.
#[derive(Debug)]
pub(crate) enum Lookup {
    Unknown,
    /// Revoked or expired.
    Inactive,
    Active(Arc<GrantView>),
}

/// How long a request may wait for its configuration before it is refused: a slow or unreachable
/// store must never hold agents' requests (or the replica's memory) indefinitely.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The most grants cached at once; beyond it the cache is emptied (it only ever saves reads).
const MAX_ENTRIES: usize = 100_000;

/// The most tokens remembered as unknown, revoked or expired; beyond it expired entries are
/// dropped, and if none had expired, all of them.
const MAX_NEGATIVE_ENTRIES: usize = 50_000;

/// Token hash → (when loaded, view).
type Entries = HashMap<[u8; 32], (Instant, Arc<GrantView>)>;

/// How often the store was read for a grant's configuration (a metric, `waited="request"` when a
/// request waited for the read, `waited="refresh"` for a background refresh).
pub(crate) type Reads = prometheus_client::metrics::family::Family<
    [(&'static str, &'static str); 1],
    prometheus_client::metrics::counter::Counter,
>;

fn count_read(reads: &Reads, waited: &'static str) {
    reads.get_or_create(&[("waited", waited)]).inc();
}

#[derive(Debug)]
pub(crate) struct ConfigCache {
    store: Store,
    reads: Reads,
    ttl: Duration,
    negative_ttl: Duration,
    generation: AtomicU64,
    entries: Mutex<Entries>,
    /// Token hash → (when found unknown or inactive, which of the two).
    negative: Mutex<HashMap<[u8; 32], (Instant, bool)>>,
    /// One load at a time per token: concurrent first requests of a grant (or all of them after
    /// an invalidation) wait for one read of the store instead of each making their own, and a
    /// background refresh holds the same gate.
    loading: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// After a refresh failed (the store is down or slow), no refresh starts before this: views
    /// in hand serve until their TTL either way, and a store that is struggling is not asked
    /// again at the rate requests arrive.
    refresh_paused_until: Mutex<Option<Instant>>,
}

/// How long background refreshes pause after one failed.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

impl ConfigCache {
    pub(crate) fn new(store: Store, reads: Reads, ttl: Duration, negative_ttl: Duration) -> Self {
        ConfigCache {
            store,
            reads,
            ttl,
            negative_ttl,
            generation: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            refresh_paused_until: Mutex::new(None),
        }
    }

    /// The cached view of `key` if it is within its TTL, and whether it is past half of it (due
    /// for a refresh).
    fn cached(&self, key: &[u8; 32], now: time::OffsetDateTime) -> Option<(Lookup, bool)> {
        let entries = self.entries.lock().expect("cache lock");
        let (at, view) = entries.get(key)?;
        let age = at.elapsed();
        if age >= self.ttl {
            return None;
        }
        // Expiry is checked on every use: a grant may expire while it is cached.
        let lookup = if view.grant.is_active(now) {
            Lookup::Active(view.clone())
        } else {
            Lookup::Inactive
        };
        Some((lookup, age >= self.ttl / 2))
    }

    /// [`ConfigCache::cached`], starting the background refresh of a view that is due.
    fn cached_or_refresh(
        self: &Arc<Self>,
        key: &[u8; 32],
        now: time::OffsetDateTime,
    ) -> Option<Lookup> {
        let (lookup, due) = self.cached(key, now)?;
        if due && !self.refresh_paused() {
            let gate = self.gate(*key);
            // A read of this token already running (a refresh, or a request's) will do.
            match gate.clone().try_lock_owned() {
                Ok(turn) => {
                    tokio::spawn(self.clone().refresh(*key, gate, turn));
                }
                Err(_) => self.release_gate(*key, &gate),
            }
        }
        Some(lookup)
    }

    /// Reads `key`'s view again while holding its gate (`turn`); the view in hand stays in use
    /// until its TTL, and a request past it reads again.
    async fn refresh(
        self: Arc<Self>,
        key: [u8; 32],
        gate: Arc<tokio::sync::Mutex<()>>,
        turn: tokio::sync::OwnedMutexGuard<()>,
    ) {
        count_read(&self.reads, "refresh");
        let read = self.load(None, key, time::OffsetDateTime::now_utc());
        let result = tokio::time::timeout(LOOKUP_TIMEOUT, read).await;
        drop(turn);
        self.release_gate(key, &gate);
        let failed = match result {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no answer within {LOOKUP_TIMEOUT:?}"),
        };
        *self
            .refresh_paused_until
            .lock()
            .expect("refresh pause lock") = Some(Instant::now() + REFRESH_RETRY);
        tracing::warn!(
            error = failed,
            retry_in = ?REFRESH_RETRY,
            "cannot refresh a cached grant configuration; the view in hand serves until its TTL"
        );
    }

    fn refresh_paused(&self) -> bool {
        self.refresh_paused_until
            .lock()
            .expect("refresh pause lock")
            .is_some_and(|until| Instant::now() < until)
    }

    fn remembered_negative(&self, key: &[u8; 32]) -> Option<Lookup> {
        let negative = self.negative.lock().expect("negative cache lock");
        let (at, inactive) = negative.get(key)?;
        (at.elapsed() < self.negative_ttl).then_some(if *inactive {
            Lookup::Inactive
        } else {
            Lookup::Unknown
        })
    }

    fn remember_negative(&self, key: [u8; 32], inactive: bool) {
        if self.negative_ttl.is_zero() {
            return;
        }
        let mut negative = self.negative.lock().expect("negative cache lock");
        if negative.len() >= MAX_NEGATIVE_ENTRIES {
            let ttl = self.negative_ttl;
            negative.retain(|_, (at, _)| at.elapsed() < ttl);
            if negative.len() >= MAX_NEGATIVE_ENTRIES {
                negative.clear();
            }
        }
        negative.insert(key, (Instant::now(), inactive));
    }

    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().expect("cache lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
        drop(entries);
        self.negative.lock().expect("negative cache lock").clear();
    }

    /// What the cache knows of the token hashed to `key` without reading the store: its grant,
    /// or that it is unknown, revoked or expired.
    pub(crate) fn peek(self: &Arc<Self>, key: &[u8; 32]) -> Option<Lookup> {
        self.cached_or_refresh(key, time::OffsetDateTime::now_utc())
            .or_else(|| self.remembered_negative(key))
    }

    /// The grant of `token` (hashed to `key`), from the cache or the store.
    pub(crate) async fn lookup(
        self: &Arc<Self>,
        token: &str,
        key: [u8; 32],
    ) -> anyhow::Result<Lookup> {
        self.lookup_inner(Some(token), key).await
    }

    /// The grant of the token hashed to `key`, from the cache or the store (for re-checking the
    /// grants of open streams, whose tokens the gateway does not keep).
    pub(crate) async fn lookup_key(self: &Arc<Self>, key: [u8; 32]) -> anyhow::Result<Lookup> {
        self.lookup_inner(None, key).await
    }

    async fn lookup_inner(
        self: &Arc<Self>,
        token: Option<&str>,
        key: [u8; 32],
    ) -> anyhow::Result<Lookup> {
        let now = time::OffsetDateTime::now_utc();
        if let Some(hit) = self.cached_or_refresh(&key, now) {
            return Ok(hit);
        }
        let gate = self.gate(key);
        let load = async {
            let _turn = gate.lock().await;
            if let Some((hit, _)) = self.cached(&key, now) {
                return Ok(hit);
            }
            count_read(&self.reads, "request");
            self.load(token, key, now).await
        };
        let result = match tokio::time::timeout(LOOKUP_TIMEOUT, load).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "the configuration store did not answer within {LOOKUP_TIMEOUT:?}"
            )),
        };
        self.release_gate(key, &gate);
        result
    }

    /// The gate that lets one read of `key`'s configuration run at a time.
    fn gate(&self, key: [u8; 32]) -> Arc<tokio::sync::Mutex<()>> {
        self.loading
            .lock()
            .expect("loading lock")
            .entry(key)
            .or_default()
            .clone()
    }

    /// Gives back a [`ConfigCache::gate`] (its lock already released): the last one out removes
    /// it from the map (the map's own reference plus the caller's).
    fn release_gate(&self, key: [u8; 32], gate: &Arc<tokio::sync::Mutex<()>>) {
        let mut loading = self.loading.lock().expect("loading lock");
        if Arc::strong_count(gate) <= 2 {
            loading.remove(&key);
        }
    }

    /// Reads the token's configuration from the store and caches what it found.
    async fn load(
        &self,
        token: Option<&str>,
        key: [u8; 32],
        now: time::OffsetDateTime,
    ) -> anyhow::Result<Lookup> {
        let generation = self.generation.load(Ordering::SeqCst);
        let store = &self.store;
        let found = match token {
            Some(token) => store.grant_by_token(token).await,
            None => store.grant_by_token_hash(TokenHash(key)).await,
        }
        .context("looking up the grant token")?;
        let Some(grant) = found else {
            self.forget(&key);
            self.remember_negative(key, false);
            return Ok(Lookup::Unknown);
        };
        if !grant.is_active(now) {
            self.forget(&key);
            self.remember_negative(key, true);
            return Ok(Lookup::Inactive);
        }
        let view = Arc::new(load_view(store, key, grant).await?);
        let mut entries = self.entries.lock().expect("cache lock");
        if self.generation.load(Ordering::SeqCst) == generation {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), view.clone()));
        }
        Ok(Lookup::Active(view))
    }

    /// Drops the view of a token found gone or inactive (a refresh may find that while the view
    /// is still within its TTL).
    fn forget(&self, key: &[u8; 32]) {
        self.entries.lock().expect("cache lock").remove(key);
    }
}

async fn load_view(
    store: &Store,
    token_key: [u8; 32],
    grant: TokenGrant,
) -> anyhow::Result<GrantView> {
    let mut tx = store
        .begin(grant.organisation_id)
        .await
        .context("opening the organisation's transaction")?;
    let server = store::server::server_by_id(&mut tx, grant.server_id)
        .await
        .context("reading the grant's server")?;
    let headers = store::server::upstream_headers(&mut tx, grant.server_id)
        .await
        .context("opening the server's upstream credentials")?;
    let version = store::policy::current_policy_version(&mut tx, grant.policy_id)
        .await
        .context("reading the grant's policy")?;
    let pinned = store::server::latest_pinned_tools(&mut tx, grant.server_id)
        .await
        .context("reading the server's pinned tools")?;
    tx.rollback().await.context("ending the read")?;
    let pins = crate::pinning::pins_of(&pinned);
    let param_schemas = (!pinned.is_empty()).then(|| {
        pinned
            .into_iter()
            .filter_map(|tool| {
                let schema = tool.definition.get("inputSchema")?;
                mcp::headers::mirrors_params(schema).then(|| (tool.name, schema.clone()))
            })
            .collect()
    });

    let policy = policy::Policy::parse(&version.source, None).map_err(|d| {
        anyhow::anyhow!(
            "the stored policy {} version {} does not parse: {d}",
            version.policy_id,
            version.version
        )
    })?;
    let upstream_url = reqwest::Url::parse(&server.upstream_url).context("the upstream URL")?;
    let upstream_headers = headers
        .expose()
        .iter()
        .map(|(k, v)| {
            Ok((
                HeaderName::try_from(k.as_str()).context("an upstream header name")?,
                HeaderValue::try_from(v.as_str()).context("an upstream header value")?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(GrantView {
        token_key,
        organisation: grant.organisation_id.to_string(),
        server: grant.server_id.to_string(),
        grant_id: grant.grant_id.to_string(),
        grant,
        upstream_url,
        upstream_headers,
        policy,
        policy_version: u32::try_from(version.version).unwrap_or(0),
        param_schemas,
        pins,
    })
}

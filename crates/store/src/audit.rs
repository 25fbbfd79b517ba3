//! The audit log: batch ingestion that extends each organisation's hash chain, the viewer's
//! keyset-paginated reads and hourly counts, chain verification, and partition maintenance.
//!
//! The hash of an event is `SHA-256(prev_hash || canonical)` where `canonical` is the JSON array
//! of the event's fields in a fixed order (objects with sorted keys, times as Unix microseconds).
//! Everything hashed is exactly what the database stores and gives back, so a verifier reading
//! rows recomputes the same bytes.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::{AuditEventId, Error, GrantId, OrgId, OrgTx, Result, ServerId, Store};

pub use crate::audit_verify::{ChainProblem, ChainReport, verify_audit_chain};

/// The hash every chain starts from.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Partitions are kept this many days ahead of today.
pub const PARTITION_DAYS_AHEAD: i32 = 14;
/// The most rows one viewer page returns.
pub const MAX_PAGE_SIZE: i64 = 500;

/// What the gateway decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    Allow,
    Deny,
    Hidden,
    RateLimited,
    ApprovalPending,
    Approved,
    UpstreamError,
    /// A request the policy does not decide on (initialize, ping, notifications).
    Passthrough,
}

impl AuditDecision {
    pub const ALL: [AuditDecision; 8] = [
        Self::Allow,
        Self::Deny,
        Self::Hidden,
        Self::RateLimited,
        Self::ApprovalPending,
        Self::Approved,
        Self::UpstreamError,
        Self::Passthrough,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Hidden => "hidden",
            Self::RateLimited => "rate_limited",
            Self::ApprovalPending => "approval_pending",
            Self::Approved => "approved",
            Self::UpstreamError => "upstream_error",
            Self::Passthrough => "passthrough",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| Error::invalid("decision", format!("unknown decision `{s}`")))
    }
}

/// One event as the gateway reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// The gateway's request id: ingesting the same event twice stores it once.
    pub audit_event_id: AuditEventId,
    pub organisation_id: OrgId,
    /// Stored with microsecond precision; finer digits are dropped before hashing.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub server_id: ServerId,
    pub grant_id: GrantId,
    pub identity: String,
    pub session_id: Option<String>,
    pub method: String,
    pub tool_name: Option<String>,
    /// Argument keys, and values where the policy records them (secrets already redacted).
    /// Strings must not contain U+0000, which Postgres cannot store.
    pub arguments: Value,
    pub decision: AuditDecision,
    pub rule: Option<String>,
    pub message: Option<String>,
    pub policy_version: Option<i32>,
    pub upstream_status: Option<i32>,
    pub is_error: Option<bool>,
    pub latency_us: Option<i64>,
    pub client_addr: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// One stored event, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    #[serde(flatten)]
    pub event: NewAuditEvent,
    pub sequence: i64,
    #[serde(serialize_with = "hex_serde")]
    pub prev_hash: Vec<u8>,
    #[serde(serialize_with = "hex_serde")]
    pub hash: Vec<u8>,
}

fn hex_serde<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(crate) fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.replace_nanosecond(micros)
        .expect("a truncated nanosecond is in range")
}

pub(crate) fn unix_micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000
}

/// JSON with object keys sorted at every level, so equal values always give equal bytes whatever
/// order the keys arrived in (Postgres `jsonb` reorders them).
pub(crate) fn canonical_json(value: &Value) -> Vec<u8> {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push(b'{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).expect("a string serialises"));
                    out.push(b':');
                    write(v, out);
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(v, out);
                }
                out.push(b']');
            }
            scalar => out.extend(serde_json::to_vec(scalar).expect("a scalar serialises")),
        }
    }
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

pub(crate) fn link_hash(prev_hash: &[u8], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical);
    h.finalize().into()
}

/// The canonical bytes of an audit event at `sequence` in its chain.
pub fn canonical_audit_event(e: &NewAuditEvent, sequence: i64) -> Vec<u8> {
    CanonicalParts::of(e).at(sequence)
}

/// An event's canonical bytes around its sequence, which is known only once the chain head is
/// locked: everything else is serialised before, outside the lock.
pub(crate) struct CanonicalParts {
    /// `["gatehouse-audit-v1",<id>,<organisation>,`
    head: Vec<u8>,
    /// `,<time>,<server>,…]`
    tail: Vec<u8>,
}

impl CanonicalParts {
    pub(crate) fn of(e: &NewAuditEvent) -> Self {
        let mut head = canonical_json(&json!([
            "gatehouse-audit-v1",
            e.audit_event_id,
            e.organisation_id
        ]));
        // A JSON array is its items joined by commas: drop the closing bracket, open the next item.
        head.pop();
        head.push(b',');
        let mut tail = canonical_json(&json!([
            unix_micros(e.occurred_at),
            e.server_id,
            e.grant_id,
            e.identity,
            e.session_id,
            e.method,
            e.tool_name,
            e.arguments,
            e.decision.as_str(),
            e.rule,
            e.message,
            e.policy_version,
            e.upstream_status,
            e.is_error,
            e.latency_us,
            e.client_addr.map(|a| a.to_string()),
            e.user_agent,
        ]));
        tail[0] = b',';
        CanonicalParts { head, tail }
    }

    pub(crate) fn at(&self, sequence: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 20 + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(sequence.to_string().as_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    /// `SHA-256(prev_hash || canonical)` at `sequence`, without building the bytes.
    fn link_hash(&self, prev_hash: &[u8], sequence: i64) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev_hash);
        h.update(&self.head);
        h.update(sequence.to_string().as_bytes());
        h.update(&self.tail);
        h.finalize().into()
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Chain {
    Audit,
    Admin,
}

impl Chain {
    fn as_str(self) -> &'static str {
        match self {
            Chain::Audit => "audit",
            Chain::Admin => "admin",
        }
    }
}

pub(crate) struct ChainHead {
    pub(crate) last_sequence: i64,
    pub(crate) last_hash: Vec<u8>,
}

/// Locks the organisation's chain head for the rest of the transaction, creating it on first use
/// (one statement: the no-op update of an existing head takes its row lock).
pub(crate) async fn lock_chain_head(tx: &mut OrgTx, chain: Chain) -> Result<ChainHead> {
    let org = tx.org().as_uuid();
    let row = sqlx::query!(
        r#"
        insert into chain_head (organisation_id, chain) values ($1, $2)
        on conflict (organisation_id, chain) do update set last_sequence = chain_head.last_sequence
        returning last_sequence, last_hash
        "#,
        org,
        chain.as_str(),
    )
    .fetch_one(tx.conn())
    .await?;
    Ok(ChainHead {
        last_sequence: row.last_sequence,
        last_hash: row.last_hash,
    })
}

pub(crate) async fn store_chain_head(
    tx: &mut OrgTx,
    chain: Chain,
    sequence: i64,
    hash: &[u8],
) -> Result<()> {
    let org = tx.org().as_uuid();
    sqlx::query!(
        r#"
        update chain_head set last_sequence = $3, last_hash = $4, updated_at = now()
        where organisation_id = $1 and chain = $2
        "#,
        org,
        chain.as_str(),
        sequence,
        hash,
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// What a batch insert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub inserted: u64,
    /// Events already stored (same id and time), skipped: the ingester may retry a whole batch.
    pub duplicates: u64,
}

impl Store {
    /// Stores a batch of events, idempotently on their (organisation, id, time), extending each
    /// organisation's chain, all in one transaction (one commit, so one WAL flush, per batch).
    /// Acknowledge the batch upstream only after this returns.
    ///
    /// A batch is new in the common case, so it is first stored without looking for stored copies;
    /// if the unique key refuses one (a retried batch), the transaction is rolled back and the batch
    /// stored again, skipping what is already there.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn insert_audit_batch(&self, events: &[NewAuditEvent]) -> Result<IngestReport> {
        // Everything but the chain's links is prepared before the transaction, outside the lock.
        let mut by_org: BTreeMap<OrgId, Vec<Prepared>> = BTreeMap::new();
        for e in events {
            let mut event = e.clone();
            event.occurred_at =
                truncate_to_micros(event.occurred_at.to_offset(time::UtcOffset::UTC));
            let canonical = CanonicalParts::of(&event);
            by_org
                .entry(event.organisation_id)
                .or_default()
                .push(Prepared { event, canonical });
        }
        if by_org.is_empty() {
            return Ok(IngestReport::default());
        }
        if let Some(report) = self.insert_batch_once(&by_org, false).await? {
            return Ok(report);
        }
        self.insert_batch_once(&by_org, true).await?.ok_or_else(|| {
            Error::Audit("an event stored concurrently despite the chain head's lock".into())
        })
    }

    /// One attempt at storing the batch; `None` when an event was already stored and
    /// `skip_stored` was off (nothing was committed).
    async fn insert_batch_once(
        &self,
        by_org: &BTreeMap<OrgId, Vec<Prepared>>,
        skip_stored: bool,
    ) -> Result<Option<IngestReport>> {
        let first = *by_org.keys().next().expect("a non-empty batch");
        let mut tx = self.begin(first).await?;
        let days = by_org
            .values()
            .flatten()
            .map(|p| p.event.occurred_at.date());
        let (first_day, last_day) =
            days.fold((Date::MAX, Date::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let span = (last_day - first_day).whole_days() + 1;
        if span > 400 {
            return Err(Error::Audit(format!(
                "a batch may span at most 400 days, this one spans {span}"
            )));
        }
        sqlx::query!(
            "select gatehouse_audit_partition_ensure($1, $2)",
            first_day,
            span as i32
        )
        .fetch_all(tx.conn())
        .await?;
        let mut report = IngestReport::default();
        // Organisations in a fixed order, so concurrent ingesters lock chain heads in the same order.
        for (org, events) in by_org {
            tx.rescope(*org).await?;
            match insert_org_batch(&mut tx, events, skip_stored).await? {
                Some(r) => {
                    report.inserted += r.inserted;
                    report.duplicates += r.duplicates;
                }
                None => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
        }
        tx.commit().await?;
        Ok(Some(report))
    }
}

/// The hour a UTC time falls in, as `date_trunc('hour', t, 'UTC')` gives it.
fn start_of_hour(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_time(time::Time::from_hms(t.hour(), 0, 0).expect("a valid hour"))
}

/// An event to store (its time normalised) with its canonical bytes but the sequence.
struct Prepared {
    event: NewAuditEvent,
    canonical: CanonicalParts,
}

/// Extends the transaction's organisation's chain with `events` (times already normalised).
/// With `skip_stored`, events already stored are left out first; without, `None` tells that one
/// was (the transaction is then aborted).
async fn insert_org_batch(
    tx: &mut OrgTx,
    events: &[Prepared],
    skip_stored: bool,
) -> Result<Option<IngestReport>> {
    let org = tx.org().as_uuid();
    let total = events.len() as u64;
    // Lock first: with the head held, no other writer can insert one of these events concurrently,
    // so "skip what is already stored" below is exact.
    let head = lock_chain_head(tx, Chain::Audit).await?;
    let mut kept: Vec<&Prepared> = events.iter().collect();
    if skip_stored {
        let ids: Vec<Uuid> = events
            .iter()
            .map(|p| p.event.audit_event_id.as_uuid())
            .collect();
        let times: Vec<OffsetDateTime> = events.iter().map(|p| p.event.occurred_at).collect();
        let mut seen: HashSet<(Uuid, OffsetDateTime)> = sqlx::query!(
            r#"
            select audit_event_id, occurred_at from audit_event
            where organisation_id = $1 and audit_event_id = any($2) and occurred_at = any($3)
            "#,
            org,
            &ids,
            &times,
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| (r.audit_event_id, r.occurred_at))
        .collect();
        kept.retain(|p| seen.insert((p.event.audit_event_id.as_uuid(), p.event.occurred_at)));
    }
    let inserted = kept.len() as u64;
    if kept.is_empty() {
        return Ok(Some(IngestReport {
            inserted: 0,
            duplicates: total,
        }));
    }

    let mut sequence = head.last_sequence;
    let mut prev = head.last_hash;
    let n = kept.len();
    let mut seqs = Vec::with_capacity(n);
    let mut prevs = Vec::with_capacity(n);
    let mut hashes = Vec::with_capacity(n);
    for p in &kept {
        sequence += 1;
        let hash = p.canonical.link_hash(&prev, sequence).to_vec();
        seqs.push(sequence);
        prevs.push(std::mem::replace(&mut prev, hash.clone()));
        hashes.push(hash);
    }
    let kept: Vec<&NewAuditEvent> = kept.iter().map(|p| &p.event).collect();
    let ids: Vec<Uuid> = kept.iter().map(|e| e.audit_event_id.as_uuid()).collect();
    let times: Vec<OffsetDateTime> = kept.iter().map(|e| e.occurred_at).collect();
    let servers: Vec<Uuid> = kept.iter().map(|e| e.server_id.as_uuid()).collect();
    let grants: Vec<Uuid> = kept.iter().map(|e| e.grant_id.as_uuid()).collect();
    let identities: Vec<&str> = kept.iter().map(|e| e.identity.as_str()).collect();
    let sessions: Vec<Option<&str>> = kept.iter().map(|e| e.session_id.as_deref()).collect();
    let methods: Vec<&str> = kept.iter().map(|e| e.method.as_str()).collect();
    let tools: Vec<Option<&str>> = kept.iter().map(|e| e.tool_name.as_deref()).collect();
    let arguments: Vec<&Value> = kept.iter().map(|e| &e.arguments).collect();
    let decisions: Vec<&str> = kept.iter().map(|e| e.decision.as_str()).collect();
    let rules: Vec<Option<&str>> = kept.iter().map(|e| e.rule.as_deref()).collect();
    let messages: Vec<Option<&str>> = kept.iter().map(|e| e.message.as_deref()).collect();
    let versions: Vec<Option<i32>> = kept.iter().map(|e| e.policy_version).collect();
    let statuses: Vec<Option<i32>> = kept.iter().map(|e| e.upstream_status).collect();
    let is_errors: Vec<Option<bool>> = kept.iter().map(|e| e.is_error).collect();
    let latencies: Vec<Option<i64>> = kept.iter().map(|e| e.latency_us).collect();
    let addrs: Vec<Option<String>> = kept
        .iter()
        .map(|e| e.client_addr.map(|a| a.to_string()))
        .collect();
    let agents: Vec<Option<&str>> = kept.iter().map(|e| e.user_agent.as_deref()).collect();

    // Both hourly rollups are summed here, so the statement upserts one row per key instead of
    // aggregating the events again.
    let mut counts: BTreeMap<(OffsetDateTime, Uuid, &str), i64> = BTreeMap::new();
    let mut facets: BTreeMap<(OffsetDateTime, Uuid, Uuid, &str, &str, &str), i64> = BTreeMap::new();
    for e in &kept {
        let hour = start_of_hour(e.occurred_at);
        let (server, decision) = (e.server_id.as_uuid(), e.decision.as_str());
        *counts.entry((hour, server, decision)).or_default() += 1;
        let tool = e.tool_name.as_deref().unwrap_or("");
        *facets
            .entry((
                hour,
                server,
                e.grant_id.as_uuid(),
                e.identity.as_str(),
                tool,
                decision,
            ))
            .or_default() += 1;
    }
    let count_hours: Vec<OffsetDateTime> = counts.keys().map(|k| k.0).collect();
    let count_servers: Vec<Uuid> = counts.keys().map(|k| k.1).collect();
    let count_decisions: Vec<&str> = counts.keys().map(|k| k.2).collect();
    let count_ns: Vec<i64> = counts.values().copied().collect();
    let facet_hours: Vec<OffsetDateTime> = facets.keys().map(|k| k.0).collect();
    let facet_servers: Vec<Uuid> = facets.keys().map(|k| k.1).collect();
    let facet_grants: Vec<Uuid> = facets.keys().map(|k| k.2).collect();
    let facet_identities: Vec<&str> = facets.keys().map(|k| k.3).collect();
    let facet_tools: Vec<&str> = facets.keys().map(|k| k.4).collect();
    let facet_decisions: Vec<&str> = facets.keys().map(|k| k.5).collect();
    let facet_ns: Vec<i64> = facets.values().copied().collect();

    // One statement: the events, both hourly rollups and the chain's new head.
    let stored = sqlx::query!(
        r#"
        with events as (
            insert into audit_event (
                audit_event_id, organisation_id, occurred_at, sequence, prev_hash, hash, server_id,
                access_grant_id, identity, session_id, method, tool_name, arguments, decision, rule,
                message, policy_version, upstream_status, is_error, latency_us, client_addr, user_agent)
            select e.id, $1, e.occurred_at, e.seq, e.prev_hash, e.hash, e.server_id, e.grant_id,
                   e.identity, e.session_id, e.method, e.tool_name, e.arguments,
                   e.decision::audit_decision, e.rule, e.message, e.policy_version, e.upstream_status,
                   e.is_error, e.latency_us, e.client_addr::inet, e.user_agent
            from unnest($2::uuid[], $3::timestamptz[], $4::int8[], $5::bytea[], $6::bytea[],
                        $7::uuid[], $8::uuid[], $9::text[], $10::text[], $11::text[], $12::text[],
                        $13::jsonb[], $14::text[], $15::text[], $16::text[], $17::int4[], $18::int4[],
                        $19::bool[], $20::int8[], $21::text[], $22::text[])
                 as e(id, occurred_at, seq, prev_hash, hash, server_id, grant_id, identity,
                      session_id, method, tool_name, arguments, decision, rule, message,
                      policy_version, upstream_status, is_error, latency_us, client_addr, user_agent)
        ),
        hour_counts as (
            insert into audit_hour_count (organisation_id, hour, server_id, decision, event_count)
            select $1::uuid, x.h, x.s, x.d::audit_decision, x.n
            from unnest($25::timestamptz[], $26::uuid[], $27::text[], $28::int8[]) as x(h, s, d, n)
            on conflict (organisation_id, hour, server_id, decision)
            do update set event_count = audit_hour_count.event_count + excluded.event_count
        ),
        facets as (
            insert into audit_hour_facet (organisation_id, hour, server_id, access_grant_id,
                                          identity, tool_name, decision, event_count)
            select $1::uuid, x.h, x.s, x.g, x.i, x.tool, x.d::audit_decision, x.n
            from unnest($29::timestamptz[], $30::uuid[], $31::uuid[], $32::text[], $33::text[],
                        $34::text[], $35::int8[]) as x(h, s, g, i, tool, d, n)
            on conflict (organisation_id, hour, server_id, access_grant_id, identity, tool_name,
                         decision)
            do update set event_count = audit_hour_facet.event_count + excluded.event_count
        )
        update chain_head set last_sequence = $23, last_hash = $24, updated_at = now()
        where organisation_id = $1 and chain = 'audit'
        "#,
        org,
        &ids,
        &times,
        &seqs,
        &prevs,
        &hashes,
        &servers,
        &grants,
        &identities as &[&str],
        &sessions as &[Option<&str>],
        &methods as &[&str],
        &tools as &[Option<&str>],
        &arguments as &[&Value],
        &decisions as &[&str],
        &rules as &[Option<&str>],
        &messages as &[Option<&str>],
        &versions as &[Option<i32>],
        &statuses as &[Option<i32>],
        &is_errors as &[Option<bool>],
        &latencies as &[Option<i64>],
        &addrs as &[Option<String>],
        &agents as &[Option<&str>],
        sequence,
        &prev,
        &count_hours,
        &count_servers,
        &count_decisions as &[&str],
        &count_ns,
        &facet_hours,
        &facet_servers,
        &facet_grants,
        &facet_identities as &[&str],
        &facet_tools as &[&str],
        &facet_decisions as &[&str],
        &facet_ns,
    )
    .execute(tx.conn())
    .await;
    match stored {
        Ok(_) => Ok(Some(IngestReport {
            inserted,
            duplicates: total - inserted,
        })),
        Err(e)
            if !skip_stored
                && e.as_database_error()
                    .is_some_and(|d| d.is_unique_violation()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The viewer's filters; every field narrows the result, `None` means "any".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Inclusive lower bound.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<OffsetDateTime>,
    /// Exclusive upper bound.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub to: Option<OffsetDateTime>,
    pub server: Option<ServerId>,
    pub grant: Option<GrantId>,
    pub identity: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<AuditDecision>,
    /// Case-insensitive substring of the event's message.
    pub text: Option<String>,
}

/// Where a page ends: the (time, id) of its last row. Opaque to clients as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub occurred_at: OffsetDateTime,
    pub audit_event_id: Uuid,
}

impl AuditCursor {
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            unix_micros(self.occurred_at),
            self.audit_event_id.simple()
        )
    }

    pub fn decode(s: &str) -> Result<Self> {
        let bad = || Error::invalid("cursor", "not a cursor from a previous page");
        let (micros, id) = s.split_once('_').ok_or_else(bad)?;
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        let occurred_at =
            OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| bad())?;
        let audit_event_id = Uuid::parse_str(id).map_err(|_| bad())?;
        Ok(Self {
            occurred_at,
            audit_event_id,
        })
    }
}

/// One page of events, newest first, and the cursor for the next (older) page if there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<AuditCursor>,
}

fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Forces a plan made for the actual filter values: a cached generic plan of the catch-all
/// `($n is null or col = $n)` query would ignore the index that fits the filters in use.
async fn force_custom_plans(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("set local plan_cache_mode = force_custom_plan")
        .execute(conn)
        .await?;
    Ok(())
}

/// An `AuditEvent` from a row of any query that selects every event column.
macro_rules! stored_event {
    ($r:expr, $org:expr) => {{
        let r = $r;
        AuditEvent {
            event: NewAuditEvent {
                audit_event_id: AuditEventId::from_uuid(r.audit_event_id),
                organisation_id: $org,
                occurred_at: r.occurred_at,
                server_id: ServerId::from_uuid(r.server_id),
                grant_id: GrantId::from_uuid(r.access_grant_id),
                identity: r.identity,
                session_id: r.session_id,
                method: r.method,
                tool_name: r.tool_name,
                arguments: r.arguments,
                decision: AuditDecision::parse(&r.decision)?,
                rule: r.rule,
                message: r.message,
                policy_version: r.policy_version,
                upstream_status: r.upstream_status,
                is_error: r.is_error,
                latency_us: r.latency_us,
                client_addr: r.client_addr.and_then(|a| a.parse().ok()),
                user_agent: r.user_agent,
            },
            sequence: r.sequence,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }};
}
pub(crate) use stored_event;

/// A page of the organisation's audit log, newest first, by keyset (never by offset).
#[tracing::instrument(skip(tx))]
pub async fn audit_page(
    tx: &mut OrgTx,
    filter: &AuditFilter,
    cursor: Option<AuditCursor>,
    limit: i64,
) -> Result<AuditPage> {
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let org = tx.org();
    // First the keys of the page, from the search function (see its comment in the migrations:
    // it lets the indexes serve every filter, free text included), then the rows by their keys,
    // under row-level security like every other read.
    let keys = sqlx::query!(
        r#"
        select audit_event_id as "audit_event_id!", occurred_at as "occurred_at!"
        from gatehouse_audit_search($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        "#,
        filter.from,
        filter.to,
        filter.server.map(|s| s.as_uuid()),
        filter.grant.map(|g| g.as_uuid()),
        filter.identity.as_deref(),
        filter.tool.as_deref(),
        filter.decision.map(AuditDecision::as_str),
        filter.text.as_deref().map(like_pattern),
        cursor.map(|c| c.occurred_at),
        cursor.map(|c| c.audit_event_id),
        limit as i32,
    )
    .fetch_all(tx.conn())
    .await?;
    let ids: Vec<Uuid> = keys.iter().map(|k| k.audit_event_id).collect();
    let times: Vec<OffsetDateTime> = keys.iter().map(|k| k.occurred_at).collect();
    let (Some(oldest), Some(newest)) = (times.iter().min(), times.iter().max()) else {
        return Ok(AuditPage {
            events: Vec::new(),
            next: None,
        });
    };
    // Each key is one exact probe of the key index; custom plans so that the page's time span
    // prunes the plan to the partitions it covers.
    force_custom_plans(tx.conn()).await?;
    let rows = sqlx::query!(
        r#"
        select e.audit_event_id, e.occurred_at, e.sequence, e.prev_hash, e.hash, e.server_id,
               e.access_grant_id, e.identity, e.session_id, e.method, e.tool_name, e.arguments,
               e.decision::text as "decision!", e.rule, e.message, e.policy_version,
               e.upstream_status, e.is_error, e.latency_us, host(e.client_addr) as client_addr,
               e.user_agent
        from unnest($2::uuid[], $3::timestamptz[]) as k(id, occurred_at)
        join audit_event e on e.occurred_at = k.occurred_at and e.audit_event_id = k.id
        where e.organisation_id = $1 and e.occurred_at >= $4 and e.occurred_at <= $5
        order by e.occurred_at desc, e.audit_event_id desc
        "#,
        org.as_uuid(),
        &ids,
        &times,
        oldest,
        newest,
    )
    .fetch_all(tx.conn())
    .await?;
    let events = rows
        .into_iter()
        .map(|r| Ok(stored_event!(r, org)))
        .collect::<Result<Vec<_>>>()?;
    let next = (events.len() as i64 == limit).then(|| {
        let last = events.last().expect("a full page has a last row");
        AuditCursor {
            occurred_at: last.event.occurred_at,
            audit_event_id: last.event.audit_event_id.as_uuid(),
        }
    });
    Ok(AuditPage { events, next })
}

/// One event by its id. With the time the gateway stamped (together the primary key) the lookup
/// reads one partition; without it, one index probe per partition.
#[tracing::instrument(skip(tx))]
pub async fn audit_event(
    tx: &mut OrgTx,
    id: AuditEventId,
    occurred_at: Option<OffsetDateTime>,
) -> Result<AuditEvent> {
    let org = tx.org();
    force_custom_plans(tx.conn()).await?;
    let row = sqlx::query!(
        r#"
        select audit_event_id, occurred_at, sequence, prev_hash, hash, server_id, access_grant_id,
               identity, session_id, method, tool_name, arguments, decision::text as "decision!",
               rule, message, policy_version, upstream_status, is_error, latency_us,
               host(client_addr) as client_addr, user_agent
        from audit_event
        where organisation_id = $1 and audit_event_id = $2
          and ($3::timestamptz is null or occurred_at = $3)
        "#,
        org.as_uuid(),
        id.as_uuid(),
        occurred_at,
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(Error::NotFound {
        what: "audit event",
    })?;
    Ok(stored_event!(row, org))
}

/// Events matching `filter` stored after chain position `after_sequence`, in the order they were
/// stored (at most `limit`): the viewer's live tail. Sequences follow ingestion, so an event that
/// reaches the store late (with an older time) is still seen once.
#[tracing::instrument(skip(tx))]
pub async fn audit_events_after_sequence(
    tx: &mut OrgTx,
    filter: &AuditFilter,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let org = tx.org();
    force_custom_plans(tx.conn()).await?;
    let rows = sqlx::query!(
        r#"
        select audit_event_id, occurred_at, sequence, prev_hash, hash, server_id, access_grant_id,
               identity, session_id, method, tool_name, arguments, decision::text as "decision!",
               rule, message, policy_version, upstream_status, is_error, latency_us,
               host(client_addr) as client_addr, user_agent
        from audit_event
        where organisation_id = $1 and sequence > $2
          and ($3::timestamptz is null or occurred_at >= $3)
          and ($4::timestamptz is null or occurred_at < $4)
          and ($5::uuid is null or server_id = $5)
          and ($6::uuid is null or access_grant_id = $6)
          and ($7::text is null or identity = $7)
          and ($8::text is null or tool_name = $8)
          and ($9::text is null or decision = $9::audit_decision)
          and ($10::text is null or message ilike $10)
        order by sequence
        limit $11
        "#,
        org.as_uuid(),
        after_sequence,
        filter.from,
        filter.to,
        filter.server.map(|s| s.as_uuid()),
        filter.grant.map(|g| g.as_uuid()),
        filter.identity.as_deref(),
        filter.tool.as_deref(),
        filter.decision.map(AuditDecision::as_str),
        filter.text.as_deref().map(like_pattern),
        limit,
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| Ok(stored_event!(r, org)))
        .collect()
}

/// Events per hour and decision, for the viewer's chart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourlyCount {
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    pub decision: AuditDecision,
    pub count: i64,
}

/// Counts per hour (UTC) and decision within `[from, to)` matching `filter`. Without a text filter
/// the counts come from the hourly rollups (whole hours: the hour `from` falls in counts entirely):
/// `audit_hour_count` for time, server and decision, `audit_hour_facet` when grant, identity or
/// tool is filtered too. A text filter counts the matching events themselves.
#[tracing::instrument(skip(tx))]
pub async fn audit_hourly_counts(
    tx: &mut OrgTx,
    from: OffsetDateTime,
    to: OffsetDateTime,
    filter: &AuditFilter,
) -> Result<Vec<HourlyCount>> {
    let org = tx.org().as_uuid();
    force_custom_plans(tx.conn()).await?;
    let counts_suffice = filter.grant.is_none()
        && filter.identity.is_none()
        && filter.tool.is_none()
        && filter.text.is_none();
    let rows: Vec<(OffsetDateTime, String, i64)> = if counts_suffice {
        sqlx::query!(
            r#"
            select hour, decision::text as "decision!", sum(event_count)::int8 as "count!"
            from audit_hour_count
            where organisation_id = $1
              and hour >= date_trunc('hour', $2::timestamptz, 'UTC') and hour < $3
              and ($4::uuid is null or server_id = $4)
              and ($5::text is null or decision = $5::audit_decision)
            group by hour, decision
            order by hour, decision
            "#,
            org,
            from,
            to,
            filter.server.map(|s| s.as_uuid()),
            filter.decision.map(AuditDecision::as_str),
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| (r.hour, r.decision, r.count))
        .collect()
    } else if filter.text.is_none() {
        sqlx::query!(
            r#"
            select hour, decision::text as "decision!", sum(event_count)::int8 as "count!"
            from audit_hour_facet
            where organisation_id = $1
              and hour >= date_trunc('hour', $2::timestamptz, 'UTC') and hour < $3
              and ($4::uuid is null or server_id = $4)
              and ($5::uuid is null or access_grant_id = $5)
              and ($6::text is null or identity = $6)
              and ($7::text is null or tool_name = $7)
              and ($8::text is null or decision = $8::audit_decision)
            group by hour, decision
            order by hour, decision
            "#,
            org,
            from,
            to,
            filter.server.map(|s| s.as_uuid()),
            filter.grant.map(|g| g.as_uuid()),
            filter.identity.as_deref(),
            filter.tool.as_deref(),
            filter.decision.map(AuditDecision::as_str),
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| (r.hour, r.decision, r.count))
        .collect()
    } else {
        sqlx::query!(
            r#"
            select date_trunc('hour', occurred_at, 'UTC') as "hour!", decision::text as "decision!",
                   count(*) as "count!"
            from audit_event
            where organisation_id = $1
              and occurred_at >= $2 and occurred_at < $3
              and ($4::uuid is null or server_id = $4)
              and ($5::uuid is null or access_grant_id = $5)
              and ($6::text is null or identity = $6)
              and ($7::text is null or tool_name = $7)
              and ($8::text is null or decision = $8::audit_decision)
              and ($9::text is null or message ilike $9)
            group by 1, 2
            order by 1, 2
            "#,
            org,
            from,
            to,
            filter.server.map(|s| s.as_uuid()),
            filter.grant.map(|g| g.as_uuid()),
            filter.identity.as_deref(),
            filter.tool.as_deref(),
            filter.decision.map(AuditDecision::as_str),
            filter.text.as_deref().map(like_pattern),
        )
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| (r.hour, r.decision, r.count))
        .collect()
    };
    rows.into_iter()
        .map(|(hour, decision, count)| {
            Ok(HourlyCount {
                hour,
                decision: AuditDecision::parse(&decision)?,
                count,
            })
        })
        .collect()
}

/// The most rows one export page returns.
pub const MAX_EXPORT_PAGE: i64 = 10_000;

/// One page of an export: events matching `filter`, oldest first, strictly after `after` in
/// (time, id) order. Callers page by passing the last row's (time, id) back, so an export of
/// any size holds one page in memory at a time.
#[tracing::instrument(skip(tx))]
pub async fn audit_export_page(
    tx: &mut OrgTx,
    filter: &AuditFilter,
    after: Option<AuditCursor>,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let limit = limit.clamp(1, MAX_EXPORT_PAGE);
    let org = tx.org();
    force_custom_plans(tx.conn()).await?;
    let rows = sqlx::query!(
        r#"
        select audit_event_id, occurred_at, sequence, prev_hash, hash, server_id, access_grant_id,
               identity, session_id, method, tool_name, arguments, decision::text as "decision!",
               rule, message, policy_version, upstream_status, is_error, latency_us,
               host(client_addr) as client_addr, user_agent
        from audit_event
        where organisation_id = $1
          and ($2::timestamptz is null or occurred_at >= $2)
          and ($3::timestamptz is null or occurred_at < $3)
          and ($4::uuid is null or server_id = $4)
          and ($5::uuid is null or access_grant_id = $5)
          and ($6::text is null or identity = $6)
          and ($7::text is null or tool_name = $7)
          and ($8::text is null or decision = $8::audit_decision)
          and ($9::text is null or message ilike $9)
          and ($10::timestamptz is null or occurred_at >= $10)
          and ($10::timestamptz is null or (occurred_at, audit_event_id) > ($10, $11::uuid))
        order by occurred_at, audit_event_id
        limit $12
        "#,
        org.as_uuid(),
        filter.from,
        filter.to,
        filter.server.map(|s| s.as_uuid()),
        filter.grant.map(|g| g.as_uuid()),
        filter.identity.as_deref(),
        filter.tool.as_deref(),
        filter.decision.map(AuditDecision::as_str),
        filter.text.as_deref().map(like_pattern),
        after.map(|c| c.occurred_at),
        after.map(|c| c.audit_event_id),
        limit,
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| Ok(stored_event!(r, org)))
        .collect()
}

/// The organisation's audit retention in whole days; `None` keeps everything.
#[tracing::instrument(skip(tx))]
pub async fn audit_retention(tx: &mut OrgTx) -> Result<Option<i32>> {
    let org = tx.org().as_uuid();
    let row = sqlx::query!(
        "select audit_retention_days from organisation where organisation_id = $1",
        org
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(Error::NotFound {
        what: "organisation",
    })?;
    Ok(row.audit_retention_days)
}

/// Sets the organisation's audit retention (`None` keeps everything), recorded in the admin log.
#[tracing::instrument(skip(tx))]
pub async fn set_audit_retention(
    tx: &mut OrgTx,
    actor: crate::Actor,
    days: Option<i32>,
) -> Result<()> {
    if let Some(d) = days
        && !(1..=36_500).contains(&d)
    {
        return Err(Error::invalid(
            "retention",
            "must be between 1 and 36500 days",
        ));
    }
    let org = tx.org().as_uuid();
    sqlx::query!(
        "update organisation set audit_retention_days = $2, updated_at = now() where organisation_id = $1",
        org,
        days
    )
    .execute(tx.conn())
    .await?;
    crate::admin::record_admin_event(
        tx,
        actor,
        "organisation.audit_retention",
        Some(org),
        json!({ "audit_retention_days": days }),
    )
    .await
}

/// Where retention cut one organisation's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionCut {
    pub organisation_id: OrgId,
    /// Events removed.
    pub removed: i64,
    /// The first sequence still stored; verification anchors here.
    pub first_sequence: i64,
}

/// What a retention run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub cuts: Vec<RetentionCut>,
    /// Daily partitions left empty and dropped.
    pub dropped_partitions: Vec<String>,
}

/// Applies every organisation's retention as of `now`: cuts each chain's prefix older than the
/// organisation's retention (recording where, for verification), then drops the past partitions
/// left empty. Needs the table owner's rights, not the application role's.
#[tracing::instrument(skip(pool))]
pub async fn apply_audit_retention(pool: &PgPool, now: OffsetDateTime) -> Result<RetentionReport> {
    let rows = sqlx::query!(
        r#"
        select organisation_id, removed as "removed!", first_sequence,
               dropped_partitions as "dropped_partitions!"
        from gatehouse_audit_retention_apply($1)
        "#,
        now
    )
    .fetch_all(pool)
    .await?;
    let mut report = RetentionReport::default();
    for r in rows {
        match (r.organisation_id, r.first_sequence) {
            (Some(org), Some(first_sequence)) => report.cuts.push(RetentionCut {
                organisation_id: OrgId::from_uuid(org),
                removed: r.removed,
                first_sequence,
            }),
            _ => report.dropped_partitions.extend(r.dropped_partitions),
        }
    }
    Ok(report)
}

/// Creates the daily partitions from yesterday to [`PARTITION_DAYS_AHEAD`] days ahead that are
/// missing; returns the names created. Run by `migrate` and periodically by the ingester.
pub async fn ensure_partitions_ahead(pool: &PgPool) -> Result<Vec<String>> {
    let yesterday = OffsetDateTime::now_utc()
        .date()
        .previous_day()
        .expect("not the first day of time");
    ensure_partitions(pool, yesterday, PARTITION_DAYS_AHEAD + 2).await
}

/// Creates the missing daily partitions for `days` days from `from`; returns the names created.
pub async fn ensure_partitions(pool: &PgPool, from: Date, days: i32) -> Result<Vec<String>> {
    let rows = sqlx::query!(
        r#"select gatehouse_audit_partition_ensure($1, $2) as "name!""#,
        from,
        days
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Retention: drops every daily partition wholly before `before` (and its hourly counts);
/// returns the names dropped. Needs the table owner's rights, not the application role's.
pub async fn drop_partitions_before(pool: &PgPool, before: Date) -> Result<Vec<String>> {
    let rows = sqlx::query!(
        r#"select gatehouse_audit_partition_drop_before($1) as "name!""#,
        before
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the chain has always hashed: the whole array serialised at once.
    fn canonical_as_one_array(e: &NewAuditEvent, sequence: i64) -> Vec<u8> {
        canonical_json(&json!([
            "gatehouse-audit-v1",
            e.audit_event_id,
            e.organisation_id,
            sequence,
            unix_micros(e.occurred_at),
            e.server_id,
            e.grant_id,
            e.identity,
            e.session_id,
            e.method,
            e.tool_name,
            e.arguments,
            e.decision.as_str(),
            e.rule,
            e.message,
            e.policy_version,
            e.upstream_status,
            e.is_error,
            e.latency_us,
            e.client_addr.map(|a| a.to_string()),
            e.user_agent,
        ]))
    }

    #[test]
    fn canonical_parts_around_the_sequence_are_the_whole_array() {
        let mut e = NewAuditEvent {
            audit_event_id: AuditEventId::new(),
            organisation_id: OrgId::new(),
            occurred_at: OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000)
                .unwrap(),
            server_id: ServerId::new(),
            grant_id: GrantId::new(),
            identity: "noc \"agent\"".into(),
            session_id: None,
            method: "tools/call".into(),
            tool_name: Some("reboot_device".into()),
            arguments: json!({"z": [1, {"b": null, "a": "ü"}], "device_id": "00236A-1"}),
            decision: AuditDecision::Deny,
            rule: Some("/tools/reboot_device".into()),
            message: Some("no\nreboots".into()),
            policy_version: Some(3),
            upstream_status: None,
            is_error: None,
            latency_us: Some(-1),
            client_addr: Some("2001:db8::1".parse().unwrap()),
            user_agent: None,
        };
        for sequence in [1, 9, 10, 1_234_567, i64::MAX] {
            let parts = CanonicalParts::of(&e);
            let whole = canonical_as_one_array(&e, sequence);
            assert_eq!(canonical_audit_event(&e, sequence), whole);
            assert_eq!(parts.at(sequence), whole);
            assert_eq!(
                parts.link_hash(&GENESIS_HASH, sequence),
                link_hash(&GENESIS_HASH, &whole)
            );
            e.session_id = Some("s".into());
            e.client_addr = None;
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, {"d": 0, "c": 1}], "x": null}});
        assert_eq!(
            canonical_json(&a),
            br#"{"a":{"x":null,"y":[1,{"c":1,"d":0}]},"b":1}"#.to_vec()
        );
    }

    #[test]
    fn cursor_round_trips() {
        let c = AuditCursor {
            occurred_at: truncate_to_micros(OffsetDateTime::now_utc()),
            audit_event_id: Uuid::new_v4(),
        };
        assert_eq!(AuditCursor::decode(&c.encode()).unwrap(), c);
        assert!(AuditCursor::decode("nonsense").is_err());
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}

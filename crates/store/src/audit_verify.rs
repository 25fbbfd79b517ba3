//! Verifying an organisation's audit hash chain: every stored event's hash is recomputed from its
//! fields and the hash before it, from where the chain starts (the genesis, or where retention cut
//! it) to its recorded head.
//!
//! Two ways, one walk along the chain ([`Walk`]), reading a bounded chunk of rows at a time:
//! - [`verify_audit_chain`] walks the whole chain in one transaction (`gatehouse audit verify`).
//! - The background verification (`audit_verification`, one row per organisation) walks it in
//!   chunks, each chunk its own short transaction that records how far the run got: the admin
//!   app's verify page starts a run ([`start_audit_verification`]), a task advances it
//!   ([`continue_audit_verification`]) and the page only reads the row ([`audit_verification`]).
//!   Every run starts again from the first stored event, so an event changed after one run
//!   checked it is caught by the next; nothing trusts an earlier run's result.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::{AuditDecision, AuditEvent, GENESIS_HASH, NewAuditEvent, stored_event};
use crate::audit::{canonical_audit_event, link_hash};
use crate::{AuditEventId, Error, GrantId, OrgTx, Result, ServerId};

/// The outcome of recomputing an organisation's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Events checked.
    pub checked: u64,
    /// The sequence the stored chain starts at: above 1 when retention dropped older partitions.
    pub first_sequence: Option<i64>,
    /// The first problem found, if any; verification stops there.
    pub problem: Option<ChainProblem>,
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The event's fields no longer give its stored hash: it was altered.
    Altered { sequence: i64, audit_event_id: Uuid },
    /// The event does not link to its predecessor: something was inserted or re-chained here.
    Inserted { sequence: i64, audit_event_id: Uuid },
    /// Sequence numbers `from..=to` are missing: events were removed.
    Removed { from: i64, to: i64 },
}

/// The rows one chunk of a walk reads.
pub const VERIFY_CHUNK: i64 = 5000;

/// Where a walk along the chain stands.
#[derive(Debug, Clone)]
struct Walk {
    /// The last sequence read (0 before the first row).
    read_through: i64,
    /// The sequence and previous hash the next event must have.
    next_sequence: i64,
    prev_hash: Vec<u8>,
    checked: u64,
    first_sequence: Option<i64>,
}

/// Where the stored chain must start: the genesis, or where retention cut it.
async fn chain_start(tx: &mut OrgTx) -> Result<(i64, Vec<u8>)> {
    let anchor = sqlx::query!(
        "select first_sequence, prev_hash from audit_chain_anchor where organisation_id = $1",
        tx.org().as_uuid()
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(match anchor {
        Some(a) => (a.first_sequence, a.prev_hash),
        None => (1, GENESIS_HASH.to_vec()),
    })
}

async fn chain_head(tx: &mut OrgTx) -> Result<i64> {
    Ok(sqlx::query!(
        "select last_sequence from chain_head where organisation_id = $1 and chain = 'audit'",
        tx.org().as_uuid()
    )
    .fetch_optional(tx.conn())
    .await?
    .map_or(0, |r| r.last_sequence))
}

impl Walk {
    async fn start(tx: &mut OrgTx) -> Result<Walk> {
        let (next_sequence, prev_hash) = chain_start(tx).await?;
        Ok(Walk {
            read_through: 0,
            next_sequence,
            prev_hash,
            checked: 0,
            first_sequence: None,
        })
    }

    /// Checks one event read in sequence order.
    fn check(&mut self, stored: AuditEvent) -> Option<ChainProblem> {
        let sequence = stored.sequence;
        let audit_event_id = stored.event.audit_event_id.as_uuid();
        self.read_through = sequence;
        self.first_sequence.get_or_insert(sequence);
        if sequence > self.next_sequence {
            return Some(ChainProblem::Removed {
                from: self.next_sequence,
                to: sequence - 1,
            });
        }
        if sequence < self.next_sequence || self.prev_hash != stored.prev_hash {
            return Some(ChainProblem::Inserted {
                sequence,
                audit_event_id,
            });
        }
        if link_hash(
            &stored.prev_hash,
            &canonical_audit_event(&stored.event, sequence),
        ) != stored.hash[..]
        {
            return Some(ChainProblem::Altered {
                sequence,
                audit_event_id,
            });
        }
        self.checked += 1;
        self.next_sequence = sequence + 1;
        self.prev_hash = stored.hash;
        None
    }

    /// Reads and checks at most `limit` events after the last one read (and at most up to
    /// `through`). Returns how many rows were read and the first problem among them.
    async fn advance(
        &mut self,
        tx: &mut OrgTx,
        limit: i64,
        through: Option<i64>,
    ) -> Result<(usize, Option<ChainProblem>)> {
        let org = tx.org();
        let rows = sqlx::query!(
            r#"
            select audit_event_id, occurred_at, sequence, prev_hash, hash, server_id, access_grant_id,
                   identity, session_id, method, tool_name, arguments, decision::text as "decision!",
                   rule, message, policy_version, upstream_status, is_error, latency_us,
                   host(client_addr) as client_addr, user_agent
            from audit_event
            where organisation_id = $1 and sequence > $2
              and ($3::bigint is null or sequence <= $3)
            order by sequence
            limit $4
            "#,
            org.as_uuid(),
            self.read_through,
            through,
            limit,
        )
        .fetch_all(tx.conn())
        .await?;
        let read = rows.len();
        for r in rows {
            let stored = stored_event!(r, org);
            if let Some(problem) = self.check(stored) {
                return Ok((read, Some(problem)));
            }
        }
        Ok((read, None))
    }

    /// After the last event: the chain must reach `head`, else its tail was removed.
    fn tail(&self, head: i64) -> Option<ChainProblem> {
        (head >= self.next_sequence).then_some(ChainProblem::Removed {
            from: self.next_sequence,
            to: head,
        })
    }

    fn report(&self, problem: Option<ChainProblem>) -> ChainReport {
        ChainReport {
            checked: self.checked,
            first_sequence: self.first_sequence,
            problem,
        }
    }
}

/// Recomputes the organisation's audit chain from its oldest stored event and reports the first
/// event that was altered, inserted or removed (including removals at the end, against the head).
/// Holds one chunk of rows in memory at a time.
#[tracing::instrument(skip(tx))]
pub async fn verify_audit_chain(tx: &mut OrgTx) -> Result<ChainReport> {
    let head = chain_head(tx).await?;
    let mut walk = Walk::start(tx).await?;
    loop {
        let (read, problem) = walk.advance(tx, VERIFY_CHUNK, None).await?;
        if problem.is_some() {
            return Ok(walk.report(problem));
        }
        if read == 0 {
            break;
        }
    }
    Ok(walk.report(walk.tail(head)))
}

/// How a finished verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// Every event up to the target checks out.
    Intact,
    /// The chain breaks: see the problem.
    Broken,
    /// There was nothing to verify.
    Empty,
}

impl VerificationOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Intact => "intact",
            Self::Broken => "broken",
            Self::Empty => "empty",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        [Self::Intact, Self::Broken, Self::Empty]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| Error::invalid("outcome", format!("unknown outcome `{s}`")))
    }
}

/// The latest (or running) background verification of an organisation's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub run_id: Uuid,
    pub started_at: OffsetDateTime,
    /// When a chunk last recorded progress; a running verification whose heartbeat is older than
    /// [`VERIFICATION_STALE_SECS`] was interrupted.
    pub heartbeat_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// The chain's head when the run started: it checks every event up to this one.
    pub target_sequence: i64,
    /// The last sequence read so far.
    pub read_through: i64,
    pub checked: u64,
    pub first_sequence: Option<i64>,
    /// `None` while running.
    pub outcome: Option<VerificationOutcome>,
    pub problem: Option<ChainProblem>,
}

impl Verification {
    /// Still running and recording progress (not finished, heartbeat recent as of `now`).
    pub fn is_running(&self, now: OffsetDateTime) -> bool {
        self.finished_at.is_none()
            && now - self.heartbeat_at < time::Duration::seconds(VERIFICATION_STALE_SECS)
    }

    /// The report, once finished.
    pub fn report(&self) -> Option<ChainReport> {
        self.finished_at.map(|_| ChainReport {
            checked: self.checked,
            first_sequence: self.first_sequence,
            problem: self.problem.clone(),
        })
    }
}

/// How long a running verification may go without recording progress before another may
/// replace it (one chunk takes well under a second).
pub const VERIFICATION_STALE_SECS: i64 = 30;

/// What starting a verification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub run_id: Uuid,
    /// False when a run was already going (its id is returned; nothing new was started).
    pub new: bool,
}

/// The organisation's latest verification, if one was ever started. One row read: this is what
/// the verify page shows, whatever the chain's length.
#[tracing::instrument(skip(tx))]
pub async fn audit_verification(tx: &mut OrgTx) -> Result<Option<Verification>> {
    let row = sqlx::query!(
        r#"
        select run_id, started_at, heartbeat_at, finished_at, target_sequence, read_through,
               checked, first_sequence, outcome, problem
        from audit_verification where organisation_id = $1
        "#,
        tx.org().as_uuid()
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Verification {
        run_id: r.run_id,
        started_at: r.started_at,
        heartbeat_at: r.heartbeat_at,
        finished_at: r.finished_at,
        target_sequence: r.target_sequence,
        read_through: r.read_through,
        checked: u64::try_from(r.checked).unwrap_or(0),
        first_sequence: r.first_sequence,
        outcome: r
            .outcome
            .as_deref()
            .map(VerificationOutcome::parse)
            .transpose()?,
        problem: r
            .problem
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Audit(format!("stored verification problem: {e}")))?,
    }))
}

/// Starts a verification of the whole chain up to its current head, unless one is running (then
/// its id is returned). A run that stopped recording progress is replaced.
#[tracing::instrument(skip(tx))]
pub async fn start_audit_verification(tx: &mut OrgTx) -> Result<Started> {
    let org = tx.org();
    let head = chain_head(tx).await?;
    let walk = Walk::start(tx).await?;
    let run_id = Uuid::new_v4();
    let started = sqlx::query_scalar!(
        r#"
        insert into audit_verification as v (organisation_id, run_id, started_at, heartbeat_at,
            target_sequence, read_through, next_sequence, prev_hash, checked)
        values ($1, $2, now(), now(), $3, 0, $4, $5, 0)
        on conflict (organisation_id) do update set
            run_id = excluded.run_id, started_at = excluded.started_at,
            heartbeat_at = excluded.heartbeat_at, finished_at = null,
            target_sequence = excluded.target_sequence, read_through = 0,
            next_sequence = excluded.next_sequence, prev_hash = excluded.prev_hash, checked = 0,
            first_sequence = null, outcome = null, problem = null
        where v.finished_at is not null or v.heartbeat_at < now() - make_interval(secs => $6)
        returning run_id
        "#,
        org.as_uuid(),
        run_id,
        head,
        walk.next_sequence,
        &walk.prev_hash,
        VERIFICATION_STALE_SECS as f64,
    )
    .fetch_optional(tx.conn())
    .await?;
    if started.is_some() {
        return Ok(Started { run_id, new: true });
    }
    let running = sqlx::query_scalar!(
        "select run_id from audit_verification where organisation_id = $1",
        org.as_uuid()
    )
    .fetch_one(tx.conn())
    .await?;
    Ok(Started {
        run_id: running,
        new: false,
    })
}

/// Advances run `run_id` by at most `rows` events in this transaction and records where it got
/// (finishing it when it reached its target or found a problem). Returns the verification as it
/// now stands, or `None` when `run_id` is not running any more (finished, or replaced by another
/// run): the caller then stops.
#[tracing::instrument(skip(tx))]
pub async fn continue_audit_verification(
    tx: &mut OrgTx,
    run_id: Uuid,
    rows: i64,
) -> Result<Option<Verification>> {
    let org = tx.org();
    let Some(run) = sqlx::query!(
        r#"
        select target_sequence, read_through, next_sequence, prev_hash, checked, first_sequence
        from audit_verification
        where organisation_id = $1 and run_id = $2 and finished_at is null
        for update
        "#,
        org.as_uuid(),
        run_id
    )
    .fetch_optional(tx.conn())
    .await?
    else {
        return Ok(None);
    };
    let mut walk = Walk {
        read_through: run.read_through,
        next_sequence: run.next_sequence,
        prev_hash: run.prev_hash,
        checked: u64::try_from(run.checked).unwrap_or(0),
        first_sequence: run.first_sequence,
    };
    // Retention may have cut the chain since the run started: what it removed was recorded in
    // the anchor, and a run starting now would start there too.
    let (start, start_hash) = chain_start(tx).await?;
    if start > walk.next_sequence {
        walk.next_sequence = start;
        walk.prev_hash = start_hash;
    }
    let target = run.target_sequence;
    let (read, mut problem) = walk.advance(tx, rows.max(1), Some(target)).await?;
    let done = problem.is_some() || read < usize::try_from(rows.max(1)).unwrap_or(usize::MAX);
    let outcome = done.then(|| {
        if problem.is_none() {
            problem = walk.tail(target);
        }
        match (&problem, walk.checked) {
            (Some(_), _) => VerificationOutcome::Broken,
            (None, 0) => VerificationOutcome::Empty,
            (None, _) => VerificationOutcome::Intact,
        }
    });
    let problem_json = problem
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| Error::Audit(format!("verification problem: {e}")))?;
    sqlx::query!(
        r#"
        update audit_verification set
            heartbeat_at = now(), read_through = $3, next_sequence = $4, prev_hash = $5,
            checked = $6, first_sequence = $7, outcome = $8, problem = $9,
            finished_at = case when $8::text is null then null else now() end
        where organisation_id = $1 and run_id = $2
        "#,
        org.as_uuid(),
        run_id,
        walk.read_through,
        walk.next_sequence,
        &walk.prev_hash,
        i64::try_from(walk.checked).unwrap_or(i64::MAX),
        walk.first_sequence,
        outcome.map(VerificationOutcome::as_str),
        problem_json,
    )
    .execute(tx.conn())
    .await?;
    audit_verification(tx).await
}

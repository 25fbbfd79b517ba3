//! Calls held for a human approval (DESIGN.md §4, §5): the signal that wakes them when someone
//! decides, and the wait itself. The request path around it (what is forwarded, what the agent
//! is told, the audit event) is `proxy::hold`.
//!
//! A decision is noticed three ways, so a held call proceeds promptly on whichever replica holds
//! it: the process that decided publishes the approval id on the Redis channel
//! ([`publish_decision`], `gatehouse:approvals` by default) that every replica listens to; in one
//! process without Redis (`gatehouse up`) the admin app bumps the same [`ApprovalSignal`] the
//! gateway holds; and every held call re-reads the store about once a second whatever happens,
//! so a lost message costs at most that second. A decision is only ever read from the store:
//! a signal just says "look again".

use std::sync::Arc;
use std::time::Duration;

use store::approval::{self, Approval, ApprovalStatus, NewApproval};
use store::{ApprovalId, GrantId, OrgId, ServerId};
use tokio::sync::watch;

use crate::Gateway;

/// The Redis channel approval decisions are announced on.
pub const DEFAULT_APPROVAL_CHANNEL: &str = "gatehouse:approvals";

/// Wakes every call held on this replica so it re-reads its approval. Clones share one signal.
#[derive(Debug, Clone)]
pub struct ApprovalSignal(Arc<watch::Sender<u64>>);

impl Default for ApprovalSignal {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl ApprovalSignal {
    /// Says that some approval was decided.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Announces on `channel` that approval `id` was decided; call it after the decision committed.
/// Returns how many subscribers (gateway replicas) received it.
pub async fn publish_decision(
    client: &redis::Client,
    channel: &str,
    id: ApprovalId,
) -> redis::RedisResult<u64> {
    crate::invalidate::publish(client, channel, &id.to_string()).await
}

/// The call an approval is for: the same grant, tool and argument hash is the same call.
#[derive(Debug, Clone)]
pub(crate) struct CallKey {
    pub(crate) org: OrgId,
    pub(crate) server: ServerId,
    pub(crate) grant: GrantId,
    pub(crate) tool: String,
    pub(crate) hash: [u8; 32],
}

/// What came of an approval, as far as one held call is concerned.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Approved, and taken by this call: forward it (once).
    Approved(Approval),
    Denied(Approval),
    Expired(Approval),
    /// Nobody decided yet.
    Pending(Approval),
    /// The client went away while nobody had decided yet; nothing was taken.
    Gone(Approval),
    /// The store could not be read: never forward.
    Unavailable(store::Error),
}

/// Takes an approved approval of `key` when there is one.
pub(crate) async fn take(gw: &Gateway, key: &CallKey) -> store::Result<Option<Approval>> {
    let mut tx = gw.inner.store.begin(key.org).await?;
    let taken = approval::take_approved(&mut tx, key.grant, &key.tool, &key.hash).await?;
    tx.commit().await?;
    Ok(taken)
}

/// Opens (or finds) the pending approval of `key`.
pub(crate) async fn open(
    gw: &Gateway,
    key: &CallKey,
    arguments_redacted: &serde_json::Value,
    request_id: &str,
    session_id: Option<&str>,
    timeout: Duration,
) -> store::Result<approval::Opened> {
    let mut tx = gw.inner.store.begin(key.org).await?;
    let opened = approval::open_approval(
        &mut tx,
        &NewApproval {
            grant: key.grant,
            server: key.server,
            tool: &key.tool,
            arguments_redacted,
            arguments_hash: key.hash,
            request_id,
            session_id,
            timeout,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(opened)
}

/// One look at the store: is the call's approval decided?
async fn check(gw: &Gateway, key: &CallKey, id: ApprovalId) -> store::Result<Verdict> {
    if let Some(taken) = take(gw, key).await? {
        return Ok(Verdict::Approved(taken));
    }
    let mut tx = gw.inner.store.begin(key.org).await?;
    let current = approval::approval_by_id(&mut tx, id).await?;
    tx.rollback().await?;
    Ok(match current.status {
        ApprovalStatus::Denied => Verdict::Denied(current),
        ApprovalStatus::Expired => Verdict::Expired(current),
        // Approved but not taken above: another identical call took it (consumed) between our
        // two reads, or it is about to be; either way this call waits for a decision of its own.
        ApprovalStatus::Pending | ApprovalStatus::Approved | ApprovalStatus::Consumed => {
            Verdict::Pending(current)
        }
    })
}

/// Waits until the approval of `key` (`approval`, pending) is decided or `wait` has passed,
/// re-reading the store whenever the signal fires and every `poll` regardless. Calls `tick`
/// every `keepalive` (the SSE progress notifications). Returns [`Verdict::Gone`] as soon as
/// `gone` completes (the client went away): nothing is taken then.
pub(crate) async fn wait(
    gw: &Gateway,
    key: &CallKey,
    approval: Approval,
    wait: Duration,
    mut tick: impl FnMut(&Approval),
    gone: impl std::future::Future<Output = ()>,
) -> Verdict {
    let settings = &gw.inner.settings;
    let deadline = tokio::time::Instant::now() + wait;
    let mut signal = gw.inner.approval_signal.subscribe();
    let mut keepalive = tokio::time::interval(settings.approval_keepalive);
    keepalive.tick().await;
    let mut current = approval;
    tokio::pin!(gone);
    loop {
        // Mark the signal seen before reading, so a decision after the read wakes us.
        signal.borrow_and_update();
        match check(gw, key, current.approval_id).await {
            Ok(Verdict::Pending(still)) => current = still,
            Ok(decided) => return decided,
            Err(e) => return Verdict::Unavailable(e),
        }
        // A consumed approval belongs to another call: this one asks again.
        if current.status == ApprovalStatus::Consumed {
            match reopen(gw, key, &current).await {
                Ok(next) => current = next,
                Err(e) => return Verdict::Unavailable(e),
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Verdict::Pending(current);
        }
        let next_look = (now + settings.approval_poll).min(deadline);
        loop {
            tokio::select! {
                _ = &mut gone => return Verdict::Gone(current),
                _ = signal.changed() => break,
                _ = tokio::time::sleep_until(next_look) => break,
                _ = keepalive.tick() => tick(&current),
            }
        }
    }
}

/// A new approval for a call whose previous one another identical call consumed.
async fn reopen(gw: &Gateway, key: &CallKey, previous: &Approval) -> store::Result<Approval> {
    let timeout = previous.expires_at - previous.created_at;
    let opened = open(
        gw,
        key,
        &previous.arguments,
        &previous.request_id,
        previous.session_id.as_deref(),
        Duration::try_from(timeout).unwrap_or(Duration::from_secs(60)),
    )
    .await?;
    if opened.created {
        crate::webhook::announce(gw, key.org, &opened.approval);
    }
    Ok(opened.approval)
}

/// Listens on the approvals channel forever (reconnecting), waking held calls on each message
/// and after every reconnect (a decision may have been missed meanwhile).
pub(crate) async fn listen(gw: Gateway, client: redis::Client) {
    let channel = gw.inner.settings.approval_channel.clone();
    let signal = gw.inner.approval_signal.clone();
    drop(gw);
    crate::invalidate::listen(client, channel, move || signal.notify()).await;
}

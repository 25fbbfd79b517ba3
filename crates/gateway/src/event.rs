//! The audit event of every request that reached the gateway with a valid grant (DESIGN.md §7),
//! written through the durable path of the `audit` crate ([`audit::Journal`]):
//!
//! - a request that is forwarded is **written ahead** right before it leaves for the upstream; if
//!   that fails it is not forwarded (the agent is told the audit log is unavailable), and the
//!   outcome is appended once the upstream's answer head is known;
//! - a request that is not forwarded (a denial, a refusal, invalid input) is recorded complete
//!   **before** the agent gets its answer; if that fails the agent gets "audit log unavailable"
//!   instead (nothing reached the upstream, so nothing is lost).
//!
//! A `tools/call` with rate limits is written ahead in the limiter's round trip ([`admit`]): one
//! Redis round trip for both, before the gateway knows whether the limiter admits it. A call
//! written ahead that is then not forwarded (refused by the limiter, the limiter undecided, an
//! approval it cannot wait for) gets its outcome appended before its answer leaves, so its event
//! is complete exactly like a denial's.
//!
//! A replica killed between the two halves leaves the write-ahead alone; the ingester stores it
//! with its decision and an unknown outcome after the grace period.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use audit::{AuditRecord, Journal, Outcome, Ticket};
use http::Method;
use limits::{LimitCheck, Limiter};
use policy::Pointer;
use time::OffsetDateTime;

use crate::cache::GrantView;

/// What the audit event of one request will say; filled in along the request path.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) view: Arc<GrantView>,
    pub(crate) session: Option<String>,
    /// The JSON-RPC method, when the body had one.
    pub(crate) method: Option<String>,
    pub(crate) tool: Option<String>,
    /// From `audit::audited_arguments`: the argument keys, or their values with secrets redacted
    /// where the policy opts in.
    pub(crate) arguments: serde_json::Value,
    /// The gateway's decision name (also the metrics' label): `allow`, `deny`, `unknown_tool`,
    /// `rate_limited`, `approval_pending`, `approved`, `approval_expired`, `approval_unavailable`, `limiter_unavailable`, `audit_unavailable`,
    /// `upstream_error`, `pass`, `rejected`.
    pub(crate) decision: &'static str,
    pub(crate) rule: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) is_error: Option<bool>,
    pub(crate) user_agent: Option<String>,
}

/// The request's identity for its event, stamped once when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Stamp {
    pub(crate) request_id: String,
    pub(crate) occurred_at: OffsetDateTime,
    pub(crate) started: Instant,
    pub(crate) http_method: Method,
    pub(crate) client_addr: Option<IpAddr>,
}

impl Record {
    /// The event as the journal stores it.
    pub(crate) fn to_audit_record(&self, stamp: &Stamp, outcome: Outcome) -> AuditRecord {
        let view = &self.view;
        AuditRecord {
            occurred_at: stamp.occurred_at,
            request_id: stamp.request_id.clone(),
            organisation_id: view.grant.organisation_id,
            server_id: view.grant.server_id,
            grant_id: view.grant.grant_id,
            identity: view.grant.identity.clone(),
            session: self.session.clone(),
            method: self
                .method
                .clone()
                .unwrap_or_else(|| stamp.http_method.as_str().to_owned()),
            tool: self.tool.clone(),
            arguments: self.arguments.clone(),
            decision: audit::decision_from_gateway(self.decision),
            rule: self.rule.clone(),
            message: self.message.clone(),
            policy_version: i32::try_from(view.policy_version).ok(),
            outcome,
            client_addr: stamp.client_addr,
            user_agent: self.user_agent.clone(),
        }
    }

    /// Updates a write-ahead with what was learnt once the upstream answered (or failed).
    fn settle(&self, ticket: &mut Ticket) {
        let r = ticket.record_mut();
        r.decision = audit::decision_from_gateway(self.decision);
        r.rule.clone_from(&self.rule);
        r.message.clone_from(&self.message);
    }

    fn known_outcome(&self, stamp: &Stamp) -> Outcome {
        Outcome::Known {
            upstream_status: self.upstream_status,
            is_error: self.is_error,
            latency_us: u64::try_from(stamp.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// Writes `record` ahead of forwarding its request.
pub(crate) async fn write_ahead(
    journal: &Journal,
    record: &Record,
    stamp: &Stamp,
) -> Result<Ticket, audit::Error> {
    journal
        .write_ahead(record.to_audit_record(stamp, Outcome::Pending))
        .await
}

/// Why [`admit`] refuses a call.
#[derive(Debug)]
pub(crate) enum AdmitError {
    /// The limiter could not decide.
    Limiter(limits::Error),
    /// The limiter admitted, but the write-ahead failed: the reservation was refunded.
    Audit(audit::Error),
}

/// Consumes the call's limits and, where the journal can share the limiter's round trip, writes
/// the call ahead in it (decision `allow` under `rule`, the rule the call proceeds under), leaving
/// the ticket in `ticket`. Otherwise `ticket` stays empty and the call is written ahead before
/// forwarding as any other. A ticket is left whatever the limiter answered: the caller's answer
/// must then wait for [`record_unforwarded`] unless the call is forwarded.
pub(crate) async fn admit(
    journal: &Journal,
    limiter: &Limiter,
    checks: &[LimitCheck],
    record: &Record,
    rule: &Pointer,
    stamp: &Stamp,
    ticket: &mut Option<Ticket>,
) -> Result<limits::Outcome, AdmitError> {
    let mut ahead = record.to_audit_record(stamp, Outcome::Pending);
    ahead.decision = audit::decision_from_gateway("allow");
    ahead.rule = Some(rule.as_str().to_owned());
    let admission = journal.admit_and_write_ahead(limiter, checks, ahead).await;
    match (admission.outcome, admission.ticket) {
        (outcome, None) => outcome.map_err(AdmitError::Limiter),
        (outcome, Some(Ok(written))) => {
            *ticket = Some(written);
            outcome.map_err(AdmitError::Limiter)
        }
        (Ok(limits::Outcome::Admitted(reservation)), Some(Err(e))) => {
            // Never forwarded without a ticket: the slot goes back.
            if let Err(e) = limiter.refund(reservation).await {
                tracing::warn!(error = %e, "could not refund a rate-limit reservation");
            }
            Err(AdmitError::Audit(e))
        }
        // Refused or undecided anyway; its complete event is recorded like any refusal's.
        (outcome, Some(Err(_))) => outcome.map_err(AdmitError::Limiter),
    }
}

/// Completes the event of a call written ahead but never forwarded; the caller answers the
/// agent only after this returned `Ok`.
pub(crate) async fn record_unforwarded(
    journal: &Journal,
    record: &Record,
    stamp: &Stamp,
    mut ticket: Ticket,
) -> Result<(), audit::Error> {
    record.settle(&mut ticket);
    let outcome = record.known_outcome(stamp);
    journal.record_outcome(ticket, outcome).await
}

/// Appends the outcome of a forwarded request, off the request path
/// ([`Journal::record_outcome_in_background`]): if it fails, the event is stored with an unknown
/// outcome after the grace period, which the log line explains.
pub(crate) fn record_outcome(
    journal: &Journal,
    record: &Record,
    stamp: &Stamp,
    mut ticket: Ticket,
) {
    record.settle(&mut ticket);
    let outcome = record.known_outcome(stamp);
    journal.record_outcome_in_background(ticket, outcome);
}

/// Records the complete event of a request that was not forwarded; the caller answers the agent
/// only after this returned `Ok`.
pub(crate) async fn record_complete(
    journal: &Journal,
    record: &Record,
    stamp: &Stamp,
) -> Result<(), audit::Error> {
    journal
        .record(record.to_audit_record(stamp, record.known_outcome(stamp)))
        .await
}

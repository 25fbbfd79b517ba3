//! Outcomes of forwarded calls, appended to the shard streams off the request path and many per
//! round trip ([`crate::Journal::record_outcome_in_background`]).
//!
//! The request path only queues the outcome's `XADD`. One writer task per journal takes the first
//! outcome queued, lets others gather for [`LINGER`], sends them all as one pipeline, waits for its
//! answer, and starts again: under load an outcome shares its round trip with many others (a group
//! commit), so the gateway and Redis pay one wake-up and one socket write per pipeline, not per
//! call. Nobody waits for an outcome, so the linger costs no call any latency; it only keeps the
//! outcome in memory a little longer. An outcome that is lost (Redis down, the queue full, the process gone before the queue
//! drained) leaves its write-ahead alone: the ingester stores that event with an unknown outcome
//! after the grace period, exactly as when a replica dies between the two halves.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use crate::journal::within;

/// Outcomes waiting for the writer; beyond this many (Redis far behind) new ones are dropped.
const CAPACITY: usize = 16_384;

/// The most outcomes sent in one pipeline.
const MAX_PIPELINE: usize = 512;

/// How long the writer lets outcomes gather after the first before it sends them. Outcomes queued
/// while a pipeline is on the wire join the next one as well.
const LINGER: Duration = Duration::from_millis(2);

/// The request ids a failure log line names at most.
const LOGGED_IDS: usize = 8;

struct Queued {
    xadd: redis::Cmd,
    request_id: String,
}

/// Why an outcome was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotQueued {
    /// The writer is this many outcomes behind.
    Full,
    /// The writer is gone (its runtime shut down).
    Closed,
}

/// The sending side of one journal's writer. Cheap to clone; the writer ends once every clone
/// is dropped and the queue is empty.
#[derive(Clone)]
pub(crate) struct OutcomeQueue {
    tx: mpsc::Sender<Queued>,
}

impl OutcomeQueue {
    /// Starts the writer on the current runtime, sending over `connection`, each pipeline
    /// bounded by `timeout`.
    pub(crate) fn start(connection: ConnectionManager, timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write(connection, timeout, rx));
        OutcomeQueue { tx }
    }

    pub(crate) fn push(&self, xadd: redis::Cmd, request_id: String) -> Result<(), NotQueued> {
        self.tx
            .try_send(Queued { xadd, request_id })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NotQueued::Full,
                mpsc::error::TrySendError::Closed(_) => NotQueued::Closed,
            })
    }
}

async fn write(connection: ConnectionManager, timeout: Duration, mut rx: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_PIPELINE);
    let mut request_ids = Vec::with_capacity(MAX_PIPELINE);
    while rx.recv_many(&mut queued, MAX_PIPELINE).await > 0 {
        if queued.len() < MAX_PIPELINE {
            tokio::time::sleep(LINGER).await;
            while queued.len() < MAX_PIPELINE {
                match rx.try_recv() {
                    Ok(q) => queued.push(q),
                    Err(_) => break,
                }
            }
        }
        let mut pipe = redis::pipe();
        request_ids.clear();
        for q in queued.drain(..) {
            pipe.add_command(q.xadd).ignore();
            request_ids.push(q.request_id);
        }
        let mut con = connection.clone();
        if let Err(e) = within(timeout, pipe.query_async::<()>(&mut con)).await {
            tracing::warn!(
                error = %e,
                outcomes = request_ids.len(),
                request_ids = ?&request_ids[..request_ids.len().min(LOGGED_IDS)],
                "audit outcomes may not be recorded; their events will be stored with an unknown outcome"
            );
        }
    }
}

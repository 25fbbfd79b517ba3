//! Outcomes of forwarded calls, appended to the shard streams off the request path and many per
//! round trip ([`crate::Journal::record_outcome_in_background`]).
//!
//! The request path only queues the outcome's `XADD`. One writer task per journal takes the first
//! outcome queued, lets others gather for [`LINGER`], sends them all as one pipeline, waits for its
//! answer, and starts again: under load an outcome shares its round trip with many others (a group
//! commit), so the gateway and Redis pay one wake-up and one socket write per pipeline, not per
//! call. Nobody waits for an outcome, so the linger costs no call any latency; it only keeps the
//! outcome in memory a little longer. A gateway that stops flushes the queue first
//! ([`OutcomeQueue::flush`]). An outcome that is lost (Redis down, the queue full, a process
//! killed before the queue drained) leaves its write-ahead alone: the ingester stores that event
//! with an unknown outcome after the grace period, exactly as when a replica dies between the two
//! halves.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

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

enum Queued {
    Outcome {
        xadd: redis::Cmd,
        request_id: String,
    },
    /// Answered once everything queued before it has been sent.
    Flush(oneshot::Sender<()>),
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
            .try_send(Queued::Outcome { xadd, request_id })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NotQueued::Full,
                mpsc::error::TrySendError::Closed(_) => NotQueued::Closed,
            })
    }

    /// Returns once every outcome queued before the call has been sent (whatever Redis answered:
    /// a failure is logged by the writer), or at once when the writer is gone.
    pub(crate) async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).await.is_ok() {
            let _ = sent.await;
        }
    }
}

async fn write(connection: ConnectionManager, timeout: Duration, mut rx: mpsc::Receiver<Queued>) {
    let mut queued = Vec::with_capacity(MAX_PIPELINE);
    let mut request_ids = Vec::with_capacity(MAX_PIPELINE);
    let mut flushes = Vec::new();
    while rx.recv_many(&mut queued, MAX_PIPELINE).await > 0 {
        let flushing = queued.iter().any(|q| matches!(q, Queued::Flush(_)));
        if queued.len() < MAX_PIPELINE && !flushing {
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
            match q {
                Queued::Outcome { xadd, request_id } => {
                    pipe.add_command(xadd).ignore();
                    request_ids.push(request_id);
                }
                Queued::Flush(done) => flushes.push(done),
            }
        }
        let mut con = connection.clone();
        let sent = if request_ids.is_empty() {
            Ok(())
        } else {
            within(timeout, pipe.query_async::<()>(&mut con)).await
        };
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if let Err(e) = sent {
            tracing::warn!(
                error = %e,
                outcomes = request_ids.len(),
                request_ids = ?&request_ids[..request_ids.len().min(LOGGED_IDS)],
                "audit outcomes may not be recorded; their events will be stored with an unknown outcome"
            );
        }
    }
}

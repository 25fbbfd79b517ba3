//! The replica's budget of buffered bytes: request bodies and upstream JSON answers are read whole
//! (each bounded by its own limit), and together they may hold at most
//! `GATEHOUSE_MAX_BUFFERED_BYTES`. A reader takes bytes from the budget as they arrive and never
//! waits for them (waiting readers holding part of the budget could starve each other until their
//! deadlines): when the budget is spent the request is refused at once, and the bytes go back when
//! the body has been sent on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body as HttpBody;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
}

/// Bytes taken from the budget; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

/// The budget is spent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spent;

impl Budget {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Budget {
            bytes: Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Takes `n` more bytes into `held`, or fails at once.
    pub(crate) fn take(&self, held: &mut Held, n: usize) -> Result<(), Spent> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| Spent)?;
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Spent)?;
        match &mut held.0 {
            Some(p) => p.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }
}

/// `body`, keeping `held` taken until the body has been sent (or dropped).
pub(crate) fn holding(body: HttpBody, held: Held) -> HttpBody {
    if held.0.is_none() {
        return body;
    }
    HttpBody::new(HeldBody { body, _held: held })
}

struct HeldBody {
    body: HttpBody,
    _held: Held,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

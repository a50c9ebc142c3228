//! A request body on its way from the client to the upstream:
//! - counted into the access record's `bytes_in`;
//! - its end noted ([`Progress`]), so the upstream's time to answer
//!   (`timeouts.header`) starts when the upstream has all of it, not while
//!   a slow client is still uploading;
//! - its failures marked as the client's ([`ClientBodyError`]): a body
//!   that breaks off or has malformed chunked framing is a 400 that names
//!   the request body, not a 502 that blames the upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::core::body::{self, Body, BoxError};
use crate::core::error;
use crate::telemetry::access::Counter;

/// When a request body was all handed to the upstream connection.
#[derive(Debug)]
pub struct Sent {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX` while the body is still coming.
    done_ms: AtomicU64,
}

const NOT_YET: u64 = u64::MAX;

impl Sent {
    /// Starts now, with the body still to come.
    fn new() -> Sent {
        Sent {
            base: Instant::now(),
            done_ms: AtomicU64::new(NOT_YET),
        }
    }

    fn finish(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        let _ = self
            .done_ms
            .compare_exchange(NOT_YET, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// When the body was all sent, if it has been.
    pub fn done_at(&self) -> Option<Instant> {
        match self.done_ms.load(Ordering::Relaxed) {
            NOT_YET => None,
            ms => Some(self.base + std::time::Duration::from_millis(ms)),
        }
    }
}

/// The client's request body failed: it broke off before its end, or its
/// chunked framing is malformed.
#[derive(Debug, thiserror::Error)]
#[error("the request body from the client failed after {after} bytes: {source}")]
pub struct ClientBodyError {
    after: u64,
    source: hyper::Error,
}

/// The [`ClientBodyError`] in `err`'s chain, if the failure was the client's
/// request body.
pub fn client_body_failure<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e ClientBodyError> {
    error::causes(err).find_map(|e| e.downcast_ref::<ClientBodyError>())
}

pin_project! {
    /// The client's body, counted, with its end noted in [`Sent`].
    pub struct Upload {
        #[pin]
        inner: Incoming,
        count: Counter,
        received: u64,
        sent: Arc<Sent>,
    }
}

/// How far a request's body has gone to the upstream.
#[derive(Debug)]
pub enum Progress {
    /// There was no body: all of the request went with its head.
    Whole,
    /// A body, and when it was all sent once it has been.
    Body(Arc<Sent>),
}

impl Progress {
    /// When the request was all sent, if it has been; a request without a
    /// body was when its head was handed over, at `head_sent`.
    pub fn done_at(&self, head_sent: Instant) -> Option<Instant> {
        match self {
            Progress::Whole => Some(head_sent),
            Progress::Body(sent) => sent.done_at(),
        }
    }
}

impl Upload {
    /// The body to send for `inner`, counting into `count`, and its
    /// [`Progress`]. A request without a body (most of them) sends an
    /// empty one, which costs no allocation.
    pub fn start(inner: Incoming, count: Counter) -> (Body, Progress) {
        if inner.is_end_stream() {
            return (body::empty(), Progress::Whole);
        }
        let sent = Arc::new(Sent::new());
        let upload = Upload {
            inner,
            count,
            received: 0,
            sent: sent.clone(),
        };
        (upload.boxed_unsync(), Progress::Body(sent))
    }
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.add(data.remaining() as u64);
                    *this.received += data.remaining() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(source))) => Poll::Ready(Some(Err(Box::new(ClientBodyError {
                after: *this.received,
                source,
            })))),
            Poll::Ready(None) => {
                this.sent.finish();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.sent.finish();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

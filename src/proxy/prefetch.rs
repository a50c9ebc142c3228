//! Taking the part of a forwarded response's body that has already
//! arrived, before its head is handed to the client's connection.
//!
//! Why: hyper's pooled client reads the upstream connection on a task of
//! its own, and taking a body chunk from it wakes that task. Taken while
//! the request's own task still runs, that wake lands before the client
//! connection's task is woken to send the head, so the head, the body and
//! END_STREAM go out from one worker in one pass (issue 13: on an h2 client
//! leg the late take handed the client connection to the other worker on
//! every request).
//!
//! Nothing waits here: only frames that are ready now are taken, so a slow
//! or large body streams exactly as before, and an error comes out after
//! the frames that came before it. A body that fails before any of its
//! data ([`Prefetched::failed_at_once`]) can still be answered with a 502
//! instead of a head and an aborted connection.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

/// Bodies declared (Content-Length) at most this long are taken early.
pub const PREFETCH_MAX: u64 = 64 * 1024;

/// A body whose first frames were taken early; then the rest of it.
pub struct Prefetched<B: HttpBody> {
    ready: Ready<Result<Frame<Bytes>, B::Error>>,
    rest: Option<B>,
}

/// The frames taken, in order. A small body is usually one frame, kept
/// inline; only a second one allocates.
struct Ready<T> {
    first: Option<T>,
    more: VecDeque<T>,
}

impl<T> Ready<T> {
    fn new() -> Ready<T> {
        Ready {
            first: None,
            more: VecDeque::new(),
        }
    }

    fn push_back(&mut self, item: T) {
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(item);
        } else {
            self.more.push_back(item);
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        self.first.take().or_else(|| self.more.pop_front())
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.first.iter().chain(self.more.iter())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.more.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<B> Prefetched<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    /// Takes the frames of `body` that are ready now, up to `limit` bytes
    /// of data, an error or its end.
    pub fn take_ready(mut body: B, limit: u64) -> Prefetched<B> {
        let mut ready = Ready::new();
        let mut taken = 0u64;
        while taken < limit && !body.is_end_stream() {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    taken += frame.data_ref().map_or(0, |d| d.len() as u64);
                    ready.push_back(Ok(frame));
                }
                Some(Some(Err(e))) => {
                    ready.push_back(Err(e));
                    return Prefetched { ready, rest: None };
                }
                Some(None) => return Prefetched { ready, rest: None },
                None => break,
            }
        }
        let rest = (!body.is_end_stream()).then_some(body);
        Prefetched { ready, rest }
    }

    /// The error the body failed with before any of its data, if it did:
    /// nothing has reached the client yet, so it can still get a 502.
    pub fn failed_at_once(&self) -> Option<&B::Error> {
        self.ready
            .iter()
            .find(|f| f.as_ref().map_or(true, |f| f.data_ref().is_some_and(|d| !d.is_empty())))?
            .as_ref()
            .err()
    }
}

impl<B> HttpBody for Prefetched<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.ready.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        // A body that failed part-way has no exact size: the one its head
        // declared was never reached (hyper checks the two agree).
        let failed = self.ready.iter().any(Result::is_err);
        let buffered: u64 = self
            .ready
            .iter()
            .filter_map(|f| f.as_ref().ok().and_then(Frame::data_ref))
            .map(|d| d.len() as u64)
            .sum();
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + buffered);
        if let (Some(upper), false) = (rest.upper(), failed) {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn a_ready_body_is_taken_whole_and_ends() {
        let body = Prefetched::take_ready(Full::new(Bytes::from_static(b"hello")), PREFETCH_MAX);
        assert!(body.rest.is_none());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test]
    async fn frames_not_ready_stream_after_those_taken() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab")))).await.unwrap();
        let stream = tokio_stream_from(rx);
        let body = Prefetched::take_ready(StreamBody::new(stream), PREFETCH_MAX);
        assert_eq!(body.ready.len(), 1);
        assert!(!body.is_end_stream());
        tx.send(Ok(Frame::data(Bytes::from_static(b"cd")))).await.unwrap();
        tx.send(Err(std::io::Error::other("cut"))).await.unwrap();
        drop(tx);
        let mut body = body;
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => seen.push(f.into_data().unwrap()),
                Err(e) => {
                    assert_eq!(e.to_string(), "cut");
                    break;
                }
            }
        }
        assert_eq!(seen, [Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
    }

    #[tokio::test]
    async fn a_body_that_failed_part_way_claims_no_exact_size() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"ab")))).await.unwrap();
        tx.send(Err(std::io::Error::other("cut"))).await.unwrap();
        drop(tx);
        let body = Prefetched::take_ready(StreamBody::new(tokio_stream_from(rx)), PREFETCH_MAX);
        assert!(body.rest.is_none());
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.size_hint().lower(), 2);
    }

    fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}

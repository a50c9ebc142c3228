//! A source's answer, started: its body's first bytes arrive within the
//! header timeout, and no later gap is longer than the idle timeout.
//!
//! A mirror that sends a head and then nothing has not answered: until the
//! first byte, its stall is a timeout like a missing head (a 504, and `|`
//! moves on to the next entry), not a client left waiting for a head that
//! never comes. After it, a stall longer than `timeouts.idle` fails the
//! body, so a fetch the cache is pumping ends, and clients waiting on it
//! are told, instead of waiting on that mirror for as long as it keeps the
//! connection open.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::core::body::{Body, BoxError};
use crate::core::duration::fmt_duration;
use crate::core::error::Error;
use crate::core::timer;
use tokio::time::{Instant, Sleep};

/// `resp` once its body has started within `first`, with every later gap
/// bounded by `gap`; `source` names the upstream in errors.
pub async fn started(
    resp: Response<Body>,
    source: &str,
    first: Duration,
    gap: Duration,
) -> Result<Response<Body>, Error> {
    let (parts, mut body) = resp.into_parts();
    if body.is_end_stream() {
        return Ok(Response::from_parts(parts, body));
    }
    let frame = match timer::timeout(first, body.frame()).await {
        Err(_) => {
            return Err(Error::UpstreamTimeout {
                target: source.to_owned(),
                after: first,
            });
        }
        Ok(None) => return Ok(Response::from_parts(parts, crate::core::body::empty())),
        Ok(Some(Err(e))) if e.downcast_ref::<crate::modules::decode::Undecodable>().is_some() => {
            return Err(Error::BadAnswer {
                target: source.to_owned(),
                reason: e.to_string(),
            });
        }
        Ok(Some(Err(e))) => {
            return Err(Error::Upstream {
                target: source.to_owned(),
                reason: format!(
                    "its body failed before its first byte: {}",
                    crate::upstream::pool::failure(e.as_ref())
                ),
            });
        }
        Ok(Some(Ok(frame))) => frame,
    };
    let rest = Gapped {
        inner: body,
        gap,
        timer: Box::pin(timer::sleep(gap)),
        seen: frame.data_ref().map_or(0, |d| d.len() as u64),
    };
    let first = futures_util::stream::once(std::future::ready(Ok(frame)));
    let body = StreamBody::new(first.chain(BodyStream::new(rest))).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// `inner`, failing once no frame came for `gap`.
struct Gapped {
    inner: Body,
    gap: Duration,
    timer: Pin<Box<Sleep>>,
    /// Body bytes so far, for the error.
    seen: u64,
}

impl HttpBody for Gapped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                    this.seen += data.map_or(0, |d| d.len() as u64);
                }
                this.timer.as_mut().reset(Instant::now() + this.gap);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                    "it stalled: no bytes for {} after {} bytes",
                    fmt_duration(this.gap),
                    this.seen
                )
                .into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body::full;

    /// A body that sends `frames`, then nothing for ever.
    fn stalling(frames: Vec<&'static [u8]>) -> Response<Body> {
        let frames = futures_util::stream::iter(
            frames
                .into_iter()
                .map(|b| Ok::<_, BoxError>(Frame::data(Bytes::from_static(b)))),
        );
        let never = futures_util::stream::pending();
        Response::new(StreamBody::new(frames.chain(never)).boxed_unsync())
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_starts_is_a_timeout_and_one_that_stalls_fails() {
        let s = Duration::from_secs(1);
        let err = started(stalling(vec![]), "http://m.test", s, 5 * s).await.unwrap_err();
        assert_eq!(err.to_string(), "upstream http://m.test did not answer within 1s");
        assert_eq!(err.status(), http::StatusCode::GATEWAY_TIMEOUT);
        let resp = started(stalling(vec![b"ab", b"cde"]), "http://m.test", s, 5 * s)
            .await
            .unwrap();
        let mut body = resp.into_body();
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "ab");
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "cde");
        let stalled = body.frame().await.unwrap().unwrap_err();
        assert_eq!(stalled.to_string(), "it stalled: no bytes for 5s after 5 bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn whole_and_empty_bodies_pass_as_they_are() {
        let s = Duration::from_secs(1);
        let resp = started(Response::new(full("module m\n")), "s", s, s).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "module m\n");
        let resp = started(Response::new(full("")), "s", s, s).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "");
    }
}

//! hyper refuses some requests itself, before modgate sees them: a
//! malformed head (400), a target too long (414), too many or too large
//! header fields (431). It answers those with an empty body and closes the
//! connection. The front door puts modgate's own answer in their place —
//! one `text/plain` `modgate:` line — and logs an access event, so no
//! client ever gets an empty error from modgate.
//!
//! hyper writes such an answer only when no request is being answered, and
//! right before it closes the connection. [`FrontDoor`] counts the requests
//! being answered, from the service's call until the response body is
//! finished or dropped; a write that is hyper's automatic refusal while
//! none is open is replaced, and everything hyper writes after it is
//! swallowed.
//!
//! The same count tells the connection's [`Activity`] when an HTTP/1.1
//! connection waits for a request head: from its last answer's end until
//! the next request's call (the header timeout, `timeouts.header`).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http::Response;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::core::body::{Body, BoxError};
use crate::core::error::Error;
use crate::proxy::context::Context as ProxyContext;
use crate::proxy::head::{MAX_HEAD_BYTES, MAX_HEADERS};
use crate::proxy::idle::Activity;
use crate::proxy::limits::Admitted;
use crate::telemetry::access::Access;
use crate::telemetry::sink::Telemetry;

/// One connection's bookkeeping: requests being answered.
#[derive(Debug)]
pub struct FrontDoor {
    peer: SocketAddr,
    open: AtomicUsize,
    /// Where the refusals' access events are counted.
    telemetry: Arc<Telemetry>,
    /// The connection's clocks, told when it waits for a request head.
    activity: Arc<Activity>,
    /// Where a redirected connection was going, for the refusals' events.
    original: Option<SocketAddr>,
}

impl FrontDoor {
    /// The front door of a connection from `peer`, to a proxy with `ctx`,
    /// whose clocks are `activity`.
    pub fn new(ctx: &ProxyContext, peer: SocketAddr, activity: Arc<Activity>) -> Arc<FrontDoor> {
        Arc::new(FrontDoor {
            peer,
            open: AtomicUsize::new(0),
            telemetry: ctx.telemetry.clone(),
            activity,
            original: None,
        })
    }

    /// The front door of a connection the firewall redirected from its
    /// way to `original`: the refusals' events say where it was going.
    pub fn redirected(
        ctx: &ProxyContext,
        peer: SocketAddr,
        activity: Arc<Activity>,
        original: SocketAddr,
    ) -> Arc<FrontDoor> {
        Arc::new(FrontDoor {
            peer,
            open: AtomicUsize::new(0),
            telemetry: ctx.telemetry.clone(),
            activity,
            original: Some(original),
        })
    }

    /// A request the service was just called with: open until its
    /// response body is finished or dropped ([`Answering::track`]), or the
    /// service's future is.
    pub fn answering(self: &Arc<Self>) -> Answering {
        let before = self.open.fetch_add(1, Ordering::SeqCst);
        self.activity.head_arrived();
        Answering {
            door: self.clone(),
            alongside: before > 0,
            place: None,
        }
    }
}

/// A request being answered; when it is done (dropped) and no other is,
/// the connection waits for a request head.
pub struct Answering {
    door: Arc<FrontDoor>,
    /// Another request of the connection was being answered when it came
    /// (HTTP/2).
    alongside: bool,
    /// The place such a request takes in the limits, held until it is done.
    place: Option<Admitted>,
}

impl Answering {
    /// Whether another request of the same connection was being answered
    /// when this one came (HTTP/2 streams).
    pub fn alongside_another(&self) -> bool {
        self.alongside
    }

    /// Holds `place` until this request is done.
    pub fn hold(&mut self, place: Admitted) {
        self.place = Some(place);
    }

    /// `resp`, open until its body is finished or dropped. The body is
    /// wrapped, not boxed again: hyper serves [`Tracked`].
    pub fn track(self, resp: Response<Body>) -> Response<Tracked> {
        resp.map(|inner| Tracked { inner, _open: self })
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if self.door.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.door.activity.awaiting_head();
        }
    }
}

pin_project! {
    /// A response body counted as open by its connection's front door.
    pub struct Tracked {
        #[pin]
        inner: Body,
        _open: Answering,
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The refusal hyper wrote, if `buf` is one: `HTTP/1.1 400|414|431 …` with
/// `content-length: 0` and nothing after the head.
fn automatic_refusal(buf: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(buf.get(..buf.len().min(512))?).ok()?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse::<u16>().ok()?;
    let head_only = text.ends_with("\r\n\r\n") && text.len() == buf.len();
    let empty = text.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n");
    (matches!(status, 400 | 414 | 431) && head_only && empty).then_some(status)
}

/// modgate's answer in place of hyper's refusal with `status`.
fn replacement(status: u16) -> Error {
    match status {
        414 | 431 => Error::HeadTooLarge {
            status,
            reason: format!(
                "the request head is too large: at most {MAX_HEAD_BYTES} bytes (target and header fields) and {MAX_HEADERS} header fields"
            ),
        },
        _ => Error::BadRequest(
            "malformed request head (the request line or a header field is not valid HTTP/1.1)".to_owned(),
        ),
    }
}

pin_project! {
    /// A connection whose writes pass the front door.
    pub struct Guarded<T> {
        #[pin]
        inner: T,
        door: Arc<FrontDoor>,
        // Our answer still to write, and how much of it is written.
        pending: Option<(Vec<u8>, usize)>,
        // The length hyper is told was written when `pending` is done.
        owed: usize,
        // Everything hyper writes from now on is dropped.
        swallowing: bool,
    }
}

impl<T> Guarded<T> {
    /// `inner`, guarded by `door`.
    pub fn new(inner: T, door: Arc<FrontDoor>) -> Guarded<T> {
        Guarded {
            inner,
            door,
            pending: None,
            owed: 0,
            swallowing: false,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        if this.pending.is_none() && !*this.swallowing && this.door.open.load(Ordering::SeqCst) == 0 {
            if let Some(status) = automatic_refusal(buf) {
                let err = replacement(status);
                let mut access = Access::new(this.door.peer, "-", "-").reporting_to(this.door.telemetry.clone());
                access.original = this.door.original;
                access.fail(&err);
                access.emit();
                *this.pending = Some((err.raw_response(), 0));
                *this.owed = buf.len();
            }
        }
        if let Some((bytes, written)) = this.pending.as_mut() {
            while *written < bytes.len() {
                match this.inner.as_mut().poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            *this.pending = None;
            *this.swallowing = true;
            return Poll::Ready(Ok(*this.owed));
        }
        if *this.swallowing {
            return Poll::Ready(Ok(buf.len()));
        }
        this.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's refusal is a head alone: one buffer. Anything else passes
        // through vectored, unless the connection is being taken over.
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let single = match (parts.next(), parts.next()) {
            (Some(only), None) => Some(&**only),
            _ => None,
        };
        if self.pending.is_some() || self.swallowing || single.is_some() {
            return match single {
                Some(buf) => self.poll_write(cx, buf),
                None => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
            };
        }
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_refusals_are_recognised() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 22 Nov 2026 04:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_refusal(auto), Some(431));
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\nmodgate: bad request";
        assert_eq!(automatic_refusal(ours), None);
        assert_eq!(automatic_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(automatic_refusal(b"garbage"), None);
    }
}

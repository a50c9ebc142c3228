//! Reading the first request head of a connection.
//!
//! modgate reads the first head itself (with httparse), so that malformed,
//! oversized or slow requests get a `modgate:` answer, and so that a CONNECT
//! becomes a tunnel without passing through an HTTP server. Any other first
//! request, and every later request on a keep-alive connection, is served by
//! hyper, which is handed the bytes read so far through [`Rewind`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::core::error::Error;
use crate::core::timer;

/// The largest request head accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header fields accepted in one request: the same number for
/// modgate's own parser of a connection's first head and for hyper's.
///
/// It is hyper's default, so hyper is not given it: with an explicit
/// `max_headers`, hyper fills a 100-entry array for every request head it
/// parses. `tests/it/front_door.rs` checks that 101 fields are refused on
/// every door.
pub const MAX_HEADERS: usize = 100;

/// The first request head of a connection.
#[derive(Debug)]
pub struct FirstRequest {
    /// Everything read from the client so far: the head and any bytes after it.
    pub buf: BytesMut,
    /// Length of the head within `buf`.
    pub head_len: usize,
    /// The method, e.g. `CONNECT`.
    pub method: String,
    /// The request target as sent, e.g. `proxy.golang.org:443`.
    pub target: String,
    /// Whether one of its `Via` entries is this process's: it went round
    /// a loop back to modgate.
    pub came_through_here: bool,
}

impl FirstRequest {
    /// Whether the request is a CONNECT.
    pub fn is_connect(&self) -> bool {
        self.method == "CONNECT"
    }

    /// The bytes the client sent after the head (for CONNECT: the start of
    /// the tunnelled stream, e.g. a TLS ClientHello sent eagerly).
    pub fn after_head(mut self) -> Bytes {
        self.buf.advance(self.head_len);
        self.buf.freeze()
    }
}

/// Reads one request head. `Ok(None)` means the client closed the connection
/// before sending anything. Any byte stream will do (a [`TcpStream`](tokio::net::TcpStream) in
/// `serve`; the fuzz target feeds chunks from memory).
pub async fn read_first<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<FirstRequest>, Error> {
    match timer::timeout(timeout, read_head(stream)).await {
        Ok(result) => result,
        Err(_) => Err(Error::HeaderTimeout(timeout)),
    }
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<FirstRequest>, Error> {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let before = buf.len();
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.capacity().min(MAX_HEAD_BYTES));
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::BadRequest(format!("reading request head: {e}")))?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(Error::BadRequest(
                "connection closed in the middle of the request head".into(),
            ));
        }
        if let Some(why) = not_http(&buf) {
            return Err(Error::BadRequest(why));
        }
        // Parse only once the end of the head can be in the buffer, so a
        // client that trickles bytes does not make us re-parse every time.
        let window = &buf[before.saturating_sub(3)..];
        let ended = window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n");
        if ended {
            if let Some(first) = parse(&buf)? {
                return Ok(Some(FirstRequest { buf, ..first }));
            }
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(Error::BadRequest(format!(
                "request head is larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
    }
}

/// Why `buf`, the start of a connection, cannot be an HTTP request: its
/// method (after any empty lines) has a byte no method has. A TLS
/// handshake is named, as it is the usual mistake (`https://` for the
/// proxy in `HTTPS_PROXY` or `GOPROXY`); it is answered at once, not after
/// the header timeout.
fn not_http(buf: &[u8]) -> Option<String> {
    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let method = &buf[start..];
    let end = method
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(method.len());
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method[..end].iter().all(|&b| is_tchar(b)) {
        return None;
    }
    if method.starts_with(&[0x16, 0x03]) {
        return Some(
            "the client started a TLS handshake, but this port speaks plain HTTP: write the proxy as http://HOST:PORT (HTTPS_PROXY, GOPROXY)"
                .into(),
        );
    }
    let shown: String = method.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Some(format!("not an HTTP request (it starts with bytes {shown})"))
}

/// Parses a complete head; `Ok(None)` when more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<FirstRequest>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::BadRequest(format!("more than {MAX_HEADERS} header fields")));
        }
        Err(e) => return Err(Error::BadRequest(format!("malformed request head: {e}"))),
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(Error::BadRequest(format!(
            "request head is larger than {MAX_HEAD_BYTES} bytes"
        )));
    }
    Ok(Some(FirstRequest {
        buf: BytesMut::new(),
        head_len,
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        came_through_here: req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("via") && crate::core::via::names_this_process(h.value)),
    }))
}

pin_project! {
    /// A stream that first yields bytes already read from it.
    pub struct Rewind<T> {
        prefix: Bytes,
        #[pin]
        inner: T,
    }
}

impl<T> Rewind<T> {
    /// `inner`, preceded by `prefix`.
    pub fn new(prefix: Bytes, inner: T) -> Rewind<T> {
        Rewind { prefix, inner }
    }
}

impl<T: AsyncRead> AsyncRead for Rewind<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Rewind<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_heads_parse_and_partial_heads_wait() {
        let r = parse(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nTLS")
            .unwrap()
            .unwrap();
        assert_eq!(r.method, "CONNECT");
        assert_eq!(r.target, "example.com:443");
        assert_eq!(r.head_len, 59);
        assert!(parse(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn garbage_is_a_bad_request() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\r\n\r\n"[..],
            b"GET / HTTP/9.9\r\n\r\n",
            b"G E T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let err = parse(garbage).unwrap_err();
            assert!(
                err.to_string().starts_with("bad request: malformed request head"),
                "{err}"
            );
        }
    }

    /// A stream that sends `bytes` and then stays open.
    struct Open(&'static [u8]);

    impl AsyncRead for Open {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if self.0.is_empty() {
                return Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn what_cannot_be_http_is_refused_at_once_not_after_the_timeout() {
        let hour = Duration::from_secs(3600);
        let tls = read_first(&mut Open(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), hour)
            .await
            .unwrap_err();
        assert!(
            tls.to_string()
                .contains("the client started a TLS handshake, but this port speaks plain HTTP"),
            "{tls}"
        );
        let binary = read_first(&mut Open(b"\x00\x01GET"), hour).await.unwrap_err();
        assert_eq!(
            binary.to_string(),
            "bad request: not an HTTP request (it starts with bytes 0001474554)"
        );
        // A method arriving a byte at a time, or after empty lines, is no
        // reason to refuse yet.
        for start in [&b"GE"[..], b"\r\nCONNECT example.com:443 HT", b"PROPFIND"] {
            let waits = timer::timeout(Duration::from_millis(50), read_first(&mut Open(start), hour)).await;
            assert!(waits.is_err(), "{start:?}");
        }
    }
}

//! The first request head of a connection (`proxy::head::read_first`),
//! fed in chunks of a size the input chooses, then classified the way the
//! connection handler does: CONNECT authority, or a request hyper parses.
//!
//! Properties: no panic; the same bytes give the same head whatever the
//! chunking; a head is never longer than the limit nor than what was read;
//! a CONNECT authority that parses prints as something that parses back
//! to itself.

#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use modgate::core::host::Authority;
use modgate::proxy::head::{MAX_HEAD_BYTES, read_first};
use tokio::io::{AsyncRead, ReadBuf};

/// Yields `data` at most `chunk` bytes per read, then EOF.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.chunk).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

/// What a read gave, comparable across chunkings.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Closed,
    Head {
        method: String,
        target: String,
        head_len: usize,
    },
    Refused,
}

fn read(data: &[u8], chunk: usize) -> (Outcome, Option<modgate::proxy::head::FirstRequest>) {
    let mut stream = Chunked { data, chunk };
    match runtime().block_on(read_first(&mut stream, Duration::from_secs(60))) {
        Ok(None) => (Outcome::Closed, None),
        Ok(Some(first)) => (
            Outcome::Head {
                method: first.method.clone(),
                target: first.target.clone(),
                head_len: first.head_len,
            },
            Some(first),
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "one-line error: {text:?}");
            (Outcome::Refused, None)
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let (whole, first) = read(data, data.len().max(1));
    let (chunked, _) = read(data, chunk);
    assert_eq!(whole, chunked, "chunks of {chunk} bytes change the head");
    let Some(first) = first else { return };
    assert!(first.head_len <= first.buf.len() && first.head_len <= MAX_HEAD_BYTES);
    assert_eq!(&first.buf[..], &data[..first.buf.len()], "the buffer is what was read");
    if first.is_connect() {
        if let Ok(authority) = Authority::parse_connect(&first.target) {
            let again = Authority::parse_connect(&authority.to_string()).expect("a printed authority parses");
            assert_eq!(again, authority);
        }
        return;
    }
    // Everything else goes to hyper, which builds a Request from the same
    // request line; classify it as the connection handler does.
    let (Ok(method), Ok(uri)) = (
        http::Method::from_bytes(first.method.as_bytes()),
        first.target.parse::<http::Uri>(),
    ) else {
        return;
    };
    let Ok(req) = http::Request::builder().method(method).uri(uri).body(()) else {
        return;
    };
    let _ = modgate::proxy::gate::check(&req, modgate::proxy::gate::Entrance::ProxyPort);
    if let Ok(modgate::proxy::classify::Target::Forward(a) | modgate::proxy::classify::Target::Tunnel(a)) =
        modgate::proxy::classify::classify(&req)
    {
        assert!(a.port != 0);
    }
});

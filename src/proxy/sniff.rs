//! What a redirected connection speaks, from its first bytes: TLS (a
//! ClientHello, read whole for its SNI and kept to be replayed) or plain
//! HTTP (left unread for the request head).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::core::error::Error;
use crate::core::timer;

/// The record type of a TLS handshake, the first byte of a ClientHello.
const HANDSHAKE: u8 = 0x16;
/// The most bytes read while waiting for a whole ClientHello.
const MAX_HELLO: usize = 16 * 1024;

/// The first bytes of a redirected connection.
pub enum Sniffed {
    /// A TLS ClientHello, and the name it asks for.
    Tls {
        /// The bytes read, to send on before anything else.
        hello: Bytes,
        /// The SNI, if the client sent one.
        sni: Option<String>,
    },
    /// Anything else: read it as an HTTP request head.
    Http,
    /// The client closed before sending anything.
    Closed,
}

/// Looks at the first bytes of `stream` within `timeout`.
pub async fn sniff(stream: &mut TcpStream, timeout: Duration) -> Result<Sniffed, Error> {
    match timer::timeout(timeout, read(stream)).await {
        Ok(result) => result,
        Err(_) => Err(Error::HeaderTimeout(timeout)),
    }
}

async fn read(stream: &mut TcpStream) -> Result<Sniffed, Error> {
    let mut first = [0u8; 1];
    let seen = stream
        .peek(&mut first)
        .await
        .map_err(|e| Error::BadRequest(format!("reading the first bytes: {e}")))?;
    if seen == 0 {
        return Ok(Sniffed::Closed);
    }
    if first[0] != HANDSHAKE {
        return Ok(Sniffed::Http);
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut buf = BytesMut::with_capacity(2048);
    loop {
        let before = buf.len();
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| Error::BadRequest(format!("reading the TLS ClientHello: {e}")))?;
        if n == 0 {
            return Err(Error::BadRequest(
                "the connection closed in the middle of the TLS ClientHello".into(),
            ));
        }
        let mut fresh = &buf[before..];
        while !fresh.is_empty() {
            acceptor
                .read_tls(&mut fresh)
                .map_err(|e| Error::BadRequest(format!("not a TLS ClientHello: {e}")))?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(Sniffed::Tls {
                    hello: buf.freeze(),
                    sni,
                });
            }
            Ok(None) if buf.len() < MAX_HELLO => {}
            Ok(None) => {
                return Err(Error::BadRequest(format!(
                    "the TLS ClientHello is larger than {MAX_HELLO} bytes"
                )));
            }
            Err((e, _)) => return Err(Error::BadRequest(format!("not a TLS ClientHello: {e}"))),
        }
    }
}

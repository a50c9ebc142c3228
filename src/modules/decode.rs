//! A module proxy's answer with a `Content-Encoding`, decoded before
//! anything reads it.
//!
//! modgate asks mirrors for files as they are (it sends no
//! `Accept-Encoding`), but a static host or CDN may gzip them anyway.
//! `go` itself decodes gzip, so such a mirror works for `go` direct; here
//! the answer is decoded as it streams, so its checks, its hash and the
//! cache all see the file's own bytes, and clients get them plain. A
//! coding modgate cannot decode is the mirror's bad answer (`|` moves on).

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use flate2::write::{MultiGzDecoder, ZlibDecoder};
use http::header::{self, HeaderMap};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::core::body::{Body, BoxError};
use crate::core::escape::escape;

/// Encoded input fed to the decoder at a time: gzip expands at most about
/// 1000 to 1, so one step's output stays near a megabyte.
const STEP: usize = 1024;

/// `body` as the file it encodes, given its response's `headers` (whose
/// `Content-Encoding` and `Content-Length` go, as they describe the
/// encoded bytes). `Err` names a coding modgate does not decode.
pub fn decoded(headers: &mut HeaderMap, body: Body) -> Result<Body, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| "its Content-Encoding is not text".to_owned())?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            codings.push(Coding::parse(coding)?);
        }
    }
    codings.retain(|c| *c != Coding::Identity);
    if codings.is_empty() {
        headers.remove(header::CONTENT_ENCODING);
        return Ok(body);
    }
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    // Codings are listed in the order they were applied: undo the last first.
    Ok(codings
        .into_iter()
        .rev()
        .fold(body, |body, coding| Decoded::new(body, coding).boxed_unsync()))
}

/// A content coding modgate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped (RFC 9110 §8.4.1.2).
    Deflate,
}

impl Coding {
    fn parse(name: &str) -> Result<Coding, String> {
        match name.to_ascii_lowercase().as_str() {
            "identity" => Ok(Coding::Identity),
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "deflate" => Ok(Coding::Deflate),
            _ => Err(format!(
                "it came with Content-Encoding '{}', which modgate did not ask for and does not decode",
                escape(name)
            )),
        }
    }
}

/// A streaming decoder into a growing buffer that is emptied each step.
enum Decoder {
    Gzip(MultiGzDecoder<Vec<u8>>),
    Deflate(ZlibDecoder<Vec<u8>>),
}

impl Decoder {
    fn write(&mut self, input: &[u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.write(input),
            Decoder::Deflate(d) => d.write(input),
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
        }
    }

    fn take(&mut self) -> Vec<u8> {
        match self {
            Decoder::Gzip(d) => std::mem::take(d.get_mut()),
            Decoder::Deflate(d) => std::mem::take(d.get_mut()),
        }
    }
}

/// `inner` decoded, a step at a time.
struct Decoded {
    inner: Body,
    decoder: Decoder,
    /// Encoded bytes received but not yet fed.
    pending: Bytes,
    done: bool,
}

impl Decoded {
    fn new(inner: Body, coding: Coding) -> Decoded {
        let decoder = match coding {
            Coding::Deflate => Decoder::Deflate(ZlibDecoder::new(Vec::new())),
            _ => Decoder::Gzip(MultiGzDecoder::new(Vec::new())),
        };
        Decoded {
            inner,
            decoder,
            pending: Bytes::new(),
            done: false,
        }
    }

    /// Feeds up to [`STEP`] pending bytes; the output so far, if any.
    fn step(&mut self) -> Result<Option<Bytes>, BoxError> {
        let take = self.pending.len().min(STEP);
        let fed = self.decoder.write(&self.pending[..take]).map_err(|e| corrupt(&e))?;
        if fed == 0 {
            return Err("its encoded body has bytes after its end".into());
        }
        self.pending.advance(fed);
        let out = self.decoder.take();
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

fn corrupt(e: &std::io::Error) -> BoxError {
    Box::new(Undecodable(format!("its encoded body does not decode: {e}")))
}

/// A body whose content coding does not decode: that answer is bad, the
/// mirror is not down.
#[derive(Debug)]
pub struct Undecodable(String);

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Undecodable {}

impl HttpBody for Decoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            while !this.pending.is_empty() {
                match this.step() {
                    Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Ok(None) => {}
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.done = true;
                    if let Err(e) = this.decoder.finish() {
                        return Poll::Ready(Some(Err(corrupt(&e))));
                    }
                    let out = this.decoder.take();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::body::full;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use http::HeaderValue;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn headers(coding: &str, length: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(coding).unwrap());
        h.insert(header::CONTENT_LENGTH, length.into());
        h
    }

    async fn decode(coding: &str, encoded: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut h = headers(coding, encoded.len());
        let body = decoded(&mut h, full(encoded))?;
        assert!(h.get(header::CONTENT_ENCODING).is_none());
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        body.collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn gzip_and_deflate_answers_are_decoded_whole() {
        // Incompressible and highly compressible files, larger than a step.
        let random: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let zeros = vec![0u8; 3_000_000];
        for data in [b"module example.com/m\n".to_vec(), random, zeros] {
            assert_eq!(decode("gzip", gzip(&data)).await.unwrap(), data);
            assert_eq!(decode("x-gzip", gzip(&data)).await.unwrap(), data);
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&data).unwrap();
            assert_eq!(decode("deflate", z.finish().unwrap()).await.unwrap(), data);
            // Applied twice, listed in order: undone in reverse.
            assert_eq!(decode("gzip, gzip", gzip(&gzip(&data))).await.unwrap(), data);
        }
        // Concatenated gzip members are one file, as go's reader reads them.
        let mut two = gzip(b"module ");
        two.extend(gzip(b"example.com/m\n"));
        assert_eq!(decode("gzip", two).await.unwrap(), b"module example.com/m\n");
    }

    #[tokio::test]
    async fn a_body_that_does_not_decode_fails_and_an_unknown_coding_is_refused() {
        let whole = gzip(&vec![7u8; 100_000]);
        let cut = decode("gzip", whole[..whole.len() / 2].to_vec()).await.unwrap_err();
        assert!(cut.contains("does not decode"), "{cut}");
        let garbage = decode("gzip", b"<html>not gzip</html>".to_vec()).await.unwrap_err();
        assert!(garbage.contains("does not decode"), "{garbage}");
        let mut trailing = gzip(b"module m\n");
        trailing.extend_from_slice(b"junk");
        assert!(decode("gzip", trailing).await.is_err());
        let refused = decode("br", b"x".to_vec()).await.unwrap_err();
        assert_eq!(
            refused,
            "it came with Content-Encoding 'br', which modgate did not ask for and does not decode"
        );
        // identity is no coding: the body and its length stay.
        let mut h = headers("identity", 4);
        let body = decoded(&mut h, full("abcd")).unwrap();
        assert_eq!(h[header::CONTENT_LENGTH], "4");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }
}

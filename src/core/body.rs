//! The body type every response and upstream request uses, and the
//! `text/plain` answers modgate writes itself.
//!
//! Every refusal or failure a client sees is one line starting with
//! `modgate:`, as `text/plain; charset=utf-8`, so `go` shows it after
//! "server response:".

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::core::error::Error;

/// Errors of a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type modgate sends and answers with.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body from bytes, for modgate's own answers.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body. It has no state, so boxing it allocates nothing.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The message's `Content-Length`, when it has a valid one.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Marks an answer whose body ends when its connection closes (HTTP/1
/// with neither `Content-Length` nor chunked framing): cut short, it looks
/// complete, so only a check against a known hash can vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframed;

impl Unframed {
    /// Whether a response with `version` and `headers` (as received,
    /// before hop-by-hop headers are taken out) is unframed.
    pub fn of(version: http::Version, headers: &http::HeaderMap) -> bool {
        let chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .is_some_and(|v| v.as_bytes().trim_ascii_end().to_ascii_lowercase().ends_with(b"chunked"));
        version < http::Version::HTTP_2 && !headers.contains_key(header::CONTENT_LENGTH) && !chunked
    }
}

/// A one-line `text/plain` answer; `line` should start with `modgate:`.
pub fn text(status: StatusCode, line: &str) -> Response<Body> {
    let mut resp = Response::new(full(format!("{line}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The plain-text answer for an error: its status and its `modgate:` line.
pub fn error_response(err: &Error) -> Response<Body> {
    let mut resp = Response::new(full(err.body()));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some((name, value)) = err.challenge() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, value);
        }
    }
    if let Error::MethodNotAllowed(_) = err {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_unframed_without_a_length_or_a_final_chunked_coding() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, HeaderValue::from_static(value));
            }
            h
        };
        let v11 = http::Version::HTTP_11;
        assert!(Unframed::of(v11, &with(&[])));
        assert!(Unframed::of(http::Version::HTTP_10, &with(&[("connection", "close")])));
        assert!(Unframed::of(v11, &with(&[("transfer-encoding", "gzip")])));
        assert!(!Unframed::of(v11, &with(&[("content-length", "3")])));
        assert!(!Unframed::of(v11, &with(&[("transfer-encoding", "gzip, Chunked ")])));
        assert!(!Unframed::of(http::Version::HTTP_2, &with(&[])));
    }
}

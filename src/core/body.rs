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

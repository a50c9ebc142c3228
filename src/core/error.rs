//! The one error type of the proxy, and how each error becomes the
//! `text/plain` answer a client sees.
//!
//! Every variant says which side failed ([`Side`]): the client sent something
//! we cannot serve, the policy refused it, the upstream failed, or modgate
//! itself did. The status code follows from that: 400, 403, 502/504, 500.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

/// Which party a failure belongs to, for logs and for the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent a request modgate cannot serve.
    Client,
    /// A rule refused the request.
    Policy,
    /// DNS, the network, or the upstream server failed.
    Upstream,
    /// modgate itself failed.
    Internal,
}

/// Everything that can go wrong while serving one request or tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something a proxy cannot do.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The request head did not arrive in time.
    #[error("request header not received within {}", crate::core::duration::fmt_duration(*.0))]
    HeaderTimeout(Duration),

    /// A request inside an intercepted tunnel names another host than the
    /// tunnel's (domain fronting).
    #[error("this tunnel is to {tunnel}, but the request names {named}; open a tunnel to that host")]
    Misdirected {
        /// What the request named (Host, `:authority` or absolute URI).
        named: String,
        /// The tunnel's destination.
        tunnel: String,
    },

    /// The request head is larger than modgate takes (hyper's 414 and 431).
    #[error("{reason}")]
    HeadTooLarge {
        /// 414 for a target too long, 431 for header fields.
        status: u16,
        /// What was too large, and the limits.
        reason: String,
    },

    /// A module path asked with a method other than GET or HEAD.
    #[error("module paths answer GET and HEAD, not {0}")]
    MethodNotAllowed(String),

    /// A rule with action `block` matched.
    #[error("blocked by rule '{rule}': {reason}")]
    Blocked {
        /// Name of the rule that matched.
        rule: String,
        /// The rule's reason, shown to the user.
        reason: String,
    },

    /// No rule matched the request.
    #[error("no rule matched {0}; modgate refuses what no rule allows")]
    NoRule(String),

    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name that was looked up.
        host: String,
        /// Why resolution failed.
        reason: String,
    },

    /// No answer for the host name within `timeouts.connect`.
    #[error("cannot resolve {host}: no answer within {}", crate::core::duration::fmt_duration(*after))]
    ResolveTimeout {
        /// The name that was looked up.
        host: String,
        /// The time allowed.
        after: Duration,
    },

    /// Connecting to the upstream failed on every checked address.
    #[error("cannot connect to {target} ({addr}): {reason}")]
    Connect {
        /// `host:port` as the client asked for it.
        target: String,
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error, as text.
        reason: String,
    },

    /// Connecting to the upstream took longer than `timeouts.connect`.
    #[error("connecting to {target} ({addr}) timed out after {}", crate::core::duration::fmt_duration(*after))]
    ConnectTimeout {
        /// `host:port` as the client asked for it.
        target: String,
        /// The last address tried.
        addr: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
    },

    /// The TLS handshake with the upstream failed.
    #[error("TLS handshake with upstream {target} failed: {reason}")]
    Tls {
        /// The upstream, as a URL.
        target: String,
        /// What rustls reported.
        reason: String,
    },

    /// The upstream's certificate chain was refused: untrusted, or
    /// intercepted with `tls.on_interception = "block"`.
    #[error("upstream {target} {refusal}")]
    Chain {
        /// The upstream, as a URL.
        target: String,
        /// What the chain was and what to do, one line.
        refusal: String,
        /// True when `tls.on_interception = "block"` refused a locally
        /// trusted (intercepted) chain.
        by_policy: bool,
        /// The verdict on the chain.
        verdict: crate::core::verdict::Verdict,
        /// The interception product, or `unknown`.
        vendor: String,
    },

    /// The upstream accepted the connection but did not send a response head
    /// within `timeouts.header`.
    #[error("upstream {target} did not answer within {}", crate::core::duration::fmt_duration(*after))]
    UpstreamTimeout {
        /// The upstream, as `host:port` or URL.
        target: String,
        /// The configured header timeout.
        after: Duration,
    },

    /// The upstream connection failed after it was established.
    #[error("upstream {target} failed: {reason}")]
    Upstream {
        /// The upstream, as `host:port` or URL.
        target: String,
        /// What went wrong, as one line.
        reason: String,
    },

    /// modgate is at a connection limit.
    #[error("{0}")]
    Overloaded(String),

    /// modgate itself failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Error::BadRequest(_)
            | Error::HeaderTimeout(_)
            | Error::Misdirected { .. }
            | Error::MethodNotAllowed(_)
            | Error::HeadTooLarge { .. } => Side::Client,
            Error::Blocked { .. } | Error::NoRule(_) => Side::Policy,
            Error::Resolve { .. }
            | Error::ResolveTimeout { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::UpstreamTimeout { .. }
            | Error::Tls { .. }
            | Error::Chain { .. }
            | Error::Upstream { .. } => Side::Upstream,
            Error::Internal(_) | Error::Overloaded(_) => Side::Internal,
        }
    }

    /// The HTTP status a client receives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::HeadTooLarge { status: 414, .. } => StatusCode::URI_TOO_LONG,
            Error::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::HeaderTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Blocked { .. } | Error::NoRule(_) => StatusCode::FORBIDDEN,
            Error::ConnectTimeout { .. } | Error::UpstreamTimeout { .. } | Error::ResolveTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Error::Resolve { .. } | Error::Connect { .. } | Error::Tls { .. } | Error::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Error::Chain { by_policy: true, .. } => StatusCode::FORBIDDEN,
            Error::Chain { .. } => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The body a client receives: one line starting with `modgate:`, with
    /// peer text escaped (`core::escape`) so `go` displays it and nothing
    /// in it can break the line.
    pub fn body(&self) -> String {
        let mut line = crate::core::escape::escape(&format!("modgate: {self}")).into_owned();
        line.push('\n');
        line
    }

    /// A complete HTTP/1.1 response for this error, for the places where
    /// modgate writes to the socket itself (before hyper owns it).
    pub fn raw_response(&self) -> Vec<u8> {
        let body = self.body();
        let status = self.status();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            body
        )
        .into_bytes()
    }
}

/// One line describing an error and its causes, for logs and messages.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

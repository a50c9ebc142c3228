//! The one error type of the proxy, and how each error becomes the
//! `text/plain` answer a client sees.
//!
//! Every variant says which side failed ([`Side`]): the client sent something
//! we cannot serve, the policy refused it, the upstream failed, or modgate
//! itself did. The status code follows from that: 400, 403, 502/504, 500.

use std::net::{IpAddr, SocketAddr};
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

    /// The request uses something modgate cannot pass on faithfully (a
    /// transfer coding other than chunked): 501, RFC 9112 §6.1.
    #[error("not implemented: {0}")]
    NotImplemented(String),

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

    /// A private module path (`[private] modules`) would go somewhere it
    /// may not: answered 404 so that `go` falls through to its `direct`.
    #[error("{module} is private ([private] modules): {detail}")]
    Private {
        /// The module path.
        module: String,
        /// Where it would have gone, and what go does instead.
        detail: String,
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

    /// The TLS handshake with the upstream did not finish within
    /// `timeouts.connect` (the TCP connection was made).
    #[error("TLS handshake with upstream {target} ({addr}) did not finish within {}", crate::core::duration::fmt_duration(*after))]
    TlsTimeout {
        /// The upstream, as a URL.
        target: String,
        /// The address connected to.
        addr: SocketAddr,
        /// The configured connect timeout.
        after: Duration,
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

    /// The upstream answered with a status that is not an answer to pass
    /// on: 5xx, a 4xx other than 404/410 (401, 403, 429, …), or for a
    /// module file any status but 200 (a 204 carries no file).
    #[error("upstream {target} answered {status} for {what}")]
    UpstreamStatus {
        /// The upstream, as a URL.
        target: String,
        /// Its status.
        status: StatusCode,
        /// What was asked for (a module path, or the request kind).
        what: String,
    },

    /// The upstream connection failed after it was established.
    #[error("upstream {target} failed: {reason}")]
    Upstream {
        /// The upstream, as `host:port` or URL.
        target: String,
        /// What went wrong, as one line.
        reason: String,
    },

    /// The upstream answered, but with content `go` would refuse (a `.info`
    /// that is not JSON, or names another version). This one answer is bad;
    /// it does not count against the upstream's health.
    #[error("upstream {target} sent a bad answer: {reason}")]
    BadAnswer {
        /// The upstream, as a URL.
        target: String,
        /// What is wrong with the answer, as one line.
        reason: String,
    },

    /// The parent proxy could not be reached: its name did not resolve, or
    /// the connection to it failed.
    #[error("cannot reach parent proxy {parent} for {target}: {reason}")]
    ParentUnreachable {
        /// The parent, as `http://host:port` (never with credentials).
        parent: String,
        /// Where the connection was going.
        target: String,
        /// What failed.
        reason: String,
    },

    /// The parent proxy was reached but failed the request it was given:
    /// it closed the connection, or answered something that is not HTTP.
    #[error("parent proxy {parent} failed on {target}: {reason}")]
    ParentFailed {
        /// The parent, as `http://host:port`.
        parent: String,
        /// Where the request or tunnel was going.
        target: String,
        /// What went wrong, as one line.
        reason: String,
    },

    /// The parent proxy did not answer in time.
    #[error("parent proxy {parent} timed out after {} {doing} (for {target})", crate::core::duration::fmt_duration(*after))]
    ParentTimeout {
        /// The parent, as `http://host:port`.
        parent: String,
        /// Where the connection was going.
        target: String,
        /// What modgate was waiting for.
        doing: String,
        /// The time allowed.
        after: Duration,
    },

    /// The parent proxy answered a CONNECT (or a forwarded request) with a
    /// refusal: 407, 403, or any other non-2xx status.
    #[error("parent proxy {parent} refused {request}: {status}; {hint}")]
    ParentRefused {
        /// The parent, as `http://host:port`.
        parent: String,
        /// `CONNECT host:port`, or the forwarded request.
        request: String,
        /// The parent's status line, escaped.
        status: String,
        /// What to do about it.
        hint: String,
    },

    /// Proxy authentication (`[auth]`) is required and the client sent no
    /// usable credentials: a 407 with `Proxy-Authenticate`, or a 401 with
    /// `WWW-Authenticate` on the module endpoint.
    #[error("{}authentication required: {reason}", if *endpoint { "" } else { "proxy " })]
    Unauthenticated {
        /// The realm of the challenge.
        realm: String,
        /// What was wrong with the credentials, as the client may know it.
        reason: String,
        /// The request came to modgate as an origin server, its module
        /// endpoint or its admin listener (401), not through it as a proxy
        /// (407).
        endpoint: bool,
    },

    /// A client address failed to log in too often (`auth.max_failures`).
    #[error("too many failed proxy logins from {client}; try again in {}", crate::core::duration::fmt_duration(*retry_after))]
    LockedOut {
        /// The client's address.
        client: IpAddr,
        /// When it may try again.
        retry_after: Duration,
    },

    /// A redirected connection named a host (SNI or Host) that does not
    /// resolve to where the connection was going.
    #[error(
        "host verification failed: {host} {reason}, but the connection was going to {original}; set verify_host = false on the rule to trust the name as sent"
    )]
    HostMismatch {
        /// The name the client sent.
        host: String,
        /// The original destination.
        original: SocketAddr,
        /// What resolving the name gave.
        reason: String,
    },

    /// The connection would reach modgate itself.
    #[error("refused a loop: {0}")]
    Loop(String),

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
            | Error::Unauthenticated { .. }
            | Error::HostMismatch { .. }
            | Error::Misdirected { .. }
            | Error::MethodNotAllowed(_)
            | Error::NotImplemented(_)
            | Error::HeadTooLarge { .. } => Side::Client,
            Error::Blocked { .. }
            | Error::NoRule(_)
            | Error::LockedOut { .. }
            | Error::Loop(_)
            | Error::Private { .. } => Side::Policy,
            Error::Resolve { .. }
            | Error::ResolveTimeout { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::UpstreamTimeout { .. }
            | Error::Tls { .. }
            | Error::TlsTimeout { .. }
            | Error::Chain { .. }
            | Error::UpstreamStatus { .. }
            | Error::Upstream { .. }
            | Error::BadAnswer { .. }
            | Error::ParentUnreachable { .. }
            | Error::ParentFailed { .. }
            | Error::ParentTimeout { .. }
            | Error::ParentRefused { .. } => Side::Upstream,
            Error::Internal(_) | Error::Overloaded(_) => Side::Internal,
        }
    }

    /// Whether this failure says the upstream is down or broken, so it
    /// counts against a mirror's health: it could not be reached, did not
    /// answer in time, failed TLS, answered 5xx or broke off. A 4xx (a
    /// refusal of this request, such as 401) and a policy refusal do not;
    /// nor does a chain judged intercepted or untrusted: it fails at once
    /// (the verdict is cached), and each request's refusal must keep
    /// naming the interceptor.
    pub fn is_outage(&self) -> bool {
        match self {
            Error::Resolve { .. }
            | Error::ResolveTimeout { .. }
            | Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::UpstreamTimeout { .. }
            | Error::Tls { .. }
            | Error::TlsTimeout { .. }
            | Error::Upstream { .. } => true,
            Error::UpstreamStatus { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// This error with `limit` as the time it says was allowed, when it is
    /// a timeout: a step given what was left of a deadline reports the
    /// whole limit the user configured, not the remainder (`9999ms`).
    pub fn allowed(mut self, limit: Duration) -> Error {
        if let Error::ResolveTimeout { after, .. }
        | Error::ConnectTimeout { after, .. }
        | Error::TlsTimeout { after, .. }
        | Error::ParentTimeout { after, .. } = &mut self
        {
            *after = limit;
        }
        self
    }

    /// The HTTP status a client receives for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Error::HeadTooLarge { status: 414, .. } => StatusCode::URI_TOO_LONG,
            Error::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::HeaderTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::Blocked { .. } | Error::NoRule(_) | Error::LockedOut { .. } => StatusCode::FORBIDDEN,
            Error::Private { .. } => StatusCode::NOT_FOUND,
            Error::ConnectTimeout { .. }
            | Error::TlsTimeout { .. }
            | Error::UpstreamTimeout { .. }
            | Error::ResolveTimeout { .. }
            | Error::ParentTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::Tls { .. }
            | Error::Upstream { .. }
            | Error::BadAnswer { .. }
            | Error::UpstreamStatus { .. }
            | Error::ParentUnreachable { .. }
            | Error::ParentFailed { .. }
            | Error::ParentRefused { .. } => StatusCode::BAD_GATEWAY,
            Error::Unauthenticated { endpoint: false, .. } => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            Error::Unauthenticated { endpoint: true, .. } => StatusCode::UNAUTHORIZED,
            Error::HostMismatch { .. } => StatusCode::CONFLICT,
            Error::Loop(_) => StatusCode::LOOP_DETECTED,
            Error::Chain { by_policy: true, .. } => StatusCode::FORBIDDEN,
            Error::Chain { .. } => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The body a client receives: one line starting with `modgate:`, with
    /// peer text escaped (`core::escape`) so `go` displays it and nothing
    /// in it can break the line. Parts the message quotes were escaped
    /// where it quotes them; they are not escaped twice.
    pub fn body(&self) -> String {
        let mut line = crate::core::escape::controls(&format!("modgate: {self}")).into_owned();
        line.push('\n');
        line
    }

    /// The authentication challenge header this answer carries, if any:
    /// `Proxy-Authenticate` on a 407, `WWW-Authenticate` on a 401.
    pub fn challenge(&self) -> Option<(http::header::HeaderName, String)> {
        let Error::Unauthenticated { realm, endpoint, .. } = self else {
            return None;
        };
        let name = match endpoint {
            true => http::header::WWW_AUTHENTICATE,
            false => http::header::PROXY_AUTHENTICATE,
        };
        Some((name, format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")))
    }

    /// A complete HTTP/1.1 response for this error, for the places where
    /// modgate writes to the socket itself (before hyper owns it).
    pub fn raw_response(&self) -> Vec<u8> {
        let body = self.body();
        let status = self.status();
        let challenge = self
            .challenge()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n{challenge}content-length: {}\r\nconnection: close\r\n\r\n{}",
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
    for cause in causes(err).skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// `err`, then its source, that one's source, and so on.
pub fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

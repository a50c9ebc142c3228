//! The access event: one per request or tunnel, emitted when it ends.
//!
//! Fields: client, user (when `[auth]` authenticated one), method, target,
//! rule, action, upstream, parent (when the upstream was reached through
//! `[parent]`), original (the original destination of a connection the
//! firewall redirected to the transparent listener), status, bytes_in
//! (client to upstream), bytes_out (upstream to client), duration_ms,
//! verdict and vendor for TLS upstreams, cache and mirror_state for module
//! requests, and error when modgate refused or failed the request. With
//! `--log-format json` each event is one JSON object on one line.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::core::error::Error;
use crate::core::escape::{controls, escape};
use crate::core::verdict::Judgement;
use crate::policy::plan::{ActionTaken, Plan};

/// The record of one request or tunnel, filled in as it passes the stages.
#[derive(Debug)]
pub struct Access {
    /// The client's address.
    pub client: SocketAddr,
    /// The user who authenticated (`[auth]`), if one did.
    pub user: Option<String>,
    /// The request method (`CONNECT` for tunnels).
    pub method: Cow<'static, str>,
    /// What the client asked for: `host:port`, a URL, or a path.
    pub target: String,
    /// The rule that decided, if one did.
    pub rule: Option<Arc<str>>,
    /// The action taken; `error` when no rule was reached.
    pub action: ActionTaken,
    /// Where the answer came from: the upstream address, a mirror URL, the
    /// origin URL, or `cache`.
    pub upstream: Option<AnswerSource>,
    /// The parent proxy the upstream was reached through, when it was.
    pub parent: Option<String>,
    /// Where a connection redirected to the transparent listener was going.
    pub original: Option<SocketAddr>,
    /// The status sent to the client (200 for an established tunnel).
    pub status: u16,
    /// Bytes from the client to the upstream (body or tunnel bytes).
    pub bytes_in: Counter,
    /// Bytes from the upstream to the client (body or tunnel bytes).
    pub bytes_out: Counter,
    /// The verdict on the upstream's certificate chain (and the interception
    /// product, when it failed the public roots), for TLS upstreams.
    pub judgement: Option<Judgement>,
    /// How the module cache took part, for module requests.
    pub cache: Option<CacheStatus>,
    /// The module proxies of the rule's list that are not up (down or
    /// half-open, with failures, last error and when), for module requests.
    pub mirror_state: Option<String>,
    /// What failed, for requests modgate refused or could not complete.
    pub error: Option<String>,
    /// When the request arrived.
    pub started: Instant,
    /// Where the event goes besides the log (metrics, the admin page's
    /// recent decisions); `None` outside a running proxy.
    pub telemetry: Option<Arc<dyn AccessSink>>,
}

/// Where access events go besides the log: the metrics and the admin
/// page's recent decisions ([`Telemetry`](crate::telemetry::sink::Telemetry)).
pub trait AccessSink: std::fmt::Debug + Send + Sync {
    /// Takes in a finished request or tunnel.
    fn record(&self, access: Access);
}

/// How the cache took part in an answer, for `x-cache` and the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Fetched upstream (and stored, when it could be).
    Miss,
    /// Joined another request's fetch of the same object.
    Coalesced,
    /// Every source failed; an expired answer was served.
    Stale,
    /// Not cacheable, or the rule says `cache = false`.
    Bypass,
}

impl CacheStatus {
    /// `hit`, `miss`, `coalesced`, `stale` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// Where an answer came from, as the access record keeps it. An address
/// is written out only when the event is logged: formatting one for every
/// request cost more than the rest of the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerSource {
    /// The address connected to.
    Addr(SocketAddr),
    /// A mirror or origin URL, or `cache`.
    Named(Cow<'static, str>),
}

impl AnswerSource {
    /// The module cache.
    pub const CACHE: AnswerSource = AnswerSource::Named(Cow::Borrowed("cache"));
}

impl From<String> for AnswerSource {
    fn from(name: String) -> AnswerSource {
        AnswerSource::Named(Cow::Owned(name))
    }
}

impl std::fmt::Display for AnswerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerSource::Addr(addr) => addr.fmt(f),
            AnswerSource::Named(name) => f.write_str(name),
        }
    }
}

/// A byte counter shared between a body and its access record.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    cells: Arc<[AtomicU64; 2]>,
    side: usize,
}

impl Counter {
    /// Two counters in one allocation: a record's `bytes_in` and
    /// `bytes_out`, made for every request.
    fn pair() -> (Counter, Counter) {
        let cells = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        (
            Counter {
                cells: cells.clone(),
                side: 0,
            },
            Counter { cells, side: 1 },
        )
    }

    /// Adds `n` bytes.
    pub fn add(&self, n: u64) {
        self.cells[self.side].fetch_add(n, Ordering::Relaxed);
    }
    /// The bytes counted so far.
    pub fn get(&self) -> u64 {
        self.cells[self.side].load(Ordering::Relaxed)
    }
}

/// A request method as the access record keeps it: the standard methods
/// without a copy.
pub fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::PATCH, "PATCH"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(m, _)| m == method) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(method.as_str().to_owned()),
    }
}

/// A request URI as the access record keeps it, written once into a
/// string of its size.
pub fn uri_text(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    // `/` is written for an absolute URI without a path.
    let path = uri.path_and_query().map_or(1, |p| p.as_str().len().max(1));
    let mut text = String::with_capacity(scheme + authority + path);
    // As `Uri`'s Display writes it, without the formatting machinery.
    if let Some(scheme) = uri.scheme_str() {
        text.push_str(scheme);
        text.push_str("://");
    }
    if let Some(authority) = uri.authority() {
        text.push_str(authority.as_str());
    }
    text.push_str(uri.path());
    if let Some(query) = uri.query() {
        text.push('?');
        text.push_str(query);
    }
    text
}

/// The record of a request or tunnel not yet answered. If it is dropped
/// before [`Unanswered::answered`] (the client went away, or its
/// connection closed, while modgate waited on an upstream), the event is
/// emitted anyway, status 499, saying so; a tunnel cut after it was
/// established keeps its 200 and says it was cut. No request goes
/// unlogged.
#[derive(Debug)]
pub struct Unanswered(Option<Box<Access>>);

/// The status logged for a request whose client went away first (nginx's
/// "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

impl Unanswered {
    /// Guards `access` until the request is answered. It is boxed once
    /// here: it travels with the request, then with the response body.
    pub fn new(access: Access) -> Unanswered {
        Unanswered(Some(Box::new(access)))
    }

    /// The record, for the answer to emit.
    pub fn answered(mut self) -> Box<Access> {
        // Present until this call, which consumes the guard.
        self.0.take().expect("an unanswered record holds its access")
    }
}

impl std::ops::Deref for Unanswered {
    type Target = Access;

    fn deref(&self) -> &Access {
        // Only `answered` and `drop` take it, and neither leaves the guard usable.
        self.0.as_ref().expect("an unanswered record holds its access")
    }
}

impl std::ops::DerefMut for Unanswered {
    fn deref_mut(&mut self) -> &mut Access {
        self.0.as_mut().expect("an unanswered record holds its access")
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(mut access) = self.0.take() else { return };
        if access.status == 0 {
            access.status = CLIENT_CLOSED;
            if access.error.is_none() {
                access.error = Some("no answer sent: the client went away or its connection closed first".into());
            }
        } else if access.error.is_none() {
            // A tunnel established, then cut (a shutdown's grace ran out).
            access.error = Some("cut short: the connection was closed".into());
        }
        access.emit();
    }
}

impl Access {
    /// A record for a request that just arrived.
    pub fn new(client: SocketAddr, method: impl Into<Cow<'static, str>>, target: impl Into<String>) -> Access {
        let (bytes_in, bytes_out) = Counter::pair();
        Access {
            client,
            user: None,
            method: method.into(),
            target: target.into(),
            rule: None,
            action: ActionTaken::Error,
            upstream: None,
            parent: None,
            original: None,
            status: 0,
            bytes_in,
            bytes_out,
            judgement: None,
            cache: None,
            mirror_state: None,
            error: None,
            started: Instant::now(),
            telemetry: None,
        }
    }

    /// The same record, also counted by `telemetry` when it is emitted.
    pub fn reporting_to(mut self, telemetry: Arc<dyn AccessSink>) -> Access {
        self.telemetry = Some(telemetry);
        self
    }

    /// Records `err` as the outcome: its status and message.
    /// modgate answers it with `err`'s `modgate:` line, whose bytes are
    /// counted as sent.
    pub fn fail(&mut self, err: &Error) {
        self.status = err.status().as_u16();
        self.error = Some(err.to_string());
        self.bytes_out.add(err.body().len() as u64);
        if let Error::Chain { verdict, vendor, .. } = err {
            self.judgement = Some(Judgement {
                verdict: *verdict,
                vendor: Some(vendor.clone()),
            });
        }
    }

    /// Records the plan's rule and action.
    pub fn planned(&mut self, plan: &Plan<'_>) {
        self.rule = plan.rule().map(|r| r.name.clone());
        self.action = plan.action();
    }

    /// Emits the event.
    pub fn emit(mut self) {
        // Everything a peer chose (method, target, upstream errors) is
        // escaped: one event is one line, and no byte reaches a terminal raw.
        // An error message escaped the parts it quotes already.
        let error = self.error.as_deref().map(controls);
        tracing::info!(
            target: "modgate::access",
            client = %self.client,
            user = self.user.as_deref().map(escape).as_deref(),
            method = %escape(&self.method),
            target = %escape(&self.target),
            rule = self.rule.as_deref().unwrap_or("-"),
            action = self.action.as_str(),
            upstream = %self.upstream.as_ref().map_or(Cow::Borrowed("-"), |u| match u {
                AnswerSource::Addr(addr) => Cow::Owned(addr.to_string()),
                AnswerSource::Named(name) => escape(name),
            }),
            parent = self.parent.as_deref(),
            original = self.original.map(|a| a.to_string()).as_deref(),
            status = self.status,
            bytes_in = self.bytes_in.get(),
            bytes_out = self.bytes_out.get(),
            duration_ms = self.started.elapsed().as_millis() as u64,
            verdict = self.judgement.as_ref().map(|j| j.verdict.as_str()),
            vendor = self.judgement.as_ref().and_then(|j| j.vendor.as_deref()).map(escape).as_deref(),
            cache = self.cache.map(CacheStatus::as_str),
            mirror_state = self.mirror_state.as_deref().map(escape).as_deref(),
            error = error.as_deref(),
            "access"
        );
        if let Some(telemetry) = self.telemetry.take() {
            telemetry.record(self);
        }
    }
}

pin_project! {
    /// A body that counts its bytes and, when it is dropped (finished or
    /// abandoned), emits the access record it carries. A body that failed
    /// or was cut off before its end is logged with the error and the bytes
    /// actually sent, never as a plain success.
    pub struct Metered<B> {
        #[pin]
        inner: B,
        count: Counter,
        access: Option<Box<Access>>,
        // The body reached its end (or had none).
        ended: bool,
        // The Content-Length sent, when there is one: hyper stops reading
        // a body once that many bytes went out, without asking for its end.
        expected: Option<u64>,
        sent: u64,
    }

    impl<B> PinnedDrop for Metered<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(mut access) = this.access.take() else { return };
            if !*this.ended && access.error.is_none() {
                access.error = Some(format!(
                    "response cut off after {} bytes: the client went away or the connection closed",
                    this.count.get()
                ));
            }
            access.emit();
        }
    }
}

impl<B: Body> Metered<B> {
    /// Counts `inner`'s bytes into the record's `bytes_out`, and emits the
    /// record when the body is dropped. With `Content-Length: length`, it
    /// has ended once that many bytes went out.
    pub fn logged_with_length(inner: B, access: Box<Access>, length: Option<u64>) -> Metered<B> {
        Metered {
            ended: inner.is_end_stream() || length == Some(0),
            inner,
            count: access.bytes_out.clone(),
            access: Some(access),
            expected: length,
            sent: 0,
        }
    }
}

impl<B: Body> Body for Metered<B>
where
    B::Error: std::fmt::Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = this.inner.as_mut().poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(data) = f.data_ref() {
                    this.count.add(data.remaining() as u64);
                    *this.sent += data.remaining() as u64;
                }
                if this.inner.is_end_stream() || this.expected.is_some_and(|n| *this.sent >= n) {
                    *this.ended = true;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                *this.ended = true;
                if let Some(access) = this.access.as_mut() {
                    access.error = Some(format!(
                        "the body failed after {} bytes: {}",
                        this.count.get(),
                        escape(&e.to_string())
                    ));
                }
            }
            Poll::Ready(None) => *this.ended = true,
            Poll::Pending => {}
        }
        frame
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

    #[test]
    fn methods_uris_and_upstreams_read_as_they_display() {
        for method in ["GET", "HEAD", "CONNECT", "PATCH", "PROPFIND"] {
            let parsed = http::Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(method_name(&parsed), method);
        }
        assert!(matches!(method_name(&http::Method::GET), Cow::Borrowed(_)));
        for uri in [
            "http://example.com",
            "http://example.com:8080/a?b=c",
            "/x/@v/list",
            "*",
            "example.com:443",
            "http://example.com/?",
            "http://[::1]:80/x?y=%20",
            "/p?q=1&r",
        ] {
            let parsed: http::Uri = uri.parse().unwrap();
            let text = uri_text(&parsed);
            assert_eq!(text, parsed.to_string());
            assert!(text.capacity() >= text.len());
        }
        for addr in ["10.1.2.3:80", "[2001:db8::1]:8443", "[fe80::1%2]:443"] {
            let parsed: SocketAddr = addr.parse().unwrap();
            assert_eq!(AnswerSource::Addr(parsed).to_string(), addr);
        }
        assert_eq!(AnswerSource::CACHE.to_string(), "cache");
    }

    #[test]
    fn a_records_two_counters_share_one_allocation_and_count_apart() {
        let access = Access::new("127.0.0.1:1".parse().unwrap(), "GET", "/");
        let (bytes_in, bytes_out) = (access.bytes_in.clone(), access.bytes_out.clone());
        bytes_in.add(3);
        bytes_out.add(40);
        bytes_out.add(2);
        assert_eq!((access.bytes_in.get(), access.bytes_out.get()), (3, 42));
        assert!(Arc::ptr_eq(&access.bytes_in.cells, &access.bytes_out.cells));
        assert_eq!(Counter::default().get(), 0);
    }
}

//! The pooled client for origins and mirrors: keep-alive connections over
//! plain TCP or verified TLS, opened through the [`Dialer`].
//!
//! Over TLS modgate offers http/1.1 alone, even to origins that speak h2
//! (proxy.golang.org does): a request on a pooled keep-alive connection of
//! its own costs less than one multiplexed into an h2 connection's
//! streams (2-23% of modgate's CPU per intercepted request, measured with
//! `BENCH_H2_ORIGIN=1 bench/run --ab`). An origin that speaks only h2
//! refuses that handshake; it is asked again with h2, and remembered for
//! a day.
//!
//! A request that is safe to send again (GET, HEAD or OPTIONS, no body)
//! and whose pooled connection closed before its response head arrived is
//! sent once more ([`send`]): an upstream may close an idle keep-alive
//! connection just as a request goes out on it.
//!
//! Each worker thread (`proxy::workers`) has its own pools
//! ([`PerWorker`]): a request uses only connections whose tasks run on its
//! own thread, so an upstream may see one set of keep-alive connections per
//! worker.
//!
//! Every TLS chain goes through the verdict verifier; the verdict travels
//! with each response (as [`UpstreamInfo`]) into the access event.
//!
//! Each destination has a client (and pool) of its own. Pooled connections
//! are counted across every pool ([`Budget`], as many as `[limits]
//! max_connections`): past half the limit, every pool is replaced (at most
//! once a second), and the idle connections of those no request holds
//! close; so keep-alive connections to many hosts cannot hold the
//! descriptors the limits count on. At the limit a new connection waits
//! for one to close, and is refused with `503` naming the limit if none
//! does within the connect timeout, rather than taking the last
//! descriptors from the listener.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;

use http::{Method, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::core::body::{Body, empty};
use crate::core::cache::{Bounded, bounded};
use crate::core::error::{self, Error};
use crate::core::host::{Authority, Host, default_port};
use crate::core::proxy_url::ProxyUrl;
use crate::core::slot::PerWorker;
use crate::core::timer::{self, Timers};
use crate::core::verdict::Judgement;
use crate::policy::parent::Via;
use crate::tls::verifier::{VerdictVerifier, refusal_in};
use crate::upstream::dial::Dialer;

/// A pooled client for origins and mirrors, over plain TCP or TLS.
pub type HttpClient = Client<Connector, Body>;

/// Destinations (and address sets) with a pooled client of their own.
const CLIENTS_MAX: u64 = 1024;

/// Origins remembered as speaking h2 alone, and for how long: a day, so an
/// origin that starts to offer http/1.1 again is asked again.
const H2_ONLY_MAX: u64 = 1024;
const H2_ONLY_TTL: Duration = Duration::from_secs(24 * 3600);

/// The pooled clients, one per destination. Those that resolve names
/// themselves serve upstreams no rule asked about (configured mirrors). A
/// request whose plan checked
/// the destination's addresses gets a client pinned to exactly those
/// addresses, with its own pool: a name that resolves differently later
/// (DNS rebinding) can never be reached at an address the policy did not
/// check.
///
/// With a `[parent]`, these clients dial through it, and a twin set
/// dials directly, for rules with `parent = false` ([`Clients::via`]).
#[derive(Clone)]
pub struct Clients {
    connector: Connector,
    idle: Duration,
    pools: Arc<PoolsCell>,
    direct: Option<Box<Clients>>,
}

/// The current pools of one [`Clients`], which a flush replaces.
struct PoolsCell {
    pools: ArcSwap<Pools>,
    idle: Duration,
}

impl PoolsCell {
    /// New pools for `connector`, flushed with its budget's others.
    fn new(connector: &Connector, idle: Duration) -> Arc<PoolsCell> {
        let cell = Arc::new(PoolsCell {
            pools: ArcSwap::from_pointee(Pools::new(idle)),
            idle,
        });
        connector.0.budget.register(&cell);
        cell
    }

    /// Replaces the pools: the old ones' idle connections close once no
    /// request holds them.
    fn flush(&self) {
        self.pools.store(Arc::new(Pools::new(self.idle)));
    }
}

/// The pooled clients of one [`Clients`], one per destination, so a
/// request holds only its own destination's pool, and the others' idle
/// connections close when a flush replaces these.
pub struct Pools {
    /// Clients that resolve names themselves, by destination.
    by_dest: Bounded<Authority, Arc<PerWorker<HttpClient>>>,
    /// Clients pinned to the addresses a plan checked.
    pinned: Bounded<Arc<[SocketAddr]>, Arc<PerWorker<HttpClient>>>,
}

impl Pools {
    fn new(idle: Duration) -> Pools {
        // Kept while used: a destination's client (and its warm
        // connections) goes only once nothing asked for it for a while.
        let unused = idle.max(Duration::from_secs(60));
        Pools {
            by_dest: moka::sync::Cache::builder()
                .max_capacity(CLIENTS_MAX)
                .time_to_idle(unused)
                .build(),
            pinned: moka::sync::Cache::builder()
                .max_capacity(CLIENTS_MAX)
                .time_to_idle(unused)
                .build(),
        }
    }
}

tokio::task_local! {
    /// Set when a connection opened for the request being polled waited
    /// for a slot at the budget's limit.
    static SLOT_WAIT: Arc<std::sync::atomic::AtomicBool>;
}

/// Whether one request's own upstream connection waited for a slot at the
/// limit: the connection is dialed while the request's future polls it,
/// so the wait is seen from inside [`SlotWatch::watching`].
#[derive(Debug, Default)]
pub struct SlotWatch(Arc<std::sync::atomic::AtomicBool>);

impl SlotWatch {
    /// `request`, with any slot wait of its connection noted here.
    pub fn watching<F: Future>(&self, request: F) -> impl Future<Output = F::Output> {
        SLOT_WAIT.scope(self.0.clone(), request)
    }

    /// Whether a connection for the request waited for a slot.
    pub fn waited(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a server's pooled connections may hold: they are counted across
/// every pool of its [`Clients`] (and of those a reload puts in their
/// place), against a limit.
#[derive(Debug)]
pub struct Budget {
    /// Pooled connections open, or being opened.
    open: AtomicUsize,
    /// The most open at once.
    limit: usize,
    /// Flushes so far.
    flushes: AtomicU64,
    /// The pools counted here, flushed together.
    cells: std::sync::Mutex<Vec<std::sync::Weak<PoolsCell>>>,
    /// When the pools were last flushed, in milliseconds since `epoch`
    /// (0: never).
    last_flush_ms: AtomicU64,
    epoch: std::time::Instant,
    /// Woken when a pooled connection closes.
    closed: tokio::sync::Notify,
}

impl Budget {
    /// At most `limit` pooled connections (at least 8) open at once.
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            open: AtomicUsize::new(0),
            limit: limit.max(8),
            flushes: AtomicU64::new(0),
            cells: std::sync::Mutex::default(),
            last_flush_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            closed: tokio::sync::Notify::new(),
        })
    }

    /// `timed_out`, a request's wait for its upstream's answer that ran
    /// out, said as what it was when `watch` saw the request's own
    /// connection wait for a slot at the limit: the upstream is not to
    /// blame (nor marked down).
    pub fn explain_timeout(&self, timed_out: Error, watch: &SlotWatch) -> Error {
        let after = match &timed_out {
            Error::UpstreamTimeout { after, .. } | Error::ParentTimeout { after, .. } => *after,
            _ => return timed_out,
        };
        if !watch.waited() {
            return timed_out;
        }
        Error::Overloaded(format!(
            "too many upstream connections ({} open, limits.max_connections = {}): no answer within {} while this request waited for a connection; try again shortly",
            self.open(),
            self.limit,
            crate::core::duration::fmt_duration(after)
        ))
    }

    /// Flushes `cell` with the others from now on.
    fn register(&self, cell: &Arc<PoolsCell>) {
        let mut cells = self.cells.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cells.retain(|c| c.strong_count() > 0);
        cells.push(Arc::downgrade(cell));
    }

    /// Pooled connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts one more pooled connection, flushing the pools' idle
    /// connections past half the limit (at most once a second). At the
    /// limit they are flushed at once and the connection waits for one to
    /// close, until `deadline`; `Err` if none did.
    async fn take(self: &Arc<Budget>, deadline: Instant) -> Result<Counted, Error> {
        loop {
            // Registered before the count is read: a close in between wakes it.
            let closed = self.closed.notified();
            let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
            if open <= self.limit {
                if open > self.limit / 2 {
                    self.flush_idle(open, false);
                }
                return Ok(Counted(self.clone()));
            }
            // Not counted after all; no connection closed, so no one is woken.
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.flush_idle(open, true);
            // Woken by a close, or after a while to flush again: connections
            // that went idle since the last flush hold the slots now.
            let step = (Instant::now() + Duration::from_millis(60)).min(deadline);
            // The request this connection is for (when it is still
            // polling it) learns it waited.
            let _ = SLOT_WAIT.try_with(|waited| waited.store(true, Ordering::Relaxed));
            if timer::timeout_at(step, closed).await.is_err() && Instant::now() >= deadline {
                return Err(Error::Overloaded(format!(
                    "too many upstream connections ({} open, limits.max_connections = {}); try again shortly",
                    self.open(),
                    self.limit
                )));
            }
        }
    }

    /// Has every pool made again, dropping its idle connections: at most
    /// once a second, or every 50 ms when `urgent` (a
    /// connection is waiting at the limit). Logged at most once a second.
    fn flush_idle(&self, open: usize, urgent: bool) {
        let at = (self.epoch.elapsed().as_millis() as u64).max(1);
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        let since = at.saturating_sub(last);
        let gap = if urgent { 50 } else { 1000 };
        if (last != 0 && since < gap)
            || self
                .last_flush_ms
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let cells: Vec<Arc<PoolsCell>> = {
            let mut cells = self.cells.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cells.retain(|c| c.strong_count() > 0);
            cells.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        for cell in cells {
            cell.flush();
        }
        if last == 0 || since >= 1000 {
            tracing::warn!(
                open,
                limit = self.limit,
                "over half the upstream connection limit: idle keep-alive connections to upstreams are closed"
            );
        }
    }
}

/// One pooled connection counted in its [`Budget`] while it lives.
pub struct Counted(Arc<Budget>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.closed.notify_waiters();
    }
}

impl Clients {
    /// Clients dialing through `dialer`, verifying TLS chains with
    /// `verifier`; idle pooled connections close after `idle`, and all of
    /// them count against `budget`.
    pub fn new(
        dialer: Arc<dyn Dialer>,
        connect_timeout: Duration,
        idle: Duration,
        tls: Arc<rustls::ClientConfig>,
        verifier: Arc<VerdictVerifier>,
        budget: Arc<Budget>,
    ) -> Clients {
        let connector = Connector::new(Dial {
            dialer,
            timeout: connect_timeout,
            tls,
            verifier,
            pin: None,
            h2_only: bounded(H2_ONLY_MAX, H2_ONLY_TTL),
            budget,
        });
        Clients {
            pools: PoolsCell::new(&connector, idle),
            connector,
            idle,
            direct: None,
        }
    }

    /// The same clients with another connect timeout (a mirror's own),
    /// with pools of their own.
    pub fn with_connect_timeout(&self, timeout: Duration) -> Clients {
        let connector = Connector::new(Dial {
            timeout,
            ..Dial::clone(&self.connector.0)
        });
        Clients {
            pools: PoolsCell::new(&connector, self.idle),
            connector,
            idle: self.idle,
            direct: self.direct.as_ref().map(|d| Box::new(d.with_connect_timeout(timeout))),
        }
    }

    /// These clients, with a twin set dialing through `direct` for
    /// [`Via::Direct`].
    pub fn with_direct(mut self, direct: Arc<dyn Dialer>) -> Clients {
        let c = &self.connector.0;
        let twin = Clients::new(
            direct,
            c.timeout,
            self.idle,
            c.tls.clone(),
            c.verifier.clone(),
            c.budget.clone(),
        );
        self.direct = Some(Box::new(twin));
        self
    }

    /// What their pooled connections may hold.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.connector.0.budget
    }

    /// The clients for a rule's choice: the direct twin for
    /// [`Via::Direct`] when there is one, else these.
    pub fn via(&self, via: Via) -> &Clients {
        match (via, &self.direct) {
            (Via::Direct, Some(direct)) => direct,
            _ => self,
        }
    }

    /// The parent proxy a plain-HTTP request to `dest` goes to in absolute
    /// form, when these clients send it to one.
    pub fn forward_proxy(&self, dest: &Authority) -> Option<&ProxyUrl> {
        self.connector.0.dialer.forward_proxy(dest)
    }

    /// The client for `url` (`scheme://host[:port]/...`), whose plan
    /// checked `checked` (when it checked any).
    pub fn for_url(&self, url: &str, checked: Option<&[SocketAddr]>) -> ClientRef {
        if let Some(addrs) = checked {
            return self.pinned(addrs);
        }
        let dest = url.parse::<Uri>().ok().and_then(|uri| {
            let https = uri.scheme_str() == Some("https");
            Authority::of_uri(uri.authority()?, default_port(https)).ok()
        });
        // A URL no client can send gets the client of no destination,
        // which says why.
        self.by_dest(&dest.unwrap_or(Authority {
            host: Host::Name(String::new()),
            port: 0,
        }))
    }

    /// The client for a request to `dest`, whose plan checked `checked`
    /// (when it checked any): connections go only to those addresses.
    pub fn for_dest(&self, dest: &Authority, checked: Option<&[SocketAddr]>) -> ClientRef {
        match checked {
            Some(addrs) => self.pinned(addrs),
            None => self.by_dest(dest),
        }
    }

    /// `dest`'s own client, resolving its name itself. A destination seen
    /// before allocates nothing.
    fn by_dest(&self, dest: &Authority) -> ClientRef {
        let pools = self.pools.pools.load();
        if let Some(client) = pools.by_dest.get(dest) {
            return ClientRef(client);
        }
        ClientRef(pools.by_dest.get_with(dest.clone(), || self.make(None)))
    }

    /// The client pinned to `addrs`. An address set seen before allocates
    /// nothing.
    fn pinned(&self, addrs: &[SocketAddr]) -> ClientRef {
        let pools = self.pools.pools.load();
        if let Some(client) = pools.pinned.get(addrs) {
            return ClientRef(client);
        }
        let key: Arc<[SocketAddr]> = Arc::from(addrs);
        ClientRef(pools.pinned.get_with(key.clone(), || self.make(Some(key))))
    }

    /// A client (one per worker) connecting only to `pin` when given.
    fn make(&self, pin: Option<Arc<[SocketAddr]>>) -> Arc<PerWorker<HttpClient>> {
        let connector = Connector::new(Dial {
            pin,
            ..Dial::clone(&self.connector.0)
        });
        Arc::new(PerWorker::new(|| build(connector.clone(), self.idle)))
    }
}

/// A pooled client as [`Clients::for_dest`] picks it: its destination's
/// own, one per worker.
pub struct ClientRef(Arc<PerWorker<HttpClient>>);

impl ClientRef {
    /// The client itself.
    pub fn into_owned(self) -> HttpClient {
        self.0.mine().clone()
    }
}

impl std::ops::Deref for ClientRef {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        self.0.mine()
    }
}

/// Idle keep-alive connections kept per upstream host, per worker: a burst
/// of clients to one host leaves at most this many open behind it, so the
/// descriptors `[limits] max_connections` counts on stay free for clients.
const IDLE_PER_HOST: usize = 64;

fn build(connector: Connector, idle: Duration) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(Timers)
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .timer(Timers)
        .build(connector)
}

/// Sends `req` with `client`. A GET, HEAD or OPTIONS without a body that
/// the upstream did not process is sent once more, on another connection
/// or stream (once: a second failure is the answer): its connection closed
/// before the response head arrived (a pooled keep-alive connection the
/// upstream closes just as the request goes out on it, at its keep-alive
/// timeout), or an h2 upstream refused the stream (`REFUSED_STREAM`, RFC
/// 9113 §8.7: at its stream limit, or going away). Browsers and Go's own
/// transport do the same. A request with a body, or any other method, is
/// never sent twice.
pub async fn send(client: &HttpClient, req: Request<Body>) -> Result<Response<Incoming>, LegacyError> {
    let again = replayable(&req).then(|| {
        let mut copy = Request::new(());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        copy
    });
    match (client.request(req).await, again) {
        (Err(e), Some(again)) if unprocessed(&e) => {
            tracing::debug!(uri = %again.uri(), error = %error::chain(&e), "the upstream did not process the request (closed before answering, or refused the h2 stream); sending it again");
            client.request(again.map(|()| empty())).await
        }
        (result, _) => result,
    }
}

/// The pooled client's error type.
pub type LegacyError = hyper_util::client::legacy::Error;

/// Whether `req` may be sent twice: a safe method (RFC 9110 §9.2.1) and no
/// body, so the second is exactly the first.
fn replayable(req: &Request<Body>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) && req.body().is_end_stream()
}

/// Whether `err` is an established connection that closed (or was reset)
/// before any of the response arrived, or an h2 stream the upstream
/// refused unprocessed: not a connect, DNS or TLS failure, and not a
/// timeout.
fn unprocessed(err: &LegacyError) -> bool {
    use std::io::ErrorKind::*;
    if err.is_connect() {
        return false;
    }
    for e in error::causes(err) {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        if e.downcast_ref::<h2::Error>()
            .is_some_and(|h2| h2.reason() == Some(h2::Reason::REFUSED_STREAM))
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
    }
    false
}

/// Turns a pooled-client error into modgate's error, keeping the
/// connector's own error (DNS, connect, TLS, timeout) when that is the
/// cause. A plain-HTTP request the client sent to `parent` failed there.
pub fn client_error(target: &str, parent: Option<&ProxyUrl>, err: &LegacyError) -> Error {
    if let Some(own) = error::causes(err).find_map(|e| e.downcast_ref::<Error>()) {
        return own.clone();
    }
    let reason = failure(err);
    match parent {
        Some(parent) => Error::ParentFailed {
            parent: parent.to_string(),
            target: target.to_owned(),
            reason,
        },
        None => Error::Upstream {
            target: target.to_owned(),
            reason,
        },
    }
}

/// Why an exchange with an upstream failed, in words: not hyper's names
/// for its internals ("client error (SendRequest)", "connection error").
pub fn failure(err: &(dyn std::error::Error + 'static)) -> String {
    for e in error::causes(err) {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() {
                return "it closed the connection before answering".into();
            }
            if hyper.is_parse_too_large() {
                // hyper's limits on a response head: 100 fields, and its
                // read buffer (8 KiB + 400 KiB).
                return "its answer's head is too large (more than 100 header fields, or over 400 KiB)".into();
            }
            if hyper.is_parse() || hyper.is_parse_status() {
                return format!("its answer is not valid HTTP ({hyper})");
            }
            if hyper.is_timeout() {
                return "it stopped sending".into();
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionReset => "it reset the connection".into(),
                // rustls: the TLS connection ended without close_notify.
                std::io::ErrorKind::UnexpectedEof if io.to_string().contains("close_notify") => {
                    "it closed its TLS connection without close_notify, so a cut could not be told from the end: refused as truncated".into()
                }
                std::io::ErrorKind::UnexpectedEof => "it closed the connection mid-answer".into(),
                _ => io.to_string(),
            };
        }
    }
    // The causes below the pooled client's own wrapper, or its text alone.
    let below: Vec<String> = error::causes(err).skip(1).map(|e| e.to_string()).collect();
    match below.is_empty() {
        true => err.to_string(),
        false => below.join(": "),
    }
}

/// Where a pooled response came from, put into the response's extensions
/// for the access log.
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    /// The address connected to: the upstream's, or the parent proxy's.
    pub addr: SocketAddr,
    /// The verdict on its chain and the vendor, for TLS upstreams.
    pub judgement: Option<Judgement>,
    /// The parent proxy it was reached through, as `http://host:port`.
    pub parent: Option<String>,
}

/// A pooled upstream connection: plain TCP, or TLS over TCP.
pub enum PooledStream {
    /// `http://` origins and mirrors, or the parent proxy they are sent to
    /// in absolute form (then `proxied`).
    Plain(TokioIo<TcpStream>, UpstreamInfo, bool, Counted),
    /// `https://` origins and mirrors.
    Tls(
        Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>,
        UpstreamInfo,
        Counted,
    ),
}

impl Connection for PooledStream {
    fn connected(&self) -> Connected {
        match self {
            PooledStream::Plain(_, info, proxied, _) => Connected::new().extra(info.clone()).proxy(*proxied),
            PooledStream::Tls(io, info, _) => {
                let h2 = io.inner().get_ref().1.alpn_protocol() == Some(b"h2");
                let connected = Connected::new().extra(info.clone());
                if h2 { connected.negotiated_h2() } else { connected }
            }
        }
    }
}

impl hyper::rt::Read for PooledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, ..) => Pin::new(io).poll_read(cx, buf),
            PooledStream::Tls(io, ..) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for PooledStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PooledStream::Plain(io, ..) => Pin::new(io).poll_write(cx, buf),
            PooledStream::Tls(io, ..) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, ..) => Pin::new(io).poll_flush(cx),
            PooledStream::Tls(io, ..) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, ..) => Pin::new(io).poll_shutdown(cx),
            PooledStream::Tls(io, ..) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            PooledStream::Plain(io, ..) => io.is_write_vectored(),
            PooledStream::Tls(io, ..) => io.is_write_vectored(),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PooledStream::Plain(io, ..) => Pin::new(io).poll_write_vectored(cx, bufs),
            PooledStream::Tls(io, ..) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// The connector behind a pooled client: dials through the [`Dialer`]
/// (only to its pinned addresses, when it has them) within the connect
/// timeout, and for `https://` runs a verified TLS handshake (offering
/// http/1.1, or h2 to an origin that speaks only h2) within the same
/// timeout.
///
/// The pooled client clones its connector with itself on every request, so
/// the settings sit behind one count.
#[derive(Clone)]
pub struct Connector(Arc<Dial>);

/// What a [`Connector`] dials with.
#[derive(Clone)]
struct Dial {
    dialer: Arc<dyn Dialer>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    verifier: Arc<VerdictVerifier>,
    /// The only addresses this connector may connect to, when pinned.
    pin: Option<Arc<[SocketAddr]>>,
    /// Origins (`host:port`) that refused http/1.1 and speak h2 alone.
    h2_only: Bounded<String, ()>,
    /// What the pooled connections may hold.
    budget: Arc<Budget>,
}

impl Connector {
    fn new(dial: Dial) -> Connector {
        Connector(Arc::new(dial))
    }
}

impl Dial {
    async fn open(self: Arc<Dial>, uri: Uri) -> Result<PooledStream, Error> {
        let https = uri.scheme_str() == Some("https");
        let dest = uri
            .authority()
            .ok_or_else(|| "no host".to_owned())
            .and_then(|a| Authority::of_uri(a, default_port(https)))
            .map_err(|e| Error::Internal(format!("pooled connect to '{uri}': {e}")))?;
        // The wait for a slot has the connect timeout to itself: the dial
        // and handshake that follow get the whole timeout too, so a slow
        // slot is never blamed on the upstream (nor marks a mirror down).
        let counted = self.budget.take(Instant::now() + self.timeout).await?;
        let deadline = Instant::now() + self.timeout;
        if !https {
            let proxied = self.dialer.forward_proxy(&dest).is_some();
            let dialed = self.dialer.dial_plain(&dest, self.pin.as_deref(), self.timeout).await?;
            let info = UpstreamInfo {
                addr: dialed.peer,
                judgement: None,
                parent: dialed.parent.map(|p| p.to_string()),
            };
            return Ok(PooledStream::Plain(TokioIo::new(dialed.stream), info, proxied, counted));
        }
        let name = match &dest.host {
            Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| Error::Internal(format!("server name {n}: {e}")))?,
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let key = dest.to_string();
        let h2_only = self.h2_only.contains_key(&key);
        let (tls, peer, parent) = match self.handshake(&dest, &name, h2_only, deadline).await? {
            // An origin that speaks only h2 refuses a ClientHello offering
            // http/1.1 alone; it is asked again with h2, and remembered.
            Err((Some(e), _, _)) if !h2_only && refused_protocol(&e) => {
                self.h2_only.insert(key, ());
                self.handshake(&dest, &name, true, deadline).await?
            }
            done => done,
        }
        .map_err(|(e, peer, parent)| {
            let failed = match e {
                Some(e) => tls_error(&dest.https_url(), &e),
                None => Error::TlsTimeout {
                    target: dest.https_url(),
                    addr: peer,
                    after: self.timeout,
                },
            };
            match parent {
                Some(parent) => through_parent(failed, &parent),
                None => failed,
            }
        })?;
        let verified = name.to_str();
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let judgement = leaf.and_then(|leaf| self.verifier.known(leaf, Some(peer), &verified));
        Ok(PooledStream::Tls(
            Box::new(TokioIo::new(tls)),
            UpstreamInfo {
                addr: peer,
                judgement,
                parent,
            },
            counted,
        ))
    }

    /// Dials `dest` and runs a verified TLS handshake by `deadline`,
    /// offering h2 alone when `h2`, else http/1.1 alone. A failed
    /// handshake is its error (none when the deadline passed) with the
    /// address it was made with.
    async fn handshake(
        &self,
        dest: &Authority,
        name: &rustls::pki_types::ServerName<'static>,
        h2: bool,
        deadline: Instant,
    ) -> Result<Handshake, Error> {
        let left = deadline.saturating_duration_since(Instant::now());
        let dialed = self
            .dialer
            .dial(dest, self.pin.as_deref(), left)
            .await
            .map_err(|e| e.allowed(self.timeout))?;
        let (stream, peer) = (dialed.stream, dialed.peer);
        let parent = dialed.parent.map(|p| p.to_string());
        // The name verified is the host connected to; the verifier also
        // learns the address, so verdicts are kept per address.
        let mut config = self.verifier.client_config_for(&self.tls, &name.to_str(), peer);
        if h2 {
            Arc::make_mut(&mut config).alpn_protocols = vec![b"h2".to_vec()];
        }
        let connector = tokio_rustls::TlsConnector::from(config);
        Ok(
            match timer::timeout_at(deadline, connector.connect(name.clone(), stream)).await {
                Ok(Ok(tls)) => Ok((tls, peer, parent)),
                Ok(Err(e)) => Err((Some(e), peer, parent)),
                Err(_) => Err((None, peer, parent)),
            },
        )
    }
}

/// A finished handshake (the stream, the address connected to and the
/// parent proxy in between), or why not, with which address and through
/// which parent.
type Handshake = Result<
    (tokio_rustls::client::TlsStream<TcpStream>, SocketAddr, Option<String>),
    (Option<std::io::Error>, SocketAddr, Option<String>),
>;

/// A handshake that failed inside a tunnel `parent` opened: the parent
/// answered CONNECT with 2xx, so what answered the ClientHello may be the
/// parent itself (an error page, a closed tunnel), not the upstream. The
/// error says so; a judged chain keeps its own words.
fn through_parent(failed: Error, parent: &str) -> Error {
    match failed {
        Error::Tls { target, reason } => Error::Tls {
            target,
            reason: format!(
                "{reason} (through parent proxy {parent}, which accepted CONNECT: it, or what it connected to, does not speak TLS there)"
            ),
        },
        // The chain may be the parent's own (a parent that re-signs):
        // the refusal says which way it came.
        Error::Chain {
            target,
            refusal,
            by_policy,
            verdict,
            vendor,
        } => Error::Chain {
            target,
            refusal: format!("{refusal} (reached through parent proxy {parent})"),
            by_policy,
            verdict,
            vendor,
        },
        Error::TlsTimeout { target, after, .. } => Error::ParentTimeout {
            parent: parent.to_owned(),
            target,
            doing: "waiting for the TLS handshake through the tunnel it accepted".into(),
            after,
        },
        other => other,
    }
}

/// Whether a handshake failed because the server speaks none of the
/// protocols offered (RFC 7301 §3.2: `no_application_protocol`).
fn refused_protocol(e: &std::io::Error) -> bool {
    let Some(inner) = e.get_ref() else { return false };
    error::causes(inner).any(|err| {
        matches!(
            err.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        )
    })
}

/// A failed handshake as modgate's error: the verifier's refusal (naming
/// the issuer, the product and the fix) when it refused the chain.
pub fn tls_error(target: &str, e: &std::io::Error) -> Error {
    match refusal_in(e) {
        Some(refusal) => Error::Chain {
            target: target.to_owned(),
            refusal: refusal.to_string(),
            by_policy: refusal.by_policy,
            verdict: refusal.report.verdict,
            vendor: refusal.report.vendor.clone().unwrap_or_else(|| "unknown".into()),
        },
        None => Error::Tls {
            target: target.to_owned(),
            reason: crate::tls::failure::describe(e),
        },
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = PooledStream;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<PooledStream, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.0.clone().open(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pooled_connections_flush_the_idle_past_half_and_wait_at_the_limit() {
        let budget = Budget::new(8);
        let soon = || Instant::now() + Duration::from_millis(300);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(budget.take(soon()).await.unwrap());
        }
        assert_eq!((budget.open(), budget.flushes.load(Ordering::Relaxed)), (4, 0));
        // Past half: the idle are flushed, once a second at most.
        held.push(budget.take(soon()).await.unwrap());
        assert_eq!(budget.flushes.load(Ordering::Relaxed), 1);
        for _ in 0..3 {
            held.push(budget.take(soon()).await.unwrap());
        }
        assert_eq!((budget.open(), budget.flushes.load(Ordering::Relaxed)), (8, 1));
        // At the limit: flushed (50 ms after the last flush at most), and
        // the connection waits for a close.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let closing = held.pop().unwrap();
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(closing);
        });
        held.push(budget.take(soon()).await.unwrap());
        later.await.unwrap();
        assert_eq!(budget.open(), 8);
        assert!(budget.flushes.load(Ordering::Relaxed) >= 2);
        // None closes: refused at the deadline, naming the limit.
        let refused = budget.take(soon()).await.err().expect("refused at the limit");
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused.to_string(),
            "too many upstream connections (8 open, limits.max_connections = 8); try again shortly"
        );
        // A request whose answer does not come in time while its own
        // connection waits for a slot is said to be that, not its
        // upstream's fault; another request's timeout meanwhile is not.
        let timed_out = || Error::UpstreamTimeout {
            target: "m.test:80".into(),
            after: Duration::from_secs(5),
        };
        let (watch, unrelated) = (Arc::new(SlotWatch::default()), SlotWatch::default());
        let waiting = tokio::spawn({
            let (budget, watch) = (budget.clone(), watch.clone());
            async move {
                let take = budget.take(Instant::now() + Duration::from_secs(30));
                watch.watching(take).await.map(|_| ())
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let said = budget.explain_timeout(timed_out(), &watch);
        assert_eq!(said.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            said.to_string(),
            "too many upstream connections (8 open, limits.max_connections = 8): no answer within 5s while this request waited for a connection; try again shortly"
        );
        assert_eq!(
            budget.explain_timeout(timed_out(), &unrelated).to_string(),
            timed_out().to_string()
        );
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert_eq!(budget.open(), 0);
    }

    /// A chain refused through a parent says which way it came: a parent
    /// that re-signs shows its own chain.
    #[test]
    fn a_chain_refused_through_a_parent_names_the_parent() {
        let refused = Error::Chain {
            target: "https://proxy.golang.org".into(),
            refusal: "presented a chain issued by 'mitmproxy' (mitmproxy), which is not trusted".into(),
            by_policy: false,
            verdict: crate::core::verdict::Verdict::Untrusted,
            vendor: "mitmproxy".into(),
        };
        let text = through_parent(refused, "http://127.0.0.1:8080").to_string();
        assert!(
            text.ends_with("which is not trusted (reached through parent proxy http://127.0.0.1:8080)"),
            "{text}"
        );
    }

    #[test]
    fn an_end_without_close_notify_is_named_as_such() {
        // As rustls reports it.
        let cut = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        assert!(failure(&cut).contains("without close_notify"), "{}", failure(&cut));
        let plain = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "early eof");
        assert_eq!(failure(&plain), "it closed the connection mid-answer");
    }
}

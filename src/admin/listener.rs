//! Binding the admin listener and routing its requests.
//!
//! `serve --admin-listen ADDR` overrides `[admin] listen`. When the address
//! is the default (nobody chose it) and cannot be bound (another modgate
//! holds 9128), modgate warns and runs without the admin listener; an
//! address someone chose that cannot be bound is an error.
//!
//! Access: the listener binds loopback by default. With `[admin]
//! require_auth = true`, every path but `/healthz` asks for the credentials
//! of an `[auth]` user: this is an origin server, so the challenge is `401`
//! with `WWW-Authenticate` and the credentials come in `Authorization`.
//! Failed logins count towards the same per-client lockout as the proxy's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::admin::metrics::{CacheCollector, MirrorCollector};
use crate::admin::{AdminState, chains, health, metrics, page};
use crate::auth::{Door, Presented};
use crate::config::admin::AdminListen;
use crate::core::body::{Body, error_response, text};
use crate::core::timer::{self, Timers};

/// How long a client may take to send a request head.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Admin connections served at once. They are outside `[limits]
/// max_connections`, so beyond this many a new one takes the place of the
/// longest idle (closed), or is answered `503` and closed when none is
/// idle: an admin port opened to the network cannot use up the
/// descriptors the proxy's limits are sized to leave, and idle
/// connections cannot keep a health probe out.
pub const MAX_CONNECTIONS: usize = 64;

/// Admin connections served at once from one address: one client holding
/// connections open cannot take every slot from the health probes.
pub const PER_CLIENT: usize = 16;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on the admin address {addr}: {source}")]
pub struct AdminBindError {
    /// The address.
    pub addr: SocketAddr,
    /// The socket error.
    pub source: std::io::Error,
}

/// A running admin listener.
#[derive(Debug)]
pub struct AdminListener {
    addr: SocketAddr,
}

impl AdminListener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `listen` and serves for as long as the runtime runs: through a
/// shutdown's drain too, so `/readyz` says the proxy is shutting down and
/// `/metrics` can be scraped until the end. `Ok(None)` when the listener
/// is off, or when the default address is busy (warned).
pub async fn start(listen: AdminListen, mut state: AdminState) -> Result<Option<AdminListener>, AdminBindError> {
    let Some(addr) = listen.addr() else {
        return Ok(None);
    };
    let bound = crate::proxy::listener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a)));
    let (listener, addr) = match (bound, listen) {
        (Ok(bound), _) => bound,
        (Err(e), AdminListen::Default(_)) => {
            // Once, in the log (stderr): not also as a line of its own.
            tracing::warn!(
                addr = %addr,
                error = %e,
                "the default admin address cannot be bound (another modgate?); running without the admin listener; set [admin] listen or serve --admin-listen"
            );
            return Ok(None);
        }
        (Err(source), _) => return Err(AdminBindError { addr, source }),
    };
    if let Some(cache) = &state.live.current().cache {
        let metrics = &state.live.current().telemetry.metrics;
        metrics.register_collector(Box::new(CacheCollector(cache.clone())));
    }
    let metrics = &state.live.current().telemetry.metrics;
    metrics.register_collector(Box::new(MirrorCollector(state.live.clone())));
    state.admin = Some(addr);
    tokio::spawn(accept(listener, Arc::new(state)));
    Ok(Some(AdminListener { addr }))
}

async fn accept(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // The turned-away read a little before they are closed (at most this
    // many at once), so they get the 503, not a reset.
    let lingering = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Connections waiting for the place an idle one is giving up.
    let waiting = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_client: PerClient = Arc::default();
    let open = Arc::new(OpenConns::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                timer::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(mine) = ClientSlot::take(&per_client, peer.ip()) else {
            crate::proxy::server::answer_and_close(stream, TOO_MANY_FROM_ONE.as_bytes(), &lingering);
            continue;
        };
        // At the limit, the connection idle the longest (between requests,
        // or not yet done sending one) gives up its place: idle connections
        // held open cannot keep a health probe out.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => Slot::Free(slot),
            // A place to wait first, so no one is closed for a newcomer
            // that is then turned away.
            Err(_) => match waiting.clone().try_acquire_owned() {
                Ok(waiter) if open.close_longest_idle() => Slot::Freed(waiter),
                _ => {
                    crate::proxy::server::answer_and_close(stream, TOO_MANY.as_bytes(), &lingering);
                    continue;
                }
            },
        };
        let (state, slots, open, lingering) = (state.clone(), slots.clone(), open.clone(), lingering.clone());
        tokio::spawn(async move {
            let slot = match slot {
                Slot::Free(slot) => slot,
                Slot::Freed(_waiter) => match timer::timeout(FREED_WAIT, slots.acquire_owned()).await {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        crate::proxy::server::answer_and_close(stream, TOO_MANY.as_bytes(), &lingering);
                        return;
                    }
                },
            };
            // Counted among the open only once it holds a place: one still
            // waiting for a place is never closed to make room.
            let conn = open.add();
            let _held = (slot, mine);
            let served = conn.clone();
            let service = service_fn(move |req| {
                let (state, conn) = (state.clone(), served.clone());
                async move {
                    conn.busy();
                    let resp = route(&state, req, peer).await;
                    // Idle again once the answer's body is written.
                    Ok::<_, Infallible>(resp.map(|body| IdleAfter { body, conn }.boxed_unsync()))
                }
            });
            // A one-request client (`curl`, `nc -N`, a probe) may close its
            // side once the request is sent: it still gets the answer.
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(Timers)
                .half_close(true)
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = serving => {}
                () = conn.close.cancelled() => {}
            }
        });
    }
}

/// How long a connection waits for the place of the idle one closed for it.
const FREED_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A new connection's place among the [`MAX_CONNECTIONS`].
enum Slot {
    /// A place that was free.
    Free(tokio::sync::OwnedSemaphorePermit),
    /// The place of an idle connection being closed, still to be taken.
    Freed(tokio::sync::OwnedSemaphorePermit),
}

/// The admin connections open, so one idle can make room for another.
#[derive(Default)]
struct OpenConns {
    conns: std::sync::Mutex<Vec<std::sync::Weak<Conn>>>,
}

impl OpenConns {
    /// A new connection, idle from now.
    fn add(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            idle_since: std::sync::Mutex::new(Some(std::time::Instant::now())),
            close: tokio_util::sync::CancellationToken::new(),
        });
        let mut conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|c| c.strong_count() > 0);
        conns.push(Arc::downgrade(&conn));
        conn
    }

    /// Closes the connection idle the longest, if one is; whether one was.
    fn close_longest_idle(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let longest = conns
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .filter(|c| !c.close.is_cancelled())
            .filter_map(|c| c.idle_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, conn)) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// One admin connection: whether it is idle, and how to close it.
struct Conn {
    /// Since when it waits for a request (head), or `None` while one is
    /// being answered.
    idle_since: std::sync::Mutex<Option<std::time::Instant>>,
    close: tokio_util::sync::CancellationToken,
}

impl Conn {
    fn idle_since(&self) -> Option<std::time::Instant> {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn busy(&self) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn idle(&self) {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }
}

pin_project_lite::pin_project! {
    /// An answer's body; its connection is idle again once it is done.
    struct IdleAfter {
        #[pin]
        body: Body,
        conn: Arc<Conn>,
    }

    impl PinnedDrop for IdleAfter {
        fn drop(this: Pin<&mut Self>) {
            this.conn.idle();
        }
    }
}

impl http_body::Body for IdleAfter {
    type Data = bytes::Bytes;
    type Error = crate::core::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Admin connections open, by client address.
type PerClient = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One of a client address's [`PER_CLIENT`] admin connections, given back
/// when dropped.
struct ClientSlot {
    open: PerClient,
    client: std::net::IpAddr,
}

impl ClientSlot {
    fn take(open: &PerClient, client: std::net::IpAddr) -> Option<ClientSlot> {
        let mut counts = open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(client).or_default();
        if *n >= PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            open: open.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// The answer to an admin connection beyond [`PER_CLIENT`] from one address.
const TOO_MANY_FROM_ONE: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 71\r\nconnection: close\r\n\r\nmodgate: too many admin connections from your address (16); close some\n";

/// The answer to an admin connection beyond [`MAX_CONNECTIONS`].
const TOO_MANY: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 60\r\nconnection: close\r\n\r\nmodgate: too many admin connections (64); try again shortly\n";

/// The routes, behind the credentials `admin.require_auth` asks for.
async fn route(state: &AdminState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "modgate: the admin listener answers GET",
        );
    }
    // A request modgate itself sent on (through a parent that reaches this
    // listener) is a client of the proxy reaching for the admin page.
    if crate::core::via::came_through_here(req.headers()) {
        return text(
            StatusCode::LOOP_DETECTED,
            "modgate: refused a loop: the request came through this modgate's proxy (its Via names it); the admin listener answers its own clients only",
        );
    }
    let path = req.uri().path();
    // Liveness says only "ok": probes that carry no credentials keep working.
    if path != "/healthz" {
        if let Err(refusal) = authorize(state, &req, peer).await {
            return refusal;
        }
    }
    match path {
        "/" => page::serve(state).await,
        "/metrics" => metrics::serve(&state.live.current().telemetry.metrics),
        "/healthz" => health::healthz(),
        "/readyz" => health::readyz(state).await,
        "/mirrors" => mirrors(state),
        _ => match path.strip_prefix("/chains/") {
            Some(name) => chains::serve(&state.live.current().config.tls.intercepted_dir, name).await,
            None => text(
                StatusCode::NOT_FOUND,
                "modgate: not an admin path; try /, /metrics, /healthz, /readyz or /mirrors",
            ),
        },
    }
}

/// `/mirrors`: each module proxy's health, one line each, as the access
/// event's `mirror_state` writes it (`modgate explain` reads it).
fn mirrors(state: &AdminState) -> Response<Body> {
    let lines: String = state
        .live
        .current()
        .sources
        .statuses()
        .iter()
        .map(|s| format!("{s}\n"))
        .collect();
    text(StatusCode::OK, &lines)
}

/// Under `admin.require_auth`, the `[auth]` user `req` authenticates as;
/// otherwise anyone the listener's address lets in.
async fn authorize(state: &AdminState, req: &Request<Incoming>, peer: SocketAddr) -> Result<(), Response<Body>> {
    let ctx = state.live.current();
    if !ctx.config.admin.require_auth {
        return Ok(());
    }
    // The config refuses require_auth without [auth]; fail closed anyway.
    let Some(auth) = &ctx.auth else {
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            "modgate: admin.require_auth is set but [auth] is not; the admin listener refuses everyone",
        ));
    };
    let presented = Presented::of(req.headers().get_all(AUTHORIZATION).iter().map(|v| v.as_bytes()));
    match auth.authenticate(peer.ip(), presented, Door::Admin).await {
        Ok(_user) => Ok(()),
        Err(e) => Err(error_response(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_beyond_the_limit_is_well_formed() {
        let (head, body) = TOO_MANY.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(body.contains(&format!("({MAX_CONNECTIONS})")), "{body}");
    }

    #[test]
    fn the_connection_idle_the_longest_makes_room_and_a_busy_one_never_does() {
        let open = OpenConns::default();
        let (first, second) = (open.add(), open.add());
        first.busy();
        second.busy();
        assert!(!open.close_longest_idle(), "every one is being answered");
        second.idle();
        first.idle();
        assert!(open.close_longest_idle());
        assert!(second.close.is_cancelled() && !first.close.is_cancelled());
        // One already closing is not picked twice.
        assert!(open.close_longest_idle());
        assert!(first.close.is_cancelled());
        assert!(!open.close_longest_idle());
        drop((first, second));
        assert!(!open.close_longest_idle());
    }
}

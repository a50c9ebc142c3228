//! Accepting clients and running each connection through the stages.
//!
//! One task per client connection:
//! 1. [`http1::read_first`] reads the first request head;
//! 2. a CONNECT goes to [`serve_tunnel`]: policy, then either a relayed
//!    tunnel or, for hosts in `tls.intercept`, [`intercept::serve`];
//! 3. anything else goes to hyper, which calls [`route`] for each request:
//!    an absolute URL is forwarded, an origin-form path goes to modgate's
//!    own module endpoint ([`endpoint`]).
//!
//! On shutdown the listener closes at once, idle keep-alive connections are
//! closed, and in-flight requests and tunnels get `timeouts.shutdown` to
//! finish before they are cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access::{Access, Metered};
use crate::ca::{CaError, LocalCa};
use crate::config::Probe;
use crate::config::{Config, fmt_duration};
use crate::error::Error;
use crate::forward::{self, Body, BoxError, HttpClient};
use crate::http1::{self, FirstRequest, Rewind};
use crate::idle::{Activity, Watched};
use crate::intercept::{self, Interceptor};
use crate::policy::{Action, Decision, Facts, Rule};
use crate::probe::{self, Flight, Seen};
use crate::request::{self, Authority, Target};
use crate::trust::{Trust, TrustError};
use crate::upstream::{self, Resolver, UpstreamInfo};
use crate::verdict::{self, Judged};
use crate::{endpoint, tunnel};

/// What every connection task shares.
pub(crate) struct Shared {
    /// The validated config.
    pub config: Config,
    /// `[hosts]` and DNS.
    pub resolver: Arc<Resolver>,
    /// The pooled client for origins and mirrors.
    pub client: HttpClient,
    /// The verifier behind every upstream TLS connection.
    pub verifier: Arc<crate::verdict::VerdictVerifier>,
    /// Active probe results per host:port: when probed, and the verdict
    /// (`None` while running or when the probe failed).
    pub probes: Mutex<HashMap<String, (Instant, Option<Judged>)>>,
    /// TLS termination for `tls.intercept` hosts, when configured.
    pub interceptor: Option<Interceptor>,
    /// Cancelled when shutdown begins: stop taking new work.
    pub draining: CancellationToken,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// A root file in `[tls]` is unusable.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The local CA is missing or does not fit `tls.intercept`.
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    draining: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Loads the roots and the CA, binds `config.listen` (or `listen` when
    /// given), and starts serving.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> Result<Server, StartError> {
        let trust = Trust::load(&config.tls.public_roots, &config.tls.extra_roots)?;
        let interceptor = match config.tls.intercept.is_empty() {
            true => None,
            false => {
                let tls = &config.tls;
                Some(Interceptor::new(LocalCa::load(
                    &tls.ca_cert,
                    &tls.ca_key,
                    &tls.intercept,
                )?))
            }
        };
        let addr = listen.unwrap_or(config.listen);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let resolver = Arc::new(Resolver::new(config.hosts.clone()));
        let t = config.timeouts;
        let verifier = trust.verdict_verifier(config.tls.on_interception, &config.tls.intercepted_dir);
        let tls = crate::trust::client_config(verifier.clone()).map_err(|e| {
            StartError::Trust(TrustError {
                path: "tls".into(),
                reason: e.to_string(),
            })
        })?;
        let shared = Arc::new(Shared {
            client: forward::client(resolver.clone(), t.connect, t.idle, tls, verifier.clone()),
            verifier,
            probes: Mutex::new(HashMap::new()),
            resolver,
            interceptor,
            config,
            draining: CancellationToken::new(),
        });
        let draining = shared.draining.clone();
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Server { addr, draining, task })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight work finish within the configured
    /// grace period, then returns.
    pub async fn shutdown(self) {
        self.draining.cancel();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let tracker = TaskTracker::new();
    let cut = CancellationToken::new();
    loop {
        let accepted = tokio::select! {
            () = shared.draining.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let shared = shared.clone();
                let cut = cut.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        () = serve_client(&shared, stream, peer) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and similar: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    let grace = shared.config.timeouts.shutdown;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "grace period over; closing the remaining connections"
        );
        cut.cancel();
        tracker.wait().await;
    }
}

async fn serve_client(shared: &Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let first = tokio::select! {
        first = http1::read_first(&mut stream, shared.config.timeouts.header) => first,
        () = shared.draining.cancelled() => return,
    };
    match first {
        Ok(Some(first)) if first.is_connect() => serve_tunnel(shared, stream, peer, first).await,
        Ok(Some(first)) => serve_http(shared, stream, peer, first).await,
        Ok(None) => {}
        Err(err) => {
            let mut access = Access::new(peer, "-", "-");
            access.fail(&err);
            refuse(&mut stream, &err).await;
            access.emit();
        }
    }
}

async fn refuse(stream: &mut TcpStream, err: &Error) {
    let _ = stream.write_all(&err.raw_response()).await;
    let _ = stream.shutdown().await;
}

/// What a CONNECT turns into.
enum TunnelPlan {
    /// Relay bytes to this upstream.
    Relay(TcpStream, SocketAddr, Authority),
    /// Terminate TLS with the local CA and route each request inside.
    Intercept(Authority),
}

/// `CONNECT host:port`: policy, then relay or intercept.
async fn serve_tunnel(shared: &Arc<Shared>, mut client: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let mut access = Access::new(peer, "CONNECT", first.target.clone());
    let plan = match plan_tunnel(shared, &mut access, &first.target).await {
        Ok(plan) => plan,
        Err(err) => {
            access.fail(&err);
            refuse(&mut client, &err).await;
            access.emit();
            return;
        }
    };
    access.status = 200;
    let early = first.after_head();
    if let Err(e) = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await {
        access.error = Some(format!("tunnel setup: {e}"));
        access.emit();
        return;
    }
    let (mut upstream, addr, dest) = match plan {
        TunnelPlan::Relay(upstream, addr, dest) => (upstream, addr, dest),
        TunnelPlan::Intercept(dest) => {
            access.action = "intercept";
            intercept::serve(shared, client, early, peer, dest, &mut access).await;
            access.emit();
            return;
        }
    };
    if let Err(e) = upstream.write_all(&early).await {
        access.error = Some(format!("tunnel setup: {e}"));
        access.emit();
        return;
    }
    access.bytes_in.add(early.len() as u64);
    let idle = shared.config.timeouts.idle;
    let seen = Seen::default();
    let ended = if shared.config.tls.probe == Probe::Off {
        tunnel::relay(
            &client,
            &upstream,
            idle,
            &access.bytes_in,
            &access.bytes_out,
            tunnel::Taps::default(),
        )
        .await
    } else {
        let (mut hello_tap, client_hello) = probe::client_hello_tap(&early);
        let (mut flight_tap, flight) = probe::server_flight_tap();
        let watch = probe::Watch { client_hello, flight };
        let watcher = tokio::spawn(watch_tunnel(shared.clone(), dest, addr, watch, seen.clone()));
        let taps = tunnel::Taps {
            up: Some(&mut hello_tap),
            down: Some(&mut flight_tap),
        };
        let ended = tunnel::relay(&client, &upstream, idle, &access.bytes_in, &access.bytes_out, taps).await;
        drop((hello_tap, flight_tap));
        // The verdict for this tunnel's access event; the relay is over, so
        // waiting here delays nobody.
        let _ = tokio::time::timeout(Duration::from_secs(2), watcher).await;
        ended
    };
    if let Ok(Some((verdict, vendor))) = seen.lock().map(|s| s.clone()) {
        access.verdict = Some(verdict);
        access.vendor = vendor;
    }
    match ended {
        tunnel::Ended::Closed => {}
        tunnel::Ended::Idle => access.error = Some(format!("closed after {} idle", fmt_duration(idle))),
        tunnel::Ended::Failed(e) => access.error = Some(format!("tunnel: {e}")),
    }
    access.emit();
}

async fn plan_tunnel(shared: &Shared, access: &mut Access, target: &str) -> Result<TunnelPlan, Error> {
    let dest = Authority::parse_connect(target)?;
    let connect = shared.config.timeouts.connect;
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
    };
    let checked = upstream::check(&shared.config.rules, &shared.resolver, facts, connect).await?;
    let rule = decided(checked.decision, access, &dest.to_string())?;
    if shared.interceptor.is_some() && shared.config.tls.intercepts(&dest.host) {
        return Ok(TunnelPlan::Intercept(dest));
    }
    if let Action::Mirror { .. } = rule.action {
        return Err(Error::Blocked {
            rule: rule.name.clone(),
            reason: format!(
                "it mirrors module requests, but {} is not in tls.intercept, so modgate cannot see inside this tunnel; add it to tls.intercept or use GOPROXY=http://<modgate>",
                dest.host
            ),
        });
    }
    let (stream, addr) = match checked.addrs {
        Some(addrs) => upstream::connect(&dest, &addrs, connect).await?,
        None => upstream::dial(&shared.resolver, &dest, connect).await?,
    };
    access.upstream = Some(addr.to_string());
    Ok(TunnelPlan::Relay(stream, addr, dest))
}

/// Records the decision in the access record, and turns a refusal into an
/// error. `what` names the target in the no-match message.
pub(crate) fn decided<'a>(decision: Decision<'a>, access: &mut Access, what: &str) -> Result<&'a Rule, Error> {
    let rule = match decision {
        Decision::Matched(rule) => rule,
        Decision::NoMatch => {
            access.action = "block";
            return Err(Error::NoRule(what.to_owned()));
        }
        Decision::NeedsAddress => {
            return Err(Error::Internal(format!("the policy for {what} still needs an address")));
        }
    };
    access.rule = Some(rule.name.clone());
    access.action = rule.action.name();
    match &rule.action {
        Action::Block { reason } => Err(Error::Blocked {
            rule: rule.name.clone(),
            reason: reason.clone(),
        }),
        Action::Direct | Action::Mirror { .. } => Ok(rule),
    }
}

/// Every other first request: hand the connection to hyper.
async fn serve_http(shared: &Shared, stream: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let t = shared.config.timeouts;
    let activity = Arc::new(Activity::new());
    let io = Watched::new(Rewind::new(first.buf.freeze(), stream), activity.clone());
    let service = service_fn(|req| async move { Ok::<_, Infallible>(route(shared, peer, req).await) });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header)
        .max_buf_size(http1::MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "client connection ended");
                }
                return;
            }
            () = shared.draining.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(t.idle) => {
                tracing::debug!(client = %peer, "closing idle client connection");
                return;
            }
        }
    }
}

/// One request on a hyper-served connection: classify, then forward or
/// answer from the module endpoint.
async fn route(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let mut access = Access::new(peer, req.method().as_str(), req.uri().to_string());
    let result = match request::classify(&req) {
        Ok(Target::Forward(dest)) => forward_request(shared, &mut access, req, dest).await,
        Ok(Target::Endpoint) => endpoint::serve(shared, &mut access, req).await,
        Ok(Target::Tunnel(_)) => Err(Error::BadRequest(
            "CONNECT must be the first request on a connection; open a new connection for each tunnel".into(),
        )),
        Err(e) => Err(e),
    };
    respond(result, access)
}

/// The response to send, with the access event emitted when its body ends.
pub(crate) fn respond(result: Result<Response<Body>, Error>, mut access: Access) -> Response<Body> {
    match result {
        Ok(resp) => {
            access.status = resp.status().as_u16();
            resp.map(|body| Metered::logged(body, access).boxed_unsync())
        }
        Err(err) => {
            access.fail(&err);
            access.emit();
            forward::error_response(&err)
        }
    }
}

async fn forward_request(
    shared: &Shared,
    access: &mut Access,
    req: Request<Incoming>,
    dest: Authority,
) -> Result<Response<Body>, Error> {
    let t = shared.config.timeouts;
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
    };
    let checked = upstream::check(&shared.config.rules, &shared.resolver, facts, t.connect).await?;
    let rule = decided(checked.decision, access, &dest.to_string())?;
    if let Action::Mirror { .. } = rule.action {
        return Err(Error::Blocked {
            rule: rule.name.clone(),
            reason: "it mirrors module requests; send them to modgate's module endpoint (GOPROXY=http://<modgate>)"
                .into(),
        });
    }
    let connect_to = checked.addrs.as_ref().and_then(|a| a.first().copied());
    let bytes_in = access.bytes_in.clone();
    let resp = forward::forward(&shared.client, req, Scheme::HTTP, &dest, connect_to, t.header, bytes_in).await?;
    note_upstream(access, resp.extensions());
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
}

/// Records where a pooled response came from, and the verdict on the
/// upstream's chain, in the access record.
pub(crate) fn note_upstream(access: &mut Access, extensions: &http::Extensions) {
    if let Some(info) = extensions.get::<UpstreamInfo>() {
        if access.upstream.is_none() {
            access.upstream = Some(info.addr.to_string());
        }
        if let Some((verdict, vendor)) = &info.verdict {
            access.verdict = Some(*verdict);
            access.vendor = vendor.clone();
        }
    }
}

/// Judges a relayed tunnel's upstream chain: from the server's TLS 1.2
/// Certificate message when there is one, else (TLS 1.3, `probe =
/// "active"`) from one probe handshake per host:port and TTL.
async fn watch_tunnel(shared: Arc<Shared>, dest: Authority, addr: SocketAddr, mut watch: probe::Watch, seen: Seen) {
    let Ok(flight) = (&mut watch.flight).await else { return };
    let sni = watch
        .client_hello
        .try_recv()
        .ok()
        .and_then(|bytes| probe::client_sni(&bytes));
    let host = sni.unwrap_or_else(|| dest.host.to_string());
    match flight {
        Flight::Chain(chain) => {
            judge(&shared, &chain, &host, &seen);
        }
        Flight::Tls13 if shared.config.tls.probe == Probe::Active => active_probe(&shared, &host, &dest, addr, seen),
        _ => {}
    }
}

/// Analyzes a chain for `host`, records evidence, and notes the verdict.
fn judge(
    shared: &Shared,
    chain: &[rustls::pki_types::CertificateDer<'static>],
    host: &str,
    seen: &Seen,
) -> Option<Judged> {
    let report = match verdict::analyze(shared.verifier.verifiers(), chain, Some(host)) {
        Ok(report) => report,
        Err(e) => {
            tracing::debug!(host, error = %e, "cannot judge the tunnel's chain");
            return None;
        }
    };
    shared.verifier.observe(&report, chain);
    let result = (report.verdict, report.vendor.clone());
    if let Ok(mut slot) = seen.lock() {
        *slot = Some(result.clone());
    }
    Some(result)
}

/// One probe handshake per host:port and `tls.probe_ttl`, in its own task,
/// so the tunnel is never delayed.
fn active_probe(shared: &Arc<Shared>, host: &str, dest: &Authority, addr: SocketAddr, seen: Seen) {
    let key = format!("{host}:{}", dest.port);
    let ttl = shared.config.tls.probe_ttl;
    let Ok(mut probes) = shared.probes.lock() else { return };
    if let Some((at, known)) = probes.get(&key) {
        if at.elapsed() < ttl {
            if let (Some(known), Ok(mut slot)) = (known, seen.lock()) {
                *slot = Some(known.clone());
            }
            return;
        }
    }
    if probes.len() >= 4096 {
        probes.retain(|_, (at, _)| at.elapsed() < ttl);
    }
    probes.insert(key.clone(), (Instant::now(), None));
    drop(probes);
    let (shared, host) = (shared.clone(), host.to_owned());
    tokio::spawn(async move {
        let t = shared.config.timeouts;
        let chain = async {
            let tcp = tokio::time::timeout(t.connect, TcpStream::connect(addr))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(t.header, probe::handshake(tcp, &host))
                .await
                .map_err(|_| "handshake timed out".to_owned())?
        };
        match chain.await {
            Ok(chain) => {
                let result = judge(&shared, &chain, &host, &seen);
                if let Ok(mut probes) = shared.probes.lock() {
                    probes.insert(key, (Instant::now(), result));
                }
            }
            Err(e) => tracing::debug!(host = %host, addr = %addr, error = %e, "active probe failed"),
        }
    });
}

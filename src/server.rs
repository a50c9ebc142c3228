//! Accepting clients and running each connection through the stages.
//!
//! One task per client connection:
//! 1. [`http1::read_first`] reads the first request head;
//! 2. a CONNECT goes to [`serve_tunnel`]: policy, connect, relay;
//! 3. anything else goes to hyper, which calls [`route`] for each request:
//!    classify, policy, forward.
//!
//! On shutdown the listener closes at once, idle keep-alive connections are
//! closed, and in-flight requests and tunnels get `timeouts.shutdown` to
//! finish before they are cut.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::config::Config;
use crate::error::Error;
use crate::forward::{self, Body, BoxError, HttpClient};
use crate::http1::{self, FirstRequest, Rewind};
use crate::idle::{Activity, Watched};
use crate::policy::{Action, Decision, Facts, Rule};
use crate::request::{self, Authority, Target};
use crate::tunnel;
use crate::upstream::{self, Resolver, UpstreamAddr};

/// What every connection task shares.
struct Shared {
    config: Config,
    resolver: Arc<Resolver>,
    client: HttpClient,
    /// Cancelled when shutdown begins: stop taking new work.
    draining: CancellationToken,
}

/// A running proxy.
pub struct Server {
    addr: SocketAddr,
    draining: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `config.listen` (or `listen` when given) and starts serving.
    pub async fn start(config: Config, listen: Option<SocketAddr>) -> io::Result<Server> {
        let listener = TcpListener::bind(listen.unwrap_or(config.listen)).await?;
        let addr = listener.local_addr()?;
        let resolver = Arc::new(Resolver::new(config.hosts.clone()));
        let t = config.timeouts;
        let shared = Arc::new(Shared {
            client: forward::client(resolver.clone(), t.connect, t.idle),
            resolver,
            config,
            draining: CancellationToken::new(),
        });
        let draining = shared.draining.clone();
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(Server {
            addr,
            draining,
            task,
        })
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

async fn serve_client(shared: &Shared, mut stream: TcpStream, peer: SocketAddr) {
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
            let _ = stream.write_all(&err.raw_response()).await;
            let _ = stream.shutdown().await;
            access.emit();
        }
    }
}

/// `CONNECT host:port`: policy, connect, `200`, relay.
async fn serve_tunnel(
    shared: &Shared,
    mut client: TcpStream,
    peer: SocketAddr,
    first: FirstRequest,
) {
    let mut access = Access::new(peer, "CONNECT", first.target.clone());
    let mut upstream = match open_tunnel(shared, &mut access, &first.target).await {
        Ok(upstream) => upstream,
        Err(err) => {
            access.fail(&err);
            let _ = client.write_all(&err.raw_response()).await;
            let _ = client.shutdown().await;
            access.emit();
            return;
        }
    };
    access.status = 200;
    let early = first.after_head();
    let opened = async {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&early).await
    };
    if let Err(e) = opened.await {
        access.error = Some(format!("tunnel setup: {e}"));
        access.emit();
        return;
    }
    access.bytes_in.add(early.len() as u64);
    let idle = shared.config.timeouts.idle;
    match tunnel::relay(
        &client,
        &upstream,
        idle,
        &access.bytes_in,
        &access.bytes_out,
    )
    .await
    {
        tunnel::Ended::Closed => {}
        tunnel::Ended::Idle => {
            access.error = Some(format!(
                "closed after {} idle",
                crate::config::fmt_duration(idle)
            ))
        }
        tunnel::Ended::Failed(e) => access.error = Some(format!("tunnel: {e}")),
    }
    access.emit();
}

async fn open_tunnel(
    shared: &Shared,
    access: &mut Access,
    target: &str,
) -> Result<TcpStream, Error> {
    let dest = Authority::parse_connect(target)?;
    let connect = shared.config.timeouts.connect;
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
    };
    let checked = upstream::check(&shared.config.rules, &shared.resolver, facts, connect).await?;
    permit(checked.decision, access, &dest)?;
    let (stream, addr) = match checked.addrs {
        Some(addrs) => upstream::connect(&dest, &addrs, connect).await?,
        None => upstream::dial(&shared.resolver, &dest, connect).await?,
    };
    access.upstream = Some(addr);
    Ok(stream)
}

/// Records the decision and refuses anything but `direct`.
fn permit<'a>(
    decision: Decision<'a>,
    access: &mut Access,
    dest: &Authority,
) -> Result<&'a Rule, Error> {
    let rule = match decision {
        Decision::Matched(rule) => rule,
        Decision::NoMatch => {
            access.action = "block";
            return Err(Error::NoRule(dest.to_string()));
        }
        Decision::NeedsAddress => {
            return Err(Error::Internal(format!(
                "the policy for {dest} still needs an address"
            )));
        }
    };
    access.rule = Some(rule.name.clone());
    access.action = rule.action.name();
    match &rule.action {
        Action::Direct => Ok(rule),
        Action::Block { reason } => Err(Error::Blocked {
            rule: rule.name.clone(),
            reason: reason.clone(),
        }),
    }
}

/// Every other first request: hand the connection to hyper.
async fn serve_http(shared: &Shared, stream: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let t = shared.config.timeouts;
    let activity = Arc::new(Activity::new());
    let io = Watched::new(Rewind::new(first.buf.freeze(), stream), activity.clone());
    let service =
        service_fn(|req| async move { Ok::<_, Infallible>(route(shared, peer, req).await) });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header)
        .max_buf_size(http1::MAX_HEAD_BYTES.max(64 * 1024))
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

/// One request on a hyper-served connection: classify, decide, forward.
async fn route(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let mut access = Access::new(peer, req.method().as_str(), req.uri().to_string());
    match forward_request(shared, &mut access, req).await {
        Ok(resp) => {
            access.status = resp.status().as_u16();
            resp.map(|body| {
                Metered::logged(body, access)
                    .map_err(BoxError::from)
                    .boxed_unsync()
            })
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
) -> Result<Response<Incoming>, Error> {
    let dest = match request::classify(&req)? {
        Target::Forward(dest) => dest,
        Target::Tunnel(_) => {
            return Err(Error::BadRequest(
                "CONNECT must be the first request on a connection; open a new connection for each tunnel".into(),
            ));
        }
        Target::Endpoint => {
            return Err(Error::BadRequest(format!(
                "'{} {}' is not a proxy request; send an absolute URL (http://host/path) or CONNECT host:port",
                req.method(),
                req.uri().path()
            )));
        }
    };
    let t = shared.config.timeouts;
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
    };
    let checked = upstream::check(&shared.config.rules, &shared.resolver, facts, t.connect).await?;
    permit(checked.decision, access, &dest)?;
    let connect_to = checked.addrs.as_ref().and_then(|a| a.first().copied());
    let resp = forward::forward(
        &shared.client,
        req,
        &dest,
        connect_to,
        t.header,
        access.bytes_in.clone(),
    )
    .await?;
    access.upstream = resp.extensions().get::<UpstreamAddr>().map(|u| u.0);
    Ok(resp)
}

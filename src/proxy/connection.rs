//! One client connection on the proxy port, from its first byte (a
//! connection the firewall redirected goes to [`redirected`] instead):
//! 1. [`head::read_first`] reads the first request head;
//! 2. a CONNECT goes to [`tunnel::serve`];
//! 3. anything else goes to hyper, which calls [`serve_request`] for each
//!    request: an absolute URL is forwarded ([`forward`]), an origin-form
//!    path goes to modgate's own module endpoint ([`endpoint`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::proxy::classify::{Target, classify};
use crate::proxy::context::Context;
use crate::proxy::drain::serve_until_done;
use crate::proxy::frontdoor::{FrontDoor, Guarded};
use crate::proxy::gate::{self, Entrance};
use crate::proxy::head::{self, FirstRequest, Rewind};
use crate::proxy::idle::{Activity, Watched};
use crate::proxy::listener::Inbound;
use crate::proxy::respond::respond;
use crate::proxy::{authenticate, endpoint, forward, redirected, tunnel};
use crate::telemetry::access::{Unanswered, method_name, uri_text};

/// Serves one client connection until it ends.
///
/// Each kind of connection's state is boxed: a task holds its future's
/// largest state for its whole life, so an idle tunnel would otherwise
/// carry the HTTP and interception paths' kilobytes (issue 13 measured
/// 16.8 KiB per idle tunnel unboxed, 12.8 KiB boxed).
pub async fn serve(ctx: &Arc<Context>, mut stream: TcpStream, peer: SocketAddr, inbound: Inbound) {
    if let Inbound::Transparent(redirected) = inbound {
        return Box::pin(redirected::serve(ctx, stream, peer, redirected)).await;
    }
    let _ = stream.set_nodelay(true);
    let first = tokio::select! {
        first = head::read_first(&mut stream, ctx.config.timeouts.header) => first,
        () = ctx.draining.cancelled() => return,
    };
    match first {
        Ok(Some(first)) if first.is_connect() => tunnel::serve(ctx, stream, peer, first).await,
        Ok(Some(first)) => Box::pin(serve_http(ctx, stream, peer, first)).await,
        Ok(None) => {}
        Err(err) => {
            let mut access = ctx.access(peer, "-", "-");
            access.fail(&err);
            refuse(&mut stream, &err).await;
            access.emit();
        }
    }
}

/// Writes `err`'s answer to a connection hyper does not own, and closes it.
pub async fn refuse(stream: &mut TcpStream, err: &Error) {
    let _ = stream.write_all(&err.raw_response()).await;
    let _ = stream.shutdown().await;
}

/// Every first request but CONNECT: hand the connection to hyper.
async fn serve_http(ctx: &Arc<Context>, stream: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let t = ctx.config.timeouts;
    let activity = Arc::new(Activity::new());
    let door = FrontDoor::new(ctx, peer, activity.clone());
    let io = Guarded::new(
        Watched::new(Rewind::new(first.buf.freeze(), stream), activity.clone()),
        door.clone(),
    );
    let service = service_fn(|req| {
        let answering = door.answering();
        async move { Ok::<_, Infallible>(answering.track(serve_request(ctx, peer, req).await)) }
    });
    // The header timeout is the front door's (`Activity::quiet_for`), not
    // hyper's: one sleep per connection instead of one per request. A
    // client's close is taken as it leaving, as nginx takes it: its request
    // is cancelled (logged 499), not answered into a half-closed socket; go
    // never closes its side before the answer.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(head::MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    serve_until_done(conn, &ctx.draining, &activity, t.idle, Some(t.header), peer)
        .await
        .log(peer, "client connection", t.header);
}

/// One request on a hyper-served connection: classify, then forward or
/// answer from the module endpoint, under the config in effect now. With
/// `[auth]`, the request must carry a known user's credentials first.
async fn serve_request(ctx: &Arc<Context>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let ctx = &ctx.latest();
    let mut access = Unanswered::new(ctx.access(peer, method_name(req.method()), uri_text(req.uri())));
    if let Err(e) = gate::check(&req, Entrance::ProxyPort) {
        return respond(Err(e), access.answered());
    }
    let target = classify(&req);
    let endpoint = matches!(target, Ok(Target::Endpoint));
    match authenticate::request(ctx, &req, peer.ip(), endpoint).await {
        Ok(user) => access.user = user,
        Err(e) => return respond(Err(e), access.answered()),
    }
    let result = match target {
        Ok(Target::Forward(dest)) => forward::serve(ctx, &mut access, req, dest).await,
        // Boxed, as inside a tunnel: the module path's state would make
        // every request's future kilobytes larger.
        Ok(Target::Endpoint) => Box::pin(endpoint::serve(ctx, &mut access, req)).await,
        Ok(Target::Tunnel(_)) => Err(gate::connect_not_first()),
        Err(e) => Err(e),
    };
    respond(result, access.answered())
}

//! A connection the firewall redirected to the transparent listener,
//! served as if the client had asked for a CONNECT to where it was going:
//! 1. a loop (the destination is modgate itself) is refused at once;
//! 2. [`sniff`] tells TLS from plain HTTP;
//! 3. TLS is planned as a tunnel to the SNI (or the original address), on
//!    the original port: `hosts` rules match the name, `dst` rules the
//!    original address; it is then intercepted or relayed by the tunnel
//!    stage ([`tunnel::establish`], [`tunnel::run`]); a refusal by policy
//!    (a 4xx: a block, a name that does not resolve to the destination)
//!    is a fatal `access_denied` TLS alert, any other one closes the
//!    connection;
//! 4. plain HTTP is served by hyper, each request planned as a forward to
//!    its Host and sent on by the forward stage ([`forward::send`]); a
//!    refusal is the usual `modgate:` answer (403 for a block).
//!
//! Either way the connection goes to the original destination (through
//! the parent, by name, when there is one), and the name must resolve to
//! that destination, as Squid's `host_verify_strict` has it, unless the
//! rule says `verify_host = false`. There are no credentials here: rules
//! with `users` never match.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::core::escape::escape;
use crate::core::host::{Authority, Host};
use crate::core::timer;
use crate::policy::plan::Door;
use crate::policy::rule::{Facts, Rule};
use crate::proxy::context::Context;
use crate::proxy::drain::serve_until_done;
use crate::proxy::frontdoor::{FrontDoor, Guarded};
use crate::proxy::gate::{self, Entrance};
use crate::proxy::head::MAX_HEAD_BYTES;
use crate::proxy::idle::{Activity, Watched};
use crate::proxy::listener::Redirected;
use crate::proxy::respond::respond;
use crate::proxy::route::{Routed, route};
use crate::proxy::sniff::{Sniffed, sniff};
use crate::proxy::{forward, tunnel};
use crate::telemetry::access::{Access, Unanswered, method_name, uri_text};

/// A TLS record holding a fatal `access_denied` alert (RFC 8446 §6: type
/// 21, legacy version 3.3, length 2, level fatal, description 49). Before
/// the server's hello, alerts are in the clear in every TLS version.
const ACCESS_DENIED: [u8; 7] = [21, 3, 3, 0, 2, 2, 49];

/// Serves one redirected connection until it ends.
pub async fn serve(ctx: &Arc<Context>, mut stream: TcpStream, peer: SocketAddr, redirected: Redirected) {
    let original = redirected.original_dst;
    let _ = stream.set_nodelay(true);
    if let Some(looped) = redirected.looped {
        let mut access = ctx.access(peer, "-", original.to_string());
        access.original = Some(original);
        refused(&mut access, &Error::Loop(looped.reason(original)));
        access.emit();
        return;
    }
    let sniffed = tokio::select! {
        sniffed = sniff(&mut stream, ctx.config.timeouts.header) => sniffed,
        () = ctx.draining.cancelled() => return,
    };
    match sniffed {
        Ok(Sniffed::Tls { hello, sni }) => serve_tls(ctx, stream, peer, original, (hello, sni)).await,
        Ok(Sniffed::Http) => serve_http(ctx, stream, peer, original).await,
        Ok(Sniffed::Closed) => {}
        Err(err) => {
            let mut access = ctx.access(peer, "-", original.to_string());
            access.original = Some(original);
            refused(&mut access, &err);
            access.emit();
        }
    }
}

/// Records a refusal that is answered by closing the connection.
fn refused(access: &mut Access, err: &Error) {
    access.status = err.status().as_u16();
    access.error = Some(err.to_string());
}

/// Where a redirected connection goes: the name the client sent, on the
/// original port; the original address when it sent none.
fn destination(name: Option<&str>, original: SocketAddr) -> Authority {
    let host = match name.map(Host::parse) {
        Some(Ok(Host::Name(name))) => Host::Name(name),
        _ => Host::Ip(original.ip()),
    };
    Authority {
        host,
        port: original.port(),
    }
}

/// A TLS connection: a tunnel to the SNI, without the CONNECT.
async fn serve_tls(
    ctx: &Arc<Context>,
    mut client: TcpStream,
    peer: SocketAddr,
    original: SocketAddr,
    (hello, sni): (Bytes, Option<String>),
) {
    let dest = destination(sni.as_deref(), original);
    let mut access = ctx.access(peer, "TLS", dest.to_string());
    access.original = Some(original);
    let tunnel = match open_tunnel(ctx, &mut access, &dest, original).await {
        Ok(tunnel) => tunnel,
        Err(err) => {
            // A TLS client cannot read an HTTP answer. Refused by policy,
            // it is told so by an alert (go: `remote error: tls: access
            // denied`); an upstream failure closes, as a network would.
            refused(&mut access, &err);
            access.emit();
            if err.status().is_client_error() {
                let write = tokio::io::AsyncWriteExt::write_all(&mut client, &ACCESS_DENIED);
                let _ = timer::timeout(ctx.config.timeouts.header, write).await;
            }
            return;
        }
    };
    access.status = 200;
    let _open = ctx.telemetry.metrics.open_tunnel();
    tunnel::run(ctx, client, tunnel, hello, &mut access).await;
    access.emit();
}

/// Plans the tunnel as a CONNECT to `dest` whose address is the original
/// destination, verifies the name, and establishes it there.
async fn open_tunnel(
    ctx: &Context,
    access: &mut Access,
    dest: &Authority,
    original: SocketAddr,
) -> Result<tunnel::Tunnel, Error> {
    let facts = facts(access, dest, original);
    let routed = route(ctx, Door::Tunnel, facts, &dest, access).await?;
    let routed = verified(ctx, routed, dest, None, original).await?;
    tunnel::establish(ctx, access, routed, dest.clone()).await
}

/// What the policy knows of a redirected request: the client, the name,
/// and the original address; never a user.
fn facts<'a>(access: &Access, dest: &'a Authority, original: SocketAddr) -> Facts<'a> {
    Facts {
        src: access.client.ip(),
        dest: Some(dest),
        addr: Some(original.ip()),
        module: None,
        user: None,
        version: None,
        sumdb_lookup: false,
        sumdb_tree: false,
    }
}

/// The plan, once the name is verified (unless the rule trusts it), with
/// the original destination as the one address to connect to.
async fn verified<'a>(
    ctx: &Context,
    mut routed: Routed<'a>,
    dest: &Authority,
    named: Option<&str>,
    original: SocketAddr,
) -> Result<Routed<'a>, Error> {
    verify_host(ctx, routed.plan.rule(), dest, named, original).await?;
    routed.checked = Some(vec![original]);
    Ok(routed)
}

/// Whether the name in `dest` resolves to the original destination, and
/// an address the request `named` (its Host) is that destination's; a rule
/// with `verify_host = false` skips the check.
async fn verify_host(
    ctx: &Context,
    rule: Option<&Rule>,
    dest: &Authority,
    named: Option<&str>,
    original: SocketAddr,
) -> Result<(), Error> {
    if rule.is_some_and(|r| !r.verify_host) {
        return Ok(());
    }
    if let Some(Ok(Host::Ip(ip))) = named.map(Host::parse) {
        if ip.to_canonical() != original.ip().to_canonical() {
            return Err(Error::HostMismatch {
                host: ip.to_string(),
                original,
                reason: "is another address".into(),
            });
        }
    }
    let Host::Name(name) = &dest.host else {
        return Ok(());
    };
    let mismatch = |reason: String| Error::HostMismatch {
        host: name.clone(),
        original,
        reason,
    };
    let resolved = ctx
        .resolver
        .resolve_within(dest, ctx.config.timeouts.connect)
        .await
        .map_err(|e| mismatch(format!("cannot be verified ({e})")))?;
    if resolved
        .iter()
        .any(|a| a.ip().to_canonical() == original.ip().to_canonical())
    {
        return Ok(());
    }
    let list: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
    Err(mismatch(format!("resolves to {}", list.join(", "))))
}

/// A plain-HTTP connection, served by hyper behind the front door (its
/// refusals are `modgate:` lines, as on the proxy port).
async fn serve_http(ctx: &Arc<Context>, stream: TcpStream, peer: SocketAddr, original: SocketAddr) {
    let t = ctx.config.timeouts;
    let activity = Arc::new(Activity::new());
    let door = FrontDoor::redirected(ctx, peer, activity.clone(), original);
    let io = Guarded::new(Watched::new(stream, activity.clone()), door.clone());
    let service = service_fn(|req| {
        let answering = door.answering();
        async move { Ok::<_, Infallible>(answering.track(serve_request(ctx, peer, original, req).await)) }
    });
    // The header timeout is the front door's, as on the proxy port.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    serve_until_done(conn, &ctx.draining, &activity, t.idle, Some(t.header), peer)
        .await
        .log(peer, "redirected connection", t.header);
}

/// One request on a redirected plain-HTTP connection, under the config
/// in effect now.
async fn serve_request(
    ctx: &Arc<Context>,
    peer: SocketAddr,
    original: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let ctx = &*ctx.latest();
    let mut access = Unanswered::new(ctx.access(peer, method_name(req.method()), uri_text(req.uri())));
    access.original = Some(original);
    if let Err(e) = gate::check(&req, Entrance::Redirected) {
        return respond(Err(e), access.answered());
    }
    let result = forward_request(ctx, &mut access, req, original).await;
    respond(result, access.answered())
}

/// Plans the request as a forward to its Host, verifies the name, and
/// sends it to the original destination.
async fn forward_request(
    ctx: &Context,
    access: &mut Access,
    req: Request<Incoming>,
    original: SocketAddr,
) -> Result<Response<Body>, Error> {
    let host = request_host(&req)?;
    let dest = destination(host.as_deref(), original);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    access.target = format!("http://{dest}{path}");
    let facts = facts(access, &dest, original);
    let routed = route(ctx, Door::Forward, facts, &dest, access).await?;
    let routed = verified(ctx, routed, &dest, host.as_deref(), original).await?;
    forward::send(ctx, access, req, dest, routed).await
}

/// The host a request names: its URI's, else its Host header's, without
/// the port (the original destination's port is used).
fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Error> {
    if let Some(host) = req.uri().host() {
        return Ok(Some(host.to_owned()));
    }
    let Some(value) = req.headers().get(http::header::HOST) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::BadRequest("the Host header is not text".into()))?;
    let authority: http::uri::Authority = text
        .parse()
        .map_err(|_| Error::BadRequest(format!("bad Host header '{}'", escape(text))))?;
    Ok(Some(authority.host().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_destination_is_the_name_on_the_original_port() {
        let original: SocketAddr = "192.0.2.7:443".parse().unwrap();
        assert_eq!(
            destination(Some("Proxy.Golang.org"), original).to_string(),
            "proxy.golang.org:443"
        );
        assert_eq!(destination(None, original).to_string(), "192.0.2.7:443");
        assert_eq!(destination(Some("10.0.0.1"), original).to_string(), "192.0.2.7:443");
        assert_eq!(destination(Some("bad name!"), original).to_string(), "192.0.2.7:443");
    }

    #[test]
    fn the_host_comes_from_the_uri_or_the_host_header() {
        let req = Request::get("/x").header("host", "example.com:8080").body(()).unwrap();
        assert_eq!(request_host(&req).unwrap().as_deref(), Some("example.com"));
        let req = Request::get("http://other.example/x").body(()).unwrap();
        assert_eq!(request_host(&req).unwrap().as_deref(), Some("other.example"));
        let req = Request::get("/x").body(()).unwrap();
        assert_eq!(request_host(&req).unwrap(), None);
        let req = Request::get("/x").header("host", "a b").body(()).unwrap();
        assert!(request_host(&req).is_err());
    }
}

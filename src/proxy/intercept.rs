//! Terminating TLS for `tls.intercept` hosts.
//!
//! After `200 Connection established`, modgate reads the ClientHello, answers
//! with a leaf from its local CA for the SNI (or the CONNECT host), offers h2
//! and http/1.1, and serves the connection with hyper. Each request inside
//! goes to [`inside::serve`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::core::duration::fmt_duration;
use crate::core::error;
use crate::core::host::{Authority, Host};
use crate::core::timer::{self, Timers};
use crate::proxy::context::Context;
use crate::proxy::drain::{ConnEnd, serve_until_done};
use crate::proxy::frontdoor::{FrontDoor, Guarded, Tracked};
use crate::proxy::head::{MAX_HEAD_BYTES, Rewind};
use crate::proxy::idle::{Activity, Watched};
use crate::proxy::inside;
use crate::telemetry::access::Access;

/// Streams one client may have open at once on an intercepted h2
/// connection: RFC 9113 §6.5.2's recommended least, and half hyper's
/// default. Each open stream can hold an upstream connection, so this
/// bounds what one client connection costs; go asks for a few modules at
/// a time.
const H2_STREAMS: u32 = 100;

/// Serves an intercepted tunnel until the client closes it. `access` is the
/// tunnel's record; each request inside gets its own.
pub async fn serve(
    ctx: &Arc<Context>,
    client: TcpStream,
    early: Bytes,
    peer: SocketAddr,
    dest: Authority,
    access: &mut Access,
) {
    let Some(interceptor) = ctx.interceptor.as_ref() else {
        access.error = Some("interception is not configured".into());
        return;
    };
    let t = ctx.config.timeouts;
    let activity = Arc::new(Activity::new());
    let io = Watched::counting(
        Rewind::new(early, client),
        activity.clone(),
        access.bytes_in.clone(),
        access.bytes_out.clone(),
    );
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match timer::timeout(t.header, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            access.error = Some(client_hello_failure(&e));
            return;
        }
        Err(_) => {
            access.error = Some(format!("no TLS ClientHello within {}", fmt_duration(t.header)));
            return;
        }
    };
    // The certificate names the tunnel's host: a ClientHello asking for
    // another name (domain fronting around the rules) is refused.
    if let Some(sni) = start.client_hello().server_name() {
        if Host::parse(sni).ok().as_ref() != Some(&dest.host) {
            access.error = Some(format!(
                "refused: the TLS SNI '{}' is not the tunnel's host {}",
                crate::core::escape::escape(sni),
                dest.host
            ));
            if let Some(refusing) = interceptor.refusing_config() {
                let _ = timer::timeout(t.header, start.into_stream(refusing)).await;
            }
            return;
        }
    }
    let name = dest.host.to_string();
    let config = match interceptor.server_config(&name) {
        Ok(config) => config,
        Err(e) => {
            access.error = Some(e.to_string());
            return;
        }
    };
    let tls = match timer::timeout(t.header, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            access.error = Some(handshake_failure(&e));
            tracing::warn!(client = %peer, host = %name, error = %error::chain(&e), "intercepted TLS handshake failed");
            return;
        }
        Err(_) => {
            access.error = Some("TLS handshake with the client timed out".into());
            return;
        }
    };

    let door = FrontDoor::new(ctx, peer, activity.clone());
    let tunnel = Arc::new(Tunnel {
        ctx: ctx.clone(),
        origin: inside::Origin::new(dest),
        user: access.user.clone(),
        original: access.original,
        peer,
        door: door.clone(),
    });
    // TLS chose the protocol (RFC 9113 §3.2: h2 over TLS only by ALPN), so
    // the connection goes straight to that protocol's server, with nothing
    // sniffing its first bytes.
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(Guarded::new(tls, door));
    let ended = if h2 {
        // Boxed: the h2 server spawns each request's future as a task, and a
        // spawn moves the future several times on its way in; this one is
        // kilobytes (callgrind: those moves were ~6k of the ~100k
        // instructions of an intercepted h2 request). On HTTP/1.1 the
        // future stays in place and a box would only add a copy.
        let service = service_fn(move |req| Box::pin(serve_one(tunnel.clone(), req)));
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(Timers)
            .keep_alive_interval(None)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .max_concurrent_streams(H2_STREAMS)
            .serve_connection(io, service);
        serve_until_done(conn, &ctx.draining, &activity, t.idle, None, peer).await
    } else {
        let service = service_fn(move |req| serve_one(tunnel.clone(), req));
        // The header timeout is the front door's (`Activity::quiet_for`),
        // not hyper's: one sleep per connection instead of one per request.
        // It runs from here: the handshake had its own.
        activity.awaiting_head();
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(io, service);
        serve_until_done(conn, &ctx.draining, &activity, t.idle, Some(t.header), peer).await
    };
    match ended {
        ConnEnd::Idle => access.error = Some(format!("closed after {} idle", fmt_duration(t.idle))),
        ConnEnd::NoHead => {
            access.error = Some(format!("closed: no request head within {}", fmt_duration(t.header)));
        }
        ConnEnd::Failed(why) => access.error = Some(format!("the client's connection failed: {why}")),
        ConnEnd::Closed => {}
    }
}

/// One request inside an intercepted tunnel.
async fn serve_one(tunnel: Arc<Tunnel>, req: Request<Incoming>) -> Result<Response<Tracked>, Infallible> {
    let mut answering = tunnel.door.answering();
    // A stream alongside others can hold an upstream connection of its
    // own: it counts against the client's limit as a connection would.
    let mut over = None;
    if answering.alongside_another() {
        match tunnel.ctx.limits.admit_stream(tunnel.peer.ip()) {
            Ok(place) => answering.hold(place),
            Err(e) => over = Some(e),
        }
    }
    let sender = inside::Sender {
        peer: tunnel.peer,
        user: tunnel.user.as_deref(),
        original: tunnel.original,
        over,
    };
    let resp = inside::serve(&tunnel.ctx, sender, &tunnel.origin, req).await;
    Ok(answering.track(resp))
}

/// What every request inside one intercepted tunnel shares, behind one
/// count: a request takes this tunnel's own, where taking the context's
/// would touch a count every connection on every core shares.
struct Tunnel {
    ctx: Arc<Context>,
    origin: inside::Origin,
    user: Option<String>,
    original: Option<SocketAddr>,
    peer: SocketAddr,
    door: Arc<FrontDoor>,
}

/// One line saying why the client refused modgate's certificate, and where
/// each client's trust setting is documented.
/// Why the client's first TLS message could not be read, in words: what
/// rustls names as a protocol fact, said as what the client did.
fn client_hello_failure(e: &std::io::Error) -> String {
    use rustls::{Error as Tls, InvalidMessage, PeerIncompatible, PeerMisbehaved};
    let what = match e.get_ref().and_then(|inner| inner.downcast_ref::<Tls>()) {
        Some(Tls::InvalidMessage(InvalidMessage::InvalidContentType)) => {
            "the client sent something other than TLS inside the tunnel (plain HTTP to an intercepted host? use https://)"
        }
        Some(Tls::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired)) => {
            "the client offers only TLS 1.0 or 1.1, which modgate (rustls) does not implement; it needs TLS 1.2 or later"
        }
        Some(Tls::PeerMisbehaved(PeerMisbehaved::ServerNameMustContainOneHostName))
        | Some(Tls::InvalidMessage(InvalidMessage::InvalidServerName)) => {
            "the client's TLS ClientHello names a host (SNI) that is not a valid DNS name"
        }
        _ => return format!("the client's TLS ClientHello could not be read: {}", error::chain(e)),
    };
    format!("{what} ({})", error::chain(e))
}

fn handshake_failure(e: &std::io::Error) -> String {
    let text = error::chain(e);
    if text.contains("UnknownCA") || text.contains("BadCertificate") || text.contains("CertificateUnknown") {
        return format!(
            "the client does not trust modgate's CA ({text}); give it `modgate ca bundle` as its trust store (go: SSL_CERT_FILE; git, curl, pip, npm, cargo, apt: see docs/clients.md)"
        );
    }
    if text.contains("NoKxGroupsInCommon") || text.contains("NoCipherSuitesInCommon") {
        return format!(
            "the client offers no cipher suite or key exchange modgate has (TLS 1.3, or TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305): {text}"
        );
    }
    format!("TLS handshake with the client failed: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tls::testing::io;

    /// What the client did, said in words, with rustls's fact after it.
    #[test]
    fn a_client_hello_that_cannot_be_read_says_what_the_client_did() {
        use rustls::{InvalidMessage, PeerIncompatible, PeerMisbehaved};
        for (e, words) in [
            (
                rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
                "something other than TLS inside the tunnel",
            ),
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::SignatureAlgorithmsExtensionRequired),
                "offers only TLS 1.0 or 1.1",
            ),
            (
                rustls::Error::PeerMisbehaved(PeerMisbehaved::ServerNameMustContainOneHostName),
                "names a host (SNI) that is not a valid DNS name",
            ),
            (
                rustls::Error::InvalidMessage(InvalidMessage::MissingData("x")),
                "the client's TLS ClientHello could not be read",
            ),
        ] {
            let text = client_hello_failure(&io(e));
            assert!(text.contains(words), "{text}");
        }
        let text = handshake_failure(&io(rustls::Error::PeerIncompatible(
            PeerIncompatible::NoKxGroupsInCommon,
        )));
        assert!(
            text.contains("offers no cipher suite or key exchange modgate has"),
            "{text}"
        );
    }
}

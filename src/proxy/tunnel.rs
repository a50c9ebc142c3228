//! `CONNECT host:port`: plan the tunnel, answer `200 Connection
//! established`, then relay bytes ([`relay`]) while the tunnel's chain is
//! watched ([`watch`]), or hand the client to the interceptor.
//!
//! A redirected TLS connection ([`redirected`](crate::proxy::redirected))
//! is the same tunnel without the CONNECT: it is established and run by
//! the same two functions, [`establish`] and [`run`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{OnInterception, Probe};
use crate::core::duration::fmt_duration;
use crate::core::error::Error;
use crate::core::host::Authority;
use crate::core::timer;
use crate::policy::parent::Via;
use crate::policy::plan::{Door, Plan};
use crate::policy::rule::Facts;
use crate::proxy::connection::refuse;
use crate::proxy::context::Context;
use crate::proxy::head::FirstRequest;
use crate::proxy::route::{Routed, route};
use crate::proxy::{authenticate, gate, intercept, relay, watch};
use crate::telemetry::access::{Access, AnswerSource, Unanswered};

/// What a planned tunnel turns into.
pub enum Tunnel {
    /// Relay bytes to this upstream.
    Relay {
        /// The connection to the destination (or to the parent).
        upstream: TcpStream,
        /// The address verdicts on this tunnel are kept under.
        addr: SocketAddr,
        /// The destination.
        dest: Authority,
        /// Whether it went through the parent.
        via: Via,
    },
    /// Terminate TLS with the local CA and route each request inside.
    Intercept(Authority),
}

/// Resolves when `client` closes (or fails) before sending anything more;
/// bytes it sends early (a ClientHello before the 200) mean it is still
/// there, and this never resolves.
async fn gone(client: &TcpStream) {
    let mut probe = [0u8; 1];
    match client.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Serves a CONNECT until the tunnel ends.
pub async fn serve(ctx: &Arc<Context>, mut client: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let mut access = Unanswered::new(ctx.access(peer, "CONNECT", first.target.clone()));
    // Boxed, as the steps before the relay are not kept while it runs
    // (see connection::serve).
    let opening = async {
        if first.came_through_here {
            return Err(gate::came_back());
        }
        match Box::pin(authenticate::connect(ctx, &first, peer.ip())).await {
            Ok(user) => {
                access.user = user;
                Box::pin(open(ctx, &mut access, &first.target)).await
            }
            Err(err) => Err(err),
        }
    };
    // A client that gives up while the upstream is dialed ends the dial;
    // its record says so when it drops (status 499).
    let opened = tokio::select! {
        opened = opening => opened,
        () = gone(&client) => return,
    };
    let tunnel = match opened {
        Ok(tunnel) => tunnel,
        Err(err) => {
            access.fail(&err);
            refuse(&mut client, &err).await;
            access.answered().emit();
            return;
        }
    };
    access.status = 200;
    let _open = ctx.telemetry.metrics.open_tunnel();
    let early = first.after_head();
    if let Err(e) = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await {
        access.error = Some(format!("tunnel setup: {e}"));
        access.answered().emit();
        return;
    }
    run(ctx, client, tunnel, early, &mut access).await;
    access.answered().emit();
}

/// Runs an established tunnel until it ends; `early` are the client's
/// bytes already read (sent on first).
pub async fn run(ctx: &Arc<Context>, client: TcpStream, tunnel: Tunnel, early: Bytes, access: &mut Access) {
    let peer = access.client;
    match tunnel {
        Tunnel::Intercept(dest) => Box::pin(intercept::serve(ctx, client, early, peer, dest, access)).await,
        Tunnel::Relay {
            upstream,
            addr,
            dest,
            via,
        } => relay_watched(ctx, client, upstream, early, (addr, dest, via), access).await,
    }
}

/// Plans the tunnel and, for a relay, connects to a checked address.
async fn open(ctx: &Context, access: &mut Access, target: &str) -> Result<Tunnel, Error> {
    let dest = Authority::parse_connect(target)?;
    let user = access.user.clone();
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
        user: user.as_deref(),
        version: None,
        sumdb_lookup: false,
        sumdb_tree: false,
    };
    let routed = route(ctx, Door::Tunnel, facts, &dest, access).await?;
    establish(ctx, access, routed, dest).await
}

/// Carries out a tunnel's plan up to the point where bytes can flow:
/// nothing more for an intercepted one; for a relay, a connection to the
/// destination through the rule's dialer, only to the checked addresses.
pub async fn establish(
    ctx: &Context,
    access: &mut Access,
    routed: Routed<'_>,
    dest: Authority,
) -> Result<Tunnel, Error> {
    match routed.plan {
        Plan::Intercept(_) => Ok(Tunnel::Intercept(dest)),
        Plan::Relay(rule) => {
            let via = Via::of(Some(rule));
            let checked = routed.checked.as_deref();
            let dialed = ctx
                .dialer_for(via)
                .dial(&dest, checked, ctx.config.timeouts.connect)
                .await?;
            access.upstream = Some(AnswerSource::Addr(dialed.peer));
            access.parent = dialed.parent.as_ref().map(ToString::to_string);
            // Through a parent, the address connected to is the parent's:
            // verdicts are kept under the destination's checked address.
            let addr = match (&dialed.parent, checked.and_then(<[_]>::first)) {
                (Some(_), Some(first)) => *first,
                _ => dialed.peer,
            };
            // Only `block` may delay a tunnel: the verdict comes first.
            if ctx.config.tls.on_interception == OnInterception::Block {
                watch::preflight(ctx, &dest, addr, via).await?;
            }
            Ok(Tunnel::Relay {
                upstream: dialed.stream,
                addr,
                dest,
                via,
            })
        }
        other => Err(Error::Internal(format!("a tunnel cannot be planned as {other:?}"))),
    }
}

/// Relays the tunnel, with the chain watched unless `tls.probe = "off"`.
async fn relay_watched(
    ctx: &Arc<Context>,
    client: TcpStream,
    mut upstream: TcpStream,
    early: Bytes,
    (addr, dest, via): (SocketAddr, Authority, Via),
    access: &mut Access,
) {
    if let Err(e) = upstream.write_all(&early).await {
        access.error = Some(format!("tunnel setup: {e}"));
        return;
    }
    access.bytes_in.add(early.len() as u64);
    let idle = ctx.config.timeouts.idle;
    let (bytes_in, bytes_out) = (&access.bytes_in, &access.bytes_out);
    let ended = if ctx.config.tls.probe == Probe::Off {
        relay::relay(&client, &upstream, idle, bytes_in, bytes_out, relay::Taps::default()).await
    } else {
        let mut taps = watch::Taps::new(&early);
        let seen = taps.seen.clone();
        let cut = CancellationToken::new();
        let watcher = tokio::spawn(watch::watch(
            ctx.clone(),
            dest.clone(),
            addr,
            via,
            taps.take_watch(),
            cut.clone(),
        ));
        let relayed = relay::relay(&client, &upstream, idle, bytes_in, bytes_out, taps.relay_taps());
        // A chain the policy refuses closes the tunnel at once; the relay
        // itself is never delayed for a verdict.
        let ended = tokio::select! {
            ended = relayed => ended,
            () = cut.cancelled() => relay::Ended::Refused,
        };
        drop(taps);
        // The verdict for this tunnel's access event; the relay is over, so
        // waiting here delays nobody.
        let _ = timer::timeout(Duration::from_secs(2), watcher).await;
        access.judgement = seen.lock().ok().and_then(|s| s.clone());
        ended
    };
    let refused = access.judgement.as_ref().filter(|j| watch::refuses(ctx, j));
    let said = refused.map(|j| format!("{} ({})", j.verdict, j.vendor.as_deref().unwrap_or("unknown")));
    if let Some(said) = &said {
        let when = match ended {
            relay::Ended::Refused => "closing the tunnel",
            _ => "the tunnel had already ended",
        };
        tracing::warn!(host = %dest, chain = %said, "the upstream's chain is refused by policy; {when}");
    }
    match (ended, said) {
        (relay::Ended::Refused, said) => {
            access.error = Some(format!(
                "closed: the upstream's chain is {}, which tls.on_interception refuses (untrusted chains always are)",
                said.unwrap_or_default()
            ));
        }
        // Bytes flow until the verdict is in: a short tunnel can end
        // first, and its event still says the chain was refused.
        (_, Some(said)) => {
            access.error = Some(format!(
                "the upstream's chain is {said}, which tls.on_interception refuses: the tunnel ended before the verdict"
            ));
        }
        (relay::Ended::Closed, None) => {}
        (relay::Ended::Idle, None) => access.error = Some(format!("closed after {} idle", fmt_duration(idle))),
        (relay::Ended::Failed(e), None) => access.error = Some(format!("tunnel: {e}")),
    }
}

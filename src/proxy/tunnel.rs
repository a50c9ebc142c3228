//! `CONNECT host:port`: plan the tunnel, answer `200 Connection
//! established`, then relay bytes ([`relay`]) while the tunnel's chain is
//! watched ([`watch`]), or hand the client to the interceptor.

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
use crate::policy::plan::{Door, Plan};
use crate::policy::rule::Facts;
use crate::proxy::connection::refuse;
use crate::proxy::context::Context;
use crate::proxy::head::FirstRequest;
use crate::proxy::route::route;
use crate::proxy::{intercept, relay, watch};
use crate::telemetry::access::Access;

/// What a planned CONNECT turns into.
enum Tunnel {
    /// Relay bytes to this upstream.
    Relay {
        upstream: TcpStream,
        addr: SocketAddr,
        dest: Authority,
    },
    /// Terminate TLS with the local CA and route each request inside.
    Intercept(Authority),
}

/// Serves a CONNECT until the tunnel ends.
pub async fn serve(ctx: &Arc<Context>, mut client: TcpStream, peer: SocketAddr, first: FirstRequest) {
    let mut access = ctx.access(peer, "CONNECT", first.target.clone());
    let tunnel = match open(ctx, &mut access, &first.target).await {
        Ok(tunnel) => tunnel,
        Err(err) => {
            access.fail(&err);
            refuse(&mut client, &err).await;
            access.emit();
            return;
        }
    };
    access.status = 200;
    let _open = ctx.telemetry.metrics.open_tunnel();
    let early = first.after_head();
    if let Err(e) = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await {
        access.error = Some(format!("tunnel setup: {e}"));
        access.emit();
        return;
    }
    match tunnel {
        Tunnel::Intercept(dest) => intercept::serve(ctx, client, early, peer, dest, &mut access).await,
        Tunnel::Relay { upstream, addr, dest } => {
            relay_watched(ctx, client, upstream, early, addr, dest, &mut access).await
        }
    }
    access.emit();
}

/// Plans the tunnel and, for a relay, connects to a checked address.
async fn open(ctx: &Context, access: &mut Access, target: &str) -> Result<Tunnel, Error> {
    let dest = Authority::parse_connect(target)?;
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
    };
    let routed = route(ctx, Door::Tunnel, facts, &dest.to_string(), access).await?;
    match routed.plan {
        Plan::Intercept(_) => Ok(Tunnel::Intercept(dest)),
        Plan::Relay(_) => {
            let dialed = ctx
                .dialer
                .dial(&dest, routed.checked.as_deref(), ctx.config.timeouts.connect)
                .await?;
            access.upstream = Some(dialed.peer.to_string());
            // Only `block` may delay a tunnel: the verdict comes first.
            if ctx.config.tls.on_interception == OnInterception::Block {
                watch::preflight(ctx, &dest, dialed.peer).await?;
            }
            Ok(Tunnel::Relay {
                upstream: dialed.stream,
                addr: dialed.peer,
                dest,
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
    addr: SocketAddr,
    dest: Authority,
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
        let watcher = tokio::spawn(watch::watch(ctx.clone(), dest, addr, taps.take_watch(), cut.clone()));
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
        let _ = tokio::time::timeout(Duration::from_secs(2), watcher).await;
        access.judgement = seen.lock().ok().and_then(|s| s.clone());
        ended
    };
    match ended {
        relay::Ended::Closed => {}
        relay::Ended::Idle => access.error = Some(format!("closed after {} idle", fmt_duration(idle))),
        relay::Ended::Failed(e) => access.error = Some(format!("tunnel: {e}")),
        relay::Ended::Refused => {
            let said = access
                .judgement
                .as_ref()
                .map(|j| format!("{} ({})", j.verdict, j.vendor.as_deref().unwrap_or("unknown")))
                .unwrap_or_default();
            access.error = Some(format!(
                "closed: the upstream's chain is {said}, which tls.on_interception refuses (untrusted chains always are)"
            ));
        }
    }
}

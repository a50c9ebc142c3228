//! The transparent listener: connections an iptables or nftables
//! `REDIRECT` sent to `[transparent] listen`. They arrive with no proxy
//! protocol; where each was going is read from the kernel
//! (`SO_ORIGINAL_DST`, `IP6T_SO_ORIGINAL_DST` for IPv6).
//!
//! Before a connection is handed on, two loops are recognised: an original
//! destination that is one of modgate's own listeners (which is also what
//! a connection that was not redirected at all reports), and one of
//! modgate's own upstream connections redirected back to it.

use std::io;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::listener::{Accepted, Inbound, Listener, Loop, Redirected};
use crate::upstream::own::{OwnListeners, OwnSockets};

/// The listener for redirected connections.
pub struct TransparentListener {
    listener: TcpListener,
    /// Every address modgate listens on, this one included.
    own_listeners: OwnListeners,
    own_sockets: Option<OwnSockets>,
}

impl TransparentListener {
    /// Binds `addr` and adds it to `own_listeners`, modgate's listeners;
    /// `own_sockets` are its upstream connections.
    pub async fn bind(
        addr: SocketAddr,
        own_listeners: OwnListeners,
        own_sockets: Option<OwnSockets>,
    ) -> io::Result<TransparentListener> {
        let listener = crate::proxy::listener::bind(addr)?;
        own_listeners.add(listener.local_addr()?);
        Ok(TransparentListener {
            listener,
            own_listeners,
            own_sockets,
        })
    }

    /// Where `stream` was going, and whether going there loops.
    fn redirected(&self, stream: &TcpStream, peer: SocketAddr) -> Redirected {
        let local = stream.local_addr().ok();
        let original_dst = match original_dst(stream, local) {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!(client = %peer, error = %e, "cannot read the original destination; treating the connection as not redirected");
                local.unwrap_or(peer)
            }
        };
        let looped = if self.own_sockets.as_ref().is_some_and(|own| own.is_own(peer)) {
            Some(Loop::OwnConnection)
        } else if Some(original_dst) == local || self.own_listeners.reached_by(original_dst).is_some() {
            Some(Loop::OwnListener)
        } else {
            None
        };
        Redirected { original_dst, looped }
    }
}

/// The destination the client connected to before the redirect. An IPv4
/// connection accepted on an IPv6 socket asks the IPv4 table.
#[cfg(target_os = "linux")]
fn original_dst(stream: &TcpStream, local: Option<SocketAddr>) -> io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let v6 = matches!(local, Some(SocketAddr::V6(a)) if a.ip().to_ipv4_mapped().is_none());
    let addr = match v6 {
        true => sock.original_dst_v6()?,
        false => sock.original_dst_v4()?,
    };
    let addr = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("the original destination is not an IP address"))?;
    Ok(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

#[cfg(not(target_os = "linux"))]
fn original_dst(_stream: &TcpStream, _local: Option<SocketAddr>) -> io::Result<SocketAddr> {
    Err(io::Error::other(
        "the transparent listener needs Linux (SO_ORIGINAL_DST)",
    ))
}

impl Listener for TransparentListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<Accepted>> {
        Box::pin(async move {
            let (stream, peer) = self.listener.accept().await?;
            let redirected = self.redirected(&stream, peer);
            Ok(Accepted {
                stream,
                peer,
                inbound: Inbound::Transparent(redirected),
            })
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

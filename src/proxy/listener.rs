//! The listener seam: where client connections come from, and what each
//! one carries besides its socket.
//!
//! The explicit listener takes proxy requests (CONNECT, absolute-form,
//! module endpoint). The transparent listener
//! ([`transparent`](crate::proxy::transparent)), for connections redirected
//! by the firewall, feeds the same connection stages with the original
//! destination in [`Inbound::Transparent`].

use std::io;
use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};

/// Connections the kernel may hold for modgate before it accepts them (it
/// caps this at `net.core.somaxconn`). std's and tokio's 128 drops the SYNs
/// of a burst (a CI fleet starting at once), and each dropped client waits
/// a second or more to retry.
pub const BACKLOG: i32 = 1024;

/// A listening socket on `addr` with a [`BACKLOG`]-deep queue: the proxy,
/// transparent and admin listeners.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restart can bind while the old connections linger.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// How a client connection arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// The client speaks the proxy protocol: CONNECT, absolute-form, or a
    /// request to the module endpoint.
    Explicit,
    /// The firewall redirected the connection here; the client thinks it
    /// talks to the origin.
    Transparent(Redirected),
}

/// Where a redirected connection was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirected {
    /// The original destination (`SO_ORIGINAL_DST`).
    pub original_dst: SocketAddr,
    /// Set when connecting there would reach modgate itself.
    pub looped: Option<Loop>,
}

/// How a redirected connection would loop back into modgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// The original destination is one of modgate's own listeners (or the
    /// connection was not redirected at all).
    OwnListener,
    /// The connection is one of modgate's own upstream connections, which
    /// the firewall redirected back.
    OwnConnection,
}

impl Loop {
    /// Why the connection is refused, and the fix.
    pub fn reason(&self, original_dst: SocketAddr) -> String {
        match self {
            Loop::OwnListener => format!(
                "the original destination {original_dst} is modgate's own listener (a connection made to the transparent port itself, not redirected to it)"
            ),
            Loop::OwnConnection => format!(
                "this is modgate's own upstream connection to {original_dst}, redirected back to it; exempt modgate's traffic from the redirect ([transparent] mark, or an owner match; see docs/network.md)"
            ),
        }
    }
}

/// One accepted client connection.
#[derive(Debug)]
pub struct Accepted {
    /// The client's socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// How it arrived.
    pub inbound: Inbound,
}

/// A source of client connections.
pub trait Listener: Send + Sync {
    /// The next connection.
    fn accept(&self) -> BoxFuture<'_, io::Result<Accepted>>;
    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The proxy port: clients configured to use modgate.
#[derive(Debug)]
pub struct ExplicitListener(TcpListener);

impl ExplicitListener {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> io::Result<ExplicitListener> {
        bind(addr).map(ExplicitListener)
    }
}

impl Listener for ExplicitListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<Accepted>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok(Accepted {
                stream,
                peer,
                inbound: Inbound::Explicit,
            })
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_queue_not_in_syn_retries() {
        // 300 clients connect at once and none is accepted yet: with a
        // 128-deep queue the rest would wait a second for a SYN retry.
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..300).map(|_| tokio::time::timeout(Duration::from_millis(800), TcpStream::connect(addr)));
        let clients = futures_util::future::join_all(connects).await;
        let queued = clients.iter().filter(|c| matches!(c, Ok(Ok(_)))).count();
        assert_eq!(queued, 300);
        let (_, peer) = listener.accept().await.unwrap();
        assert!(peer.ip().is_loopback());
    }
}

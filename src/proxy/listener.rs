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
        TcpListener::bind(addr).await.map(ExplicitListener)
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

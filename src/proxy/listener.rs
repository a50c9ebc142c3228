//! The listener seam: where client connections come from, and what each
//! one carries besides its socket.
//!
//! The explicit listener takes proxy requests (CONNECT, absolute-form,
//! module endpoint). A transparent listener, for connections redirected by
//! the firewall, would feed the same connection stages with the original
//! destination in [`Inbound`].

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

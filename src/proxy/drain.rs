//! Serving one hyper connection to its end: on shutdown it is asked to
//! finish gracefully (idle keep-alive connections close at once, in-flight
//! requests finish), and a connection on which no byte has moved for
//! `timeouts.idle` is closed. The plain proxy port and intercepted tunnels
//! both run their connections through [`serve_until_done`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proxy::idle::Activity;

/// A hyper connection that can be asked to finish gracefully.
pub trait Graceful: Future {
    /// Stops taking new requests; finishes those in flight.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}

impl<I, S, B, E> Graceful for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::Connection::graceful_shutdown(self)
    }
}

/// How a served connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEnd {
    /// The client or hyper closed it (or it finished draining).
    Closed,
    /// No byte moved for the idle timeout.
    Idle,
}

/// Runs `conn` until it ends, draining it when `draining` is cancelled and
/// closing it after `idle` without a byte on `activity`.
pub async fn serve_until_done<C, E>(
    conn: C,
    draining: &CancellationToken,
    activity: &Activity,
    idle: Duration,
    peer: SocketAddr,
) -> ConnEnd
where
    C: Graceful<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut drain_started = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "client connection ended");
                }
                return ConnEnd::Closed;
            }
            () = draining.cancelled(), if !drain_started => {
                drain_started = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle) => return ConnEnd::Idle,
        }
    }
}

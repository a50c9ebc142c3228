//! Opening a TCP connection towards a destination: the [`Dialer`] seam.
//!
//! [`DirectDialer`] connects itself, only to addresses the policy checked
//! when it checked any, with the socket options of [`Outgoing`] (the
//! transparent listener's `SO_MARK`). The parent proxy
//! ([`ParentDialer`](crate::upstream::parent::ParentDialer)) is another
//! dialer behind the same trait. Tunnels, the pooled client, probes and
//! `inspect` all dial through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::core::error::Error;
use crate::core::host::Authority;
use crate::core::proxy_url::ProxyUrl;
use crate::core::timer;
use crate::upstream::own::{OwnListeners, OwnSockets};
use crate::upstream::resolve::Resolver;

/// A connection towards a destination.
#[derive(Debug)]
pub struct Dialed {
    /// The stream; bytes written go to the destination.
    pub stream: TcpStream,
    /// The address the TCP connection went to (the destination's, or a
    /// proxy's).
    pub peer: SocketAddr,
    /// The parent proxy the connection goes through, if any.
    pub parent: Option<ProxyUrl>,
}

/// Opens connections towards destinations.
pub trait Dialer: Send + Sync {
    /// A connection towards `dest` within `timeout`. `checked`, when the
    /// policy resolved `dest` to check its addresses, is that list: a
    /// dialer that connects itself connects only to one of those.
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>>;

    /// The parent proxy a plain-HTTP request to `dest` is sent to in
    /// absolute form (`GET http://host/path`), if there is one; the
    /// request then carries its `Proxy-Authorization`.
    fn forward_proxy(&self, _dest: &Authority) -> Option<&ProxyUrl> {
        None
    }

    /// A connection for plain-HTTP requests to `dest`: to the
    /// destination, or to the parent that [`Dialer::forward_proxy`] names.
    fn dial_plain<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        self.dial(dest, checked, timeout)
    }
}

/// Options of every upstream socket modgate opens itself.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// `SO_MARK` (`[transparent] mark`), so firewall rules can tell
    /// modgate's own traffic from the traffic they redirect to it.
    pub mark: Option<u32>,
    /// Where the local port of each socket is noted, so the transparent
    /// listener can recognise modgate's own connections redirected back.
    pub own: Option<OwnSockets>,
    /// modgate's listeners: a destination that is one of them is refused
    /// as a loop before anything connects.
    pub listeners: OwnListeners,
}

/// Connects straight to the destination.
#[derive(Debug, Clone)]
pub struct DirectDialer {
    resolver: Arc<Resolver>,
    outgoing: Outgoing,
}

impl DirectDialer {
    /// A dialer resolving names through `resolver`.
    pub fn new(resolver: Arc<Resolver>) -> DirectDialer {
        DirectDialer::with(resolver, Outgoing::default())
    }

    /// A dialer whose sockets get `outgoing`'s options.
    pub fn with(resolver: Arc<Resolver>, outgoing: Outgoing) -> DirectDialer {
        DirectDialer { resolver, outgoing }
    }

    /// modgate's listeners, which this dialer never connects to.
    pub fn listeners(&self) -> &OwnListeners {
        &self.outgoing.listeners
    }
}

impl Dialer for DirectDialer {
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let addrs = match checked {
                Some(addrs) => addrs.to_vec(),
                None => self.resolver.resolve_within(dest, timeout).await?,
            };
            connect(dest, &addrs, deadline, timeout, &self.outgoing).await
        })
    }
}

/// How long one connection attempt runs alone before the next address is
/// tried beside it (RFC 8305's Connection Attempt Delay).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to `addrs` with Happy Eyeballs (RFC 8305): the first address
/// at once, and each next one when the previous has not connected within
/// [`ATTEMPT_DELAY`] or has failed; the first to connect wins and the rest
/// are dropped. A black-holed address costs one delay, not the whole
/// `timeout`.
async fn connect(
    target: &Authority,
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
    outgoing: &Outgoing,
) -> Result<Dialed, Error> {
    let Some(&first) = addrs.first() else {
        return Err(Error::Resolve {
            host: target.host.to_string(),
            reason: "no addresses".into(),
        });
    };
    if let Some((addr, listener)) = addrs
        .iter()
        .find_map(|&addr| outgoing.listeners.reached_by(addr).map(|l| (addr, l)))
    {
        return Err(Error::Loop(format!(
            "{target} is {addr}, modgate's own listener {listener}; a mirror, parent, [hosts] entry or CONNECT target must name the real upstream, not modgate"
        )));
    }
    let mut attempts = tokio::task::JoinSet::new();
    let mut pending = addrs.iter().copied();
    let mut last_error = None;
    let mut last_addr = first;
    loop {
        if let Some(addr) = pending.next() {
            last_addr = addr;
            let outgoing = outgoing.clone();
            attempts.spawn(async move { (addr, open(addr, &outgoing).await) });
        }
        if attempts.is_empty() {
            break;
        }
        let next_try = Instant::now() + ATTEMPT_DELAY;
        let wake = if pending.len() > 0 {
            next_try.min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok((addr, Ok(stream)))) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Dialed { stream, peer: addr, parent: None });
                }
                Some(Ok((addr, Err(e)))) => {
                    last_error = Some(Error::Connect {
                        target: target.to_string(),
                        addr,
                        reason: e.to_string(),
                    });
                    // A failure starts the next attempt at once.
                    continue;
                }
                Some(Err(e)) => last_error = Some(Error::Internal(format!("connect task: {e}"))),
                None => break,
            },
            () = timer::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(Error::ConnectTimeout {
                        target: target.to_string(),
                        addr: last_addr,
                        after: timeout,
                    });
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::Resolve {
        host: target.host.to_string(),
        reason: "no addresses".into(),
    }))
}

/// One TCP connection to `addr` with `outgoing`'s options: the mark is
/// set and the local port noted before the connection is attempted.
async fn open(addr: SocketAddr, outgoing: &Outgoing) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(mark) = outgoing.mark {
        set_mark(&socket, mark)?;
    }
    if let Some(own) = &outgoing.own {
        let any: SocketAddr = match addr {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        socket.bind(any)?;
        own.note(socket.local_addr()?);
    }
    socket.connect(addr).await
}

#[cfg(target_os = "linux")]
fn set_mark(socket: &TcpSocket, mark: u32) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_mark(mark).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("setting SO_MARK {mark:#x} (needs CAP_NET_ADMIN): {e}"),
        )
    })
}

#[cfg(not(target_os = "linux"))]
fn set_mark(_socket: &TcpSocket, _mark: u32) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "SO_MARK ([transparent] mark) exists on Linux only",
    ))
}

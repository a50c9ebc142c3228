//! What modgate itself is on the network, so that it never connects to
//! itself (a loop):
//!
//! - [`OwnListeners`]: the addresses it listens on. An upstream connection
//!   to one of them (a mirror, a parent, a CONNECT target or a `[hosts]`
//!   entry that names modgate) would come back as a new client request,
//!   which would connect again, until the connection limits stop it; it is
//!   refused before it is opened.
//! - [`OwnSockets`]: its upstream connections, remembered by local port for
//!   a short while, so that the transparent listener can recognise one
//!   that a firewall redirected back to modgate and refuse it. Each port is
//!   noted when the socket is bound, before it connects, so the note is
//!   always there before a redirected connection can be accepted. A
//!   connection is one of modgate's own when its source port is noted and
//!   its source address belongs to this host.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::core::cache::{Bounded, bounded};

/// Ports remembered at most (the ephemeral range is smaller).
const PORTS_MAX: u64 = 65_536;
/// How long a port is remembered: a redirect happens within the connect.
const REMEMBER: Duration = Duration::from_secs(60);

/// The local ports of recent upstream connections.
#[derive(Clone)]
pub struct OwnSockets(Bounded<u16, ()>);

impl Default for OwnSockets {
    fn default() -> Self {
        OwnSockets(bounded(PORTS_MAX, REMEMBER))
    }
}

impl std::fmt::Debug for OwnSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnSockets").finish_non_exhaustive()
    }
}

impl OwnSockets {
    /// Remembers an upstream socket bound to `local`.
    pub fn note(&self, local: SocketAddr) {
        self.0.insert(local.port(), ());
    }

    /// Whether a connection from `peer` is one of modgate's own.
    pub fn is_own(&self, peer: SocketAddr) -> bool {
        self.0.contains_key(&peer.port()) && is_local(peer.ip())
    }
}

/// The addresses modgate listens on: the proxy's, the transparent
/// listener's and the admin listener's, added as each is bound. Shared by
/// the contexts a reload makes.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners(Arc<RwLock<Vec<SocketAddr>>>);

impl OwnListeners {
    /// Adds a listener bound to `addr`.
    pub fn add(&self, addr: SocketAddr) {
        if let Ok(mut listeners) = self.0.write() {
            listeners.push(addr);
        }
    }

    /// The listener a connection to `dst` would reach, if it is one of
    /// these.
    pub fn reached_by(&self, dst: SocketAddr) -> Option<SocketAddr> {
        let listeners = self.0.read().ok()?;
        listeners.iter().copied().find(|l| reaches(*l, dst))
    }
}

/// Whether a connection to `dst` reaches the listener bound to `listener`:
/// the same port, and the same address or, for a listener on every
/// address (`0.0.0.0`, `[::]`), any address of this host.
pub fn reaches(listener: SocketAddr, dst: SocketAddr) -> bool {
    if listener.port() != dst.port() {
        return false;
    }
    let (listener_ip, dst_ip) = (listener.ip().to_canonical(), dst.ip().to_canonical());
    // A connection to 0.0.0.0 or [::] goes to this host.
    if listener_ip == dst_ip || (dst_ip.is_unspecified() && listener_ip.is_loopback()) {
        return true;
    }
    listener_ip.is_unspecified() && is_local(dst_ip)
}

/// Whether `ip` is an address of this host (in this network namespace):
/// only a local address can be bound.
pub fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_port_from_a_local_address_is_own() {
        let own = OwnSockets::default();
        own.note("0.0.0.0:40123".parse().unwrap());
        assert!(own.is_own("127.0.0.1:40123".parse().unwrap()));
        assert!(!own.is_own("127.0.0.1:40124".parse().unwrap()));
        // TEST-NET-3 is never an address of this host.
        assert!(!own.is_own("203.0.113.9:40123".parse().unwrap()));
    }

    #[test]
    fn own_listeners_are_recognised_by_port_and_address() {
        let any: SocketAddr = "0.0.0.0:3129".parse().unwrap();
        assert!(reaches(any, "127.0.0.1:3129".parse().unwrap()));
        assert!(reaches(any, "0.0.0.0:3129".parse().unwrap()));
        assert!(!reaches(any, "203.0.113.9:3129".parse().unwrap()));
        assert!(!reaches(any, "127.0.0.1:443".parse().unwrap()));
        let one: SocketAddr = "127.0.0.1:3128".parse().unwrap();
        assert!(reaches(one, "127.0.0.1:3128".parse().unwrap()));
        assert!(reaches(one, "[::ffff:127.0.0.1]:3128".parse().unwrap()));
        assert!(reaches(one, "0.0.0.0:3128".parse().unwrap()));
        assert!(!reaches(one, "127.0.0.2:3128".parse().unwrap()));
        let listeners = OwnListeners::default();
        assert_eq!(listeners.reached_by("127.0.0.1:3128".parse().unwrap()), None);
        listeners.add(one);
        listeners.clone().add("[::1]:9090".parse().unwrap());
        assert_eq!(listeners.reached_by("127.0.0.1:3128".parse().unwrap()), Some(one));
        assert!(listeners.reached_by("[::1]:9090".parse().unwrap()).is_some());
        assert_eq!(listeners.reached_by("127.0.0.1:9090".parse().unwrap()), None);
    }
}

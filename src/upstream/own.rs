//! modgate's own upstream connections, remembered by local port for a
//! short while, so that the transparent listener can recognise one that a
//! firewall redirected back to modgate (a loop) and refuse it.
//!
//! Each port is noted when the socket is bound, before it connects, so the
//! note is always there before a redirected connection can be accepted. A
//! connection is one of modgate's own when its source port is noted and
//! its source address belongs to this host.

use std::net::{IpAddr, SocketAddr};
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
}

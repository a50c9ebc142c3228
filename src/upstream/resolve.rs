//! Name resolution: `[hosts]` first, then the system resolver, with a short
//! bounded cache of answers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::core::cache::{Bounded, bounded};
use crate::core::duration::fmt_duration;
use crate::core::error::Error;
use crate::core::host::{Authority, Host, HostOverrides};

/// How long a DNS answer is reused. getaddrinfo does not report TTLs; this
/// keeps lookups off the per-request path without holding stale answers long.
const DNS_CACHE_TTL: Duration = Duration::from_secs(30);
/// Names whose answers are kept; the least recently used go first.
const DNS_CACHE_MAX: u64 = 4096;

/// Name resolution: `[hosts]` first, then the system resolver.
#[derive(Debug)]
pub struct Resolver {
    overrides: HostOverrides,
    cache: Bounded<String, Arc<[IpAddr]>>,
}

impl Resolver {
    /// A resolver with the given `[hosts]` table.
    pub fn new(overrides: HostOverrides) -> Resolver {
        Resolver {
            overrides,
            cache: bounded(DNS_CACHE_MAX, DNS_CACHE_TTL),
        }
    }

    /// The socket addresses for `dest`, in the order to try them.
    pub async fn resolve(&self, dest: &Authority) -> Result<Vec<SocketAddr>, Error> {
        if let Some(pinned) = self.overrides.pinned(dest) {
            return Ok(pinned);
        }
        let Host::Name(name) = &dest.host else {
            return Err(Error::Internal(format!("{dest} is neither a name nor pinned")));
        };
        if let Some(ips) = self.cache.get(name) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, dest.port)).collect());
        }
        let lookup = tokio::net::lookup_host((name.as_str(), dest.port)).await;
        let addrs: Vec<SocketAddr> = lookup
            .map_err(|e| Error::Resolve {
                host: name.clone(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Resolve {
                host: name.clone(),
                reason: "no addresses".into(),
            });
        }
        self.cache
            .insert(name.clone(), addrs.iter().map(SocketAddr::ip).collect());
        Ok(addrs)
    }

    /// [`Resolver::resolve`] within `timeout`.
    pub async fn resolve_within(&self, dest: &Authority, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
        tokio::time::timeout(timeout, self.resolve(dest))
            .await
            .map_err(|_| Error::Resolve {
                host: dest.host.to_string(),
                reason: format!("no answer within {}", fmt_duration(timeout)),
            })?
    }
}

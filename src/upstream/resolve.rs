//! Name resolution: `[hosts]` first, then DNS (hickory), asking both A and
//! AAAA and caching answers for their own TTLs. Answers come back in the
//! order to try them: address families interleaved, IPv6 first (RFC 8305).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;

use crate::config::dns::DnsSettings;
use crate::core::error::Error;
use crate::core::host::{Authority, Host, HostOverrides};
use crate::core::timer;

/// Names whose answers are cached (the cache is bounded and honours TTLs).
const DNS_CACHE_ENTRIES: usize = 4096;

/// Name resolution: `[hosts]` first, then DNS.
pub struct Resolver {
    overrides: HostOverrides,
    dns: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver with the given `[hosts]` table and name servers (the
    /// system's when `dns.servers` is empty).
    pub fn new(overrides: HostOverrides, dns: &DnsSettings) -> Resolver {
        let provider = TokioConnectionProvider::default();
        let mut builder = if dns.servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the system's DNS configuration; names resolve through [hosts] only");
                    TokioResolver::builder_with_config(ResolverConfig::new(), provider)
                }
            }
        } else {
            let mut config = ResolverConfig::new();
            for addr in &dns.servers {
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        if !dns.servers.is_empty() {
            // Each server is listed for UDP and for TCP: ask over UDP, and
            // over TCP only when that fails, not both at once.
            opts.num_concurrent_reqs = 1;
        }
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.cache_size = DNS_CACHE_ENTRIES;
        opts.use_hosts_file = ResolveHosts::Auto;
        Resolver {
            overrides,
            dns: builder.build(),
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
        // A trailing dot makes the name absolute: no search domains. The
        // name is ASCII already (Host keeps IDNs as punycode); read as
        // ASCII, not through IDNA, so `_` (legal in DNS, common in internal
        // names) is kept rather than refused.
        let absolute = Name::from_ascii(format!("{name}.")).map_err(|e| Error::Resolve {
            host: name.clone(),
            reason: format!("not a DNS name: {e}"),
        })?;
        let lookup = self.dns.lookup_ip(absolute).await.map_err(|e| Error::Resolve {
            host: name.clone(),
            reason: lookup_failure(&e),
        })?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() {
            return Err(Error::Resolve {
                host: name.clone(),
                reason: "no addresses".into(),
            });
        }
        Ok(interleave(ips)
            .into_iter()
            .map(|ip| SocketAddr::new(ip, dest.port))
            .collect())
    }

    /// [`Resolver::resolve`] within `timeout`; no answer in time is a `504`.
    pub async fn resolve_within(&self, dest: &Authority, timeout: Duration) -> Result<Vec<SocketAddr>, Error> {
        timer::timeout(timeout, self.resolve(dest))
            .await
            .map_err(|_| Error::ResolveTimeout {
                host: dest.host.to_string(),
                after: timeout,
            })?
    }
}

/// Why a lookup failed, in words: hickory reports a server that failed
/// (SERVFAIL) or refused the query as "no records found", like a name that
/// does not exist, and only the first is "no such host".
fn lookup_failure(e: &hickory_resolver::ResolveError) -> String {
    use hickory_resolver::proto::ProtoErrorKind;
    let code = match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => *response_code,
        _ => return e.to_string(),
    };
    rcode_failure(code)
}

/// The words for a DNS answer with no addresses and response code `code`.
fn rcode_failure(code: hickory_resolver::proto::op::ResponseCode) -> String {
    use hickory_resolver::proto::op::ResponseCode;
    match code {
        ResponseCode::NXDomain => "no such host".into(),
        ResponseCode::NoError => "no such host (the name has no A or AAAA records)".into(),
        ResponseCode::ServFail => {
            "the DNS server failed to answer (SERVFAIL; its upstream or DNSSEC may be broken)".into()
        }
        ResponseCode::Refused => "the DNS server refused the query (REFUSED)".into(),
        other => format!("the DNS server answered {other}"),
    }
}

/// Addresses with the families alternating, IPv6 first (RFC 8305 §4), so a
/// broken family costs one connection attempt delay, not all of them.
fn interleave(ips: Vec<IpAddr>) -> Vec<IpAddr> {
    let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(IpAddr::is_ipv6);
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_alternate_ipv6_first() {
        let ips: Vec<IpAddr> = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "192.0.2.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let got: Vec<String> = interleave(ips).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["2001:db8::1", "192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    }
}

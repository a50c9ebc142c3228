//! The corporate parent proxy in the decision: which upstream connections
//! go through `[parent]`, and which go direct.
//!
//! Every upstream connection goes through the parent when there is one:
//! CONNECT tunnels and TLS upstreams through the HTTPS parent, plain-HTTP
//! forwards through the HTTP parent. Two things send a connection direct
//! instead: a rule with `parent = false`, and a destination host in
//! `no_parent` (the semantics of `NO_PROXY`). Pure: the dialer carries out
//! what [`ParentRoute::leg`] says, and `explain` prints it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::core::host::{Authority, Host};
use crate::core::proxy_url::ProxyUrl;
use crate::policy::rule::Rule;

/// `[parent]`, validated: the parents and the hosts reached without them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentRoute {
    /// For CONNECT tunnels and TLS upstreams (`HTTPS_PROXY` with `url =
    /// "env"`).
    pub https: Option<ProxyUrl>,
    /// For plain-HTTP forwards, sent in absolute form (`HTTP_PROXY` with
    /// `url = "env"`).
    pub http: Option<ProxyUrl>,
    /// Destinations reached directly.
    pub no_parent: NoParent,
    /// Whether the parents came from modgate's environment (`url = "env"`).
    pub from_env: bool,
}

/// Whether a rule lets its connections use the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Through `[parent]`, unless the host is in `no_parent`.
    Parent,
    /// Straight to the destination (`parent = false`).
    Direct,
}

impl Via {
    /// What `rule` says; `Parent` when no rule decided.
    pub fn of(rule: Option<&Rule>) -> Via {
        match rule {
            Some(rule) if !rule.parent => Via::Direct,
            _ => Via::Parent,
        }
    }
}

/// How one upstream connection leaves modgate, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg<'a> {
    /// Through this parent.
    Parent(&'a ProxyUrl),
    /// Straight to the destination.
    Direct(DirectWhy),
}

/// Why a connection goes direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectWhy {
    /// There is no parent for this kind of connection.
    NoParent,
    /// The rule says `parent = false`.
    RuleSaysDirect,
    /// The host is in `no_parent`.
    Exempt,
}

impl ParentRoute {
    /// The leg of a connection to `dest` for a rule whose choice is `via`:
    /// TLS and tunnels (`tls`) use the HTTPS parent, plain HTTP the HTTP
    /// parent.
    pub fn leg(&self, via: Via, dest: &Authority, tls: bool) -> Leg<'_> {
        let parent = match tls {
            true => self.https.as_ref(),
            false => self.http.as_ref(),
        };
        let Some(parent) = parent else {
            return Leg::Direct(DirectWhy::NoParent);
        };
        if via == Via::Direct {
            return Leg::Direct(DirectWhy::RuleSaysDirect);
        }
        if self.no_parent.matches(dest) {
            return Leg::Direct(DirectWhy::Exempt);
        }
        Leg::Parent(parent)
    }
}

impl fmt::Display for Leg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leg::Parent(p) => write!(f, "parent {p}"),
            Leg::Direct(DirectWhy::NoParent) => f.write_str("direct"),
            Leg::Direct(DirectWhy::RuleSaysDirect) => f.write_str("direct (the rule says parent = false)"),
            Leg::Direct(DirectWhy::Exempt) => f.write_str("direct (the host is in no_parent)"),
        }
    }
}

/// Hosts reached without the parent, with `NO_PROXY` semantics: `*`
/// (everything), a domain (`example.com` matches it and its subdomains,
/// `.example.com` its subdomains only), an IP address, or a CIDR; a domain
/// or address may carry a port (`example.com:8080`), and then matches only
/// that port. Addresses and CIDRs match destinations written as
/// addresses, as in `NO_PROXY`: names are not resolved for this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoParent(Vec<Exemption>);

/// One `no_parent` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// `*`: nothing goes through the parent.
    All,
    /// A domain and its subdomains; only subdomains when written with a
    /// leading dot.
    Domain {
        /// The name, lower case, without the leading dot.
        name: String,
        /// Written with a leading dot.
        subdomains_only: bool,
        /// Only this port, when given.
        port: Option<u16>,
    },
    /// A network, or one address (and then maybe one port).
    Net {
        /// The network; a single address is a /32 or /128.
        net: IpNet,
        /// Only this port, when given.
        port: Option<u16>,
    },
}

impl NoParent {
    /// The entries, in order.
    pub fn new(entries: Vec<Exemption>) -> NoParent {
        NoParent(entries)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries.
    pub fn entries(&self) -> &[Exemption] {
        &self.0
    }

    /// Whether connections to `dest` skip the parent.
    pub fn matches(&self, dest: &Authority) -> bool {
        self.0.iter().any(|e| e.matches(dest))
    }
}

impl Exemption {
    fn matches(&self, dest: &Authority) -> bool {
        match (self, &dest.host) {
            (Exemption::All, _) => true,
            (
                Exemption::Domain {
                    name,
                    subdomains_only,
                    port,
                },
                Host::Name(host),
            ) => {
                let under = host.len() > name.len()
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.';
                let same = !subdomains_only && host == name;
                (under || same) && port.is_none_or(|p| p == dest.port)
            }
            (Exemption::Net { net, port }, Host::Ip(ip)) => {
                net.contains(&ip.to_canonical()) && port.is_none_or(|p| p == dest.port)
            }
            _ => false,
        }
    }
}

impl FromStr for Exemption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("bad no_parent entry '{}': {why}", s.escape_debug());
        let s = s.trim();
        if s == "*" {
            return Ok(Exemption::All);
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.contains('/') {
            let net: IpNet = s.parse().map_err(|_| bad("expected a CIDR such as 10.0.0.0/8"))?;
            return Ok(Exemption::Net {
                net: net.trunc(),
                port: None,
            });
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(Exemption::Net {
                net: IpNet::from(ip),
                port: None,
            });
        }
        let (host, port) = split_port(s).map_err(|e| bad(&e))?;
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(Exemption::Net {
                net: IpNet::from(ip),
                port,
            });
        }
        let (subdomains_only, name) = match host.strip_prefix('.') {
            Some(name) => (true, name),
            None => (false, host.strip_prefix("*.").unwrap_or(host)),
        };
        let subdomains_only = subdomains_only || host.starts_with("*.");
        let Ok(Host::Name(name)) = Host::parse(name) else {
            return Err(bad("expected *, a domain, .domain, an IP address or a CIDR"));
        };
        Ok(Exemption::Domain {
            name,
            subdomains_only,
            port,
        })
    }
}

/// `host[:port]`: the host and the port, if one is written.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Ok((s, None));
    };
    if host.contains(':') && !host.ends_with(']') {
        return Ok((s, None));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port '{port}'"))?;
    Ok((host, Some(port)))
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            Exemption::All => f.write_str("*"),
            Exemption::Domain {
                name,
                subdomains_only: true,
                port: p,
            } => write!(f, ".{name}{}", port(p)),
            Exemption::Domain { name, port: p, .. } => write!(f, "{name}{}", port(p)),
            Exemption::Net { net, port: p } if net.prefix_len() == net.max_prefix_len() => match net.addr() {
                IpAddr::V6(v6) if p.is_some() => write!(f, "[{v6}]{}", port(p)),
                addr => write!(f, "{addr}{}", port(p)),
            },
            Exemption::Net { net, .. } => write!(f, "{net}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(s: &str) -> Authority {
        Authority::parse_connect(s).unwrap()
    }

    fn exempt(entries: &[&str], to: &str) -> bool {
        let list = NoParent::new(entries.iter().map(|e| e.parse().unwrap()).collect());
        list.matches(&dest(to))
    }

    #[test]
    fn domains_match_themselves_and_subdomains_dotted_ones_only_subdomains() {
        assert!(exempt(&["corp.example.com"], "corp.example.com:443"));
        assert!(exempt(&["corp.example.com"], "git.corp.example.com:443"));
        assert!(!exempt(&["corp.example.com"], "notcorp.example.com:443"));
        assert!(!exempt(&[".corp.example.com"], "corp.example.com:443"));
        assert!(exempt(&[".corp.example.com"], "git.corp.example.com:443"));
        assert!(exempt(&["*.corp.example.com"], "git.corp.example.com:443"));
        assert!(exempt(&["Corp.Example.com."], "GIT.corp.example.com:443"));
        assert!(exempt(&["corp.example.com:8443"], "corp.example.com:8443"));
        assert!(!exempt(&["corp.example.com:8443"], "corp.example.com:443"));
    }

    #[test]
    fn addresses_and_cidrs_match_literal_destinations_only() {
        assert!(exempt(&["10.0.0.0/8"], "10.1.2.3:443"));
        assert!(exempt(&["10.0.0.0/8"], "[::ffff:10.1.2.3]:443"));
        assert!(!exempt(&["10.0.0.0/8"], "git.corp:443"));
        assert!(exempt(&["192.0.2.7"], "192.0.2.7:80"));
        assert!(exempt(&["192.0.2.7:80"], "192.0.2.7:80"));
        assert!(!exempt(&["192.0.2.7:80"], "192.0.2.7:443"));
        assert!(exempt(&["[2001:db8::1]:443"], "[2001:db8::1]:443"));
        assert!(exempt(&["2001:db8::/32"], "[2001:db8::1]:443"));
        assert!(exempt(&["*"], "anything.example:1"));
    }

    #[test]
    fn bad_entries_are_refused_and_good_ones_print_as_written() {
        assert!("".parse::<Exemption>().is_err());
        assert!("ex ample".parse::<Exemption>().is_err());
        assert!("a.example:0".parse::<Exemption>().is_err());
        assert!("10.0.0.0/40".parse::<Exemption>().is_err());
        for e in [
            ".corp.example",
            "corp.example:8080",
            "10.0.0.0/8",
            "192.0.2.7:80",
            "[2001:db8::1]:443",
            "*",
        ] {
            assert_eq!(e.parse::<Exemption>().unwrap().to_string(), e);
        }
    }

    #[test]
    fn the_leg_follows_the_scheme_the_rule_and_no_parent() {
        let parent = ProxyUrl::parse("http://u:p@proxy.corp:8080").unwrap();
        let route = ParentRoute {
            https: Some(parent.clone()),
            http: None,
            no_parent: NoParent::new(vec!["corp.example".parse().unwrap()]),
            from_env: false,
        };
        let public = dest("proxy.golang.org:443");
        assert_eq!(route.leg(Via::Parent, &public, true), Leg::Parent(&parent));
        assert_eq!(route.leg(Via::Parent, &public, false), Leg::Direct(DirectWhy::NoParent));
        assert_eq!(
            route.leg(Via::Direct, &public, true),
            Leg::Direct(DirectWhy::RuleSaysDirect)
        );
        assert_eq!(
            route.leg(Via::Parent, &dest("git.corp.example:443"), true),
            Leg::Direct(DirectWhy::Exempt)
        );
        assert_eq!(
            route.leg(Via::Parent, &public, true).to_string(),
            "parent http://proxy.corp:8080"
        );
    }
}

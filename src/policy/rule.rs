//! One `[[rule]]`: its match fields, its action, and how each field is
//! checked against what is known about a request ([`Facts`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::core::host::Authority;
use crate::gomod::request::{ModuleRequest, SumdbKind};
use crate::gomod::semver::is_canonical;
use crate::policy::glob::{HostGlob, ModuleGlob, UserGlob};
use crate::policy::mirrors::MirrorList;
use crate::policy::versions::VersionMatch;

/// One `[[rule]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name, shown in logs, errors and `explain`.
    pub name: Arc<str>,
    /// Host globs; `None` matches every host.
    pub hosts: Option<Vec<HostGlob>>,
    /// Destination ports; `None` matches every port.
    pub ports: Option<Vec<PortRange>>,
    /// Client networks; `None` matches every client.
    pub src: Option<Vec<Cidr>>,
    /// Destination networks, checked against every resolved address; `None`
    /// matches every destination.
    pub dst: Option<Vec<Cidr>>,
    /// Module-path globs (GOPRIVATE semantics); a rule with `modules` matches
    /// only requests whose module path is known. `None` matches everything.
    pub modules: Option<Vec<ModuleGlob>>,
    /// User globs, matched against the user who authenticated (`[auth]`);
    /// a rule with `users` matches only authenticated requests. `None`
    /// matches everyone, authenticated or not.
    pub users: Option<Vec<UserGlob>>,
    /// Version constraints (go's semver order); a rule with `versions`
    /// matches only requests naming a canonical version (`.info`, `.mod`,
    /// `.zip`, sumdb lookups). `None` matches every version.
    pub versions: Option<Vec<VersionMatch>>,
    /// What to do with a matching request.
    pub action: Action,
    /// Whether module requests it serves may use the module cache
    /// (`cache = false` bypasses it).
    pub cache: bool,
    /// Whether its upstream connections go through `[parent]` when there
    /// is one (`parent = false` goes direct).
    pub parent: bool,
    /// Whether a transparent connection it matches must name a host (SNI
    /// or Host) that resolves to the original destination (`verify_host =
    /// false` trusts the name as sent).
    pub verify_host: bool,
}

/// What happens to a request that matches a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it to the origin unchanged.
    Direct,
    /// Refuse it, telling the user why.
    Block {
        /// Shown to the user after the rule name.
        reason: String,
    },
    /// Fetch module requests from a list of module proxies.
    Mirror {
        /// The list, in GOPROXY syntax.
        mirrors: MirrorList,
    },
}

impl Action {
    /// The action's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Direct => "direct",
            Action::Block { .. } => "block",
            Action::Mirror { .. } => "mirror",
        }
    }
}

/// What is known about a request when the policy is consulted.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The client's address.
    pub src: IpAddr,
    /// Where the request goes; `None` for requests to modgate's own endpoint.
    pub dest: Option<&'a Authority>,
    /// One resolved address of `dest`, once known.
    pub addr: Option<IpAddr>,
    /// The module path, for GOPROXY and sumdb lookup requests.
    pub module: Option<&'a str>,
    /// The user who authenticated (`[auth]`), if one did.
    pub user: Option<&'a str>,
    /// The canonical version the request names (`.info`, `.mod`, `.zip`,
    /// sumdb lookups); `None` for list, latest and queries such as `master`.
    pub version: Option<&'a str>,
    /// Whether the request is a checksum-database lookup.
    pub sumdb_lookup: bool,
    /// Whether the request is a checksum-database request that names no
    /// module (`supported`, `latest`, a tile): it matches a rule whose
    /// `modules` cover every module path (`"*"`), as module traffic.
    pub sumdb_tree: bool,
}

impl<'a> Facts<'a> {
    /// The facts of `request` from `src` to `dest` (`None` on modgate's own
    /// endpoint): its module path, its version when canonical (a query such
    /// as `master` names none until it is answered), and whether it is a
    /// checksum-database lookup. No user: callers add the one that
    /// authenticated.
    ///
    /// A `.mod` or `.zip` names a version, never a query: any semantic
    /// version there counts as the version it is (`v1.2.0+meta` is
    /// v1.2.0; version rules ignore the build suffix, as semver does), so
    /// a spelling go never sends cannot get past a version rule.
    pub fn of_request(src: IpAddr, dest: Option<&'a Authority>, request: &'a ModuleRequest) -> Facts<'a> {
        let names_a_version = matches!(request, ModuleRequest::Mod { .. } | ModuleRequest::Zip { .. });
        Facts {
            src,
            dest,
            addr: None,
            module: request.module(),
            version: request
                .version()
                .filter(|v| is_canonical(v) || (names_a_version && crate::gomod::semver::parse(v).is_some())),
            user: None,
            sumdb_lookup: matches!(
                request,
                ModuleRequest::Sumdb {
                    kind: SumdbKind::Lookup { .. },
                    ..
                }
            ),
            sumdb_tree: matches!(request, ModuleRequest::Sumdb { kind, .. } if !matches!(kind, SumdbKind::Lookup { .. })),
        }
    }
}

/// Why a rule did not match; `explain` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The request has no destination host (module endpoint), and the rule
    /// needs one.
    NoDestination,
    /// The host is not in `hosts`.
    Host,
    /// The port is not in `ports`.
    Port,
    /// The client is not in `src`.
    Src,
    /// The destination address is not in `dst`.
    Dst,
    /// The rule has `dst` and the address is not known yet.
    AddressUnknown,
    /// The rule has `modules` and the request has no known module path.
    NoModule,
    /// The module path is not in `modules`.
    Module,
    /// The rule has `users` and no user authenticated.
    NoUser,
    /// The user is not in `users`.
    User,
    /// The rule has `versions` and the request names no version.
    NoVersion,
    /// The version is not in `versions`.
    Version,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mismatch::NoDestination => "the request has no destination host",
            Mismatch::Host => "host not in hosts",
            Mismatch::Port => "port not in ports",
            Mismatch::Src => "client not in src",
            Mismatch::Dst => "address not in dst",
            Mismatch::AddressUnknown => "depends on the resolved address",
            Mismatch::NoModule => "no module path is known here",
            Mismatch::Module => "module not in modules",
            Mismatch::NoUser => "no user authenticated",
            Mismatch::User => "user not in users",
            Mismatch::NoVersion => "no version is known here",
            Mismatch::Version => "version not in versions",
        })
    }
}

impl Rule {
    /// A rule named `name` that matches every request and takes `action`,
    /// with the defaults of a `[[rule]]` (cache, parent and host checks on).
    pub fn any(name: &str, action: Action) -> Rule {
        Rule {
            name: name.into(),
            hosts: None,
            ports: None,
            src: None,
            dst: None,
            modules: None,
            users: None,
            versions: None,
            action,
            cache: true,
            parent: true,
            verify_host: true,
        }
    }

    /// Checks every match field against `facts`; the first that fails is
    /// returned.
    pub fn check(&self, facts: &Facts<'_>) -> Result<(), Mismatch> {
        if let Some(src) = &self.src {
            if !src.iter().any(|c| c.contains(facts.src)) {
                return Err(Mismatch::Src);
            }
        }
        if let Some(users) = &self.users {
            let Some(user) = facts.user else {
                return Err(Mismatch::NoUser);
            };
            if !users.iter().any(|g| g.matches(user)) {
                return Err(Mismatch::User);
            }
        }
        if let Some(modules) = &self.modules {
            match facts.module {
                Some(module) if !modules.iter().any(|g| g.matches(module)) => return Err(Mismatch::Module),
                Some(_) => {}
                None if facts.sumdb_tree && modules.iter().any(ModuleGlob::matches_every_path) => {}
                None => return Err(Mismatch::NoModule),
            }
        }
        if let Some(versions) = &self.versions {
            let Some(version) = facts.version else {
                return Err(Mismatch::NoVersion);
            };
            if !versions.iter().any(|v| v.matches(version)) {
                return Err(Mismatch::Version);
            }
        }
        let needs_dest = self.hosts.is_some() || self.ports.is_some() || self.dst.is_some();
        let Some(dest) = facts.dest else {
            return if needs_dest {
                Err(Mismatch::NoDestination)
            } else {
                Ok(())
            };
        };
        if let Some(hosts) = &self.hosts {
            if !hosts.iter().any(|g| g.matches(&dest.host)) {
                return Err(Mismatch::Host);
            }
        }
        if let Some(ports) = &self.ports {
            if !ports.iter().any(|p| p.contains(dest.port)) {
                return Err(Mismatch::Port);
            }
        }
        if let Some(dst) = &self.dst {
            let Some(addr) = facts.addr.or(dest.host.ip()) else {
                return Err(Mismatch::AddressUnknown);
            };
            if !dst.iter().any(|c| c.contains(addr)) {
                return Err(Mismatch::Dst);
            }
        }
        Ok(())
    }
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port in the range.
    pub lo: u16,
    /// Last port in the range.
    pub hi: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let one = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port '{s}': expected 1-65535, or a range such as 8000-8100"))
        };
        let (lo, hi) = match s.split_once('-') {
            Some((lo, hi)) => (one(lo)?, one(hi)?),
            None => (one(s)?, one(s)?),
        };
        if lo > hi {
            return Err(format!("bad port range '{s}': {lo} is above {hi}"));
        }
        Ok(PortRange { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An IP network. A bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// Whether `ip` is in the network. An IPv6 address that carries an IPv4
    /// address (mapped, compatible, NAT64 or 6to4; see [`embedded_ipv4`])
    /// is also checked as that IPv4 address, so it cannot slip past an IPv4
    /// rule such as `127.0.0.0/8`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.0.contains(&ip) {
            return true;
        }
        match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).is_some_and(|v4| self.0.contains(&IpAddr::V4(v4))),
            IpAddr::V4(_) => false,
        }
    }
}

/// The IPv4 address an IPv6 address leads to, where the network would
/// deliver it to that IPv4 host:
/// - IPv4-mapped `::ffff:a.b.c.d`;
/// - IPv4-compatible `::a.b.c.d` (deprecated, still routed by some stacks),
///   including `::`, which like `0.0.0.0` reaches this host on Linux; only
///   `::1`, IPv6's own loopback, is not read as `0.0.0.1`;
/// - NAT64, the well-known prefix `64:ff9b::/96` (RFC 6052) and the
///   local-use prefix `64:ff9b:1::/48` (RFC 8215, address in bits 48-87
///   around the zero `u` octet);
/// - 6to4 `2002:AABB:CCDD::/16` (RFC 3056).
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    let seg = ip.segments();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Some(Ipv4Addr::new(a, b, c, d));
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    if seg[..6] == [0; 6] && ip != Ipv6Addr::LOCALHOST {
        return v4(o[12], o[13], o[14], o[15]);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4(o[12], o[13], o[14], o[15]);
    }
    if seg[..3] == [0x64, 0xff9b, 1] {
        return v4(o[6], o[7], o[9], o[10]);
    }
    if seg[0] == 0x2002 {
        return v4(o[2], o[3], o[4], o[5]);
    }
    None
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip)));
        }
        let net: IpNet = s
            .parse()
            .map_err(|_| format!("bad CIDR '{s}': expected an address or address/prefix, e.g. 10.0.0.0/8"))?;
        if net.trunc() != net {
            return Err(format!(
                "bad CIDR '{s}': host bits are set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_inside_ipv6_is_checked_as_ipv4() {
        let loopback: Cidr = "127.0.0.0/8".parse().unwrap();
        let metadata: Cidr = "169.254.0.0/16".parse().unwrap();
        for ip in [
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1:7f00:0:100::",
            "2002:7f00:1::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(loopback.contains(ip), "{ip} carries 127.0.0.1");
        }
        assert!(metadata.contains("64:ff9b::a9fe:a9fe".parse().unwrap()));
        assert!(metadata.contains("2002:a9fe:a9fe::".parse().unwrap()));
        // Ordinary IPv6 addresses carry nothing.
        for ip in ["2001:db8::7f00:1", "::1", "fe80::7f00:1"] {
            assert!(!loopback.contains(ip.parse().unwrap()), "{ip}");
        }
        // An IPv6 rule still matches the IPv6 address itself.
        let nat64: Cidr = "64:ff9b::/96".parse().unwrap();
        assert!(nat64.contains("64:ff9b::8.8.8.8".parse().unwrap()));
    }

    /// Found by fuzzing (`fuzz/found/host_authority-unspecified-ipv6-…`):
    /// `::` is the IPv4-compatible spelling of `0.0.0.0`, and like it
    /// reaches this host, yet a `0.0.0.0/32` rule missed it.
    #[test]
    fn the_unspecified_ipv6_address_is_caught_by_an_ipv4_rule_on_0_0_0_0() {
        let this_host: Cidr = "0.0.0.0/32".parse().unwrap();
        let this_net: Cidr = "0.0.0.0/8".parse().unwrap();
        for ip in ["::", "0:0:0:0:0:0:0:0", "::0.0.0.0"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(this_host.contains(ip), "{ip}");
            assert!(this_net.contains(ip), "{ip}");
        }
        // The compatible forms of 0.0.x.x carry those addresses too...
        assert_eq!(embedded_ipv4("::2".parse().unwrap()), Some(Ipv4Addr::new(0, 0, 0, 2)));
        assert!(this_net.contains("::0.0.1.2".parse().unwrap()));
        // ...but `::1` is IPv6's loopback, matched by IPv6 rules only.
        assert_eq!(embedded_ipv4(Ipv6Addr::LOCALHOST), None);
        assert!(!this_net.contains("::1".parse().unwrap()));
        assert!("::1/128".parse::<Cidr>().unwrap().contains("::1".parse().unwrap()));
    }

    #[test]
    fn ports_and_cidrs_parse_strictly() {
        assert!("0".parse::<PortRange>().is_err());
        assert!("70000".parse::<PortRange>().is_err());
        assert!("90-80".parse::<PortRange>().is_err());
        assert_eq!("80-90".parse::<PortRange>().unwrap(), PortRange { lo: 80, hi: 90 });
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.1/8".parse::<Cidr>().is_err());
        assert!("banana".parse::<Cidr>().is_err());
        assert!("fc00::/7".parse::<Cidr>().is_ok());
        assert!(
            "192.0.2.7"
                .parse::<Cidr>()
                .unwrap()
                .contains("192.0.2.7".parse().unwrap())
        );
    }
}

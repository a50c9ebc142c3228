//! The rule table and the pure routing decision.
//!
//! [`decide`] takes the rules and what is known about a request ([`Facts`])
//! and returns the first rule whose match fields all hold. It does no I/O:
//! when a rule depends on the destination address and the address is not
//! known yet, it answers [`Decision::NeedsAddress`], and the caller resolves
//! the name and asks again with [`decide_resolved`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::glob::{HostGlob, ModuleGlob};
use crate::mirror::MirrorList;
use crate::request::Authority;

/// One `[[rule]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's name, shown in logs, errors and `explain`.
    pub name: String,
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
    /// What to do with a matching request.
    pub action: Action,
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

/// The reason given when no rule matches: modgate refuses by default.
pub const NO_MATCH_REASON: &str = "no rule matched; add a rule, e.g. a last rule with action = \"direct\"";

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
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// This rule matched, and its action applies.
    Matched(&'a Rule),
    /// No rule matched: the request is refused with [`NO_MATCH_REASON`].
    NoMatch,
    /// A rule depends on the destination address, which is not known yet.
    NeedsAddress,
}

impl<'a> Decision<'a> {
    /// The matched rule, if any.
    pub fn rule(&self) -> Option<&'a Rule> {
        match self {
            Decision::Matched(rule) => Some(rule),
            _ => None,
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
        })
    }
}

impl Rule {
    /// Checks every match field against `facts`; the first that fails is
    /// returned.
    pub fn check(&self, facts: &Facts<'_>) -> Result<(), Mismatch> {
        if let Some(src) = &self.src {
            if !src.iter().any(|c| c.contains(facts.src)) {
                return Err(Mismatch::Src);
            }
        }
        if let Some(modules) = &self.modules {
            let Some(module) = facts.module else {
                return Err(Mismatch::NoModule);
            };
            if !modules.iter().any(|g| g.matches(module)) {
                return Err(Mismatch::Module);
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

/// The first rule that matches `facts`.
pub fn decide<'a>(rules: &'a [Rule], facts: &Facts<'_>) -> Decision<'a> {
    for rule in rules {
        match rule.check(facts) {
            Ok(()) => return Decision::Matched(rule),
            Err(Mismatch::AddressUnknown) => return Decision::NeedsAddress,
            Err(_) => {}
        }
    }
    Decision::NoMatch
}

/// The decision for a name that resolved to `addrs`: each address is decided
/// on its own, and if any of them is refused the whole request is refused.
/// Otherwise the rule of the first address applies, and every address in
/// `addrs` was checked.
pub fn decide_resolved<'a>(rules: &'a [Rule], facts: &Facts<'_>, addrs: &[IpAddr]) -> Decision<'a> {
    let mut first = Decision::NoMatch;
    for (i, addr) in addrs.iter().enumerate() {
        let each = Facts {
            addr: Some(*addr),
            ..*facts
        };
        let decision = decide(rules, &each);
        match decision.rule() {
            Some(Rule {
                action: Action::Direct, ..
            }) if i == 0 => first = decision,
            Some(Rule {
                action: Action::Direct, ..
            }) => {}
            _ => return decision,
        }
    }
    first
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
                .ok_or_else(|| format!("bad port '{p}': expected 1-65535"))
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
    /// Whether `ip` is in the network. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`) are treated as the IPv4 address they carry, so
    /// they cannot slip past an IPv4 rule.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
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
    use crate::request::Host;

    fn rule(name: &str, f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule {
            name: name.into(),
            hosts: None,
            ports: None,
            src: None,
            dst: None,
            modules: None,
            action: Action::Direct,
        };
        f(&mut r);
        r
    }

    fn block(reason: &str) -> Action {
        Action::Block { reason: reason.into() }
    }

    fn dest(s: &str) -> Authority {
        Authority::parse_connect(s).unwrap()
    }

    fn facts<'a>(src: &str, dest: Option<&'a Authority>) -> Facts<'a> {
        Facts {
            src: src.parse().unwrap(),
            dest,
            addr: None,
            module: None,
        }
    }

    fn table() -> Vec<Rule> {
        vec![
            rule("corp-clients", |r| {
                r.src = Some(vec!["10.9.0.0/16".parse().unwrap()]);
                r.hosts = Some(vec!["*.corp.example".parse().unwrap()]);
            }),
            rule("no-smtp", |r| {
                r.ports = Some(vec!["25".parse().unwrap(), "465-587".parse().unwrap()]);
                r.action = block("mail");
            }),
            rule("evil", |r| {
                r.hosts = Some(vec!["evil.test".parse().unwrap(), "*.evil.test".parse().unwrap()]);
                r.action = block("evil");
            }),
            rule("no-internal", |r| {
                r.dst = Some(vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.0/8".parse().unwrap()]);
                r.action = block("internal");
            }),
            rule("default", |_| {}),
        ]
    }

    fn name(d: Decision<'_>) -> String {
        match d {
            Decision::Matched(r) => r.name.clone(),
            Decision::NoMatch => "<none>".into(),
            Decision::NeedsAddress => "<needs address>".into(),
        }
    }

    #[test]
    fn first_match_wins_and_fields_are_anded() {
        let rules = table();
        let corp = dest("git.corp.example:443");
        assert_eq!(name(decide(&rules, &facts("10.9.1.1", Some(&corp)))), "corp-clients");
        // Same host from another client: corp-clients needs both src and host.
        assert_eq!(name(decide(&rules, &facts("10.8.1.1", Some(&corp)))), "<needs address>");
        let smtp = dest("mail.corp.example:587");
        assert_eq!(name(decide(&rules, &facts("10.8.1.1", Some(&smtp)))), "no-smtp");
        let evil = dest("a.evil.test:443");
        assert_eq!(name(decide(&rules, &facts("10.9.1.1", Some(&evil)))), "evil");
    }

    #[test]
    fn dst_rules_wait_for_the_address_and_ip_literals_need_no_lookup() {
        let rules = table();
        let name_dest = dest("example.com:443");
        let f = facts("192.0.2.1", Some(&name_dest));
        assert!(matches!(decide(&rules, &f), Decision::NeedsAddress));
        let literal = dest("127.0.0.1:8080");
        assert_eq!(name(decide(&rules, &facts("192.0.2.1", Some(&literal)))), "no-internal");
        let public = dest("[2001:db8::1]:443");
        assert_eq!(name(decide(&rules, &facts("192.0.2.1", Some(&public)))), "default");
    }

    #[test]
    fn any_refused_address_refuses_the_request() {
        let rules = table();
        let d = dest("rebind.test:443");
        let f = facts("192.0.2.1", Some(&d));
        let public: IpAddr = "203.0.113.5".parse().unwrap();
        let internal: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(name(decide_resolved(&rules, &f, &[public])), "default");
        assert_eq!(name(decide_resolved(&rules, &f, &[public, internal])), "no-internal");
        assert_eq!(name(decide_resolved(&rules, &f, &[internal, public])), "no-internal");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(name(decide_resolved(&rules, &f, &[mapped])), "no-internal");
    }

    #[test]
    fn endpoint_requests_skip_destination_rules() {
        let rules = table();
        let f = facts("10.9.1.1", None);
        assert_eq!(name(decide(&rules, &f)), "default");
        assert_eq!(rules[3].check(&f), Err(Mismatch::NoDestination));
    }

    #[test]
    fn module_rules_need_a_known_module_path() {
        let rules = vec![
            rule("private", |r| {
                r.modules = Some(vec!["git.corp.example/*".parse().unwrap()])
            }),
            rule("banned", |r| {
                r.modules = Some(vec!["github.com/evil".parse().unwrap()]);
                r.action = block("SEC-42");
            }),
            rule("mirror", |r| {
                r.hosts = Some(vec!["proxy.golang.org".parse().unwrap()]);
                r.action = Action::Mirror {
                    mirrors: "https://mirror.test".parse().unwrap(),
                };
            }),
            rule("endpoint", |r| r.modules = Some(vec!["*".parse().unwrap()])),
        ];
        let proxy = dest("proxy.golang.org:443");
        // At CONNECT time the module is unknown: module rules are skipped.
        let connect = facts("10.0.0.1", Some(&proxy));
        assert_eq!(name(decide(&rules, &connect)), "mirror");
        assert_eq!(rules[0].check(&connect), Err(Mismatch::NoModule));
        let inner = |m| Facts {
            module: Some(m),
            ..connect
        };
        assert_eq!(name(decide(&rules, &inner("git.corp.example/team/repo"))), "private");
        assert_eq!(name(decide(&rules, &inner("github.com/evil/pkg"))), "banned");
        assert_eq!(name(decide(&rules, &inner("github.com/evilcorp/pkg"))), "mirror");
        // On the module endpoint there is no destination: host rules are skipped.
        let endpoint = Facts {
            module: Some("golang.org/x/mod"),
            ..facts("10.0.0.1", None)
        };
        assert_eq!(name(decide(&rules, &endpoint)), "endpoint");
    }

    #[test]
    fn no_rule_is_a_refusal() {
        let rules = vec![rule("only-corp", |r| {
            r.hosts = Some(vec!["corp.example".parse().unwrap()])
        })];
        let d = dest("example.com:443");
        assert!(matches!(
            decide(&rules, &facts("127.0.0.1", Some(&d))),
            Decision::NoMatch
        ));
    }

    #[test]
    fn hosts_compare_normalised() {
        let rules = table();
        let d = Authority {
            host: Host::parse("EVIL.test.").unwrap(),
            port: 443,
        };
        assert_eq!(name(decide(&rules, &facts("192.0.2.1", Some(&d)))), "evil");
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

//! The pure routing decision: the first rule whose match fields all hold.
//!
//! [`decide`] does no I/O. When a rule depends on the destination address
//! and the address is not known yet, it answers [`Decision::NeedsAddress`];
//! the caller resolves the name and asks again with [`decide_resolved`].

use std::net::IpAddr;

use crate::policy::rule::{Action, Facts, Mismatch, Rule};

/// The reason given when no rule matches: modgate refuses by default.
pub const NO_MATCH_REASON: &str = "no rule matched; add a rule, e.g. a last rule with action = \"direct\"";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::host::{Authority, Host};
    use crate::policy::glob::ModuleGlob;

    fn rule(name: &str, f: impl FnOnce(&mut Rule)) -> Rule {
        let mut r = Rule::any(name, Action::Direct);
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
            user: None,
            version: None,
            sumdb_lookup: false,
            sumdb_tree: false,
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
            Decision::Matched(r) => r.name.to_string(),
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
    fn version_rules_and_with_modules_and_need_a_known_version() {
        let rules = vec![
            rule("pin", |r| {
                r.modules = Some(vec!["github.com/acme/widget".parse().unwrap()]);
                r.versions = Some(vec!["<v1.4.2".parse().unwrap(), "v1.5.0".parse().unwrap()]);
                r.action = block("INC-311");
            }),
            rule("default", |_| {}),
        ];
        let at = |module: &'static str, version: Option<&'static str>| Facts {
            module: Some(module),
            version,
            ..facts("10.0.0.1", None)
        };
        let widget = "github.com/acme/widget";
        assert_eq!(name(decide(&rules, &at(widget, Some("v1.5.0")))), "pin");
        assert_eq!(name(decide(&rules, &at(widget, Some("v1.4.1")))), "pin");
        assert_eq!(
            name(decide(
                &rules,
                &at(widget, Some("v1.4.2-0.20240101120000-abcdefabcdef"))
            )),
            "pin",
            "a pseudo-version before v1.4.2"
        );
        assert_eq!(name(decide(&rules, &at(widget, Some("v1.4.2")))), "default");
        assert_eq!(name(decide(&rules, &at(widget, Some("v1.10.0")))), "default");
        assert_eq!(
            name(decide(&rules, &at("github.com/acme/other", Some("v1.5.0")))),
            "default"
        );
        // A list or latest request names no version: the rule is skipped.
        assert_eq!(rules[0].check(&at(widget, None)), Err(Mismatch::NoVersion));
        assert_eq!(rules[0].check(&at(widget, Some("v1.4.2"))), Err(Mismatch::Version));
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
    fn a_sumdb_request_naming_no_module_is_module_traffic_for_a_rule_covering_every_module() {
        let rules = vec![
            rule("corp", |r| r.modules = Some(vec!["corp.example/*".parse().unwrap()])),
            rule("modules", |r| r.modules = Some(vec!["*".parse().unwrap()])),
            rule("default", |_| {}),
        ];
        let tree = Facts {
            sumdb_tree: true,
            ..facts("127.0.0.1", None)
        };
        // A tile or `supported` skips the narrower rule, and is taken by `*`.
        assert_eq!(rules[0].check(&tree), Err(Mismatch::NoModule));
        assert_eq!(name(decide(&rules, &tree)), "modules");
        // Other requests with no module (a CONNECT, a plain GET) skip both.
        assert_eq!(name(decide(&rules, &facts("127.0.0.1", None))), "default");
        for every in ["*", "**"] {
            assert!(every.parse::<ModuleGlob>().unwrap().matches_every_path(), "{every}");
        }
        for some in ["*/*", "corp.example", "*.example", "?"] {
            assert!(!some.parse::<ModuleGlob>().unwrap().matches_every_path(), "{some}");
        }
    }
}

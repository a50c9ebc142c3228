//! `modgate explain`: which rule a target meets, and why. A dry run: no DNS,
//! no connections. Addresses are known only for IP literals and `[hosts]`
//! entries; otherwise rules with `dst` are shown as depending on DNS.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::Uri;

use crate::config::{Config, describe_rule};
use crate::policy::{self, Action, Decision, Facts, Mismatch};
use crate::request::{Authority, Host};

/// What a TARGET argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainTarget {
    /// `https://host/...` or `host:port`: a CONNECT tunnel.
    Tunnel(Authority),
    /// `http://host/...`: a forwarded request.
    Forward(Authority),
}

impl ExplainTarget {
    /// Parses a URL or `host:port`.
    pub fn parse(s: &str) -> Result<ExplainTarget, String> {
        if s.contains("://") {
            let uri: Uri = s.parse().map_err(|e| format!("bad URL '{s}': {e}"))?;
            let host = uri.host().ok_or_else(|| format!("URL '{s}' has no host"))?;
            let host = Host::parse(host)?;
            return match uri.scheme_str() {
                Some("http") => Ok(ExplainTarget::Forward(Authority {
                    host,
                    port: uri.port_u16().unwrap_or(80),
                })),
                Some("https") => Ok(ExplainTarget::Tunnel(Authority {
                    host,
                    port: uri.port_u16().unwrap_or(443),
                })),
                _ => Err(format!("URL '{s}': only http:// and https:// are proxied")),
            };
        }
        Authority::parse_connect(s)
            .map(ExplainTarget::Tunnel)
            .map_err(|_| {
                format!("cannot read target '{s}': expected a URL (https://host/path) or host:port")
            })
    }

    fn authority(&self) -> &Authority {
        match self {
            ExplainTarget::Tunnel(a) | ExplainTarget::Forward(a) => a,
        }
    }
}

/// The explanation for `target` requested from `from`.
pub fn explain(config: &Config, from: IpAddr, target: &ExplainTarget) -> String {
    let dest = target.authority();
    let mut out = String::new();
    let form = match target {
        ExplainTarget::Tunnel(_) => format!("CONNECT {dest}"),
        ExplainTarget::Forward(_) => format!("GET http://{dest}/"),
    };
    let _ = writeln!(out, "target:  {form} from {from}");

    let known: Option<Vec<IpAddr>> = match &dest.host {
        Host::Ip(ip) => Some(vec![*ip]),
        Host::Name(name) => config
            .hosts
            .get(name)
            .map(|list| list.iter().map(|a| a.with_port(dest.port).ip()).collect()),
    };
    match (&known, &dest.host) {
        (Some(_), Host::Ip(_)) => {}
        (Some(ips), Host::Name(_)) => {
            let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "address: {} (from [hosts])", list.join(", "));
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "address: resolved at request time (a dry run does no DNS)"
            );
        }
    }

    let facts = Facts {
        src: from,
        dest: Some(dest),
        addr: None,
    };
    let _ = writeln!(out, "rules:");
    let mut depends_on_dns = Vec::new();
    let mut chosen = None;
    for (i, rule) in config.rules.iter().enumerate() {
        let verdict = match &known {
            Some(ips) => check_all(rule, &facts, ips),
            None => rule.check(&facts),
        };
        let line = describe_rule(rule);
        match verdict {
            Ok(()) => {
                let _ = writeln!(out, "  {}. matches     {line}", i + 1);
                chosen = Some(rule);
                break;
            }
            Err(Mismatch::AddressUnknown) => {
                let _ = writeln!(out, "  {}. if DNS says {line}", i + 1);
                depends_on_dns.push(rule);
            }
            Err(why) => {
                let _ = writeln!(out, "  {}. skipped     {line} ({why})", i + 1);
            }
        }
    }

    // With known addresses the real decision refuses if any address is
    // refused; use it so the verdict matches what `serve` does.
    let decision = match &known {
        Some(ips) => policy::decide_resolved(&config.rules, &facts, ips),
        None => chosen.map_or(Decision::NoMatch, Decision::Matched),
    };
    match decision.rule() {
        Some(rule) => {
            let action = match &rule.action {
                Action::Direct => "direct".to_owned(),
                Action::Block { reason } => format!("block ({reason})"),
            };
            let _ = writeln!(out, "rule:    '{}'", rule.name);
            let _ = writeln!(out, "action:  {action}");
        }
        None => {
            let _ = writeln!(out, "rule:    (none)");
            let _ = writeln!(out, "action:  block ({})", policy::NO_MATCH_REASON);
        }
    }
    for rule in depends_on_dns {
        let _ = writeln!(
            out,
            "note:    rule '{}' applies instead if any address of {} is in its dst; modgate checks every address it resolves",
            rule.name, dest.host
        );
    }
    out
}

/// A rule matches a set of known addresses when it matches any of them.
fn check_all(rule: &policy::Rule, facts: &Facts<'_>, ips: &[IpAddr]) -> Result<(), Mismatch> {
    let mut last = Err(Mismatch::Dst);
    for ip in ips {
        last = rule.check(&Facts {
            addr: Some(*ip),
            ..*facts
        });
        if last.is_ok() {
            return last;
        }
    }
    last
}

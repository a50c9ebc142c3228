//! `modgate explain`: which rule a target meets, and why. A dry run: no DNS,
//! no connections. Addresses are known only for IP literals and `[hosts]`
//! entries; otherwise rules with `dst` are shown as depending on DNS.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::Uri;

use crate::config::{Config, describe_rule};
use crate::glob::HostGlob;
use crate::module::{self, ModuleRequest};
use crate::policy::{self, Action, Decision, Facts, Mismatch, Rule};
use crate::request::{Authority, Host};

/// What a TARGET argument names.
#[derive(Debug)]
pub enum ExplainTarget {
    /// `https://host/` or `host:port`: a CONNECT tunnel.
    Tunnel(Authority),
    /// `http://host/...`: a forwarded request.
    Forward(Authority),
    /// `https://host/<GOPROXY path>`: a module request to that host.
    Inner(Authority, ModuleRequest),
    /// `module[@version]`: a module request, wherever it arrives.
    Module(ModuleRequest),
}

impl ExplainTarget {
    /// Parses a URL, `host:port`, or `module[@version]`.
    pub fn parse(s: &str) -> Result<ExplainTarget, String> {
        if s.contains("://") {
            return parse_url(s);
        }
        if s.contains('/') || s.contains('@') {
            return parse_module(s);
        }
        Authority::parse_connect(s).map(ExplainTarget::Tunnel).map_err(|_| {
            format!("cannot read target '{s}': expected a URL (https://host/path), host:port, or module[@version]")
        })
    }
}

fn parse_url(s: &str) -> Result<ExplainTarget, String> {
    let uri: Uri = s.parse().map_err(|e| format!("bad URL '{s}': {e}"))?;
    let host = Host::parse(uri.host().ok_or_else(|| format!("URL '{s}' has no host"))?)?;
    match uri.scheme_str() {
        Some("http") => Ok(ExplainTarget::Forward(Authority {
            host,
            port: uri.port_u16().unwrap_or(80),
        })),
        Some("https") => {
            let dest = Authority {
                host,
                port: uri.port_u16().unwrap_or(443),
            };
            let path = &module::decode_path(uri.path()).map_err(|e| format!("URL '{s}': {e}"))?;
            let request = match module::classify_proxy_path(path).map_err(|e| format!("URL '{s}': {e}"))? {
                Some(r) => Some(r),
                None => {
                    module::classify_sumdb_path(&dest.host.to_string(), path).map_err(|e| format!("URL '{s}': {e}"))?
                }
            };
            Ok(match request {
                Some(request) => ExplainTarget::Inner(dest, request),
                None => ExplainTarget::Tunnel(dest),
            })
        }
        _ => Err(format!("URL '{s}': only http:// and https:// are proxied")),
    }
}

fn parse_module(s: &str) -> Result<ExplainTarget, String> {
    let (path, version) = match s.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (s, None),
    };
    let encoded = module::encode_case(path);
    let probe = match version {
        Some(v) => format!("/{encoded}/@v/{}.info", module::encode_case(v)),
        None => format!("/{encoded}/@v/list"),
    };
    match module::classify_proxy_path(&probe) {
        Ok(Some(request)) => Ok(ExplainTarget::Module(request)),
        Ok(None) => Err(format!("'{s}' is not a module path")),
        Err(e) => Err(format!("'{s}': {e}")),
    }
}

/// The explanation for `target` requested from `from`.
pub fn explain(config: &Config, from: IpAddr, target: &ExplainTarget) -> String {
    let mut out = String::new();
    match target {
        ExplainTarget::Tunnel(dest) => {
            let _ = writeln!(out, "target:  CONNECT {dest} from {from}");
            let facts = Facts {
                src: from,
                dest: Some(dest),
                addr: None,
                module: None,
            };
            let decision = trace(config, &facts, &mut out);
            if config.tls.intercepts(&dest.host) && !blocks(decision) {
                let _ = writeln!(
                    out,
                    "tunnel:  intercepted (tls.intercept): modgate ends TLS with its CA and decides each request inside again, with its module path"
                );
            }
        }
        ExplainTarget::Forward(dest) => {
            let _ = writeln!(out, "target:  GET http://{dest}/ from {from}");
            let facts = Facts {
                src: from,
                dest: Some(dest),
                addr: None,
                module: None,
            };
            trace(config, &facts, &mut out);
        }
        ExplainTarget::Inner(dest, request) => {
            let module = request.module();
            let _ = writeln!(out, "target:  {} request to https://{dest} from {from}", request.kind());
            if let Some(m) = module {
                let _ = writeln!(out, "module:  {m}");
            }
            if !config.tls.intercepts(&dest.host) {
                let _ = writeln!(
                    out,
                    "note:    {} is not in tls.intercept, so modgate sees only CONNECT {dest}; module rules cannot apply there",
                    dest.host
                );
            }
            let facts = Facts {
                src: from,
                dest: Some(dest),
                addr: None,
                module,
            };
            trace(config, &facts, &mut out);
        }
        ExplainTarget::Module(request) => {
            let module = request.module().unwrap_or_default();
            let version = request.version().map(|v| format!("@{v}")).unwrap_or_default();
            let _ = writeln!(out, "target:  module {module}{version} from {from}");
            let _ = writeln!(out, "via:     modgate's module endpoint (GOPROXY=http://<modgate>)");
            let facts = Facts {
                src: from,
                dest: None,
                addr: None,
                module: request.module(),
            };
            trace(config, &facts, &mut out);
            for glob in &config.tls.intercept {
                let HostGlob::Exact(host) = glob else { continue };
                let dest = Authority {
                    host: Host::Name(host.clone()),
                    port: 443,
                };
                let _ = writeln!(out, "\nvia:     an intercepted tunnel to {host}");
                let facts = Facts {
                    src: from,
                    dest: Some(&dest),
                    addr: None,
                    module: request.module(),
                };
                trace(config, &facts, &mut out);
            }
        }
    }
    out
}

fn blocks(decision: Decision<'_>) -> bool {
    !matches!(
        decision.rule(),
        Some(Rule {
            action: Action::Direct | Action::Mirror { .. },
            ..
        })
    )
}

/// Prints each rule's verdict and the decision; returns the decision.
fn trace<'a>(config: &'a Config, facts: &Facts<'_>, out: &mut String) -> Decision<'a> {
    let known: Option<Vec<IpAddr>> = facts.dest.and_then(|dest| match &dest.host {
        Host::Ip(ip) => Some(vec![*ip]),
        Host::Name(name) => config
            .hosts
            .get(name)
            .map(|list| list.iter().map(|a| a.with_port(dest.port).ip()).collect()),
    });
    if let (Some(dest), Some(ips)) = (facts.dest, &known) {
        if let Host::Name(_) = dest.host {
            let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "address: {} (from [hosts])", list.join(", "));
        }
    } else if facts.dest.is_some() {
        let _ = writeln!(out, "address: resolved at request time (a dry run does no DNS)");
    }

    let _ = writeln!(out, "rules:");
    let mut depends_on_dns = Vec::new();
    let mut chosen = None;
    for (i, rule) in config.rules.iter().enumerate() {
        let verdict = match &known {
            Some(ips) => check_all(rule, facts, ips),
            None => rule.check(facts),
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
        Some(ips) => policy::decide_resolved(&config.rules, facts, ips),
        None => chosen.map_or(Decision::NoMatch, Decision::Matched),
    };
    match decision.rule() {
        Some(rule) => {
            let action = match &rule.action {
                Action::Direct => "direct".to_owned(),
                Action::Block { reason } => format!("block ({reason})"),
                Action::Mirror { mirrors } => format!("mirror to {mirrors}"),
            };
            let _ = writeln!(out, "rule:    '{}'", rule.name);
            let _ = writeln!(out, "action:  {action}");
        }
        None => {
            let _ = writeln!(out, "rule:    (none)");
            let _ = writeln!(out, "action:  block ({})", policy::NO_MATCH_REASON);
        }
    }
    if let Some(dest) = facts.dest {
        for rule in depends_on_dns {
            let _ = writeln!(
                out,
                "note:    rule '{}' applies instead if any address of {} is in its dst; modgate checks every address it resolves",
                rule.name, dest.host
            );
        }
    }
    decision
}

/// A rule matches a set of known addresses when it matches any of them.
fn check_all(rule: &Rule, facts: &Facts<'_>, ips: &[IpAddr]) -> Result<(), Mismatch> {
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

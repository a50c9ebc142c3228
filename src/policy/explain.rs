//! `modgate explain`: which rule a target meets, why, and what modgate then
//! does. A dry run: no DNS, no connections. Addresses are known only for IP
//! literals and `[hosts]` entries; otherwise rules with `dst` are shown as
//! depending on DNS, with both outcomes.
//!
//! The outcome printed is the [`Plan`] that `serve` would carry out, made
//! by the same code ([`plan_decided`]), including its refusal line, and,
//! when there is a `[parent]`, how each upstream connection leaves
//! ([`ParentRoute::leg`]). The request can be seen as a user's
//! (`--user`) or as a connection redirected to the transparent listener
//! (`--transparent ADDR`), whose original destination is a known address.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::Uri;

use crate::core::host::{Authority, Host, HostOverrides, default_port};
use crate::gomod::check::{check_module_path, check_version};
use crate::gomod::classify::{classify_proxy_path, classify_sumdb_path};
use crate::gomod::escape::{decode_path, encode_case, quote};
use crate::gomod::request::ModuleRequest;
use crate::policy::Policy;
use crate::policy::decide::{Decision, decide_resolved};
use crate::policy::describe::rule_line;
use crate::policy::glob::HostGlob;
use crate::policy::mirrors::{Mirror, MirrorList};
use crate::policy::parent::{ParentRoute, Via};
use crate::policy::plan::{Door, Plan, plan_decided};
use crate::policy::rule::{Action, Facts, Mismatch, Rule};

/// What a TARGET argument names.
#[derive(Debug)]
pub enum ExplainTarget {
    /// `https://host/` or `host:port`: a CONNECT tunnel.
    Tunnel(Authority),
    /// `http://host/...`: a forwarded request.
    Forward(Authority),
    /// `https://host/<GOPROXY path>`: a module request to that host.
    HostModule(Authority, ModuleRequest),
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
    let authority = uri.authority().ok_or_else(|| format!("URL '{s}' has no host"))?;
    match uri.scheme_str() {
        Some("http") => Ok(ExplainTarget::Forward(Authority::of_uri(authority, 80)?)),
        Some("https") => {
            let dest = Authority::of_uri(authority, 443)?;
            let path = &decode_path(uri.path()).map_err(|e| format!("URL '{s}': {e}"))?;
            let request = match classify_proxy_path(path).map_err(|e| format!("URL '{s}': {e}"))? {
                Some(r) => Some(r),
                None => classify_sumdb_path(&dest.host.to_string(), path).map_err(|e| format!("URL '{s}': {e}"))?,
            };
            Ok(match request {
                Some(request) => ExplainTarget::HostModule(dest, request),
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
    // Checked as typed first, so an error quotes what the user wrote,
    // not its case-encoded form (`!example.com`).
    let as_typed = |what: &str, text: &str, why: String| format!("'{s}': bad {what} {}: {why}", quote(text));
    check_module_path(path).map_err(|why| as_typed("module path", path, why))?;
    if let Some(v) = version {
        check_version(v).map_err(|why| as_typed("version", v, why))?;
    }
    let encoded = encode_case(path);
    let probe = match version {
        Some(v) => format!("/{encoded}/@v/{}.info", encode_case(v)),
        None => format!("/{encoded}/@v/list"),
    };
    match classify_proxy_path(&probe) {
        Ok(Some(request)) => Ok(ExplainTarget::Module(request)),
        Ok(None) => Err(format!("'{s}' is not a module path")),
        Err(e) => Err(format!("'{s}': {e}")),
    }
}

/// What `explain` needs: the policy, the static name table, the mirror
/// settings, and what a running modgate says of its mirrors' health.
pub struct Explainer<'a> {
    /// The rules and `tls.intercept`.
    pub policy: &'a Policy,
    /// `[hosts]`: the only addresses a dry run knows.
    pub hosts: &'a HostOverrides,
    /// A module proxy's `[mirror."URL"]` settings, described.
    pub mirror_settings: &'a dyn Fn(&str) -> String,
    /// The running modgate's mirror health (its admin `/mirrors` lines)
    /// and where it was read, when one answered.
    pub health: Option<(&'a str, String)>,
}

/// Who asks, and how the request arrives.
#[derive(Debug, Clone, Copy)]
pub struct Viewpoint<'a> {
    /// The client's address, for `src` rules.
    pub from: IpAddr,
    /// The user who authenticated (`[auth]`), for `users` rules.
    pub user: Option<&'a str>,
    /// For a connection redirected to the transparent listener: its
    /// original destination address, which `dst` rules match and the name
    /// must resolve to.
    pub transparent: Option<IpAddr>,
}

/// The explanation for `target` as `who` sends it; an error when the
/// viewpoint cannot apply to the target.
pub fn explain(x: &Explainer<'_>, who: &Viewpoint<'_>, target: &ExplainTarget) -> Result<String, String> {
    if who.transparent.is_some() && matches!(target, ExplainTarget::Module(_)) {
        return Err("--transparent needs a host target (host:port or a URL): redirected connections never reach the module endpoint".into());
    }
    if who.transparent.is_some() && who.user.is_some() {
        return Err("--transparent and --user exclude each other: redirected connections carry no credentials".into());
    }
    let mut out = String::new();
    let from = who.from;
    fn facts<'a>(who: &Viewpoint<'a>, dest: Option<&'a Authority>, module: Option<&'a str>) -> Facts<'a> {
        Facts {
            src: who.from,
            dest,
            addr: who.transparent,
            module,
            user: who.user,
            version: None,
            sumdb_lookup: false,
            sumdb_tree: false,
        }
    }
    if let Some(user) = who.user {
        let _ = writeln!(out, "user:    {user} (authenticated)");
    }
    if let Some(addr) = who.transparent {
        let _ = writeln!(
            out,
            "arrived: redirected to the transparent listener; original destination {addr}, which dst rules match"
        );
    }
    match target {
        ExplainTarget::Tunnel(dest) => {
            let _ = writeln!(out, "target:  CONNECT {dest} from {from}");
            trace(
                x,
                Door::Tunnel,
                &facts(who, Some(dest), None),
                &dest.to_string(),
                &mut out,
            );
        }
        ExplainTarget::Forward(dest) => {
            let _ = writeln!(out, "target:  GET http://{dest}/ from {from}");
            trace(
                x,
                Door::Forward,
                &facts(who, Some(dest), None),
                &dest.to_string(),
                &mut out,
            );
        }
        ExplainTarget::HostModule(dest, request) => {
            let module = request.module();
            let _ = writeln!(out, "target:  {} request to https://{dest} from {from}", request.kind());
            if let Some(m) = module {
                let _ = writeln!(out, "module:  {m}");
            }
            if !x.policy.intercepts(&dest.host) {
                let _ = writeln!(
                    out,
                    "note:    {} is not in tls.intercept, so modgate sees only CONNECT {dest}; module rules cannot apply there",
                    dest.host
                );
                trace(
                    x,
                    Door::Tunnel,
                    &facts(who, Some(dest), None),
                    &dest.to_string(),
                    &mut out,
                );
                return Ok(out);
            }
            tunnel_then_request(
                x,
                dest,
                request,
                &Facts::of_request(from, Some(dest), request),
                &mut out,
            );
        }
        ExplainTarget::Module(request) => {
            let module = request.module().unwrap_or_default();
            let version = request.version().map(|v| format!("@{v}")).unwrap_or_default();
            let _ = writeln!(out, "target:  module {module}{version} from {from}");
            if x.policy.private.is_private(module) {
                let _ = writeln!(
                    out,
                    "private: yes ([private] modules): sent only to [private] mirrors, never to a checksum database"
                );
            }
            version_rules(x, module, request.version(), &mut out);
            let _ = writeln!(out, "via:     modgate's module endpoint (GOPROXY=http://<modgate>)");
            trace(
                x,
                Door::Endpoint,
                &Facts::of_request(from, None, request),
                module,
                &mut out,
            );
            for glob in &x.policy.intercept {
                let HostGlob::Exact(host) = glob else { continue };
                let dest = Authority {
                    host: Host::Name(host.clone()),
                    port: 443,
                };
                let _ = writeln!(out, "\nvia:     an intercepted tunnel to {host}");
                tunnel_then_request(
                    x,
                    &dest,
                    request,
                    &Facts::of_request(from, Some(&dest), request),
                    &mut out,
                );
            }
        }
    }
    Ok(out)
}

/// The `versions` rules that can match `module`: for `module@version`,
/// whether each matches it; for a bare module, what they take out of its
/// list and `@latest`.
fn version_rules(x: &Explainer<'_>, module: &str, version: Option<&str>, out: &mut String) {
    let rules = x
        .policy
        .rules
        .iter()
        .filter(|r| r.versions.is_some() && r.modules.as_ref().is_none_or(|m| m.iter().any(|g| g.matches(module))));
    for rule in rules {
        let Some(versions) = &rule.versions else { continue };
        let list = versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let refuses = matches!(rule.action, Action::Block { .. });
        match version {
            // As `decide` sees it (`Facts::of_request`): a query (`v1.2`,
            // a branch) is no version until go resolves it.
            Some(v) if !crate::gomod::semver::is_canonical(v) => {
                let _ = writeln!(
                    out,
                    "version: {v} is a query, not a version: rule '{}' versions [{list}] is skipped for it (it applies to the version go resolves it to)",
                    rule.name
                );
            }
            Some(v) => {
                let verdict = if versions.iter().any(|m| m.matches(v)) {
                    "matches"
                } else {
                    "does not match"
                };
                let _ = writeln!(out, "version: {v} {verdict} rule '{}' versions [{list}]", rule.name);
            }
            None if refuses => {
                let _ = writeln!(
                    out,
                    "version: rule '{}' refuses versions [{list}]: they are left out of @v/list, and @latest answers the highest allowed version instead",
                    rule.name
                );
            }
            None => {
                let _ = writeln!(out, "version: rule '{}' applies to versions [{list}]", rule.name);
            }
        }
    }
}

/// An intercepted host's two decisions: the CONNECT (module unknown), and
/// then, if the tunnel is intercepted, the request inside.
fn tunnel_then_request(
    x: &Explainer<'_>,
    dest: &Authority,
    request: &ModuleRequest,
    inside: &Facts<'_>,
    out: &mut String,
) {
    let connect = Facts {
        module: None,
        ..*inside
    };
    let _ = writeln!(out, "CONNECT {dest}:");
    let plan = trace(x, Door::Tunnel, &connect, &dest.to_string(), out);
    if !matches!(plan, Plan::Intercept(_)) {
        return;
    }
    let url = format!("https://{dest}");
    let what = request.module().map_or(url, str::to_owned);
    let _ = writeln!(out, "then the request inside:");
    trace(x, Door::Intercepted { module_request: true }, inside, &what, out);
}

/// Prints each rule's verdict and the plan, and returns the plan (for a name
/// only DNS can resolve: the plan when no `dst` rule applies, with a note
/// for each that could).
fn trace<'a>(x: &Explainer<'a>, door: Door, facts: &Facts<'_>, what: &str, out: &mut String) -> Plan<'a> {
    // A redirected connection goes to its original destination: that is
    // the address, whatever [hosts] or DNS say.
    let known: Option<Vec<IpAddr>> = match facts.addr {
        Some(_) => None,
        None => facts
            .dest
            .and_then(|dest| x.hosts.pinned(dest))
            .map(|addrs| addrs.iter().map(|a| a.ip()).collect()),
    };
    if let (Some(addr), Some(_)) = (facts.addr, facts.dest) {
        let _ = writeln!(out, "address: {addr} (the original destination)");
    } else if let (Some(dest), Some(ips)) = (facts.dest, &known) {
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
    for (i, rule) in x.policy.rules.iter().enumerate() {
        let verdict = match &known {
            Some(ips) => check_all(rule, facts, ips),
            None => rule.check(facts),
        };
        let line = rule_line(rule);
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
    // refused; use it so the outcome matches what `serve` does.
    let decision = match &known {
        Some(ips) => decide_resolved(&x.policy.rules, facts, ips),
        None => chosen.map_or(Decision::NoMatch, Decision::Matched),
    };
    let plan = plan_decided(x.policy, door, facts, decision, what);
    print_plan(x, &plan, out);
    print_legs(&x.policy.parent, &plan, door, facts.dest, out);
    print_host_check(&plan, facts, out);
    if let Some(dest) = facts.dest {
        for rule in &depends_on_dns {
            let _ = writeln!(
                out,
                "note:    rule '{}' applies instead if any address of {} is in its dst; modgate checks every address it resolves",
                rule.name, dest.host
            );
        }
    }
    plan
}

fn print_plan(x: &Explainer<'_>, plan: &Plan<'_>, out: &mut String) {
    match plan.rule() {
        Some(rule) => {
            let _ = writeln!(out, "rule:    '{}'", rule.name);
        }
        None => {
            let _ = writeln!(out, "rule:    (none)");
        }
    }
    let action = match plan {
        Plan::Refuse { rule, error } => match (rule.map(|r| &r.action), error) {
            (Some(Action::Block { reason }), _) => format!("block ({reason})"),
            (_, crate::core::error::Error::Blocked { reason, .. }) => format!("block ({reason})"),
            _ => "block".to_owned(),
        },
        Plan::Mirror(_, mirrors) => format!("mirror to {mirrors}"),
        Plan::NotModule(_) => "mirror (but this is not a module request: 404)".to_owned(),
        Plan::ClientDirect(_) => "direct (a 404 that sends go to its own direct)".to_owned(),
        Plan::Relay(_) | Plan::Origin(_) | Plan::Intercept(_) => plan.action().as_str().to_owned(),
    };
    let _ = writeln!(out, "action:  {action}");
    if let Plan::Mirror(_, list) = plan {
        print_mirrors(x, list, out);
    }
    match plan {
        Plan::Refuse { error, .. } => {
            let _ = writeln!(out, "refusal: {}", error.body().trim_end());
        }
        Plan::Intercept(_) => {
            let _ = writeln!(
                out,
                "tunnel:  intercepted (tls.intercept): modgate ends TLS with its CA and decides each request inside again, with its module path"
            );
        }
        _ => {}
    }
}

/// With a `[parent]`: how each upstream connection of `plan` leaves,
/// through the parent or direct, and why.
fn print_legs(parent: &ParentRoute, plan: &Plan<'_>, door: Door, dest: Option<&Authority>, out: &mut String) {
    if parent.https.is_none() && parent.http.is_none() {
        return;
    }
    let via = Via::of(plan.rule());
    match (plan, dest) {
        (Plan::Relay(_), Some(dest)) => {
            let _ = writeln!(out, "upstream: {dest} {}", leg_text(parent, via, dest, true));
        }
        (Plan::Origin(_), Some(dest)) => {
            let tls = door != Door::Forward;
            let _ = writeln!(out, "upstream: {dest} {}", leg_text(parent, via, dest, tls));
        }
        (Plan::Mirror(_, mirrors), _) => {
            for entry in &mirrors.entries {
                let (name, target) = match &entry.mirror {
                    Mirror::Proxy(base) => (base.clone(), mirror_authority(base)),
                    Mirror::Direct => ("direct".to_owned(), dest.cloned()),
                    Mirror::Dir(_) | Mirror::Off => continue,
                };
                let Some(target) = target else { continue };
                let tls = !matches!(&entry.mirror, Mirror::Proxy(base) if base.starts_with("http://"));
                let _ = writeln!(out, "upstream: {name} {}", leg_text(parent, via, &target, tls));
            }
        }
        _ => {}
    }
}

/// `via parent URL`, or `direct` and why.
fn leg_text(parent: &ParentRoute, via: Via, dest: &Authority, tls: bool) -> String {
    match parent.leg(via, dest, tls) {
        leg @ crate::policy::parent::Leg::Parent(_) => format!("via {leg}"),
        leg => leg.to_string(),
    }
}

/// The host and port of a mirror's base URL.
fn mirror_authority(base: &str) -> Option<Authority> {
    let uri: Uri = base.parse().ok()?;
    let https = uri.scheme_str() == Some("https");
    Authority::of_uri(uri.authority()?, default_port(https)).ok()
}

/// For a redirected connection: whether its name must resolve to the
/// original destination (`verify_host`).
fn print_host_check(plan: &Plan<'_>, facts: &Facts<'_>, out: &mut String) {
    let (Some(addr), Some(dest), Some(rule)) = (facts.addr, facts.dest, plan.rule()) else {
        return;
    };
    if matches!(dest.host, Host::Ip(_)) || matches!(plan, Plan::Refuse { .. }) {
        return;
    }
    let line = match rule.verify_host {
        true => format!(
            "{} must resolve to {addr} (checked at connection time), or the connection is refused",
            dest.host
        ),
        false => format!(
            "not verified: rule '{}' sets verify_host = false, so {} is trusted as sent",
            rule.name, dest.host
        ),
    };
    let _ = writeln!(out, "host:    {line}");
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

/// Each module proxy of `list`: its `[mirror]` settings, and its health
/// as the running modgate reports it.
fn print_mirrors(x: &Explainer<'_>, list: &MirrorList, out: &mut String) {
    for entry in &list.entries {
        let Mirror::Proxy(url) = &entry.mirror else { continue };
        let _ = writeln!(out, "mirror:  {url}: {}", (x.mirror_settings)(url));
        let state = match &x.health {
            Some((lines, from)) => lines
                .lines()
                .find(|l| l.strip_prefix(url.as_str()).is_some_and(|rest| rest.starts_with(' ')))
                .map_or_else(
                    || format!("up (the modgate at {from} has not asked it yet)"),
                    |l| format!("{} (from the modgate at {from})", &l[url.len() + 1..]),
                ),
            None => "unknown (no running modgate answered on the admin listener)".to_owned(),
        };
        let _ = writeln!(out, "health:  {state}");
    }
}

//! `modgate doctor [--proxy URL] [--config FILE] [--json] [MODULE[@VERSION]]`:
//! why can't `go` download? It reads how go is configured ([`goenv`]),
//! checks it ([`checks`]), asks modgate and fetches the module the way go
//! would ([`reach`]), and prints one ✓ or ✗ line per finding, each ✗ with
//! the fix to paste. Exit 0 when everything passes, 1 when something
//! fails, 2 for bad arguments or config.

pub mod checks;
pub mod goenv;
pub mod reach;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::cli::doctor::checks::{Finding, OwnCa, authority, entries, pem_certs};
use crate::cli::doctor::goenv::GoEnv;
use crate::cli::usage_error;
use crate::config::Config;
use crate::core::proxy_url::ProxyUrl;

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Where the Go settings came from.
    pub from: String,
    /// The settings read.
    pub env: GoEnv,
    /// The proxy doctor talked to, when there was one.
    pub proxy: Option<String>,
    /// The module fetched, when one was given.
    pub module: Option<String>,
    /// Every finding, in order.
    pub findings: Vec<Finding>,
    /// Whether every finding passed.
    pub ok: bool,
}

/// Runs the command.
pub fn run(proxy: Option<String>, config: Option<PathBuf>, json: bool, module: Option<String>) -> ExitCode {
    let config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if let Some(module) = &module {
        if let Err(e) = check_module_arg(module) {
            return usage_error(format!("modgate: doctor: {e}"));
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return usage_error(format!("modgate: doctor: {e}")),
    };
    let report = runtime.block_on(diagnose(GoEnv::read(), proxy, &config, module));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => outln!("{text}"),
            Err(e) => return usage_error(format!("modgate: doctor: {e}")),
        }
    } else {
        out!("{}", render(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `module[@version]` as `explain` reads it (`@latest` too), so the two
/// commands take and refuse the same arguments: no fetch is made for a
/// path go would refuse.
fn check_module_arg(module: &str) -> Result<(), String> {
    let named = module.strip_suffix("@latest").unwrap_or(module);
    match crate::policy::explain::ExplainTarget::parse(named) {
        Ok(crate::policy::explain::ExplainTarget::Module(_)) => Ok(()),
        Ok(_) => Err(format!("'{module}' is not module[@version]")),
        Err(e) => Err(e),
    }
}

/// Every check, in the order a developer would fix them.
pub async fn diagnose(env: GoEnv, proxy: Option<String>, config: &Config, module: Option<String>) -> Report {
    let proxy = proxy.or_else(|| env.var("HTTPS_PROXY").map(str::to_owned)).or_else(|| {
        entries(env.go("GOPROXY"))
            .into_iter()
            .map(|e| e.name)
            .find(|n| n.starts_with("http://"))
    });
    let mut findings = checks::goproxy(&env, proxy.as_deref());
    findings.extend(checks::private(&env));
    findings.extend(checks::trust(&env, own_ca(config).as_ref()));
    findings.extend(checks::no_proxy(&env, &module_hosts(&env, module.as_deref())));
    if let Some(url) = &proxy {
        findings.push(reach::proxy_answers(url).await);
    }
    if let Some(module) = &module {
        let user = proxy.as_deref().and_then(|p| ProxyUrl::parse(p).ok());
        findings.push(reach::rule_for(config, module, user.as_ref().and_then(ProxyUrl::user)));
        findings.extend(reach::fetch(&env, module, Some(config)).await);
    }
    let ok = findings.iter().all(|f| f.ok);
    Report {
        from: env.from.clone(),
        env,
        proxy,
        module,
        findings,
        ok,
    }
}

/// modgate's CA from the config, when it exists.
fn own_ca(config: &Config) -> Option<OwnCa> {
    let path = config.tls.ca_cert.display().to_string();
    let der = pem_certs(&path).ok()?.into_iter().next()?;
    Some(OwnCa {
        path,
        der,
        intercepts: !config.policy.intercept.is_empty(),
    })
}

/// The hosts module traffic goes to: the GOPROXY proxies, the checksum
/// database, and the module's own host.
fn module_hosts(env: &GoEnv, module: Option<&str>) -> Vec<String> {
    let mut hosts: Vec<String> = entries(env.go("GOPROXY"))
        .iter()
        .filter_map(|e| authority(&e.name))
        .filter_map(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned()))
        .collect();
    hosts.push("proxy.golang.org".into());
    let sumdb = env.go("GOSUMDB");
    let sumdb_host = match sumdb.split_whitespace().nth(1) {
        Some(url) => authority(url).and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_owned())),
        None if sumdb.is_empty() || sumdb.starts_with("sum.golang.org") => Some("sum.golang.org".into()),
        None => sumdb.split('+').next().map(str::to_owned).filter(|h| h != "off"),
    };
    hosts.extend(sumdb_host);
    if let Some(host) = module.and_then(|m| m.split('/').next()) {
        hosts.push(host.to_owned());
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The text report: one ✓/✗ line per finding, the fix under each ✗.
pub fn render(r: &Report) -> String {
    let mut out = format!("modgate doctor: go settings from {}\n", r.from);
    for f in &r.findings {
        let mark = if f.ok { "✓" } else { "✗" };
        out.push_str(&format!("{mark} {}: {}\n", f.check, f.message));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("    fix: {fix}\n"));
        }
    }
    let failed = r.findings.iter().filter(|f| !f.ok).count();
    out.push_str(&match failed {
        0 => "everything passed\n".to_owned(),
        n => format!("{n} problem{} found\n", if n == 1 { "" } else { "s" }),
    });
    out
}

//! `modgate inspect`: the interception diagnosis for one host or one saved
//! chain, with the fix spelled out. The handshake goes through the same
//! dialers as `serve`: direct, through the config's `[parent]`, or
//! through `--proxy`, which overrides it.
//!
//! Exit codes: 0 public, 3 intercepted, 4 untrusted, 2 error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::process::ExitCode;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::cli::usage_error;
use crate::config::{Config, OnInterception, PublicRoots};
use crate::core::escape::escape;
use crate::core::host::{Authority, HostOverrides};
use crate::core::proxy_url::ProxyUrl;
use crate::policy::parent::{Leg, Via};
use crate::tls::chain::{ChainReport, Verdict, analyze, issued_by};
use crate::tls::evidence::{Evidence, Saved, Sighted};
use crate::tls::pem::read_chain;
use crate::tls::probe;
use crate::tls::trust::{Trust, read_pem_certs};
use crate::upstream::dial::{Dialer, DirectDialer};
use crate::upstream::parent::ParentDialer;
use crate::upstream::resolve::Resolver;

/// How long connecting and the handshake may take.
const STEP: Duration = Duration::from_secs(10);

/// `modgate inspect`: runs the inspection and prints it; the exit code is
/// the verdict's.
pub fn run(
    target: Option<String>,
    file: Option<PathBuf>,
    config: Option<PathBuf>,
    proxy: Option<String>,
    sni: Option<String>,
    json: bool,
) -> ExitCode {
    let config = match config.as_deref().map(|p| Config::load(Some(p))).transpose() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let source = match (target, file) {
        (_, Some(file)) => Source::File(file),
        (Some(target), None) => Source::Host { target, proxy, sni },
        (None, None) => return usage_error("modgate: give HOST[:PORT] or --file CHAIN.pem"),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return usage_error(format!("modgate: {e}")),
    };
    match runtime.block_on(inspect(source, config.as_ref())) {
        Ok(result) => {
            if json {
                match serde_json::to_string_pretty(&result) {
                    Ok(text) => outln!("{text}"),
                    Err(e) => return usage_error(format!("modgate: {e}")),
                }
            } else {
                out!("{}", render(&result));
            }
            ExitCode::from(result.exit_code)
        }
        Err(e) => usage_error(format!("modgate: inspect: {e}")),
    }
}

/// Where the chain comes from.
pub enum Source {
    /// One handshake with `target`, directly or through `proxy` (CONNECT).
    Host {
        /// `host[:port]`; the port defaults to 443.
        target: String,
        /// A parent HTTP proxy URL, e.g. `http://127.0.0.1:3128`.
        proxy: Option<String>,
        /// The SNI to send; defaults to the host.
        sni: Option<String>,
    },
    /// A PEM file, e.g. pasted from `openssl s_client -showcerts`.
    File(PathBuf),
}

/// The outcome, as printed with `--json`. Documented in docs/inspect.md.
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// `host:port` inspected, for a handshake.
    pub target: Option<String>,
    /// The file read, for `--file`.
    pub file: Option<String>,
    /// The SNI sent.
    pub sni: Option<String>,
    /// The parent proxy used.
    pub proxy: Option<String>,
    /// What the public roots are: `webpki` or a file.
    pub public_roots: String,
    /// The chain and its verdict.
    #[serde(flatten)]
    pub report: ChainReport,
    /// Where the chain was saved, when it failed the public roots: only
    /// its linked part.
    pub saved: Option<String>,
    /// Where its self-signed root was saved alone, when the chain ends in
    /// one: the only file the fix suggests trusting.
    pub saved_root: Option<String>,
    /// The fix, as lines to paste.
    pub fix: Vec<String>,
    /// The process exit code: 0 public, 3 intercepted, 4 untrusted.
    pub exit_code: u8,
}

/// Runs the inspection. `config` gives `tls.public_roots`,
/// `tls.extra_roots`, `[hosts]` and `tls.intercepted_dir`; without it,
/// webpki roots, the system store and `<state dir>/intercepted`.
pub async fn inspect(source: Source, config: Option<&Config>) -> Result<Inspection, String> {
    let (public, extra, hosts, evidence_dir) = match config {
        Some(c) => (
            c.tls.public_roots.clone(),
            c.tls.extra_roots.clone(),
            c.hosts.clone(),
            c.tls.intercepted_dir.clone(),
        ),
        None => (
            PublicRoots::Webpki,
            Vec::new(),
            HostOverrides::default(),
            crate::config::paths::state_dir().join("intercepted"),
        ),
    };
    let trust = Trust::load(&public, &extra).map_err(|e| e.to_string())?;
    let (chain, host, sighted, inspection) = match source {
        Source::File(path) => {
            let chain = read_chain(&path)?;
            let file = Some(path.display().to_string());
            (chain, None, Sighted::default(), (None, file, None, None))
        }
        Source::Host { target, proxy, sni } => {
            let with_port = if target.contains(':') && !target.ends_with(']') {
                target.clone()
            } else {
                format!("{target}:443")
            };
            let dest = Authority::parse_connect(&with_port).map_err(|e| format!("bad target '{target}': {e}"))?;
            let host = dest.host.to_string().trim_matches(|c| c == '[' || c == ']').to_owned();
            let sni = sni.unwrap_or_else(|| host.clone());
            let dns = config.map(|c| c.dns.clone()).unwrap_or_default();
            let resolver = Arc::new(Resolver::new(hosts, &dns));
            let direct = DirectDialer::new(resolver);
            let parent = config.map(|c| &c.policy.parent);
            let (dialer, proxy): (Box<dyn Dialer>, Option<String>) = match (&proxy, parent) {
                (Some(url), _) => {
                    let url = ProxyUrl::parse(url)?;
                    (
                        Box::new(ParentDialer::through(url.clone(), direct)),
                        Some(url.to_string()),
                    )
                }
                (None, Some(route)) => {
                    let used = match route.leg(Via::Parent, &dest, true) {
                        Leg::Parent(p) => Some(p.to_string()),
                        Leg::Direct(_) => None,
                    };
                    (Box::new(ParentDialer::new(route.clone(), direct)), used)
                }
                (None, None) => (Box::new(direct), None),
            };
            let stream = dialer.dial(&dest, None, STEP).await.map_err(|e| e.to_string())?.stream;
            let chain = tokio::time::timeout(STEP, probe::handshake(stream, &sni))
                .await
                .map_err(|_| format!("TLS handshake with {dest} timed out"))??;
            let sighted = Sighted::at(&host, &sni, None);
            (
                chain,
                Some(sni.clone()),
                sighted,
                (Some(dest.to_string()), None, Some(sni), proxy),
            )
        }
    };
    let report = analyze(&trust.verifiers, &chain, host.as_deref())?;
    let saved = match report.verdict {
        Verdict::Public => None,
        _ => {
            let evidence = Evidence::open(&evidence_dir);
            let saved = evidence.record(&report, &chain, &sighted, OnInterception::Warn);
            // The files are written off this thread; they must exist before
            // the report names them.
            evidence.flush();
            saved
        }
    };
    let fix = fix_lines(
        &report,
        &Fixing {
            saved: saved.as_ref(),
            extra: config.is_some().then_some(extra.as_slice()),
            own_ca: own_ca(&report, &chain, config),
        },
    );
    let (saved, saved_root) = match saved {
        Some(s) => (Some(s.chain), s.root),
        None => (None, None),
    };
    let exit_code = match report.verdict {
        Verdict::Public => 0,
        Verdict::Intercepted => 3,
        Verdict::Untrusted => 4,
    };
    let (target, file, sni, proxy) = inspection;
    let public_roots = match public {
        PublicRoots::Webpki => "webpki".into(),
        PublicRoots::File(p) => p.display().to_string(),
    };
    Ok(Inspection {
        target,
        file,
        sni,
        proxy,
        public_roots,
        report,
        saved,
        saved_root,
        fix,
        exit_code,
    })
}

fn system_bundle() -> String {
    if let Ok(file) = std::env::var("SSL_CERT_FILE") {
        return file;
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or(&"/etc/ssl/certs/ca-certificates.crt")
    .to_string()
}

/// What the fix depends on besides the report.
struct Fixing<'a> {
    /// Where the chain and its root were saved.
    saved: Option<&'a Saved>,
    /// `tls.extra_roots`, when a config was given.
    extra: Option<&'a [PathBuf]>,
    /// Whether modgate's own CA issued the chain.
    own_ca: Option<OwnCa>,
}

/// How a chain was recognised as issued by modgate's own CA.
enum OwnCa {
    /// It is the config's `tls.ca_cert`, or that CA signed it.
    Configured {
        /// The CA file.
        cert: PathBuf,
        /// The config file.
        config: String,
    },
    /// The issuer is named the way `modgate ca init` names its CA.
    Named,
}

/// Whether modgate's own CA issued `chain`: compared with the config's
/// `tls.ca_cert` when there is one, else recognised by name.
fn own_ca(report: &ChainReport, chain: &[CertificateDer<'static>], config: Option<&Config>) -> Option<OwnCa> {
    if let Some(config) = config {
        if let Ok(cas) = read_pem_certs(&config.tls.ca_cert) {
            let ours = chain
                .iter()
                .any(|cert| cas.iter().any(|ca| cert == ca || issued_by(cert, ca)));
            if ours {
                return Some(OwnCa::Configured {
                    cert: config.tls.ca_cert.clone(),
                    config: config.source.clone(),
                });
            }
        }
    }
    (report.vendor.as_deref() == Some("modgate")).then_some(OwnCa::Named)
}

/// Which certificate is outside its dates, for the fix.
fn outside_dates(report: &ChainReport) -> String {
    if let Some(root) = &report.root_outside_dates {
        let now = rustls::pki_types::UnixTime::now().as_secs() as i64;
        return format!("The chain ends at {}", root.describe(now));
    }
    match report.certs.iter().enumerate().find(|(_, c)| c.days_left < 0) {
        Some((i, cert)) => format!("Certificate {} ({}) expired on {}", i + 1, cert.subject, cert.not_after),
        None => "A certificate in the chain is not valid yet: its validity starts after this machine's time".into(),
    }
}

/// What to paste. Only a self-signed root is ever suggested as something
/// to trust, and only when trusting a root is the fix.
fn fix_lines(report: &ChainReport, fixing: &Fixing<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    if report.verdict == Verdict::Public {
        lines.push("nothing to fix: the chain verifies against the public roots".into());
        return lines;
    }
    let (saved, extra) = (fixing.saved, fixing.extra);
    let chain = saved.map_or("<the saved chain>", |s| s.chain.as_str());
    if let Some(own) = &fixing.own_ca {
        let (which, bundle) = match own {
            OwnCa::Configured { cert, config } => (
                format!(", tls.ca_cert {}", cert.display()),
                format!(
                    "modgate ca bundle --config {} > modgate-bundle.pem",
                    crate::core::escape::shell_word(config)
                ),
            ),
            OwnCa::Named => (String::new(), "modgate ca bundle > modgate-bundle.pem".to_owned()),
        };
        lines.push(format!(
            "# This chain is issued by modgate's own local CA ('{}'{which}): the connection goes through a modgate that intercepts this host.",
            report.issuer
        ));
        lines.push(
            "# Its clients trust that CA through its bundle (the system roots plus the CA; see docs/clients.md), never through its leaf. Where that modgate runs:"
                .into(),
        );
        lines.push(bundle);
        lines.push("export SSL_CERT_FILE=$PWD/modgate-bundle.pem".into());
        return lines;
    }
    if report.flags.hostname_mismatch && report.certs.first().is_some_and(|leaf| leaf.sans.is_empty()) {
        lines.push(format!("# {}.", crate::tls::chain::NO_SAN));
        lines.push(
            "# Trusting a root cannot fix this, so no tls.extra_roots change is suggested: the certificate must name the host as a subjectAltName."
                .into(),
        );
        lines.push("# The chain was saved as:".into());
        lines.push(format!("#   {chain}"));
        return lines;
    }
    if report.flags.hostname_mismatch {
        let host = report.host.as_deref().unwrap_or("-");
        let names = report
            .certs
            .first()
            .filter(|leaf| !leaf.sans.is_empty())
            .map_or_else(|| "no names".to_owned(), |leaf| leaf.sans.join(", "));
        lines.push(format!(
            "# The certificate is not valid for '{host}': it names {names}."
        ));
        lines.push(
            "# Check the host name (and --sni); if they are right, an interceptor sends this name to the wrong site."
                .into(),
        );
        lines.push("# Trusting a root cannot fix a name mismatch, so no tls.extra_roots change is suggested.".into());
        lines.push("# The chain was saved as:".into());
        lines.push(format!("#   {chain}"));
        return lines;
    }
    if report.flags.expired || report.flags.not_yet_valid {
        // The same advice as serve's refusal (tls::verifier): no root
        // makes a certificate valid outside its dates.
        lines.push(format!("# {}.", outside_dates(report)));
        match &report.root_outside_dates {
            Some(root) => lines.push(format!(
                "# No root is trusted outside its dates (go refuses this chain too), so trusting it again cannot fix this: check this machine's clock (date -u), or get the renewed root from the interceptor's admin (IT) and put it in place of the one in {}.",
                root.source
            )),
            None => lines.push(
                "# Trusting a root cannot fix this, so no tls.extra_roots change is suggested: check this machine's clock (date -u), or have the server's certificate renewed."
                    .into(),
            ),
        }
        lines.push("# The chain was saved as:".into());
        lines.push(format!("#   {chain}"));
        return lines;
    }
    if let Some(why) = &report.unacceptable {
        lines.push(format!("# No trusted root makes this chain acceptable: {why}."));
        lines.push(
            "# Trusting a root cannot fix this, so no tls.extra_roots change is suggested: the server's certificates must change."
                .into(),
        );
        lines.push("# The chain was saved as:".into());
        lines.push(format!("#   {chain}"));
        return lines;
    }
    if report.flags.missing_intermediates {
        lines.push("# The server sends only its own certificate, whose issuer is not a trusted root: it leaves out its intermediate certificate (go refuses it too).".into());
        lines.push("# Have the server send its whole chain; no tls.extra_roots change is suggested.".into());
        lines.push("# The chain was saved as:".into());
        lines.push(format!("#   {chain}"));
        return lines;
    }
    let vendor = report.vendor.as_deref().unwrap_or("unknown");
    let who = if vendor == "unknown" {
        "an interceptor (admin-generated CA)".to_owned()
    } else {
        vendor.to_owned()
    };
    lines.push(format!(
        "# The connection is re-signed by {who}; its chain was saved as:"
    ));
    lines.push(format!("#   {chain}"));
    let bundle = |lines: &mut Vec<String>, what: &str, files: &str| {
        lines.push(format!(
            "# 2. Give go the system roots plus {what} (on Linux SSL_CERT_FILE replaces the system bundle):"
        ));
        lines.push(format!("cat {} {files} > go-bundle.pem", system_bundle()));
        lines.push("export SSL_CERT_FILE=$PWD/go-bundle.pem".into());
    };
    if report.verdict == Verdict::Intercepted {
        match extra.filter(|e| !e.is_empty()) {
            Some(extra) => {
                lines.push("# 1. modgate already trusts its root (tls.extra_roots or the system store).".into());
                let files: Vec<String> = extra.iter().map(|p| p.display().to_string()).collect();
                bundle(&mut lines, "the roots in tls.extra_roots", &files.join(" "));
            }
            None => {
                lines.push("# 1. modgate already trusts its root (the system store).".into());
                lines.push("# 2. go reads the same system store, so it trusts this root already.".into());
            }
        }
        return lines;
    }
    // A root sent outside its dates is no root to trust: its current copy is.
    let sent_root = saved
        .and_then(|s| s.root.as_deref())
        .filter(|_| report.sent_root_outside_dates.is_none());
    let root = match sent_root {
        Some(root) => {
            lines.push("# and its self-signed root, alone, as:".into());
            lines.push(format!("#   {root}"));
            lines.push("# 1. Trust that root in modgate (modgate.toml):".into());
            root.to_owned()
        }
        None => {
            lines.push(match &report.sent_root_outside_dates {
                Some(stale) => format!(
                    "# The root the server sent, {stale}: trusting that copy would not help (go refuses a root outside its dates too)."
                ),
                None => "# The chain holds no self-signed root, and a leaf or an intermediate must never be trusted as one."
                    .into(),
            });
            lines.push(
                "# Get the interceptor's current root CA certificate from its admin (IT), save it as interceptor-root.pem, then:"
                    .into(),
            );
            lines.push("# 1. Trust it in modgate (modgate.toml):".into());
            "interceptor-root.pem".to_owned()
        }
    };
    lines.push("[tls]".into());
    lines.push(format!("extra_roots = [\"{root}\"]"));
    let what = if sent_root.is_some() { "that root" } else { "it" };
    bundle(&mut lines, what, &root);
    lines
}

/// The text report.
pub fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let r = &i.report;
    match (&i.target, &i.file) {
        (Some(target), _) => {
            let via = i.proxy.as_deref().map(|p| format!(", via {p}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "inspect {} (SNI {}{})",
                escape(target),
                escape(i.sni.as_deref().unwrap_or("-")),
                escape(&via)
            );
        }
        (None, Some(file)) => {
            let _ = writeln!(out, "inspect --file {}", escape(file));
        }
        _ => {}
    }
    for (n, c) in r.certs.iter().enumerate() {
        let role = if n == 0 {
            "leaf"
        } else if c.is_ca {
            "CA"
        } else {
            "certificate"
        };
        let _ = writeln!(out, "\ncertificate {} ({role})", n + 1);
        let _ = writeln!(out, "  subject:      {}", escape(&c.subject));
        let _ = writeln!(out, "  issuer:       {}", escape(&c.issuer));
        let _ = writeln!(out, "  serial:       {}", c.serial);
        let days = if c.days_left < 0 {
            format!("expired {} days ago", -c.days_left)
        } else {
            format!("{} days left", c.days_left)
        };
        let _ = writeln!(out, "  validity:     {} .. {} ({days})", c.not_before, c.not_after);
        if !c.sans.is_empty() {
            let _ = writeln!(out, "  SANs:         {}", escape(&c.sans.join(", ")));
        }
        let _ = writeln!(out, "  key:          {}", c.key);
        let _ = writeln!(out, "  signature:    {}", c.signature);
        let _ = writeln!(out, "  sha256:       {}", c.sha256);
        let _ = writeln!(out, "  spki sha256:  {}", c.spki_sha256);
    }
    let _ = writeln!(
        out,
        "\npublic roots ({}): {}",
        escape(&i.public_roots),
        escape(&r.public_check)
    );
    let _ = writeln!(out, "system + extra roots: {}", escape(&r.local_check));
    let _ = writeln!(out, "verdict:  {}", r.verdict);
    if let Some(vendor) = &r.vendor {
        let _ = writeln!(out, "vendor:   {vendor}");
        let _ = writeln!(out, "issuer:   {}", escape(&r.issuer));
    }
    let flags = r.flags.names();
    let _ = writeln!(
        out,
        "flags:    {}",
        if flags.is_empty() {
            "none".into()
        } else {
            flags.join(", ")
        }
    );
    let _ = writeln!(out, "\nfix:");
    for line in &i.fix {
        let _ = writeln!(out, "  {}", escape(line));
    }
    out
}

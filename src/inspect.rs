//! `modgate inspect`: the interception diagnosis for one host or one saved
//! chain, with the fix spelled out.
//!
//! Exit codes: 0 public, 3 intercepted, 4 untrusted, 2 error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Config, HostOverrides};
use crate::evidence::Evidence;
use crate::request::Authority;
use crate::trust::{PublicRoots, Trust};
use crate::upstream::Resolver;
use crate::verdict::{self, ChainReport, OnInterception, Verdict};

/// How long connecting and the handshake may take.
const STEP: Duration = Duration::from_secs(10);

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
    /// Where the chain was saved, when it failed the public roots.
    pub saved: Option<String>,
    /// The fix, as lines to paste.
    pub fix: Vec<String>,
    /// The process exit code: 0 public, 3 intercepted, 4 untrusted.
    pub exit_code: u8,
}

/// Runs the inspection. `config` gives `tls.public_roots`,
/// `tls.extra_roots`, `[hosts]` and `tls.intercepted_dir`; without it,
/// webpki roots, the system store and `certs/intercepted`.
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
            PathBuf::from("certs/intercepted"),
        ),
    };
    let trust = Trust::load(&public, &extra).map_err(|e| e.to_string())?;
    let (chain, host, inspection) = match source {
        Source::File(path) => {
            let chain = read_chain(&path)?;
            (chain, None, (None, Some(path.display().to_string()), None, None))
        }
        Source::Host { target, proxy, sni } => {
            let with_port = if target.contains(':') && !target.ends_with(']') {
                target.clone()
            } else {
                format!("{target}:443")
            };
            let dest = Authority::parse_connect(&with_port).map_err(|e| format!("bad target '{target}': {e}"))?;
            let sni = sni.unwrap_or_else(|| dest.host.to_string().trim_matches(|c| c == '[' || c == ']').to_owned());
            let stream = match &proxy {
                Some(url) => through_proxy(url, &dest).await?,
                None => connect(&dest, hosts).await?,
            };
            let chain = tokio::time::timeout(STEP, crate::probe::handshake(stream, &sni))
                .await
                .map_err(|_| format!("TLS handshake with {dest} timed out"))??;
            (
                chain,
                Some(sni.clone()),
                (Some(dest.to_string()), None, Some(sni), proxy),
            )
        }
    };
    let report = verdict::analyze(&trust.verifiers, &chain, host.as_deref())?;
    let saved = match report.verdict {
        Verdict::Public => None,
        _ => Evidence::open(&evidence_dir).record(&report, &chain, OnInterception::Warn),
    };
    let fix = fix_lines(&report, saved.as_deref(), config.is_some());
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
        fix,
        exit_code,
    })
}

async fn connect(dest: &Authority, hosts: HostOverrides) -> Result<TcpStream, String> {
    let resolver = Resolver::new(hosts);
    crate::upstream::dial(&resolver, dest, STEP)
        .await
        .map(|(s, _)| s)
        .map_err(|e| e.to_string())
}

/// Opens a CONNECT tunnel to `dest` through the HTTP proxy at `url`.
async fn through_proxy(url: &str, dest: &Authority) -> Result<TcpStream, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad --proxy '{url}': {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("bad --proxy '{url}': expected http://host:port"));
    }
    let host = uri.host().ok_or_else(|| format!("bad --proxy '{url}': no host"))?;
    let proxy = Authority::parse_connect(&format!("{host}:{}", uri.port_u16().unwrap_or(3128)))
        .map_err(|e| format!("bad --proxy '{url}': {e}"))?;
    let mut stream = connect(&proxy, HostOverrides::default())
        .await
        .map_err(|e| format!("proxy {url}: {e}"))?;
    let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("proxy {url}: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(STEP, stream.read(&mut byte))
            .await
            .map_err(|_| format!("proxy {url} did not answer CONNECT"))?
            .map_err(|e| format!("proxy {url}: {e}"))?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(format!("proxy {url} closed the connection during CONNECT"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or_default().to_owned();
    if !status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
    {
        let mut body = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut body)).await;
        return Err(format!("proxy {url} refused CONNECT {dest}: {status} {}", body.trim()));
    }
    Ok(stream)
}

/// Reads a PEM chain, leaf first. Text around the blocks (as in `openssl
/// s_client -showcerts` output) and non-certificate blocks are ignored.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("{name}: the file is empty"));
    }
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN") {
        if bytes.first() == Some(&0x30) {
            return Err(format!(
                "{name}: this looks like DER, not PEM; convert it with: openssl x509 -inform der -in {name} -out chain.pem"
            ));
        }
        return Err(format!(
            "{name}: no PEM certificates found (expected -----BEGIN CERTIFICATE----- blocks, e.g. from openssl s_client -showcerts)"
        ));
    }
    let blocks = pem::parse_many(&bytes).map_err(|e| format!("{name}: malformed PEM: {e}"))?;
    let begun = text.matches("-----BEGIN CERTIFICATE-----").count();
    let certs: Vec<CertificateDer<'static>> = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.contents().to_vec()))
        .collect();
    if certs.len() < begun {
        return Err(format!(
            "{name}: {begun} certificate blocks begin but only {} are complete; the file looks truncated",
            certs.len()
        ));
    }
    if certs.is_empty() {
        let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
        return Err(format!(
            "{name}: PEM blocks found ({}), but no CERTIFICATE",
            tags.join(", ")
        ));
    }
    Ok(certs)
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

fn fix_lines(report: &ChainReport, saved: Option<&str>, with_config: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if report.verdict == Verdict::Public {
        lines.push("nothing to fix: the chain verifies against the public roots".into());
        return lines;
    }
    let saved = saved.unwrap_or("<the saved chain>");
    let vendor = report.vendor.as_deref().unwrap_or("unknown");
    let who = if vendor == "unknown" {
        "an interceptor (admin-generated CA)".to_owned()
    } else {
        vendor.to_owned()
    };
    lines.push(format!(
        "# The connection is re-signed by {who}; its chain was saved as:"
    ));
    lines.push(format!("#   {saved}"));
    if report.verdict == Verdict::Untrusted {
        lines.push("# 1. Trust it in modgate (modgate.toml):".into());
        lines.push("[tls]".into());
        lines.push(format!("extra_roots = [\"{saved}\"]"));
    } else {
        let source = if with_config {
            "tls.extra_roots or the system store"
        } else {
            "the system store"
        };
        lines.push(format!("# 1. modgate already trusts its root ({source})."));
    }
    lines.push("# 2. Give go the system roots plus it (on Linux SSL_CERT_FILE replaces the system bundle):".into());
    lines.push(format!("cat {} {saved} > go-bundle.pem", system_bundle()));
    lines.push("export SSL_CERT_FILE=$PWD/go-bundle.pem".into());
    lines
}

/// The text report.
pub fn render(i: &Inspection) -> String {
    let mut out = String::new();
    let r = &i.report;
    match (&i.target, &i.file) {
        (Some(target), _) => {
            let via = i.proxy.as_deref().map(|p| format!(", via {p}")).unwrap_or_default();
            let _ = writeln!(out, "inspect {target} (SNI {}{via})", i.sni.as_deref().unwrap_or("-"));
        }
        (None, Some(file)) => {
            let _ = writeln!(out, "inspect --file {file}");
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
        let _ = writeln!(out, "  subject:      {}", c.subject);
        let _ = writeln!(out, "  issuer:       {}", c.issuer);
        let _ = writeln!(out, "  serial:       {}", c.serial);
        let days = if c.days_left < 0 {
            format!("expired {} days ago", -c.days_left)
        } else {
            format!("{} days left", c.days_left)
        };
        let _ = writeln!(out, "  validity:     {} .. {} ({days})", c.not_before, c.not_after);
        if !c.sans.is_empty() {
            let _ = writeln!(out, "  SANs:         {}", c.sans.join(", "));
        }
        let _ = writeln!(out, "  key:          {}", c.key);
        let _ = writeln!(out, "  signature:    {}", c.signature);
        let _ = writeln!(out, "  sha256:       {}", c.sha256);
        let _ = writeln!(out, "  spki sha256:  {}", c.spki_sha256);
    }
    let _ = writeln!(out, "\npublic roots ({}): {}", i.public_roots, r.public_check);
    let _ = writeln!(out, "system + extra roots: {}", r.local_check);
    let _ = writeln!(out, "verdict:  {}", r.verdict);
    if let Some(vendor) = &r.vendor {
        let _ = writeln!(out, "vendor:   {vendor}");
        let _ = writeln!(out, "issuer:   {}", r.issuer);
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
        let _ = writeln!(out, "  {line}");
    }
    out
}

//! The checks on how `go` is configured that need no network: GOPROXY's
//! syntax, private patterns and public services, the trust files, and
//! NO_PROXY. Each gives a [`Finding`]: a ✓ or a ✗ with the fix to paste.

use rustls::pki_types::CertificateDer;
use serde::Serialize;

use crate::cli::doctor::goenv::GoEnv;
use crate::policy::glob::ModuleGlob;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked: `goproxy`, `private`, `sumdb`, `insecure`,
    /// `trust`, `no_proxy`, `proxy`, `rule`, `fetch`, `tls`.
    pub check: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was found, one line.
    pub message: String,
    /// What to paste to fix it, for a failure.
    pub fix: Option<String>,
}

impl Finding {
    /// A pass.
    pub fn pass(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: true,
            message: message.into(),
            fix: None,
        }
    }

    /// A failure and its fix.
    pub fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: false,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// go's default GOPROXY.
pub const DEFAULT_GOPROXY: &str = "https://proxy.golang.org,direct";

/// One GOPROXY entry and the separator after it (`None` for the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The URL, `direct` or `off`.
    pub name: String,
    /// `,` or `|`.
    pub then: Option<char>,
}

/// GOPROXY split into its entries.
pub fn entries(goproxy: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut name = String::new();
    for c in goproxy.chars() {
        if c == ',' || c == '|' {
            out.push(Entry {
                name: std::mem::take(&mut name).trim().to_owned(),
                then: Some(c),
            });
        } else {
            name.push(c);
        }
    }
    out.push(Entry {
        name: name.trim().to_owned(),
        then: None,
    });
    out.retain(|e| !e.name.is_empty());
    out
}

/// The entries joined back.
fn join(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}{}", e.name, e.then.map(String::from).unwrap_or_default()))
        .collect()
}

/// `host:port` of an http(s) URL, with the scheme's default port.
pub fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let port = uri
        .port_u16()
        .unwrap_or(crate::core::host::default_port(uri.scheme_str() == Some("https")));
    Some(format!("{}:{port}", uri.host()?))
}

/// GOPROXY: `off`, a missing `direct`, and `|` after modgate's endpoint.
pub fn goproxy(env: &GoEnv, modgate: Option<&str>) -> Vec<Finding> {
    let value = match env.go("GOPROXY") {
        "" => DEFAULT_GOPROXY,
        v => v,
    };
    let list = entries(value);
    if list.iter().all(|e| e.name == "off") {
        return vec![Finding::fail(
            "goproxy",
            format!("GOPROXY={value}: go may not download any module"),
            format!(
                "go env -w GOPROXY={},direct",
                modgate.unwrap_or("https://proxy.golang.org")
            ),
        )];
    }
    let mut found = Vec::new();
    let ours = modgate.and_then(authority);
    for (i, e) in list.iter().enumerate() {
        if e.then == Some('|') && ours.is_some() && authority(&e.name) == ours {
            let mut fixed = list.clone();
            fixed[i].then = Some(',');
            found.push(Finding::fail(
                "goproxy",
                format!(
                    "GOPROXY={value}: '|' after modgate's endpoint makes go try the next entry on any error, including modgate's 403 for a blocked module, so a block can be bypassed"
                ),
                format!("go env -w GOPROXY={}", join(&fixed)),
            ));
        }
    }
    let ends = list.iter().any(|e| e.name == "direct" || e.name == "off");
    if !ends {
        found.push(Finding::fail(
            "goproxy",
            format!(
                "GOPROXY={value} has no 'direct': a module the proxies do not have (404/410) fails instead of being fetched from its origin"
            ),
            format!("go env -w GOPROXY={value},direct"),
        ));
    }
    if found.is_empty() {
        found.push(Finding::pass(
            "goproxy",
            format!("GOPROXY={value} (',' moves on after 404/410 only, '|' after any error)"),
        ));
    }
    found
}

/// Whether some pattern in `list` (comma-separated globs) covers `pattern`.
fn covered(list: &str, pattern: &str) -> bool {
    let literal: String = pattern.chars().take_while(|c| !matches!(c, '*' | '?' | '[')).collect();
    let literal = literal.trim_end_matches('/');
    list.split(',').map(str::trim).filter(|n| !n.is_empty()).any(|n| {
        n == pattern
            || n.parse::<ModuleGlob>()
                .is_ok_and(|g| !literal.is_empty() && g.matches(literal))
    })
}

/// Adds `pattern` to the comma-separated `list`.
fn with(list: &str, pattern: &str) -> String {
    match list.trim() {
        "" => pattern.to_owned(),
        l => format!("{l},{pattern}"),
    }
}

/// Private patterns sent to a public proxy or looked up in the checksum
/// database, and GOINSECURE.
pub fn private(env: &GoEnv) -> Vec<Finding> {
    let mut found = Vec::new();
    let private: Vec<&str> = env
        .go("GOPRIVATE")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let goproxy = match env.go("GOPROXY") {
        "" => DEFAULT_GOPROXY,
        v => v,
    };
    let first_proxy = entries(goproxy)
        .into_iter()
        .find(|e| e.name != "direct" && e.name != "off")
        .map(|e| e.name);
    let sumdb = match env.go("GOSUMDB") {
        "" => "sum.golang.org",
        v => v,
    };
    let (noproxy, nosumdb) = (env.go("GONOPROXY"), env.go("GONOSUMDB"));
    for p in &private {
        if let Some(proxy) = first_proxy.as_deref().filter(|_| !covered(noproxy, p)) {
            found.push(Finding::fail(
                "private",
                format!("GOPRIVATE pattern {p} is not in GONOPROXY={noproxy}: go sends those module paths to {proxy}"),
                format!("go env -w GONOPROXY={}", with(noproxy, p)),
            ));
        }
        if sumdb != "off" && !covered(nosumdb, p) {
            found.push(Finding::fail(
                "sumdb",
                format!(
                    "GOPRIVATE pattern {p} is not in GONOSUMDB={nosumdb}: go looks those module paths up in {sumdb}"
                ),
                format!("go env -w GONOSUMDB={}", with(nosumdb, p)),
            ));
        }
    }
    if found.is_empty() {
        found.push(Finding::pass(
            "private",
            match private.is_empty() {
                true => "no private module patterns (GOPRIVATE is empty)".to_owned(),
                false => format!(
                    "private modules ({}) go neither to a proxy nor to the checksum database",
                    private.join(",")
                ),
            },
        ));
    }
    let insecure = env.go("GOINSECURE");
    if !insecure.is_empty() {
        found.push(Finding::fail(
            "insecure",
            format!("GOINSECURE={insecure}: go skips certificate checks (and allows http) for these modules"),
            "fix the trust instead (modgate inspect HOST says how), then: go env -u GOINSECURE",
        ));
    }
    found
}

/// modgate's CA, as doctor knows it.
pub struct OwnCa {
    /// Where it is.
    pub path: String,
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Whether the config intercepts any host (so clients must trust it).
    pub intercepts: bool,
}

/// The certificates in a PEM file, or why it cannot be read.
pub fn pem_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::tls::trust::read_pem_certs(std::path::Path::new(path)).map_err(|e| e.to_string())
}

/// How many of `certs` are public web PKI roots (webpki-roots).
fn public_roots_in(certs: &[CertificateDer<'_>]) -> usize {
    let public: std::collections::HashSet<&[u8]> = webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|a| a.subject_public_key_info.as_ref())
        .collect();
    certs
        .iter()
        .filter(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .is_ok_and(|(_, x)| public.contains(der_content(x.tbs_certificate.subject_pki.raw)))
        })
        .count()
}

/// The content of a DER SEQUENCE (what a trust anchor keeps of an SPKI):
/// `der` without its tag and length.
fn der_content(der: &[u8]) -> &[u8] {
    let header = match der.get(1) {
        Some(&len) if len < 0x80 => 2,
        Some(&len) => 2 + usize::from(len & 0x7f),
        None => return der,
    };
    der.get(header..).unwrap_or(der)
}

/// SSL_CERT_FILE and git's http.sslCAInfo: a file that replaces the system
/// roots must hold both the public roots and, when modgate intercepts,
/// modgate's CA.
pub fn trust(env: &GoEnv, ca: Option<&OwnCa>) -> Vec<Finding> {
    let mut found = Vec::new();
    let bundle_fix =
        "modgate ca bundle > ~/.config/modgate/bundle.pem && export SSL_CERT_FILE=~/.config/modgate/bundle.pem";
    let files = [
        ("SSL_CERT_FILE", env.var("SSL_CERT_FILE").map(str::to_owned), bundle_fix.to_owned()),
        (
            "git http.sslCAInfo",
            env.git_ca_info.clone(),
            "modgate ca bundle > ~/.config/modgate/bundle.pem && git config --global http.sslCAInfo ~/.config/modgate/bundle.pem".to_owned(),
        ),
    ];
    for (what, path, fix) in files {
        let Some(path) = path else { continue };
        let certs = match pem_certs(&path) {
            Ok(c) => c,
            Err(e) => {
                found.push(Finding::fail(
                    "trust",
                    format!("{what}={path} cannot be read: {e}"),
                    fix,
                ));
                continue;
            }
        };
        let has_ca = ca.is_some_and(|ca| certs.iter().any(|c| c == &ca.der));
        let public = public_roots_in(&certs);
        if public == 0 {
            found.push(Finding::fail(
                "trust",
                format!(
                    "{what}={path} replaces the system roots but holds no public root ({} certificates): every site not signed by them fails",
                    certs.len()
                ),
                fix,
            ));
        } else if let Some(ca) = ca.filter(|ca| ca.intercepts && !has_ca) {
            found.push(Finding::fail(
                "trust",
                format!(
                    "{what}={path} replaces the system roots without modgate's CA ({}): intercepted hosts fail with 'x509: certificate signed by unknown authority'",
                    ca.path
                ),
                fix,
            ));
        } else {
            found.push(Finding::pass(
                "trust",
                format!(
                    "{what}={path}: {public} public roots{}",
                    if has_ca { " and modgate's CA" } else { "" }
                ),
            ));
        }
    }
    if env.var("SSL_CERT_FILE").is_none() {
        let system = rustls_native_certs::load_native_certs().certs;
        match ca.filter(|ca| ca.intercepts) {
            Some(ca) if !system.iter().any(|c| c == &ca.der) => found.push(Finding::fail(
                "trust",
                format!(
                    "the system roots{} do not hold modgate's CA ({}): intercepted hosts fail with 'x509: certificate signed by unknown authority'",
                    env.var("SSL_CERT_DIR").map(|d| format!(" (SSL_CERT_DIR={d})")).unwrap_or_default(),
                    ca.path
                ),
                bundle_fix,
            )),
            _ => found.push(Finding::pass("trust", "go uses the system roots")),
        }
    }
    found
}

/// Whether a NO_PROXY entry sends `host` past the proxy (Go's rules: `*`,
/// a domain and its subdomains, with or without a leading dot; an IP).
pub fn bypasses(entry: &str, host: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    let entry = entry.split(':').next().unwrap_or_default();
    if entry.is_empty() {
        return false;
    }
    let domain = entry.trim_start_matches("*.").trim_start_matches('.');
    entry == "*" || host == domain || host.ends_with(&format!(".{domain}"))
}

/// NO_PROXY sending module hosts past modgate when HTTPS_PROXY is set.
pub fn no_proxy(env: &GoEnv, hosts: &[String]) -> Vec<Finding> {
    let (Some(proxy), Some(no)) = (env.var("HTTPS_PROXY"), env.var("NO_PROXY")) else {
        return Vec::new();
    };
    let entries: Vec<&str> = no.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let past: Vec<&String> = hosts
        .iter()
        .filter(|h| entries.iter().any(|e| bypasses(e, h)))
        .collect();
    if past.is_empty() {
        return vec![Finding::pass(
            "no_proxy",
            format!("NO_PROXY={no} lets the module hosts through {proxy}"),
        )];
    }
    let kept: Vec<&str> = entries
        .iter()
        .copied()
        .filter(|e| !past.iter().any(|h| bypasses(e, h)))
        .collect();
    let names: Vec<&str> = past.iter().map(|h| h.as_str()).collect();
    vec![Finding::fail(
        "no_proxy",
        format!("NO_PROXY={no} sends {} past {proxy}", names.join(", ")),
        format!("export NO_PROXY={}", kept.join(",")),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(go: &[(&str, &str)], process: &[(&str, &str)]) -> GoEnv {
        GoEnv {
            from: "test".into(),
            go: go.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            process: process.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            git_ca_info: None,
        }
    }

    #[test]
    fn goproxy_syntax() {
        let f = goproxy(&env(&[("GOPROXY", "off")], &[]), None);
        assert_eq!(
            f[0].fix.as_deref(),
            Some("go env -w GOPROXY=https://proxy.golang.org,direct")
        );
        let m = Some("http://127.0.0.1:3128");
        let f = goproxy(
            &env(
                &[("GOPROXY", "http://127.0.0.1:3128|https://proxy.golang.org,direct")],
                &[],
            ),
            m,
        );
        assert_eq!(
            f[0].fix.as_deref(),
            Some("go env -w GOPROXY=http://127.0.0.1:3128,https://proxy.golang.org,direct")
        );
        let f = goproxy(&env(&[("GOPROXY", "https://proxy.golang.org")], &[]), m);
        assert_eq!(
            f[0].fix.as_deref(),
            Some("go env -w GOPROXY=https://proxy.golang.org,direct")
        );
        assert!(goproxy(&env(&[], &[]), m)[0].ok);
    }

    #[test]
    fn private_patterns() {
        let e = env(
            &[
                ("GOPRIVATE", "git.corp.example.com/*"),
                ("GONOPROXY", "none"),
                ("GONOSUMDB", "git.corp.example.com"),
            ],
            &[],
        );
        let f = private(&e);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            f[0].fix.as_deref(),
            Some("go env -w GONOPROXY=none,git.corp.example.com/*")
        );
        assert!(covered("git.corp.example.com", "git.corp.example.com/*"));
        assert!(!covered("github.com/x", "git.corp.example.com/*"));
    }

    #[test]
    fn no_proxy_entries() {
        assert!(bypasses(".golang.org", "proxy.golang.org"));
        assert!(bypasses("proxy.golang.org", "proxy.golang.org"));
        assert!(bypasses("*", "x"));
        assert!(!bypasses("golang.org.evil", "proxy.golang.org"));
        let e = env(
            &[],
            &[("HTTPS_PROXY", "http://m:3128"), ("NO_PROXY", "localhost,.golang.org")],
        );
        let f = no_proxy(&e, &["proxy.golang.org".into(), "sum.golang.org".into()]);
        assert_eq!(f[0].fix.as_deref(), Some("export NO_PROXY=localhost"));
    }
}

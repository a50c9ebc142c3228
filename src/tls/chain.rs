//! Verdicts on upstream certificate chains: is this connection to the real
//! site, re-signed by an interceptor, or neither?
//!
//! - `public`: the chain verifies against the public roots;
//! - `intercepted`: it fails against the public roots but verifies against a
//!   locally trusted root (system store or `tls.extra_roots`);
//! - `untrusted`: it verifies against neither.
//!
//! [`analyze`] produces the full [`ChainReport`], used by `inspect`, probes,
//! evidence and the verifier behind every upstream connection.

use std::sync::Arc;

use rustls::CertificateError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use x509_parser::prelude::*;

use crate::core::escape::escape;
pub use crate::core::verdict::{Judgement, Verdict};
use crate::tls::anchors::{PathTooLong, RootDates, Roots};
use crate::tls::certinfo::{CertInfo, attribute_text, dn_text, info};
pub use crate::tls::certinfo::{hex, sha256_hex};
use crate::tls::vendor::{self, Names};

/// Problems seen in a chain, besides trust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// The leaf is not valid for the host name asked for.
    pub hostname_mismatch: bool,
    /// A certificate on the chain's path (from the leaf up, not counting a
    /// root the server sent, whose dates [`ChainReport::sent_root_outside_dates`]
    /// tells), or the trusted root it ends at, has expired. Judged only for
    /// a chain that does not verify: one that does has every certificate it
    /// was verified through in its dates, whatever else the server sent.
    pub expired: bool,
    /// The same, for a certificate not valid yet.
    pub not_yet_valid: bool,
    /// The leaf signed itself.
    pub self_signed_leaf: bool,
    /// The server sent only the leaf, and its issuer is not a known root.
    pub missing_intermediates: bool,
    /// Certificates the server sent that are not on the linked path (a
    /// stray, or a duplicate): they are ignored for evidence and naming.
    pub unlinked: bool,
}

impl Flags {
    /// The set flags, by name.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (set, name) in [
            (self.hostname_mismatch, "hostname_mismatch"),
            (self.expired, "expired"),
            (self.not_yet_valid, "not_yet_valid"),
            (self.self_signed_leaf, "self_signed_leaf"),
            (self.missing_intermediates, "missing_intermediates"),
            (self.unlinked, "unlinked"),
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// Everything modgate concludes about a chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// The host the chain was for, when known.
    pub host: Option<String>,
    /// The certificates, leaf first, as presented.
    pub certs: Vec<CertInfo>,
    /// Verification against the public roots: `ok` or the error.
    pub public_check: String,
    /// Verification against the system store plus `tls.extra_roots`.
    pub local_check: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The product, for chains that fail the public roots: a name from the
    /// interceptor table, or `unknown`.
    pub vendor: Option<String>,
    /// The leaf's issuer, as a user would recognise it (its CN, else the DN).
    pub issuer: String,
    /// Other problems.
    pub flags: Flags,
    /// How many certificates, from the leaf, form a chain: each is signed
    /// by the key of the next. Only these are saved as evidence.
    pub linked: usize,
    /// Where those are among the certificates sent, leaf first: servers
    /// send them out of order and twice, and the path is built from the
    /// set, as a verifier builds it.
    #[serde(skip)]
    pub path: Vec<usize>,
    /// Whether the linked chain ends in a self-signed CA certificate (not
    /// the leaf): the only certificate a fix may suggest trusting.
    pub root_in_chain: bool,
    /// The root the server sent (the top of the linked chain), when the
    /// chain is `untrusted` and that copy is outside its dates: trusting
    /// it would not help, the interceptor's current root is needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_root_outside_dates: Option<String>,
    /// SHA-256 of the SPKI of the top of the linked chain: names the
    /// evidence file, so a certificate that does not link cannot lend its
    /// name.
    pub top_spki_sha256: String,
    /// The trusted root (public, system or `tls.extra_roots`) the chain
    /// would verify to, but whose own certificate is outside its dates, when
    /// that is why the chain is `untrusted`: go refuses such a chain, and
    /// webpki alone would not.
    pub root_outside_dates: Option<RootDates>,
    /// Why an `untrusted` chain is refused whatever roots are trusted, when
    /// that is not its issuer being unknown: a key usage, a signature
    /// algorithm or key size, a chain too long (the check against the roots
    /// it was meant for). Adding a root cannot fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unacceptable: Option<String>,
}

impl ChainReport {
    /// The verdict and the product, as access events carry them.
    pub fn judgement(&self) -> Judgement {
        Judgement {
            verdict: self.verdict,
            vendor: self.vendor.clone(),
        }
    }
}

/// The two verifiers a verdict needs.
#[derive(Debug, Clone)]
pub struct Verifiers {
    public: Checker,
    local: Option<Checker>,
    pub(crate) provider: Arc<CryptoProvider>,
}

/// One set of roots: rustls's verifier, and the roots' own dates.
#[derive(Debug, Clone)]
struct Checker {
    verifier: Arc<WebPkiServerVerifier>,
    roots: Arc<Roots>,
}

impl Verifiers {
    /// Verifiers for the public roots and for the local (system + extra) roots.
    pub fn new(public: Roots, local: Roots) -> Result<Verifiers, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |roots: Roots| {
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots.store().clone()), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?;
            Ok::<_, String>(Checker {
                verifier,
                roots: Arc::new(roots),
            })
        };
        let local = if local.is_empty() { None } else { Some(build(local)?) };
        Ok(Verifiers {
            public: build(public)?,
            local,
            provider,
        })
    }
}

/// Why a chain failed one set of roots.
#[derive(Debug)]
enum Failed {
    /// rustls (webpki) refused it.
    Rustls(rustls::Error),
    /// It verified, but only to a root whose own certificate is outside
    /// its dates at this time (seconds since the epoch).
    RootOutsideDates(RootDates, i64),
    /// It verified, but only through more intermediates than its root's
    /// path length constraint allows (go refuses it; trusting the root
    /// cannot mend it).
    PathTooLong(PathTooLong),
}

/// Verifies `chain` against one set of roots: rustls's checks, then the
/// dates of the root it ends at, which webpki does not look at.
fn check(
    checker: &Checker,
    chain: &[CertificateDer<'_>],
    name: &ServerName<'_>,
    now: UnixTime,
    algs: &[&dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> Result<(), Failed> {
    let (leaf, rest) = chain
        .split_first()
        .ok_or(Failed::Rustls(rustls::Error::NoCertificatesPresented))?;
    checker
        .verifier
        .verify_server_cert(leaf, rest, name, &[], now)
        .map_err(Failed::Rustls)?;
    if let Some(root) = checker.roots.outside_dates(chain, now, algs) {
        return Err(Failed::RootOutsideDates(root, now.as_secs() as i64));
    }
    match checker.roots.path_too_long(chain, now, algs) {
        None => Ok(()),
        Some(too_long) => Err(Failed::PathTooLong(too_long)),
    }
}

fn describe_check(result: &Result<(), Failed>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(Failed::Rustls(e)) => e.to_string(),
        Err(Failed::RootOutsideDates(root, now)) => {
            format!("invalid peer certificate: the chain ends at {}", root.describe(*now))
        }
        Err(Failed::PathTooLong(too_long)) => format!("invalid peer certificate: {}", too_long.describe()),
    }
}

/// The root outside its dates that a check failed on, if that is why.
fn root_outside_dates(result: &Result<(), Failed>) -> Option<&RootDates> {
    match result {
        Err(Failed::RootOutsideDates(root, _)) => Some(root),
        _ => None,
    }
}

/// Analyzes `chain` (leaf first) for `host`. With no host (a saved chain),
/// the leaf's first DNS name is used and no hostname check is reported.
pub fn analyze(verifiers: &Verifiers, chain: &[CertificateDer<'_>], host: Option<&str>) -> Result<ChainReport, String> {
    if chain.is_empty() {
        return Err("no certificates".into());
    }
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| format!("certificate {} is not valid X.509: {e}", i + 1))
        })
        .collect::<Result<_, _>>()?;
    let certs: Vec<CertInfo> = parsed.iter().zip(chain).map(|(c, der)| info(c, der)).collect();
    let leaf = &parsed[0];
    // A saved chain is judged for the first of its leaf's names that is a
    // server name (an odd first one, `*`, does not stop the diagnosis).
    let name_text = match host {
        Some(h) => h.to_owned(),
        None => certs[0]
            .sans
            .iter()
            .map(|san| covered_name(san))
            .find(|name| ServerName::try_from(name.clone()).is_ok())
            .unwrap_or_else(|| "invalid.invalid".into()),
    };
    // The name may come from the certificate itself (a saved chain's SAN).
    let name = ServerName::try_from(name_text.clone())
        .map_err(|e| format!("'{}' is not a server name: {e}", escape(&name_text)))?;
    let now = UnixTime::now();
    let algs = verifiers.provider.signature_verification_algorithms.all;
    let public = check(&verifiers.public, chain, &name, now, algs);
    let local = match &verifiers.local {
        Some(v) => check(v, chain, &name, now, algs),
        None => Err(Failed::Rustls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))),
    };
    let verdict = match (&public, &local) {
        (Ok(()), _) => Verdict::Public,
        (Err(_), Ok(())) => Verdict::Intercepted,
        _ => Verdict::Untrusted,
    };
    let path = issuer_path(&parsed, now.as_secs() as i64);
    let linked = path.len();
    let on_path: Vec<&X509Certificate<'_>> = path.iter().map(|&i| &parsed[i]).collect();
    let vendor = match verdict {
        Verdict::Public => None,
        _ => Some(name_product(&on_path).unwrap_or("unknown").to_owned()),
    };
    let now_ts = now.as_secs() as i64;
    let self_signed = leaf.subject().as_raw() == leaf.issuer().as_raw();
    let unknown_issuer = matches!(
        public,
        Err(Failed::Rustls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )))
    );
    // A root outside its dates counts when it is what made the chain
    // untrusted: the local one first (without it the chain would be
    // intercepted), else the public one.
    let stale_root = match verdict {
        Verdict::Untrusted => root_outside_dates(&local).or(root_outside_dates(&public)).cloned(),
        _ => None,
    };
    let top = *on_path.last().unwrap_or(&leaf);
    let root_in_chain = linked >= 2 && is_self_signed_ca(top);
    // Dates matter on the path of a chain that does not verify; a root the
    // server sent is told apart, since the fix differs (its current copy).
    let judged: &[&X509Certificate<'_>] = match verdict {
        Verdict::Untrusted if root_in_chain => &on_path[..linked - 1],
        Verdict::Untrusted => &on_path,
        _ => &[],
    };
    let expired_at = |c: &X509Certificate<'_>| c.validity().not_after.timestamp() < now_ts;
    let early_at = |c: &X509Certificate<'_>| c.validity().not_before.timestamp() > now_ts;
    let sent_root_outside_dates = (verdict == Verdict::Untrusted && root_in_chain)
        .then(|| {
            let dates = top.validity();
            let name = display_name(top.subject());
            if expired_at(top) {
                Some(format!("'{name}' expired on {}", dates.not_after))
            } else if early_at(top) {
                Some(format!("'{name}' is not valid until {}", dates.not_before))
            } else {
                None
            }
        })
        .flatten();
    let flags = Flags {
        hostname_mismatch: host.is_some() && !leaf_covers(&certs[0].sans, &name_text),
        expired: judged.iter().any(|c| expired_at(c)) || stale_root.as_ref().is_some_and(|r| r.expired(now_ts)),
        not_yet_valid: judged.iter().any(|c| early_at(c))
            || stale_root.as_ref().is_some_and(|r| r.not_yet_valid(now_ts)),
        self_signed_leaf: self_signed,
        // A leaf alone whose issuer is reachable by URL (AIA) is the usual
        // sign of a server that forgot its intermediate; interceptor leaves
        // signed straight by their root carry no such pointer.
        missing_intermediates: chain.len() == 1 && !self_signed && unknown_issuer && has_ca_issuers(leaf),
        unlinked: linked < chain.len(),
    };
    let top = certs[path[linked - 1]].spki_sha256.clone();
    // A failure of either check that no root could mend: the public one
    // (a public chain), or the local one (an interceptor's).
    let unacceptable = match verdict {
        // Said first, in words: rustls reports these as an unknown issuer
        // (while the root is not trusted) or as a bad signature.
        Verdict::Untrusted => weak_link(&parsed, &certs)
            .or_else(|| {
                [&public, &local].into_iter().find_map(|check| match check {
                    Err(Failed::Rustls(e)) if !is_trust_failure(e) => Some(e.to_string()),
                    Err(Failed::PathTooLong(too_long)) => Some(too_long.describe()),
                    _ => None,
                })
            })
            .or_else(|| certs[0].sans.is_empty().then(|| NO_SAN.to_owned()))
            .or_else(|| {
                // The leaf names the host as go reads it, but rustls does
                // not take it (a wildcard over one label, `*.corp`).
                let refused_name = [&public, &local].into_iter().any(|check| {
                    matches!(
                        check,
                        Err(Failed::Rustls(rustls::Error::InvalidCertificate(
                            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                        )))
                    )
                });
                (host.is_some() && !flags.hostname_mismatch && refused_name).then(|| {
                    format!(
                        "rustls (so modgate) does not accept the leaf's names ({}) for {}, though go does (a wildcard must leave at least two labels, as in *.corp.example)",
                        escape(&certs[0].sans.join(", ")),
                        escape(&name_text)
                    )
                })
            })
            .or_else(|| {
                // A root sent with name constraints that leave the host out:
                // trusting it would not help (webpki says so only once it
                // is trusted).
                let host = host?;
                on_path.iter().skip(1).find(|ca| constrains_out(ca, host)).map(|ca| {
                    format!(
                        "'{}' has name constraints that leave {} out",
                        display_name(ca.subject()),
                        escape(host)
                    )
                })
            }),
        _ => None,
    };
    Ok(ChainReport {
        host: host.map(str::to_owned),
        issuer: display_name(leaf.issuer()),
        certs,
        public_check: describe_check(&public),
        local_check: describe_check(&local),
        verdict,
        vendor,
        flags,
        linked,
        path,
        root_in_chain,
        sent_root_outside_dates,
        top_spki_sha256: top,
        root_outside_dates: stale_root,
        unacceptable,
    })
}

/// Something in the chain that rustls refuses whatever the roots, said in
/// words: a SHA-1 or MD5 signature (go refuses those too), or a key rustls
/// cannot check signatures of (RSA below 2048 bits, ECDSA P-521; go
/// accepts both) on the leaf or on a certificate that issued another one
/// sent.
fn weak_link(parsed: &[X509Certificate<'_>], certs: &[CertInfo]) -> Option<String> {
    let signed_weakly = parsed.iter().zip(certs).find_map(|(c, info)| {
        let oid = c.signature_algorithm.algorithm.to_id_string();
        let weak = match oid.as_str() {
            "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.2.840.10040.4.3" => "SHA-1",
            "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.2" => "MD5",
            _ => return None,
        };
        Some(format!(
            "'{}' is signed with {} ({weak}), which go and rustls refuse",
            display_name(c.subject()),
            info.signature
        ))
    });
    let issues_one = |c: &X509Certificate<'_>| parsed.iter().any(|o| o.issuer().as_raw() == c.subject().as_raw());
    let weak_key = parsed.iter().zip(certs).enumerate().find_map(|(i, (c, info))| {
        if i > 0 && !issues_one(c) {
            return None;
        }
        let small_rsa = info
            .key
            .strip_prefix("RSA ")
            .and_then(|bits| bits.parse::<u32>().ok())
            .is_some_and(|bits| bits < 2048);
        (small_rsa || info.key == "ECDSA P-521").then(|| {
            format!(
                "'{}' has a key whose signatures rustls (so modgate) cannot check ({}; it needs RSA of 2048 bits or more, or ECDSA P-256 or P-384; go accepts this one)",
                display_name(c.subject()),
                info.key
            )
        })
    });
    signed_weakly.or(weak_key)
}

/// Why a leaf with no subjectAltName is refused whatever the roots.
pub const NO_SAN: &str = "the server's certificate names no host in a subjectAltName; a name in its subject CN alone is ignored by go (since 1.15) and by rustls";

/// Whether a check failed for want of a trusted root (or on dates or the
/// name, which the flags report), as opposed to something in the chain no
/// root can make acceptable.
fn is_trust_failure(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
                | CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
                | CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }
        )
    )
}

/// The path from the leaf up through the certificates sent, as indices:
/// each next one is a certificate not yet on it that the last one names as
/// its issuer and carries a valid signature by, in whatever order they
/// were sent; it ends at a self-signed certificate or where no issuer was
/// sent. Of several candidates (a root and a cross-signed copy of it, a
/// duplicate), a self-signed CA comes first, then one within its dates at
/// `now` (seconds since the epoch). At least `[0]`, the leaf.
fn issuer_path(chain: &[X509Certificate<'_>], now: i64) -> Vec<usize> {
    // Each step checks signatures against every candidate: only the first
    // certificates sent are candidates, so a server sending 150 costs
    // modgate no more than one sending a real chain (the rest are
    // `unlinked`).
    let chain = &chain[..chain.len().min(PATH_CANDIDATES)];
    let mut path = vec![0];
    loop {
        let last = &chain[*path.last().unwrap_or(&0)];
        if path.len() > 1 && last.subject().as_raw() == last.issuer().as_raw() {
            return path;
        }
        let next = (0..chain.len())
            .filter(|i| !path.contains(i))
            .filter(|&i| {
                last.issuer().as_raw() == chain[i].subject().as_raw()
                    && last.verify_signature(Some(chain[i].public_key())).is_ok()
            })
            .min_by_key(|&i| {
                let c = &chain[i];
                let dates = c.validity();
                let in_dates = dates.not_before.timestamp() <= now && now <= dates.not_after.timestamp();
                (!is_self_signed_ca(c), !in_dates, i)
            });
        match next {
            Some(i) => path.push(i),
            None => return path,
        }
    }
}

/// Whether `ca`'s name constraints leave the DNS name `host` out: no
/// permitted subtree holds it, or an excluded one does. Constraints on
/// other kinds of names, and addresses, are left to the verifier.
fn constrains_out(ca: &X509Certificate<'_>, host: &str) -> bool {
    let Ok(Some(constraints)) = ca.name_constraints() else {
        return false;
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let within = |base: &str| {
        let base = base.trim_start_matches('.').to_ascii_lowercase();
        base.is_empty() || host == base || host.ends_with(&format!(".{base}"))
    };
    let dns = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| -> Vec<String> {
        subtrees
            .iter()
            .flatten()
            .filter_map(|t| match t.base {
                GeneralName::DNSName(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect()
    };
    let permitted = dns(&constraints.value.permitted_subtrees);
    let excluded = dns(&constraints.value.excluded_subtrees);
    (!permitted.is_empty() && !permitted.iter().any(|b| within(b))) || excluded.iter().any(|b| within(b))
}

/// How many of the certificates sent, from the leaf, a path is built
/// from: real chains, cross-signs and duplicates included, are far
/// shorter.
const PATH_CANDIDATES: usize = 16;

/// Whether `ca` issued `cert`: it names `ca` as its issuer and carries a
/// valid signature by `ca`'s key. False for anything unparsable.
pub fn issued_by(cert: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(cert), X509Certificate::from_der(ca)) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// A CA certificate that names and signs itself.
fn is_self_signed_ca(cert: &X509Certificate<'_>) -> bool {
    cert.is_ca() && cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok()
}

/// The product named by the issuers in the chain (the leaf's issuer first,
/// then the CA certificates' subjects and issuers).
fn name_product(chain: &[&X509Certificate<'_>]) -> Option<&'static str> {
    let mut candidates = vec![names(chain[0].issuer())];
    for ca in &chain[1..] {
        candidates.push(names(ca.subject()));
        candidates.push(names(ca.issuer()));
    }
    candidates.iter().find_map(vendor::product)
}

/// The CN, O and OU values of a name, in whatever string type each is
/// encoded (BMPString and T61String included: [`attribute_text`]).
fn names(name: &X509Name<'_>) -> Names {
    let collect =
        |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| it.filter_map(attribute_text).collect::<Vec<_>>();
    Names {
        cn: collect(&mut name.iter_common_name()),
        o: collect(&mut name.iter_organization()),
        ou: collect(&mut name.iter_organizational_unit()),
    }
}

/// The CN of a name, or the whole DN.
fn display_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(attribute_text)
        .unwrap_or_else(|| dn_text(name))
}

fn has_ca_issuers(cert: &X509Certificate<'_>) -> bool {
    cert.extensions().iter().any(|ext| {
        matches!(ext.parsed_extension(), ParsedExtension::AuthorityInfoAccess(aia)
            if aia.accessdescs.iter().any(|d| d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.2"))
    })
}

/// A name that `san` covers: `*.example.com` covers
/// `wildcard.example.com`, which (unlike the pattern) is a server name.
fn covered_name(san: &str) -> String {
    match san.strip_prefix("*.") {
        Some(rest) => format!("wildcard.{rest}"),
        None => san.to_owned(),
    }
}

fn leaf_covers(sans: &[String], host: &str) -> bool {
    // `proxy.golang.org.` is the same name, fully qualified.
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    sans.iter().any(|san| {
        let san = san.to_ascii_lowercase();
        match san.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => san == host,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::{ca, ca_from, ca_params, leaf_by};

    fn cert(names: &[&str], days_from_now: (i64, i64)) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let now = ::time::OffsetDateTime::now_utc();
        params.not_before = now + ::time::Duration::days(days_from_now.0);
        params.not_after = now + ::time::Duration::days(days_from_now.1);
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verifiers() -> Verifiers {
        let mut public = rustls::RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Verifiers::new(Roots::from(public), Roots::empty()).unwrap()
    }

    #[test]
    fn flags_describe_what_else_is_wrong() {
        let v = verifiers();
        let report = analyze(&v, &[cert(&["a.test"], (-1, 10))], Some("b.test")).unwrap();
        assert_eq!(report.verdict, Verdict::Untrusted);
        assert_eq!(report.vendor.as_deref(), Some("unknown"));
        assert_eq!(report.flags.names(), ["hostname_mismatch", "self_signed_leaf"]);
        let report = analyze(&v, &[cert(&["*.a.test"], (-10, -1))], Some("x.a.test")).unwrap();
        assert_eq!(report.flags.names(), ["expired", "self_signed_leaf"]);
        assert!(report.certs[0].days_left < 0);
        let report = analyze(&v, &[cert(&["a.test"], (2, 10))], None).unwrap();
        assert_eq!(
            report.flags.names(),
            ["not_yet_valid", "self_signed_leaf"],
            "no hostname check without a host"
        );
    }

    fn trusting(root: &CertificateDer<'static>) -> Verifiers {
        let mut public = rustls::RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut local = Roots::empty();
        local.add(root.clone(), "extra.pem").unwrap();
        Verifiers::new(Roots::from(public), local).unwrap()
    }

    /// A SHA-1 signature or a key rustls cannot check is said in words,
    /// and no root is offered as the fix, whether or not the root is
    /// trusted yet (rustls says "unknown issuer" until it is). The chains
    /// (leaf and root; openssl-made, as rcgen cannot sign with SHA-1 or
    /// RSA-1024) are in src/tls/testdata.
    #[test]
    fn a_weak_signature_or_key_is_named_whether_or_not_the_root_is_trusted() {
        for (pem, want) in [
            (
                &include_bytes!("testdata/sha1-leaf-and-root.pem")[..],
                "'origin.test' is signed with sha1WithRSAEncryption (SHA-1), which go and rustls refuse",
            ),
            (
                &include_bytes!("testdata/rsa1024-leaf-and-root.pem")[..],
                "'K rsa1024 Root' has a key whose signatures rustls (so modgate) cannot check (RSA 1024; it needs RSA of 2048 bits or more, or ECDSA P-256 or P-384; go accepts this one)",
            ),
        ] {
            let chain = crate::tls::pem::parse_chain("chain", pem).unwrap();
            for v in [verifiers(), trusting(&chain[1])] {
                let report = analyze(&v, &chain, Some("origin.test")).unwrap();
                assert_eq!(report.verdict, Verdict::Untrusted);
                assert_eq!(report.unacceptable.as_deref(), Some(want));
            }
        }
    }

    /// A wildcard over a single label (`*.test`, as internal CAs issue for
    /// `*.corp`): go takes it for `a.test`, rustls does not; with its root
    /// trusted, the report says that, not "get the root from IT". A saved
    /// chain whose first name is no server name is judged by the next.
    #[test]
    fn a_name_go_takes_and_rustls_does_not_is_said_and_an_odd_first_name_is_skipped() {
        let (root, issuer) = ca("Corp Root", rcgen::KeyPair::generate().unwrap(), (-1, 30), None);
        let chain = [leaf_by("*.test", &issuer)];
        let report = analyze(&trusting(&root), &chain, Some("a.test")).unwrap();
        assert_eq!(report.verdict, Verdict::Untrusted);
        assert!(!report.flags.hostname_mismatch);
        assert_eq!(
            report.unacceptable.as_deref(),
            Some(
                "rustls (so modgate) does not accept the leaf's names (*.test) for a.test, though go does (a wildcard must leave at least two labels, as in *.corp.example)"
            )
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let odd_first = rcgen::CertificateParams::new(vec!["*".to_owned(), "b.test".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap()
            .der()
            .clone();
        let report = analyze(&trusting(&root), &[odd_first], None).unwrap();
        assert_eq!(report.verdict, Verdict::Intercepted);
    }

    /// A trusted root whose path length constraint the chain exceeds: go
    /// refuses it, so it is untrusted, and trusting the root is no fix.
    #[test]
    fn a_chain_past_its_trusted_roots_path_length_is_untrusted_and_no_root_mends_it() {
        let mut params = crate::tls::testing::ca_params("Corp Root", (-1, 30));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let (root, issuer) = crate::tls::testing::ca_from(params, rcgen::KeyPair::generate().unwrap(), None);
        let (int, by) = ca(
            "Corp Issuing CA",
            rcgen::KeyPair::generate().unwrap(),
            (-1, 30),
            Some(&issuer),
        );
        let chain = [leaf_by("a.test", &by), int];
        let report = analyze(&trusting(&root), &chain, Some("a.test")).unwrap();
        assert_eq!(report.verdict, Verdict::Untrusted);
        assert_eq!(
            report.unacceptable.as_deref(),
            Some(
                "the chain has 1 intermediate certificate(s) below the trusted root 'CN=Corp Root', whose path length constraint allows 0"
            )
        );
    }

    /// Servers send chains out of order and twice: the path is built from
    /// the set, so the root they sent is still found, named and offered.
    #[test]
    fn the_path_is_built_from_the_certificates_in_any_order() {
        let v = verifiers();
        let pem_key = || rcgen::KeyPair::generate().unwrap();
        let (root, root_issuer) = ca("Zscaler Root CA", pem_key(), (-10, 3650), None);
        let (int, int_issuer) = ca(
            "Zscaler Intermediate Root CA",
            pem_key(),
            (-10, 3650),
            Some(&root_issuer),
        );
        let leaf = leaf_by("proxy.golang.org", &int_issuer);
        for (sent, path) in [
            (vec![leaf.clone(), int.clone(), root.clone()], vec![0, 1, 2]),
            (vec![leaf.clone(), root.clone(), int.clone()], vec![0, 2, 1]),
            (
                vec![leaf.clone(), int.clone(), int.clone(), root.clone(), root.clone()],
                vec![0, 1, 3],
            ),
        ] {
            let report = analyze(&v, &sent, Some("proxy.golang.org")).unwrap();
            assert_eq!(report.path, path);
            assert_eq!((report.linked, report.root_in_chain), (3, true));
            assert_eq!(report.top_spki_sha256, report.certs[path[2]].spki_sha256);
            assert_eq!(report.vendor.as_deref(), Some("Zscaler"));
            assert_eq!(report.flags.unlinked, sent.len() > 3);
        }
    }

    /// A server that sends a very long chain: the path is built from the
    /// first certificates only, and the rest are unlinked.
    #[test]
    fn a_path_is_built_from_the_first_certificates_sent() {
        let (top, mut issuer) = ca("CA 0", rcgen::KeyPair::generate().unwrap(), (-1, 10), None);
        let mut cas = vec![top];
        for n in 1..20 {
            let (der, next) = ca(
                &format!("CA {n}"),
                rcgen::KeyPair::generate().unwrap(),
                (-1, 10),
                Some(&issuer),
            );
            cas.push(der);
            issuer = next;
        }
        let mut sent = vec![leaf_by("a.test", &issuer)];
        sent.extend(cas.into_iter().rev());
        let report = analyze(&verifiers(), &sent, Some("a.test")).unwrap();
        assert_eq!(report.linked, PATH_CANDIDATES);
        assert!(report.flags.unlinked && !report.root_in_chain);
    }

    /// Dates are judged on the path a chain is verified through: an
    /// expired copy of a root, or an expired cross-sign past the root,
    /// that a verifier does not use says nothing. A chain that verifies
    /// nowhere and ends at an expired root the server sent says that root
    /// is stale (its current copy is the fix), not that the clock is wrong.
    #[test]
    fn dates_count_on_the_verified_path_and_a_stale_sent_root_is_told_apart() {
        let key_pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let same_key = || rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let (renewed, issuer) = ca("Zscaler Root CA", same_key(), (-10, 3650), None);
        let (old_copy, _) = ca("Zscaler Root CA", same_key(), (-3650, -5), None);
        let leaf = leaf_by("proxy.golang.org", &issuer);
        let sent = [leaf.clone(), old_copy.clone()];
        let trusted = analyze(&trusting(&renewed), &sent, Some("proxy.golang.org")).unwrap();
        assert_eq!(trusted.verdict, Verdict::Intercepted);
        assert_eq!(trusted.flags.names(), Vec::<&str>::new());
        assert_eq!(trusted.sent_root_outside_dates, None);
        let untrusted = analyze(&verifiers(), &sent, Some("proxy.golang.org")).unwrap();
        assert_eq!(untrusted.verdict, Verdict::Untrusted);
        assert!(!untrusted.flags.expired, "{:?}", untrusted.flags);
        let stale = untrusted.sent_root_outside_dates.as_deref().unwrap();
        assert!(stale.starts_with("'Zscaler Root CA' expired on "), "{stale}");
        // An expired cross-sign of the root by an older one, sent after it.
        let (_, older) = ca(
            "Zscaler Old Root",
            rcgen::KeyPair::generate().unwrap(),
            (-3650, 3650),
            None,
        );
        let (cross, _) = ca("Zscaler Root CA", same_key(), (-3650, -5), Some(&older));
        let sent = [leaf.clone(), renewed.clone(), cross];
        let report = analyze(&verifiers(), &sent, Some("proxy.golang.org")).unwrap();
        assert_eq!((report.verdict, report.path.clone()), (Verdict::Untrusted, vec![0, 1]));
        assert!(!report.flags.expired && report.sent_root_outside_dates.is_none());
        let report = analyze(&trusting(&renewed), &sent, Some("proxy.golang.org")).unwrap();
        assert_eq!((report.verdict, report.flags.expired), (Verdict::Intercepted, false));
        // The leaf's own dates still count where nothing verifies.
        let (_, short_issuer) = ca("Zscaler Root CA", same_key(), (-10, 3650), None);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["proxy.golang.org".to_owned()]).unwrap();
        params.not_after = ::time::OffsetDateTime::now_utc() - ::time::Duration::days(1);
        let expired_leaf = params.signed_by(&key, &short_issuer).unwrap().der().clone();
        let report = analyze(&verifiers(), &[expired_leaf, renewed], Some("proxy.golang.org")).unwrap();
        assert!(report.flags.expired);
    }

    #[test]
    fn a_fully_qualified_name_with_its_trailing_dot_is_the_same_name() {
        let sans = ["proxy.golang.org".to_owned(), "*.example.test".to_owned()];
        assert!(leaf_covers(&sans, "proxy.golang.org."));
        assert!(leaf_covers(&sans, "Proxy.Golang.Org"));
        assert!(leaf_covers(&sans, "a.example.test."));
        assert!(!leaf_covers(&sans, "proxy.golang.org.."));
        assert!(!leaf_covers(&sans, "golang.org."));
    }

    /// An interceptor root whose name constraints leave the host out: no
    /// root mends it, and that is said before anyone trusts it.
    #[test]
    fn a_root_constrained_away_from_the_host_is_unacceptable() {
        let mut params = ca_params("Corp Root CA", (-1, 10));
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("corp.example".into())],
            excluded_subtrees: vec![],
        });
        let (root, issuer) = ca_from(params, rcgen::KeyPair::generate().unwrap(), None);
        let outside = leaf_by("proxy.golang.org", &issuer);
        let report = analyze(&verifiers(), &[outside, root.clone()], Some("proxy.golang.org")).unwrap();
        assert_eq!(report.verdict, Verdict::Untrusted);
        assert_eq!(
            report.unacceptable.as_deref(),
            Some("'Corp Root CA' has name constraints that leave proxy.golang.org out")
        );
        let inside = leaf_by("git.corp.example", &issuer);
        let report = analyze(&verifiers(), &[inside, root], Some("git.corp.example")).unwrap();
        assert_eq!(report.unacceptable, None);
    }

    /// A leaf that names its host only in the subject CN: no root mends
    /// it, and that is what the report says, with or without a host.
    #[test]
    fn a_leaf_with_no_subject_alt_name_is_unacceptable_whatever_the_roots() {
        let (root, issuer) = ca("Zscaler Root CA", rcgen::KeyPair::generate().unwrap(), (-1, 10), None);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "proxy.golang.org");
        let leaf = params.signed_by(&key, &issuer).unwrap().der().clone();
        for host in [Some("proxy.golang.org"), None] {
            let report = analyze(&trusting(&root), &[leaf.clone(), root.clone()], host).unwrap();
            assert_eq!(report.verdict, Verdict::Untrusted);
            assert_eq!(report.unacceptable.as_deref(), Some(NO_SAN), "{host:?}");
        }
    }

    /// A chain to a trusted root that is refused for something in it (a
    /// leaf only for client authentication): not an interceptor's, and no
    /// root can mend it. One to an unknown root is a matter of trust.
    #[test]
    fn a_chain_no_root_can_mend_says_why() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Public Test Root");
        let root = ca.self_signed(&key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(ca, key);
        let leaf = |usage: rcgen::ExtendedKeyUsagePurpose| {
            let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
            params.extended_key_usages = vec![usage];
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            params.signed_by(&leaf_key, &issuer).unwrap().der().clone()
        };
        let mut public = Roots::empty();
        public.add(root, "test").unwrap();
        let v = Verifiers::new(public, Roots::empty()).unwrap();
        let client_only = analyze(&v, &[leaf(rcgen::ExtendedKeyUsagePurpose::ClientAuth)], Some("a.test")).unwrap();
        assert_eq!(client_only.verdict, Verdict::Untrusted);
        let why = client_only.unacceptable.expect("a reason no root mends");
        assert!(why.to_lowercase().contains("purpose") || why.contains("usage"), "{why}");
        let server = analyze(&v, &[leaf(rcgen::ExtendedKeyUsagePurpose::ServerAuth)], Some("a.test")).unwrap();
        assert_eq!((server.verdict, server.unacceptable), (Verdict::Public, None));
        // Unknown root: trust, not this.
        let stranger = analyze(&verifiers(), &[cert(&["a.test"], (-1, 10))], Some("a.test")).unwrap();
        assert_eq!(stranger.unacceptable, None);
    }

    #[test]
    fn only_certificates_that_sign_each_other_link() {
        let v = verifiers();
        let ca = |cn: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let cert = params.self_signed(&key).unwrap();
            (cert.der().clone(), rcgen::Issuer::new(params, key))
        };
        let (root, root_issuer) = ca("Zscaler Root CA");
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &root_issuer)
            .unwrap()
            .der()
            .clone();
        let report = analyze(&v, &[leaf.clone(), root.clone()], Some("a.test")).unwrap();
        assert_eq!((report.linked, report.root_in_chain), (2, true));
        assert_eq!(report.top_spki_sha256, report.certs[1].spki_sha256);
        assert!(!report.flags.unlinked);
        // Another CA with the same name: it does not sign the leaf.
        let (impostor, _) = ca("Zscaler Root CA");
        let report = analyze(&v, &[leaf.clone(), impostor], Some("a.test")).unwrap();
        assert_eq!((report.linked, report.root_in_chain), (1, false));
        assert_eq!(report.top_spki_sha256, report.certs[0].spki_sha256);
        assert!(report.flags.unlinked);
        assert_eq!(
            report.vendor.as_deref(),
            Some("Zscaler"),
            "the leaf's own issuer name still counts"
        );
        // A self-signed leaf followed by a real CA: the CA lends no name.
        let stray = cert(&["b.test"], (-1, 1));
        let report = analyze(&v, &[stray, root], Some("b.test")).unwrap();
        assert_eq!((report.linked, report.root_in_chain), (1, false));
        assert_eq!(report.vendor.as_deref(), Some("unknown"));
    }

    /// Older Windows and appliance CAs write their names as BMPString
    /// (UTF-16) or T61String: the product is still named from them, and
    /// the issuer shown is the CN, not the whole DN.
    #[test]
    fn names_in_bmp_teletex_and_universal_strings_name_the_product() {
        use rcgen::string::{BmpString, TeletexString, UniversalString};
        let v = verifiers();
        let bmp = |s: &str| rcgen::DnValue::BmpString(BmpString::try_from(s).unwrap());
        let t61 = |s: &str| rcgen::DnValue::TeletexString(TeletexString::try_from(s).unwrap());
        let utf32 = |s: &str| rcgen::DnValue::UniversalString(UniversalString::try_from(s).unwrap());
        for (cn, o, product, cn_text) in [
            (bmp("FortiGate CA"), bmp("Fortinet"), "Fortinet", "FortiGate CA"),
            (
                bmp("Corp CA \u{2013} Zürich"),
                bmp("Fortinet"),
                "Fortinet",
                "Corp CA \u{2013} Zürich",
            ),
            (
                t61("Sophos SSL CA_ABC123"),
                t61("Sophos"),
                "Sophos",
                "Sophos SSL CA_ABC123",
            ),
            (
                utf32("ESET SSL Filter CA"),
                utf32("Example"),
                "ESET",
                "ESET SSL Filter CA",
            ),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            params.distinguished_name.push(rcgen::DnType::OrganizationName, o);
            let root = params.self_signed(&key).unwrap().der().clone();
            let issuer = rcgen::Issuer::new(params, key);
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
                .unwrap()
                .signed_by(&leaf_key, &issuer)
                .unwrap()
                .der()
                .clone();
            let report = analyze(&v, &[leaf, root], Some("a.test")).unwrap();
            assert_eq!(report.vendor.as_deref(), Some(product), "{cn_text}");
            assert_eq!(report.issuer, cn_text);
            assert!(
                report.certs[1].subject.starts_with(&format!("CN={cn_text}, O=")),
                "{}",
                report.certs[1].subject
            );
        }
    }

    #[test]
    fn a_saved_chain_for_a_wildcard_is_judged_for_a_name_it_covers() {
        let v = verifiers();
        let report = analyze(&v, &[cert(&["*.a.test", "a.test"], (-1, 10))], None).unwrap();
        assert_eq!(report.verdict, Verdict::Untrusted);
        assert_eq!(report.host, None);
        assert!(!report.flags.hostname_mismatch);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let v = verifiers();
        assert!(analyze(&v, &[], Some("a.test")).is_err());
        assert!(analyze(&v, &[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])], Some("a.test")).is_err());
    }
}

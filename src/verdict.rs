//! Verdicts on upstream certificate chains: is this connection to the real
//! site, re-signed by an interceptor, or neither?
//!
//! - `public`: the chain verifies against the public roots;
//! - `intercepted`: it fails against the public roots but verifies against a
//!   locally trusted root (system store or `tls.extra_roots`);
//! - `untrusted`: it verifies against neither.
//!
//! [`analyze`] produces the full [`ChainReport`] (used by `inspect`, probes
//! and evidence). [`VerdictVerifier`] is the rustls verifier behind every
//! upstream connection modgate makes: it runs the public verification once
//! per distinct chain and host, caches the outcome, records evidence, and
//! applies `tls.on_interception`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use x509_parser::prelude::*;

use crate::evidence::Evidence;
use crate::vendor::{self, Names};

/// The trust verdict on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Verifies against the public roots.
    Public,
    /// Fails the public roots, verifies against a locally trusted root.
    Intercepted,
    /// Verifies against neither.
    Untrusted,
}

impl Verdict {
    /// The verdict's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Public => "public",
            Verdict::Intercepted => "intercepted",
            Verdict::Untrusted => "untrusted",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict and the product named, as carried into access events.
pub type Judged = (Verdict, Option<String>);

/// What `tls.on_interception` says to do with an intercepted chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterception {
    /// Proceed, log at info.
    Allow,
    /// Proceed, log at warn.
    Warn,
    /// Refuse with a `modgate:` message.
    Block,
}

/// Problems seen in a chain, besides trust.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// The leaf is not valid for the host name asked for.
    pub hostname_mismatch: bool,
    /// A certificate in the chain has expired.
    pub expired: bool,
    /// A certificate in the chain is not valid yet.
    pub not_yet_valid: bool,
    /// The leaf signed itself.
    pub self_signed_leaf: bool,
    /// The server sent only the leaf, and its issuer is not a known root.
    pub missing_intermediates: bool,
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
        ] {
            if set {
                v.push(name);
            }
        }
        v
    }
}

/// One certificate, described.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until `not_after` (negative when expired).
    pub days_left: i64,
    /// DNS names and IP addresses in the SAN extension.
    pub sans: Vec<String>,
    /// Key type and size, e.g. `ECDSA P-256` or `RSA 2048`.
    pub key: String,
    /// Signature algorithm.
    pub signature: String,
    /// SHA-256 of the DER certificate, hex.
    pub sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
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
    /// SHA-256 of the top certificate's SPKI: names the evidence file.
    pub top_spki_sha256: String,
}

/// The two verifiers a verdict needs.
#[derive(Debug, Clone)]
pub struct Verifiers {
    public: Arc<WebPkiServerVerifier>,
    local: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl Verifiers {
    /// Verifiers for the public roots and for the local (system + extra) roots.
    pub fn new(public: Arc<RootCertStore>, local: Arc<RootCertStore>) -> Result<Verifiers, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let build = |roots: Arc<RootCertStore>| {
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| e.to_string())
        };
        let local = if local.is_empty() { None } else { Some(build(local)?) };
        Ok(Verifiers {
            public: build(public)?,
            local,
            provider,
        })
    }
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn check(
    verifier: &WebPkiServerVerifier,
    chain: &[CertificateDer<'_>],
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let (leaf, rest) = chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier.verify_server_cert(leaf, rest, name, &[], now).map(|_| ())
}

fn describe_check(result: &Result<(), rustls::Error>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
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
    let name_text = match host {
        Some(h) => h.to_owned(),
        None => certs[0]
            .sans
            .first()
            .cloned()
            .unwrap_or_else(|| "invalid.invalid".into()),
    };
    let name =
        ServerName::try_from(name_text.clone()).map_err(|e| format!("'{name_text}' is not a server name: {e}"))?;
    let now = UnixTime::now();
    let public = check(&verifiers.public, chain, &name, now);
    let local = match &verifiers.local {
        Some(v) => check(v, chain, &name, now),
        None => Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
    };
    let verdict = match (&public, &local) {
        (Ok(()), _) => Verdict::Public,
        (Err(_), Ok(())) => Verdict::Intercepted,
        _ => Verdict::Untrusted,
    };
    let vendor = match verdict {
        Verdict::Public => None,
        _ => Some(name_product(&parsed).unwrap_or("unknown").to_owned()),
    };
    let now_ts = now.as_secs() as i64;
    let self_signed = leaf.subject().as_raw() == leaf.issuer().as_raw();
    let unknown_issuer = matches!(
        public,
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
    );
    let flags = Flags {
        hostname_mismatch: host.is_some() && !leaf_covers(&certs[0].sans, &name_text),
        expired: parsed.iter().any(|c| c.validity().not_after.timestamp() < now_ts),
        not_yet_valid: parsed.iter().any(|c| c.validity().not_before.timestamp() > now_ts),
        self_signed_leaf: self_signed,
        // A leaf alone whose issuer is reachable by URL (AIA) is the usual
        // sign of a server that forgot its intermediate; interceptor leaves
        // signed straight by their root carry no such pointer.
        missing_intermediates: chain.len() == 1 && !self_signed && unknown_issuer && has_ca_issuers(leaf),
    };
    let top = certs.last().map(|c| c.spki_sha256.clone()).unwrap_or_default();
    Ok(ChainReport {
        host: host.map(str::to_owned),
        issuer: display_name(leaf.issuer()),
        certs,
        public_check: describe_check(&public),
        local_check: describe_check(&local),
        verdict,
        vendor,
        flags,
        top_spki_sha256: top,
    })
}

/// The product named by the issuers in the chain (the leaf's issuer first,
/// then the CA certificates' subjects and issuers).
fn name_product(chain: &[X509Certificate<'_>]) -> Option<&'static str> {
    let mut candidates = vec![names(chain[0].issuer())];
    for ca in &chain[1..] {
        candidates.push(names(ca.subject()));
        candidates.push(names(ca.issuer()));
    }
    candidates.iter().find_map(vendor::product)
}

fn names(name: &X509Name<'_>) -> Names {
    let collect = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
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
        .and_then(|cn| cn.as_str().ok())
        .map_or_else(|| name.to_string(), str::to_owned)
}

fn has_ca_issuers(cert: &X509Certificate<'_>) -> bool {
    cert.extensions().iter().any(|ext| {
        matches!(ext.parsed_extension(), ParsedExtension::AuthorityInfoAccess(aia)
            if aia.accessdescs.iter().any(|d| d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.2"))
    })
}

fn leaf_covers(sans: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
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

fn info(cert: &X509Certificate<'_>, der: &CertificateDer<'_>) -> CertInfo {
    let validity = cert.validity();
    let rfc3339 = |t: &ASN1Time| {
        t.to_datetime()
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let days_left = (validity.not_after.timestamp() - now).div_euclid(86_400);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => sans.push(ip_text(ip)),
                _ => {}
            }
        }
    }
    CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        days_left,
        sans,
        key: key_text(cert),
        signature: signature_text(cert),
        sha256: sha256_hex(der),
        spki_sha256: sha256_hex(cert.public_key().raw),
        is_ca: cert.is_ca(),
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex(bytes),
    }
}

fn key_text(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| format!("{} bits", point.key_size()));
            format!("ECDSA {curve}")
        }
        Ok(PublicKey::Unknown(_)) | Ok(_) => match cert.public_key().algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".into(),
            other => other.into(),
        },
        Err(_) => "unparsable key".into(),
    }
}

fn signature_text(cert: &X509Certificate<'_>) -> String {
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".into(),
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption".into(),
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption".into(),
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption".into(),
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256".into(),
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384".into(),
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.2.840.113549.1.1.10" => "RSASSA-PSS".into(),
        other => other.into(),
    }
}

/// Why a chain was refused, carried through rustls to the connector.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The report.
    pub report: Arc<ChainReport>,
    /// Where the chain was saved, when it was.
    pub saved: Option<String>,
    /// True when refused by `on_interception = "block"` (the chain is
    /// trusted locally); false when untrusted.
    pub by_policy: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let vendor = r.vendor.as_deref().unwrap_or("unknown");
        let saved = self
            .saved
            .as_deref()
            .map(|s| format!(" (saved in {s})"))
            .unwrap_or_default();
        if self.by_policy {
            write!(
                f,
                "presented a chain issued by '{}' ({vendor}): the connection is intercepted and tls.on_interception = \"block\"{saved}",
                r.issuer
            )
        } else {
            write!(
                f,
                "presented a chain issued by '{}' ({vendor}), which is not trusted; add its root to tls.extra_roots{saved}",
                r.issuer
            )
        }
    }
}

impl std::error::Error for Refusal {}

/// A cached outcome for one (chain, host).
#[derive(Clone)]
struct Outcome {
    at: Instant,
    report: Arc<ChainReport>,
    refusal: Option<Refusal>,
}

/// How long a verdict is reused for the same chain and host.
const VERDICT_TTL: Duration = Duration::from_secs(600);
/// Verdicts kept before the cache is pruned.
const VERDICT_CACHE_MAX: usize = 4096;

/// The verifier behind every upstream TLS connection.
#[derive(Debug)]
pub struct VerdictVerifier {
    verifiers: Verifiers,
    policy: OnInterception,
    evidence: Arc<Evidence>,
    cache: Mutex<HashMap<String, Outcome>>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("verdict", &self.report.verdict)
            .finish()
    }
}

impl VerdictVerifier {
    /// A verifier applying `policy` and recording into `evidence`.
    pub fn new(verifiers: Verifiers, policy: OnInterception, evidence: Arc<Evidence>) -> VerdictVerifier {
        VerdictVerifier {
            verifiers,
            policy,
            evidence,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verifiers, for checks outside a handshake (probes).
    pub fn verifiers(&self) -> &Verifiers {
        &self.verifiers
    }

    /// Records a chain seen outside modgate's own connections (a probe):
    /// evidence and the interception event when it fails the public roots.
    /// Returns where it was saved.
    pub fn observe(&self, report: &ChainReport, chain: &[CertificateDer<'_>]) -> Option<String> {
        match report.verdict {
            Verdict::Public => None,
            _ => self.evidence.record(report, chain, self.policy),
        }
    }

    fn key(leaf: &CertificateDer<'_>, host: &str) -> String {
        format!("{}/{host}", sha256_hex(leaf))
    }

    /// The verdict and vendor already reached for this leaf and host, for
    /// the access log (a resumed session skips verification, but its chain
    /// is the one verified before).
    pub fn known(&self, leaf: &CertificateDer<'_>, host: &str) -> Option<Judged> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(&Self::key(leaf, host))
            .map(|o| (o.report.verdict, o.report.vendor.clone()))
    }

    fn outcome(&self, chain: &[CertificateDer<'_>], host: &str) -> Result<Outcome, rustls::Error> {
        let key = Self::key(&chain[0], host);
        if let Ok(cache) = self.cache.lock() {
            if let Some(o) = cache.get(&key).filter(|o| o.at.elapsed() < VERDICT_TTL) {
                return Ok(o.clone());
            }
        }
        let report = analyze(&self.verifiers, chain, Some(host)).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(Plain(e)))))
        })?;
        let report = Arc::new(report);
        let saved = match report.verdict {
            Verdict::Public => None,
            _ => self.evidence.record(&report, chain, self.policy),
        };
        let refusal = match (report.verdict, self.policy) {
            (Verdict::Untrusted, _) => Some(Refusal {
                report: report.clone(),
                saved,
                by_policy: false,
            }),
            (Verdict::Intercepted, OnInterception::Block) => Some(Refusal {
                report: report.clone(),
                saved,
                by_policy: true,
            }),
            _ => None,
        };
        let outcome = Outcome {
            at: Instant::now(),
            report,
            refusal,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= VERDICT_CACHE_MAX {
                cache.retain(|_, o| o.at.elapsed() < VERDICT_TTL);
                if cache.len() >= VERDICT_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(key, outcome.clone());
        }
        Ok(outcome)
    }
}

/// A plain message as an error.
#[derive(Debug)]
struct Plain(String);

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Plain {}

impl ServerCertVerifier for VerdictVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let host = server_name.to_str();
        let outcome = self.outcome(&chain, &host)?;
        match outcome.refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(refusal) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(refusal)),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.verifiers.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.verifiers.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifiers
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The refusal inside a TLS handshake error, if the verifier refused.
pub fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            if let Some(r) = other.0.downcast_ref::<Refusal>() {
                return Some(r.clone());
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(r) = refusal_in(inner) {
                    return Some(r);
                }
            }
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut public = RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Verifiers::new(Arc::new(public), Arc::new(RootCertStore::empty())).unwrap()
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let v = verifiers();
        assert!(analyze(&v, &[], Some("a.test")).is_err());
        assert!(analyze(&v, &[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])], Some("a.test")).is_err());
    }
}

//! The verifier behind every upstream TLS connection modgate makes: it
//! reaches a verdict once per distinct chain and host (cached), records
//! evidence for chains that fail the public roots, and applies
//! `tls.on_interception`. A refused chain travels through rustls as a
//! [`Refusal`], so the connector can turn it into the `modgate:` line.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::config::OnInterception;
use crate::core::cache::{Bounded, bounded};
use crate::tls::chain::{ChainReport, Judgement, Verdict, Verifiers, analyze, sha256_hex};
use crate::tls::evidence::Evidence;

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
struct CachedVerdict {
    report: Arc<ChainReport>,
    refusal: Option<Refusal>,
}

/// How long a verdict is reused for the same chain and host.
const VERDICT_TTL: Duration = Duration::from_secs(600);
/// Verdicts kept; the least recently used go first.
const VERDICT_CACHE_MAX: u64 = 4096;

/// The verifier behind every upstream TLS connection.
pub struct VerdictVerifier {
    verifiers: Verifiers,
    policy: OnInterception,
    evidence: Arc<Evidence>,
    /// Outcomes by (leaf SHA-256, host): the public-roots check runs once per
    /// distinct chain, not per connection.
    cache: Bounded<(String, String), CachedVerdict>,
}

impl fmt::Debug for VerdictVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl VerdictVerifier {
    /// A verifier applying `policy` and recording into `evidence`.
    pub fn new(verifiers: Verifiers, policy: OnInterception, evidence: Arc<Evidence>) -> VerdictVerifier {
        VerdictVerifier {
            verifiers,
            policy,
            evidence,
            cache: bounded(VERDICT_CACHE_MAX, VERDICT_TTL),
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

    fn key(leaf: &CertificateDer<'_>, host: &str) -> (String, String) {
        (sha256_hex(leaf), host.to_owned())
    }

    /// The verdict and vendor already reached for this leaf and host, for
    /// the access log (a resumed session skips verification, but its chain
    /// is the one verified before).
    pub fn known(&self, leaf: &CertificateDer<'_>, host: &str) -> Option<Judgement> {
        self.cache.get(&Self::key(leaf, host)).map(|o| Judgement {
            verdict: o.report.verdict,
            vendor: o.report.vendor.clone(),
        })
    }

    fn outcome(&self, chain: &[CertificateDer<'_>], host: &str) -> Result<CachedVerdict, rustls::Error> {
        let key = Self::key(&chain[0], host);
        if let Some(o) = self.cache.get(&key) {
            return Ok(o);
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
        let outcome = CachedVerdict { report, refusal };
        self.cache.insert(key, outcome.clone());
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

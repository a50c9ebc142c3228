//! The verifier behind every upstream TLS connection modgate makes: it
//! reaches a verdict once per distinct chain and host (cached), records
//! evidence for chains that fail the public roots, and applies
//! `tls.on_interception`. A refused chain travels through rustls as a
//! [`Refusal`], so the connector can turn it into the `modgate:` line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::config::OnInterception;
use crate::core::cache::{Bounded, bounded};
use crate::core::escape::escape;
use crate::tls::chain::{ChainReport, Judgement, Verdict, Verifiers, analyze, sha256_hex};
use crate::tls::evidence::{Evidence, Saved, Sighted};

/// Why a chain was refused, carried through rustls to the connector.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The report.
    pub report: Arc<ChainReport>,
    /// Where the chain (and its root) were saved, when they were.
    pub saved: Option<Saved>,
    /// True when refused by `on_interception = "block"` (the chain is
    /// trusted locally); false when untrusted.
    pub by_policy: bool,
}

/// The line the client sees after `modgate: upstream URL `. Certificate
/// text is escaped. The fix names the chain's self-signed root, or says
/// there is none; it never suggests trusting a leaf or an intermediate.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let vendor = r.vendor.as_deref().unwrap_or("unknown");
        let issuer = escape(&r.issuer);
        let saved_in = |path: &str| format!(" (saved in {path})");
        let chain = self.saved.as_ref().map(|s| saved_in(&s.chain)).unwrap_or_default();
        write!(f, "presented a chain issued by '{issuer}' ({vendor})")?;
        if self.by_policy {
            return write!(
                f,
                ": the connection is intercepted and tls.on_interception = \"block\"{chain}"
            );
        }
        if r.flags.hostname_mismatch && r.certs.first().is_some_and(|leaf| leaf.sans.is_empty()) {
            return write!(
                f,
                " whose leaf names no host in a subjectAltName{chain}; go (since 1.15) and modgate ignore a name in the subject CN alone, and trusting a root cannot fix this: the certificate must name the host as a subjectAltName"
            );
        }
        if r.flags.hostname_mismatch {
            let host = escape(r.host.as_deref().unwrap_or("-"));
            return write!(
                f,
                " that is not valid for '{host}'{chain}; the name does not match, which trusting a root cannot fix: check the host, or an interceptor sending it to the wrong site"
            );
        }
        if let Some(root) = &r.root_outside_dates {
            // webpki alone would trust it; go does not (nor does modgate).
            let now = rustls::pki_types::UnixTime::now().as_secs() as i64;
            return write!(
                f,
                " that ends at {}{chain}; no root is trusted outside its dates (go refuses it too): check this machine's clock, or get the renewed root from the interceptor's admin to replace it",
                escape(&root.describe(now))
            );
        }
        if r.flags.expired || r.flags.not_yet_valid {
            // Trusting a root cannot fix a certificate outside its dates:
            // say so before any advice about roots (issue 14's fault table).
            let when = if r.flags.expired {
                "has expired"
            } else {
                "is not valid yet"
            };
            return write!(
                f,
                " in which a certificate {when}{chain}; trusting a root cannot fix this: check this machine's clock, or have the server's certificate renewed"
            );
        }
        if let Some(why) = &r.unacceptable {
            return write!(
                f,
                " that no trusted root makes acceptable ({}){chain}; trusting a root cannot fix this: the server's certificates must change",
                escape(why)
            );
        }
        if r.flags.missing_intermediates {
            return write!(
                f,
                " holding only the server's own certificate, whose issuer is not a trusted root{chain}; the server leaves out its intermediate certificate (go refuses it too): have it send its whole chain"
            );
        }
        if let Some(stale) = &r.sent_root_outside_dates {
            return write!(
                f,
                ", which is not trusted, and the root it sent, {}, is outside its dates{chain}; trusting that copy would not help (go refuses it too): get the interceptor's current root from its admin and add it to tls.extra_roots",
                escape(stale)
            );
        }
        match self.saved.as_ref().and_then(|s| s.root.as_deref()) {
            Some(root) => write!(
                f,
                ", which is not trusted; add its root to tls.extra_roots{}",
                saved_in(root)
            ),
            None if r.root_in_chain => write!(f, ", which is not trusted; add its root to tls.extra_roots"),
            None => {
                write!(
                    f,
                    ", which is not trusted and holds no root certificate{chain}; get the root CA from the interceptor's admin and add it to tls.extra_roots"
                )?;
                match vendor {
                    // No product named: it may be no interceptor at all.
                    "unknown" => write!(
                        f,
                        " (if nothing intercepts this connection, the server leaves out an intermediate certificate instead)"
                    ),
                    _ => Ok(()),
                }
            }
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

/// How long a connection's verifier is kept for its host and address.
/// rustls resumes a TLS session only with the very verifier that verified
/// it, so a connection reuses the last one made for where it goes; the
/// chain is verified afresh in a full handshake once this passes, as the
/// verdict is.
const PEER_TTL: Duration = VERDICT_TTL;
/// (host, address) pairs whose verifier is kept.
const PEER_CACHE_MAX: u64 = 1024;

/// The verifier behind every upstream TLS connection.
pub struct VerdictVerifier {
    judge: Arc<Judge>,
    /// The verifier of connections to (host, address): one per pair and
    /// kept, so a new connection resumes the TLS session of an earlier one.
    peers: Bounded<(String, SocketAddr), Arc<PeerVerifier>>,
}

/// What every verification shares: the verdicts, the policy and the
/// evidence.
struct Judge {
    verifiers: Verifiers,
    policy: OnInterception,
    evidence: Arc<Evidence>,
    /// Outcomes by (leaf SHA-256, address connected to, name verified):
    /// the public-roots check and the evidence run once per distinct chain
    /// seen at an address, not per connection, and what one address
    /// presented never answers for another.
    cache: Bounded<VerdictKey, CachedVerdict>,
}

/// (leaf SHA-256, address connected to, name verified).
type VerdictKey = (String, Option<SocketAddr>, String);

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for VerdictVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictVerifier")
            .field("policy", &self.judge.policy)
            .finish_non_exhaustive()
    }
}

impl VerdictVerifier {
    /// A verifier applying `policy` and recording into `evidence`.
    pub fn new(verifiers: Verifiers, policy: OnInterception, evidence: Arc<Evidence>) -> VerdictVerifier {
        VerdictVerifier {
            judge: Arc::new(Judge {
                verifiers,
                policy,
                evidence,
                cache: bounded(VERDICT_CACHE_MAX, VERDICT_TTL),
            }),
            peers: bounded(PEER_CACHE_MAX, PEER_TTL),
        }
    }

    /// The verifiers, for checks outside a handshake (probes).
    pub fn verifiers(&self) -> &Verifiers {
        &self.judge.verifiers
    }

    /// Records a chain seen outside modgate's own connections (a relayed
    /// tunnel's): evidence and the interception event when it fails the
    /// public roots. Returns where it was saved.
    pub fn observe(&self, report: &ChainReport, chain: &[CertificateDer<'_>], sighted: &Sighted) -> Option<Saved> {
        self.judge.observe(report, chain, sighted)
    }

    /// Records one more sighting of a chain [`observe`](Self::observe)d
    /// before, seen again as `sighted` (a tunnel judged by a probe's reused
    /// result): the index counts it; nothing else is written again.
    pub fn observe_again(&self, report: &ChainReport, sighted: &Sighted) {
        if report.verdict != Verdict::Public {
            self.judge.evidence.recount(report, sighted);
        }
    }

    /// The verdict and vendor already reached for this leaf, presented at
    /// `addr` for `name`, for the access log (a resumed session skips
    /// verification, but its chain is the one verified before).
    pub fn known(&self, leaf: &CertificateDer<'_>, addr: Option<SocketAddr>, name: &str) -> Option<Judgement> {
        self.judge.cache.get(&Judge::key(leaf, addr, name)).map(|o| Judgement {
            verdict: o.report.verdict,
            vendor: o.report.vendor.clone(),
        })
    }

    /// The verifier of a configuration whose connections' addresses are
    /// not known: chains are judged for the name alone. The pooled client
    /// replaces it per connection ([`client_config_for`](Self::client_config_for)).
    pub fn unplaced(&self) -> Arc<dyn ServerCertVerifier> {
        self.judge.clone()
    }

    /// A TLS client configuration like `base` whose verifier knows the
    /// connection it verifies: `host` reached at `addr`. rustls tells a
    /// verifier only the server name, so the pooled client gets one of
    /// these per connection. The verifier is the one kept for (`host`,
    /// `addr`), so the connection can resume an earlier one's session
    /// (the session store is `base`'s, shared): rustls resumes only with
    /// the verifier that verified the session.
    pub fn client_config_for(
        &self,
        base: &rustls::ClientConfig,
        host: &str,
        addr: SocketAddr,
    ) -> Arc<rustls::ClientConfig> {
        let verifier = self.peers.get_with((host.to_owned(), addr), || {
            Arc::new(PeerVerifier {
                judge: self.judge.clone(),
                host: host.to_owned(),
                addr,
            })
        });
        let mut config = base.clone();
        config.dangerous().set_certificate_verifier(verifier);
        Arc::new(config)
    }
}

impl Judge {
    fn observe(&self, report: &ChainReport, chain: &[CertificateDer<'_>], sighted: &Sighted) -> Option<Saved> {
        match report.verdict {
            Verdict::Public => None,
            _ => self.evidence.record(report, chain, sighted, self.policy),
        }
    }

    fn key(leaf: &CertificateDer<'_>, addr: Option<SocketAddr>, name: &str) -> VerdictKey {
        (sha256_hex(leaf), addr, name.to_owned())
    }

    fn outcome(
        &self,
        chain: &[CertificateDer<'_>],
        name: &str,
        sighted: &Sighted,
    ) -> Result<CachedVerdict, rustls::Error> {
        let key = Self::key(&chain[0], sighted.addr, name);
        if let Some(o) = self.cache.get(&key) {
            return Ok(o);
        }
        let report = analyze(&self.verifiers, chain, Some(name)).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(Plain(e)))))
        })?;
        let report = Arc::new(report);
        let saved = self.observe(&report, chain, sighted);
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

impl Judge {
    /// The verdict on a presented chain, refusing it when the verdict or
    /// the policy says so. `sighted` defaults to the server name itself,
    /// at an unknown address.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        sighted: Option<Sighted>,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(intermediates.len() + 1);
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let name = server_name.to_str();
        let sighted = sighted.unwrap_or_else(|| Sighted::at(&name, &name, None));
        let outcome = self.outcome(&chain, &name, &sighted)?;
        match outcome.refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(refusal) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(refusal)),
            ))),
        }
    }
}

impl ServerCertVerifier for Judge {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, server_name, None)
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

/// The verdict verifier for one connection: it knows which host and
/// address the chain came from, so the cache and the evidence are keyed by
/// what modgate connected to.
#[derive(Debug)]
struct PeerVerifier {
    judge: Arc<Judge>,
    host: String,
    addr: SocketAddr,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let sighted = Sighted::at(&self.host, &server_name.to_str(), Some(self.addr));
        self.judge.verify(end_entity, intermediates, server_name, Some(sighted))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.judge.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.judge.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.judge.supported_verify_schemes()
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
    use rustls::RootCertStore;

    fn verifiers() -> Verifiers {
        let mut public = RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Verifiers::new(
            crate::tls::anchors::Roots::from(public),
            crate::tls::anchors::Roots::empty(),
        )
        .unwrap()
    }

    /// A root named `cn` and a leaf for `name` it signs: (leaf, root).
    fn chain(cn: &str, name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let root = params.self_signed(&key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(params, key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .der()
            .clone();
        (leaf, root)
    }

    fn refusal(chain: &[CertificateDer<'static>], host: &str, saved: Option<Saved>) -> String {
        let report = analyze(&verifiers(), chain, Some(host)).unwrap();
        Refusal {
            report: Arc::new(report),
            saved,
            by_policy: false,
        }
        .to_string()
    }

    #[test]
    fn refusals_escape_names_and_only_ever_point_at_a_root() {
        let (leaf, root) = chain("Evil\r\n\u{1b}[2J\u{2028}CA", "a.test");
        let alone = refusal(
            std::slice::from_ref(&leaf),
            "a.test",
            Some(Saved {
                chain: "/e/x.pem".into(),
                root: None,
            }),
        );
        assert_eq!(
            alone,
            "presented a chain issued by 'Evil\\u{d}\\u{a}\\u{1b}[2J\\u{2028}CA' (unknown), which is not trusted and holds no root certificate (saved in /e/x.pem); get the root CA from the interceptor's admin and add it to tls.extra_roots (if nothing intercepts this connection, the server leaves out an intermediate certificate instead)"
        );
        let with_root = refusal(
            &[leaf.clone(), root],
            "a.test",
            Some(Saved {
                chain: "/e/r.pem".into(),
                root: Some("/e/r.root.pem".into()),
            }),
        );
        assert!(
            with_root.ends_with("which is not trusted; add its root to tls.extra_roots (saved in /e/r.root.pem)"),
            "{with_root}"
        );
        let mismatch = refusal(std::slice::from_ref(&leaf), "b.test", None);
        assert!(
            mismatch.contains("that is not valid for 'b.test'") && !mismatch.contains("extra_roots"),
            "{mismatch}"
        );
    }
}

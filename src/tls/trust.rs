//! What modgate trusts upstream: the public roots (webpki-roots, or
//! `tls.public_roots`), the system store, and `tls.extra_roots`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::config::{OnInterception, PublicRoots};
use crate::tls::anchors::{RootDates, Roots, SYSTEM_STORE};
use crate::tls::chain::Verifiers;
use crate::tls::evidence::Evidence;
use crate::tls::verifier::VerdictVerifier;

/// A root file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TrustError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The root stores and the TLS client configuration built from them.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The public roots and the local ones (system store plus
    /// `tls.extra_roots`), as verifiers.
    pub verifiers: Verifiers,
    /// The certificates in `tls.public_roots` and `tls.extra_roots` that
    /// are outside their dates when loaded: chains ending at them are
    /// refused as expired (or not yet valid), as go refuses them.
    pub outside_dates: Vec<RootDates>,
}

impl Trust {
    /// Loads the roots. The system store honours SSL_CERT_FILE and SSL_CERT_DIR.
    pub fn load(public: &PublicRoots, extra: &[PathBuf]) -> Result<Trust, TrustError> {
        let public = match public {
            PublicRoots::Webpki => {
                let mut store = RootCertStore::empty();
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                Roots::from(store)
            }
            PublicRoots::File(path) => roots_from(&read_pem_certs(path)?, path)?,
        };
        let mut local = Roots::empty();
        let system = rustls_native_certs::load_native_certs();
        local.add_parsable(system.certs, SYSTEM_STORE);
        for path in extra {
            for cert in read_pem_certs(path)? {
                local.add(cert, &path.display().to_string()).map_err(|e| TrustError {
                    path: path.clone(),
                    reason: format!("not a usable root: {e}"),
                })?;
            }
        }
        let now = UnixTime::now().as_secs() as i64;
        let mut outside_dates: Vec<RootDates> = public
            .outside_dates_at(now)
            .chain(local.outside_dates_at(now).filter(|d| d.source != SYSTEM_STORE))
            .cloned()
            .collect();
        outside_dates.sort_by(|a, b| (&a.source, &a.subject).cmp(&(&b.source, &b.subject)));
        let verifiers = Verifiers::new(public, local).map_err(|reason| TrustError {
            path: PathBuf::from("tls"),
            reason,
        })?;
        Ok(Trust {
            verifiers,
            outside_dates,
        })
    }

    /// One line per configured root certificate outside its dates, naming
    /// the file, the certificate and the date it is on the wrong side of:
    /// the warnings of `check` and of `serve`'s start.
    pub fn warnings(&self) -> Vec<String> {
        let now = UnixTime::now().as_secs() as i64;
        self.outside_dates
            .iter()
            .map(|root| {
                let when = match root.expired(now) {
                    true => format!("expired on {} (notAfter)", root.not_after),
                    false => format!("is not valid until {} (notBefore)", root.not_before),
                };
                format!(
                    "{}: the root '{}' {when}; chains ending at it are refused, as go refuses them",
                    root.source,
                    crate::core::escape::escape(&root.subject)
                )
            })
            .collect()
    }

    /// The verifier every upstream connection uses: verdicts, evidence and
    /// `tls.on_interception`.
    pub fn verdict_verifier(&self, policy: OnInterception, evidence_dir: &Path) -> Arc<VerdictVerifier> {
        Arc::new(VerdictVerifier::new(
            self.verifiers.clone(),
            policy,
            Arc::new(Evidence::open(evidence_dir)),
        ))
    }
}

/// The TLS client configuration for upstream connections: every chain goes
/// through `verifier`; http/1.1 is offered (the pooled connector offers h2
/// instead to an origin that speaks nothing else: `upstream::pool`).
pub fn client_config(verifier: &VerdictVerifier) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.unplaced())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots_from(certs: &[CertificateDer<'static>], path: &Path) -> Result<Roots, TrustError> {
    let mut store = Roots::empty();
    for cert in certs {
        store
            .add(cert.clone(), &path.display().to_string())
            .map_err(|e| TrustError {
                path: path.to_owned(),
                reason: format!("not a usable root: {e}"),
            })?;
    }
    Ok(store)
}

/// Every certificate in a PEM file; at least one.
pub fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let err = |reason: String| TrustError {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE blocks in the file".into()));
    }
    Ok(certs)
}

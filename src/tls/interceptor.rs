//! The interceptor's TLS side: the local CA and one TLS server
//! configuration per intercepted host (its leaf, h2 and http/1.1), kept in
//! a bounded cache so TLS session resumption works across connections and a
//! leaf is minted once per [`LEAF_REUSE`].

use std::sync::Arc;

use crate::core::cache::{Bounded, bounded};
use crate::core::error::Error;
use crate::tls::ca::{LEAF_REUSE, LocalCa};

/// Hosts whose TLS configuration (leaf and key) is kept.
const CONFIG_CACHE_MAX: u64 = 1024;

/// The local CA and the TLS server configurations built from its leaves.
pub struct Interceptor {
    ca: LocalCa,
    /// One configuration per host, so TLS session resumption works across
    /// connections and a leaf is minted once per [`LEAF_REUSE`].
    configs: Bounded<String, Arc<rustls::ServerConfig>>,
    /// Resolves no certificate, for a ClientHello modgate refuses.
    refusing: Option<Arc<rustls::ServerConfig>>,
}

/// A certificate resolver that has none: rustls then ends the handshake
/// with a fatal `access_denied` alert.
#[derive(Debug)]
struct NoCertificate;

impl rustls::server::ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

impl Interceptor {
    /// An interceptor issuing from `ca`.
    pub fn new(ca: LocalCa) -> Interceptor {
        let refusing = builder()
            .ok()
            .map(|b| Arc::new(b.with_cert_resolver(Arc::new(NoCertificate))));
        Interceptor {
            ca,
            configs: bounded(CONFIG_CACHE_MAX, LEAF_REUSE),
            refusing,
        }
    }

    /// A server configuration that refuses the handshake with a fatal
    /// `access_denied` alert, so a client turned away by its ClientHello
    /// reads why from TLS (go: `remote error: tls: access denied`), not
    /// from an unexpected EOF. (`None` only if ring offered no protocol
    /// version, which its defaults always do.)
    pub fn refusing_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.refusing.clone()
    }

    /// The server configuration for `host`: its leaf, h2 and http/1.1.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, Error> {
        if let Some(config) = self.configs.get(host) {
            return Ok(config);
        }
        let leaf = self
            .ca
            .mint(host)
            .map_err(|e| Error::Internal(format!("issuing a certificate for {host}: {e}")))?;
        let mut config = builder()
            .map_err(|e| Error::Internal(format!("TLS server config: {e}")))?
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(leaf)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.configs.insert(host.to_owned(), config.clone());
        Ok(config)
    }
}

/// A server configuration with ring and its safe protocol versions,
/// without client authentication, before its certificates.
fn builder() -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::glob::HostGlob;
    use crate::tls::ca::{generate, write};

    #[test]
    fn one_config_per_host_is_reused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let intercept: Vec<HostGlob> = vec!["proxy.golang.org".parse().unwrap(), "*.example.com".parse().unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
        write(&generate(&intercept).unwrap(), &cert, &key, false).unwrap();
        let interceptor = Interceptor::new(LocalCa::load(&cert, &key, &intercept, "modgate ca init").unwrap());
        let a = interceptor.server_config("proxy.golang.org").unwrap();
        assert!(Arc::ptr_eq(&a, &interceptor.server_config("proxy.golang.org").unwrap()));
        let b = interceptor.server_config("a.example.com").unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}

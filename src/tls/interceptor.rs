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
}

impl Interceptor {
    /// An interceptor issuing from `ca`.
    pub fn new(ca: LocalCa) -> Interceptor {
        Interceptor {
            ca,
            configs: bounded(CONFIG_CACHE_MAX, LEAF_REUSE),
        }
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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS server config: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(leaf)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.configs.insert(host.to_owned(), config.clone());
        Ok(config)
    }
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

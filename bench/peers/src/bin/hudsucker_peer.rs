//! hudsucker 0.25, the closest intercepting peer: every CONNECT is
//! intercepted with the given CA (leaf configs cached, 1000 entries), the
//! no-op handlers, and one pooled rustls client (ring, h2 and http/1.1 by
//! ALPN) that trusts the origin's root. No logging subscriber is installed.
//! TCP_NODELAY is set on both legs, as modgate does: hudsucker has no option
//! for it, so the listening socket carries it and Linux hands it on to every
//! accepted connection (without it, an h2 client leg stalls on delayed ACKs).
//!
//! usage: hudsucker-peer 127.0.0.1:PORT CA_CERT.pem CA_KEY.pem ORIGIN_ROOT.pem

use std::sync::Arc;

use hudsucker::Proxy;
use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::rcgen::{Issuer, KeyPair};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::crypto::ring;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, ca_cert, ca_key, origin_root] = args.as_slice() else {
        return Err("usage: hudsucker-peer ADDR CA_CERT CA_KEY ORIGIN_ROOT".into());
    };
    let key = KeyPair::from_pem(&std::fs::read_to_string(ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(ca_cert)?, key)?;
    let ca = RcgenAuthority::new(issuer, 1_000, ring::default_provider());

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(origin_root)? {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);

    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(listen.parse()?)?;
    let listener = socket.listen(1024)?;
    Proxy::builder()
        .with_listener(listener)
        .with_ca(ca)
        .with_http_connector(https)
        .build()?
        .start()
        .await?;
    Ok(())
}

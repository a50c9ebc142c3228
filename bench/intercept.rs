//! Interception overhead: 1000 sequential small GOPROXY GETs over one
//! connection, direct to a TLS origin vs through modgate (CONNECT, TLS with
//! modgate's CA, mirror to the same origin). Contenders are interleaved over
//! ROUNDS rounds (default 5) and medians are reported.
//!
//! Run: `cargo run --release --example bench-intercept` (env: ROUNDS, REQUESTS).

#[path = "../tests/it/support.rs"]
#[allow(unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use support::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn start_origin(pki: &TestPki) -> std::net::SocketAddr {
    install_crypto();
    let (chain, key) = pki.leaf(&["mirror.test"]);
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                    let mut r = Response::new(full("v1.0.0\nv1.1.0\n"));
                    r.headers_mut()
                        .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// `n` sequential GETs of `path` over one HTTP/1.1 connection on `stream`.
async fn sequential<S>(stream: S, host: &str, path: &str, n: usize) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    for _ in 0..n {
        sender.ready().await.unwrap();
        let resp = sender
            .send_request(Request::get(path).header("host", host).body(full("")).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 14);
    }
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = env_or("ROUNDS", 5);
    let n = env_or("REQUESTS", 1000);
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("Bench Public Root");
    std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
    let origin = start_origin(&pki).await;

    let intercept: Vec<modgate::policy::glob::HostGlob> = vec!["proxy.golang.org".parse().unwrap()];
    let ca = modgate::tls::ca::generate(&intercept).unwrap();
    modgate::tls::ca::write(&ca, &dir.path().join("ca.pem"), &dir.path().join("ca.key"), true).unwrap();
    let config = format!(
        "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\"]\npublic_roots = \"public-root.pem\"\n[hosts]\n\"mirror.test\" = \"{origin}\"\n[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n"
    );
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, &config).unwrap();
    let config = modgate::config::Config::parse(&config, path.to_str().unwrap()).unwrap();
    // Access logs go nowhere here: this measures the proxy, not the terminal.
    let proxy = start_proxy_with(config).await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der(&ca.cert_pem)))
        .unwrap();
    let modgate_client = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let origin_client = pki.client_config();
    let gopath = "/example.test/m/@v/list";

    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let tcp = tokio::net::TcpStream::connect(origin).await.unwrap();
        let tls = tls_connect(tcp, origin_client.clone(), "mirror.test").await;
        direct.push(sequential(tls, "mirror.test", gopath, n).await);

        let (tcp, head) = connect_via(proxy.addr, "proxy.golang.org:443").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let tls = tls_connect(tcp, modgate_client.clone(), "proxy.golang.org").await;
        through.push(sequential(tls, "proxy.golang.org", gopath, n).await);
    }
    let (d, t) = (median(direct), median(through));
    println!("intercept_sequential requests={n} rounds={rounds}");
    println!(
        "  direct TLS to origin:      {:>8.1} ms  ({:.0} req/s)",
        d.as_secs_f64() * 1e3,
        n as f64 / d.as_secs_f64()
    );
    println!(
        "  modgate intercept+mirror:  {:>8.1} ms  ({:.0} req/s)",
        t.as_secs_f64() * 1e3,
        n as f64 / t.as_secs_f64()
    );
    println!(
        "  ratio modgate/direct: {:.2} (target <= 1.5)",
        t.as_secs_f64() / d.as_secs_f64()
    );
    proxy.stop().await;
}

fn ca_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

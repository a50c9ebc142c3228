//! The load client of the benchmark harness (bench/run): HTTPS requests
//! directly or through an HTTP proxy (CONNECT), trusting a given CA.
//!
//! `target/release/examples/bench-client MODE --url URL [--proxy URL] [--ca PEM] [...]`
//! - `seq -n N`: N sequential GETs on one connection; prints total ms.
//! - `conc --clients C --secs S`: C connections in a loop for S seconds;
//!   prints req/s.
//! - `newconn --secs S`: new connection (CONNECT + TLS + one GET) in a loop
//!   for S seconds with 8 workers; prints connections/s.
//!
//! Output is one JSON object on stdout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    mode: String,
    url: http::Uri,
    proxy: Option<String>,
    ca: Option<String>,
    n: usize,
    clients: usize,
    secs: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut a = Args {
        mode,
        url: "https://localhost/".parse().unwrap(),
        proxy: None,
        ca: None,
        n: 1000,
        clients: 32,
        secs: 5,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = value.parse().expect("--url"),
            "--proxy" => a.proxy = Some(value),
            "--ca" => a.ca = Some(value),
            "-n" => a.n = value.parse().expect("-n"),
            "--clients" => a.clients = value.parse().expect("--clients"),
            "--secs" => a.secs = value.parse().expect("--secs"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;

struct Client {
    tls: Arc<rustls::ClientConfig>,
    host: String,
    port: u16,
    proxy: Option<String>,
    path: String,
}

impl Client {
    async fn connect(&self) -> Sender {
        let stream = match &self.proxy {
            None => TcpStream::connect((self.host.as_str(), self.port))
                .await
                .expect("connect"),
            Some(proxy) => {
                let p: http::Uri = proxy.parse().expect("--proxy");
                let mut s = TcpStream::connect((p.host().unwrap(), p.port_u16().unwrap_or(3128)))
                    .await
                    .expect("connect to proxy");
                let target = format!("{}:{}", self.host, self.port);
                s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    assert_eq!(s.read(&mut byte).await.unwrap(), 1, "proxy closed during CONNECT");
                    head.push(byte[0]);
                }
                assert!(
                    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
                    "{}",
                    String::from_utf8_lossy(&head)
                );
                s
            }
        };
        let _ = stream.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .expect("TLS handshake");
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn get(&self, sender: &mut Sender) {
        sender.ready().await.expect("connection ready");
        let req = Request::get(self.path.as_str())
            .header("host", self.host.as_str())
            .body(Empty::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("response");
        assert!(resp.status().is_success(), "status {}", resp.status());
        resp.into_body().collect().await.expect("body");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let a = args();
    let mut roots = rustls::RootCertStore::empty();
    match &a.ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).expect("--ca") {
                roots.add(cert.expect("--ca cert")).unwrap();
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let client = Arc::new(Client {
        tls,
        host: a.url.host().expect("--url host").to_owned(),
        port: a.url.port_u16().unwrap_or(443),
        proxy: a.proxy.clone(),
        path: a.url.path_and_query().map_or("/".into(), |p| p.to_string()),
    });
    match a.mode.as_str() {
        "seq" => {
            let mut sender = client.connect().await;
            client.get(&mut sender).await;
            let started = Instant::now();
            for _ in 0..a.n {
                client.get(&mut sender).await;
            }
            println!(
                "{{\"mode\":\"seq\",\"requests\":{},\"ms\":{:.3}}}",
                a.n,
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        "conc" | "newconn" => {
            let done = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(a.secs);
            let workers = if a.mode == "conc" { a.clients } else { 8 };
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let (client, done, mode) = (client.clone(), done.clone(), a.mode.clone());
                tasks.push(tokio::spawn(async move {
                    let mut sender = client.connect().await;
                    while Instant::now() < deadline {
                        if mode == "newconn" {
                            sender = client.connect().await;
                        }
                        client.get(&mut sender).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            let started = Instant::now();
            for t in tasks {
                t.await.expect("worker");
            }
            let secs = started.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed);
            println!(
                "{{\"mode\":\"{}\",\"workers\":{workers},\"count\":{n},\"per_sec\":{:.1}}}",
                a.mode,
                n as f64 / secs
            );
        }
        other => panic!("unknown mode {other:?}: seq, conc or newconn"),
    }
}

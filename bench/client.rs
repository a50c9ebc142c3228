//! The load client of the benchmark harness (bench/run): HTTPS requests
//! directly or through an HTTP proxy (CONNECT), trusting a given CA, and
//! plain-HTTP downloads by many clients at once.
//!
//! `target/release/examples/bench-client MODE --url URL [--proxy URL] [--ca PEM] [--alpn h2|http1.1] [...]`
//! - `seq -n N`: N sequential GETs on one connection; prints total ms.
//! - `par --conns C -n N`: C connections, each doing N sequential GETs at
//!   the same time; prints the wall-clock ms of all C×N.
//! - `conc --clients C --secs S`: C connections in a loop for S seconds;
//!   prints req/s.
//! - `newconn --secs S`: new connection (CONNECT + TLS + one GET) in a loop
//!   for S seconds with 8 workers; prints connections/s.
//! - `fetch --url http://… --clients C [--digest]`: C plain-HTTP clients
//!   connect, then GET the URL together, reading and discarding the body
//!   (`--digest`: hashing it with SHA-256, to tell whether every complete
//!   body was the same); prints bytes, MB/s, bodies that failed part way,
//!   statuses and `x-cache` values.
//!
//! `--alpn h2` offers h2 and http/1.1 (as `curl --http2` does) and speaks
//! what the server picks; `--alpn http1.1` offers http/1.1 only; without it
//! no ALPN is sent (HTTP/1.1). Connection setup and one warm-up GET per
//! connection are outside the timed part of `seq` and `par`.
//!
//! Output is one JSON object on stdout; `proto` is the protocol spoken.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

struct Args {
    mode: String,
    url: http::Uri,
    proxy: Option<String>,
    ca: Option<String>,
    alpn: Option<String>,
    n: usize,
    clients: usize,
    conns: usize,
    secs: u64,
    digest: bool,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_default();
    let mut a = Args {
        mode,
        url: "https://localhost/".parse().unwrap(),
        proxy: None,
        ca: None,
        alpn: None,
        n: 1000,
        clients: 32,
        conns: 8,
        secs: 5,
        digest: false,
    };
    while let Some(flag) = it.next() {
        if flag == "--digest" {
            a.digest = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = value.parse().expect("--url"),
            "--proxy" => a.proxy = Some(value),
            "--ca" => a.ca = Some(value),
            "--alpn" => a.alpn = Some(value),
            "-n" => a.n = value.parse().expect("-n"),
            "--clients" => a.clients = value.parse().expect("--clients"),
            "--conns" => a.conns = value.parse().expect("--conns"),
            "--secs" => a.secs = value.parse().expect("--secs"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One client connection, HTTP/1.1 or HTTP/2 as negotiated.
enum Sender {
    H1(http1::SendRequest<Empty<bytes::Bytes>>),
    H2(http2::SendRequest<Empty<bytes::Bytes>>),
}

impl Sender {
    fn proto(&self) -> &'static str {
        match self {
            Sender::H1(_) => "http/1.1",
            Sender::H2(_) => "h2",
        }
    }
}

struct Client {
    tls: Arc<rustls::ClientConfig>,
    url: http::Uri,
    host: String,
    port: u16,
    proxy: Option<String>,
    path: String,
}

impl Client {
    async fn tcp(&self) -> TcpStream {
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
        stream
    }

    async fn connect(&self) -> Sender {
        let stream = self.tcp().await;
        let name = ServerName::try_from(self.host.clone()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .expect("TLS handshake");
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        }
    }

    /// A plain-HTTP connection (no proxy, no TLS), for `fetch`.
    async fn connect_plain(&self) -> Sender {
        let stream = self.tcp().await;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        Sender::H1(sender)
    }

    async fn send(&self, sender: &mut Sender) -> http::Response<hyper::body::Incoming> {
        let resp = match sender {
            Sender::H1(s) => {
                s.ready().await.expect("connection ready");
                let req = Request::get(self.path.as_str())
                    .header("host", self.host.as_str())
                    .body(Empty::new())
                    .unwrap();
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.expect("connection ready");
                s.send_request(Request::get(self.url.clone()).body(Empty::new()).unwrap())
                    .await
            }
        };
        resp.expect("response")
    }

    async fn get(&self, sender: &mut Sender) {
        let resp = self.send(sender).await;
        assert!(resp.status().is_success(), "status {}", resp.status());
        resp.into_body().collect().await.expect("body");
    }
}

/// What one `fetch` client saw.
struct Fetched {
    status: u16,
    x_cache: String,
    bytes: u64,
    /// None when the body failed part way.
    digest: Option<Vec<u8>>,
    failed: bool,
}

async fn fetch_one(client: Arc<Client>, start: Arc<Barrier>, digest: bool) -> Fetched {
    let mut sender = client.connect_plain().await;
    start.wait().await;
    let resp = client.send(&mut sender).await;
    let status = resp.status().as_u16();
    let x_cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    let mut hash = digest.then(|| ring::digest::Context::new(&ring::digest::SHA256));
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            failed = true;
            break;
        };
        if let Ok(data) = frame.into_data() {
            bytes += data.len() as u64;
            if let Some(h) = hash.as_mut() {
                h.update(&data);
            }
        }
    }
    Fetched {
        status,
        x_cache,
        bytes,
        digest: hash.filter(|_| !failed).map(|h| h.finish().as_ref().to_vec()),
        failed,
    }
}

async fn fetch(client: Arc<Client>, clients: usize, digest: bool) {
    let start = Arc::new(Barrier::new(clients + 1));
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(fetch_one(client.clone(), start.clone(), digest)))
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("client"));
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let mut statuses = BTreeMap::new();
    let mut x_cache = BTreeMap::new();
    for r in &results {
        *statuses.entry(r.status.to_string()).or_insert(0) += 1;
        *x_cache.entry(r.x_cache.clone()).or_insert(0) += 1;
    }
    let mut digests: Vec<_> = results.iter().filter_map(|r| r.digest.clone()).collect();
    digests.sort();
    digests.dedup();
    let sizes: Vec<u64> = results.iter().map(|r| r.bytes).collect();
    let failed = results.iter().filter(|r| r.failed).count();
    println!(
        "{{\"mode\":\"fetch\",\"clients\":{clients},\"bytes\":{bytes},\"min_body\":{},\"max_body\":{},\"failed_bodies\":{failed},\"secs\":{secs:.4},\"MB_per_s\":{:.1},\"distinct_bodies\":{},\"statuses\":{},\"x_cache\":{}}}",
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        bytes as f64 / 1e6 / secs,
        if digest { digests.len() as i64 } else { -1 },
        json_counts(&statuses),
        json_counts(&x_cache),
    );
}

fn json_counts(m: &BTreeMap<String, u64>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
    format!("{{{}}}", items.join(","))
}

/// `conns` connections, each doing `n` sequential GETs at the same time.
async fn parallel(client: Arc<Client>, conns: usize, n: usize) -> (Duration, &'static str) {
    let start = Arc::new(Barrier::new(conns + 1));
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (client, start) = (client.clone(), start.clone());
            tokio::spawn(async move {
                let mut sender = client.connect().await;
                client.get(&mut sender).await;
                start.wait().await;
                for _ in 0..n {
                    client.get(&mut sender).await;
                }
                sender.proto()
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let mut proto = "";
    for t in tasks {
        proto = t.await.expect("worker");
    }
    (started.elapsed(), proto)
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
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = match a.alpn.as_deref() {
        None => vec![],
        Some("h2") => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some("http1.1") => vec![b"http/1.1".to_vec()],
        Some(other) => panic!("--alpn {other}: h2 or http1.1"),
    };
    let default_port = if a.url.scheme_str() == Some("http") { 80 } else { 443 };
    let client = Arc::new(Client {
        tls: Arc::new(tls),
        url: a.url.clone(),
        host: a.url.host().expect("--url host").to_owned(),
        port: a.url.port_u16().unwrap_or(default_port),
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
                "{{\"mode\":\"seq\",\"requests\":{},\"ms\":{:.3},\"proto\":\"{}\"}}",
                a.n,
                started.elapsed().as_secs_f64() * 1e3,
                sender.proto()
            );
        }
        "par" => {
            let (elapsed, proto) = parallel(client, a.conns, a.n).await;
            println!(
                "{{\"mode\":\"par\",\"conns\":{},\"requests\":{},\"ms\":{:.3},\"proto\":\"{proto}\"}}",
                a.conns,
                a.conns * a.n,
                elapsed.as_secs_f64() * 1e3
            );
        }
        "fetch" => fetch(client, a.clients, a.digest).await,
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
        other => panic!("unknown mode {other:?}: seq, par, conc, newconn or fetch"),
    }
}

//! Test servers and clients. Every server binds 127.0.0.1:0 and is stopped
//! when its handle is dropped.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use modgate::config::Config;
use modgate::proxy::server::Server;
use modgate::proxy::workers::Workers;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Generous upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(30);

pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

// ---------- the proxy ----------

pub struct Proxy {
    pub addr: SocketAddr,
    server: Option<Server>,
}

impl Proxy {
    /// Module files the cache's checks refused so far (what
    /// `modgate_sumdb_verification_failures_total` reports).
    pub fn refused(&self) -> u64 {
        self.server
            .as_ref()
            .and_then(|s| s.live().current().cache.clone())
            .map_or(0, |c| c.counters.refused.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Pooled upstream connections open now.
    pub fn pooled_open(&self) -> usize {
        self.server
            .as_ref()
            .map_or(0, |s| s.live().current().clients.budget().open())
    }

    /// Stops the proxy gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// A proxy a test drops (or a panicking test leaves behind) stops
/// listening: the `Server`'s own drop closes it.
impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.server.take());
    }
}

/// A config that allows loopback (the test origins live there), with `extra`
/// (rules and tables) placed before the allow-all rule.
pub fn config_allowing_loopback(extra: &str) -> String {
    format!("{extra}\n[[rule]]\nname = \"test-allow-all\"\naction = \"direct\"\n")
}

pub async fn start_proxy(config_toml: &str) -> Proxy {
    let config = Config::parse(config_toml, "test.toml").expect("test config is valid");
    start_proxy_with(config).await
}

/// The platform cache dir modgate uses when a config has no `[cache]`.
fn platform_cache_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .map(|d| d.join("modgate"))
}

/// Tests share one process: a config that did not choose a cache gets none,
/// so no test serves another's cached modules.
fn without_default_cache(mut config: Config) -> Config {
    if let modgate::config::CacheLocation::Dir { path, .. } = &config.cache.location {
        if Some(path.clone()) == platform_cache_dir() {
            config.cache.location = modgate::config::CacheLocation::Off {
                why: "tests choose their own cache".into(),
            };
        }
    }
    config
}

pub async fn start_proxy_with(config: Config) -> Proxy {
    let config = without_default_cache(config);
    // Served as `modgate serve` serves: on worker threads of their own.
    let workers = Workers::start(2).expect("worker threads start");
    let server = Server::start_on(config, Some("127.0.0.1:0".parse().unwrap()), workers)
        .await
        .expect("proxy binds");
    Proxy {
        addr: server.local_addr(),
        server: Some(server),
    }
}

// ---------- origins ----------

pub struct Origin {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Headers of the last request received.
    pub last_headers: Arc<Mutex<Option<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<TestBody>> + Send>> + Send + Sync>;

/// A plain HTTP/1.1 origin with keep-alive, answering with `handler`.
pub async fn start_origin(handler: Handler) -> Origin {
    start_origin_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler)
}

/// [`start_origin`] on a listener the test bound itself (e.g. inside a
/// network namespace).
pub fn start_origin_on(listener: TcpListener, handler: Handler) -> Origin {
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let last_headers = Arc::new(Mutex::new(None));
    let (c, h) = (connections.clone(), last_headers.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    *h.lock().unwrap() = Some(req.headers().clone());
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Origin {
        addr,
        connections,
        last_headers,
        task,
    }
}

/// An origin answering every request with 200 and `text`.
pub async fn start_text_origin(text: &'static str) -> Origin {
    start_origin(Arc::new(move |_req| Box::pin(async move { Response::new(full(text)) }))).await
}

/// A TCP server that accepts and then never answers.
pub async fn start_silent_origin() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

/// A port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------- test PKI and a TLS origin ----------

pub struct TestPki {
    pub ca_der: CertificateDer<'static>,
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Certificates sent after a leaf (the intermediates), leaf-side first.
    tail: Vec<CertificateDer<'static>>,
}

fn ca_params(cn: &str, org: Option<&str>) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    if let Some(org) = org {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, org);
    }
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let now = time_now();
    params.not_before = now - rcgen_days(1);
    params.not_after = now + rcgen_days(30);
    params
}

impl TestPki {
    /// A root CA named `ca_name`.
    pub fn new(ca_name: &str) -> TestPki {
        TestPki::named(ca_name, None)
    }

    /// A root CA with a CN and an optional O, e.g. an interceptor's root.
    pub fn named(cn: &str, org: Option<&str>) -> TestPki {
        TestPki::named_with(cn, org, |_| {})
    }

    /// Like `named`, with `adjust` applied to the root's parameters (such
    /// as its dates).
    pub fn named_with(cn: &str, org: Option<&str>, adjust: impl FnOnce(&mut rcgen::CertificateParams)) -> TestPki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = ca_params(cn, org);
        adjust(&mut params);
        let cert = params.self_signed(&key).unwrap();
        TestPki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            tail: Vec::new(),
        }
    }

    /// An intermediate CA signed by this one; its leaves carry it in their chain.
    pub fn intermediate(&self, cn: &str, org: Option<&str>) -> TestPki {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = ca_params(cn, org);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let mut tail = vec![cert.der().clone()];
        tail.extend(self.tail.iter().cloned());
        TestPki {
            ca_der: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
            tail,
        }
    }

    /// A leaf for `names`, with the chain to send (leaf first), and its key.
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.leaf_with(names, |_| {})
    }

    /// A TLS acceptor presenting a leaf for `names`, offering `alpn` (none
    /// when empty).
    pub fn acceptor(&self, names: &[&str], alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
        install_crypto();
        let (chain, key) = self.leaf(names);
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// Like `leaf`, with `adjust` applied to the leaf's parameters.
    pub fn leaf_with(
        &self,
        names: &[&str],
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let now = time_now();
        params.not_before = now - rcgen_days(1);
        params.not_after = now + rcgen_days(10);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.tail.iter().cloned());
        (chain, key)
    }

    /// Also sends `cert` after the chain of every leaf from now on, e.g. the
    /// root itself, as some interceptors do.
    pub fn send_also(&mut self, cert: CertificateDer<'static>) {
        self.tail.push(cert);
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn rcgen_days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// A TLS origin for `names`, answering every request with 200 and `text`,
/// over HTTP/1.1.
pub async fn start_tls_origin(pki: &TestPki, names: &[&str], text: &'static str) -> (SocketAddr, JoinHandle<()>) {
    start_tls_origin_with(pki, names, text, rustls::DEFAULT_VERSIONS).await
}

/// A TLS origin limited to `versions` (e.g. TLS 1.2 only).
pub async fn start_tls_origin_with(
    pki: &TestPki,
    names: &[&str],
    text: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, JoinHandle<()>) {
    let (chain, key) = pki.leaf(names);
    start_tls_server(chain, key, text, versions).await
}

/// A TLS origin presenting exactly `chain` (whatever it holds) with `key`.
pub async fn start_tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    text: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, JoinHandle<()>) {
    let (addr, _, task) = start_counted_tls_server(chain, key, text, versions).await;
    (addr, task)
}

/// Like `start_tls_server`, also counting the TCP connections accepted.
pub async fn start_counted_tls_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    text: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_tls_server_on(listener, chain, key, text, versions)
}

/// A TLS server presenting `chain` on a listener the test bound itself,
/// counting the TCP connections accepted.
pub fn start_tls_server_on(
    listener: TcpListener,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    text: &'static str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    install_crypto();
    let config = rustls::ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service =
                    service_fn(
                        move |_req: Request<Incoming>| async move { Ok::<_, Infallible>(Response::new(full(text))) },
                    );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, connections, task)
}

/// Waits until `done` holds, checking every 20 ms for up to `STEP`; panics
/// naming `what` otherwise. For effects written off the request path
/// (evidence), where there is no event to wait on.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo, hex: how evidence
/// files are named.
pub fn spki_sha256(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    modgate::tls::certinfo::sha256_hex(cert.public_key().raw)
}

/// The certificates in a PEM file as rustls reads them (and so as
/// `tls.extra_roots` would).
pub fn pem_file_certs(path: &std::path::Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

// ---------- bodies ----------

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// A body fed through a channel, so a test controls when each chunk goes.
pub struct ChanBody(pub mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

pub fn chan_body(depth: usize) -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(depth);
    (tx, ChanBody(rx).boxed())
}

/// The test pattern's period: pseudo-random bytes repeating after a prime
/// length, so no chunk size lines up with it and a dropped, repeated or
/// shifted stretch shows as a mismatch.
const PATTERN_PERIOD: usize = 1_048_573;

/// One period of the test pattern (xorshift64 bytes).
static PATTERN: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..PATTERN_PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
});

/// The byte at `offset` of the test pattern, so transfers can be verified
/// without keeping them.
pub fn pattern(offset: u64) -> u8 {
    PATTERN[(offset % PATTERN_PERIOD as u64) as usize]
}

/// The pattern's `len` bytes from `start`.
pub fn pattern_chunk(start: u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len);
    let mut at = (start % PATTERN_PERIOD as u64) as usize;
    while out.len() < len {
        let n = (len - out.len()).min(PATTERN_PERIOD - at);
        out.extend_from_slice(&PATTERN[at..at + n]);
        at = 0;
    }
    out.into()
}

/// The offset of the first byte of `data` (found at `start` of a transfer)
/// that differs from the pattern, if one does. Compares whole slices, so
/// checking every byte of 100 MB stays cheap in debug builds.
pub fn pattern_mismatch(start: u64, data: &[u8]) -> Option<u64> {
    let mut at = (start % PATTERN_PERIOD as u64) as usize;
    let mut done = 0;
    while done < data.len() {
        let n = (data.len() - done).min(PATTERN_PERIOD - at);
        let (got, want) = (&data[done..done + n], &PATTERN[at..at + n]);
        if got != want {
            let i = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
            return Some(start + (done + i) as u64);
        }
        done += n;
        at = 0;
    }
    None
}

/// Reads a body to the end, checking it against the pattern; returns the length.
pub async fn drain_checking_pattern(mut body: Incoming) -> u64 {
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Some(data) = frame.data_ref() {
            if let Some(bad) = pattern_mismatch(offset, data) {
                panic!("byte {bad} differs");
            }
            offset += data.len() as u64;
        }
    }
    offset
}

// ---------- clients ----------

/// An HTTP/1.1 client connection to the proxy.
pub struct ProxyConn {
    sender: hyper::client::conn::http1::SendRequest<TestBody>,
    task: JoinHandle<()>,
}

impl ProxyConn {
    pub async fn open(proxy: SocketAddr) -> ProxyConn {
        let stream = TcpStream::connect(proxy).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        ProxyConn { sender, task }
    }

    /// Sends `req` (with an absolute-form URI) and returns the response. A
    /// Host header is added from the URI when the request has none, as
    /// every HTTP/1.1 client does.
    pub async fn send(&mut self, mut req: Request<TestBody>) -> Response<Incoming> {
        if !req.headers().contains_key(http::header::HOST) {
            let host = req.uri().authority().map_or("modgate", |a| a.as_str()).to_owned();
            req.headers_mut().insert(http::header::HOST, host.parse().unwrap());
        }
        self.sender.ready().await.expect("connection ready");
        tokio::time::timeout(STEP, self.sender.send_request(req))
            .await
            .expect("response in time")
            .expect("response")
    }
}

impl Drop for ProxyConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GET `url` through the proxy on a fresh connection; returns status and body text.
pub async fn get_via(proxy: SocketAddr, url: &str) -> (StatusCode, HeaderMap, String) {
    let mut conn = ProxyConn::open(proxy).await;
    let resp = conn.send(Request::get(url).body(full("")).unwrap()).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Writes `bytes` to the proxy and reads until it closes (or `STEP` passes).
pub async fn raw_exchange(proxy: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("proxy closes the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `CONNECT target` and returns the stream and the response head.
pub async fn connect_via(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

/// Reads an HTTP response head byte by byte (so nothing after it is consumed).
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(STEP, s.read(&mut byte))
            .await
            .expect("head in time")
            .unwrap();
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Sends `head` (never ending it: it is sent again and again) a byte every
/// 200 ms until the other end closes; how long that took. Panics on an
/// answer, or if still open after 60 bytes (12 s).
pub async fn trickle_until_closed<S>(s: &mut S, head: &[u8]) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    for byte in head.iter().cycle().take(60) {
        if s.write_all(&[*byte]).await.is_err() {
            return started.elapsed();
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(n)) => panic!(
                "an answer to a head that never ended: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
    }
    panic!("a client trickling its head was kept for {:?}", started.elapsed());
}

/// Reads `s` until what arrived ends with `suffix`; all of it. Panics if
/// `s` closes first or nothing more comes within `STEP`.
pub async fn read_until_end_is<S>(s: &mut S, suffix: &str) -> Vec<u8>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with(suffix) {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(STEP, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no {suffix:?} in time: {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "closed before {suffix:?}: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// A TLS client session for `name` over `stream`.
pub async fn tls_connect(
    stream: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(STEP, connector.connect(name, stream))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

// ---------- modgate as a process ----------

/// A `modgate serve` child process, killed on drop.
pub struct Served {
    /// The process's own cache home, so it shares no cache with others.
    _cache_home: tempfile::TempDir,
    pub child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    /// The admin listener's address, when it printed one.
    pub admin: Option<std::net::SocketAddr>,
    /// The log lines before the listening line.
    pub startup: Vec<String>,
    pub lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
}

/// Runs `modgate serve ARGS` in `dir` and waits for its listening line.
pub async fn start_served(dir: &std::path::Path, args: &[&str]) -> Served {
    start_served_with_env(dir, args, &[]).await
}

/// `modgate serve --config CONFIG --listen 127.0.0.1:0 --log-format json`
/// in `dir`, with extra environment variables `env`.
pub async fn start_served_json(dir: &std::path::Path, config: &str, env: &[(String, String)]) -> Served {
    let args = ["--config", config, "--listen", "127.0.0.1:0", "--log-format", "json"];
    start_served_with_env(dir, &args, env).await
}

/// [`start_served`] with extra environment variables.
pub async fn start_served_with_env(dir: &std::path::Path, args: &[&str], env: &[(String, String)]) -> Served {
    start_served_with(&[], dir, args, env).await
}

/// [`start_served_with_env`], run under `wrapper` (e.g. `ip netns exec NS`).
pub async fn start_served_with(
    wrapper: &[&str],
    dir: &std::path::Path,
    args: &[&str],
    env: &[(String, String)],
) -> Served {
    use tokio::io::AsyncBufReadExt;
    let cache_home = tempfile::tempdir().unwrap();
    let (program, before) = match wrapper.split_first() {
        Some((program, rest)) => (program.to_string(), rest.iter().map(|s| s.to_string()).collect()),
        None => (modgate_bin().to_owned(), Vec::new()),
    };
    let mut command = tokio::process::Command::new(program);
    command.args(&before);
    if !wrapper.is_empty() {
        command.arg(modgate_bin());
    }
    let mut child = command
        .arg("serve")
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", cache_home.path().join("cache"))
        .env("XDG_STATE_HOME", cache_home.path().join("state"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut admin = None;
    let mut startup = Vec::new();
    loop {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("listening line in time")
            .unwrap()
            .unwrap_or_else(|| panic!("serve exited early: {startup:#?}"));
        startup.push(line.clone());
        if let Some(addr) = line.strip_prefix("modgate admin listening on ") {
            admin = Some(addr.parse().expect("a socket address"));
        }
        if let Some(addr) = line.strip_prefix("modgate listening on ") {
            let addr = addr.parse().expect("a socket address");
            return Served {
                _cache_home: cache_home,
                child,
                addr,
                admin,
                startup,
                lines,
            };
        }
    }
}

/// Sends `signal` (e.g. `HUP`) to a child.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// Sends SIGTERM to a child.
pub fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

impl Served {
    /// The next line of its log that is an access event (`--log-format json`).
    pub async fn next_access_line(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .expect("an access line in time")
                .unwrap()
                .expect("an access line before the log ends");
            if line.contains("\"message\":\"access\"") {
                return line;
            }
        }
    }

    /// Reads the log until a line containing `text`; returns it.
    pub async fn wait_for_line(&mut self, text: &str) -> String {
        loop {
            let line = tokio::time::timeout(STEP, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("a log line with {text:?} in time"))
                .unwrap()
                .unwrap_or_else(|| panic!("a log line with {text:?} before the log ends"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// The next access event, parsed.
    pub async fn next_access(&mut self) -> serde_json::Value {
        let line = self.next_access_line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

/// The path of the modgate binary built for these tests. Cargo sets the
/// variable for integration tests only; the bench examples that include
/// this file compile it too (never calling it), so it must not be `env!`.
pub fn modgate_bin() -> &'static str {
    // Defined for integration tests; examples that reuse this file (the
    // benchmark load generators) never call it.
    option_env!("CARGO_BIN_EXE_modgate").unwrap_or("modgate")
}

/// A listener whose accept queue is full: new connections get no answer to
/// their SYN, as on a black-holed route.
pub fn black_hole() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            fill.push(c);
        }
    }
    (s, fill, addr)
}

//! Checking tunnels that modgate does not terminate.
//!
//! - Passive: [`ServerFlight`] reads the server's TLS 1.2 Certificate
//!   message from the relayed bytes. It is bounded (64 KiB) and only looks
//!   at copies of bytes already sent on, so it never changes or delays them.
//! - Active: for TLS 1.3 servers (whose certificates are encrypted),
//!   [`handshake`] runs one separate handshake to the same address with the
//!   client's SNI. `modgate inspect` uses the same handshake. [`Probes`]
//!   keeps the results per address and name for `tls.probe_ttl`, and bounds
//!   the probing: a client choosing new SNIs cannot turn modgate into a
//!   handshake amplifier. A result is the whole report, so a tunnel judged
//!   from it is recorded as a sighting of its chain, as a probed one is.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::core::cache::{Bounded, bounded};
use crate::tls::chain::ChainReport;

/// Active probes running at once, over all destinations. A tunnel that
/// would need one more goes unprobed (its access event has no verdict).
pub const MAX_CONCURRENT_PROBES: usize = 8;
/// Distinct names probed per destination address within `tls.probe_ttl`.
/// Further names are not probed until the window ends.
pub const MAX_NAMES_PER_ADDRESS: usize = 16;
/// (address, name) results kept; the least recently used go first.
const RESULTS_MAX: u64 = 4096;
/// Destination addresses whose probed names are counted.
const ADDRESSES_MAX: u64 = 4096;

/// Active probe results and the bounds on probing, for one server.
pub struct Probes {
    /// By (address connected to, name verified): `None` while a probe
    /// runs or when it failed.
    results: Bounded<(SocketAddr, String), Option<Arc<ChainReport>>>,
    /// The names probed per address in the current window.
    names: Bounded<SocketAddr, Arc<Mutex<HashSet<String>>>>,
    running: Arc<Semaphore>,
}

/// What to do about one tunnel's chain.
#[derive(Debug)]
pub enum ProbeStart {
    /// Probed already within the TTL (`None`: running, or it failed).
    Known(Option<Arc<ChainReport>>),
    /// Probe now; the permit holds a concurrency slot until dropped.
    Start(OwnedSemaphorePermit),
    /// Not probed: the address's budget is spent, or enough probes run.
    Refused(&'static str),
}

impl Probes {
    /// Results kept for `ttl`, which is also the budget window.
    pub fn new(ttl: Duration) -> Probes {
        Probes {
            results: bounded(RESULTS_MAX, ttl),
            names: bounded(ADDRESSES_MAX, ttl),
            running: Arc::new(Semaphore::new(MAX_CONCURRENT_PROBES)),
        }
    }

    /// Whether to probe `addr` for `name`.
    pub fn begin(&self, addr: SocketAddr, name: &str) -> ProbeStart {
        let key = (addr, name.to_owned());
        if let Some(known) = self.results.get(&key) {
            return ProbeStart::Known(known);
        }
        let names = self.names.get_with(addr, Arc::default);
        let Ok(mut names) = names.lock() else {
            return ProbeStart::Refused("budget unavailable");
        };
        if !names.contains(name) && names.len() >= MAX_NAMES_PER_ADDRESS {
            return ProbeStart::Refused("this address's probe budget is spent");
        }
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            return ProbeStart::Refused("enough probes are running");
        };
        names.insert(name.to_owned());
        self.results.insert(key, None);
        ProbeStart::Start(permit)
    }

    /// Keeps a probe's result (`None` when it failed) for the TTL.
    pub fn finish(&self, addr: SocketAddr, name: &str, result: Option<Arc<ChainReport>>) {
        self.results.insert((addr, name.to_owned()), result);
    }
}

/// Bytes of the server's first flight examined before giving up.
pub const MAX_FLIGHT: usize = 64 * 1024;

/// What the server's first flight showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flight {
    /// A TLS 1.2 certificate chain, leaf first.
    Chain(Vec<CertificateDer<'static>>),
    /// TLS 1.3: certificates are encrypted; an active probe is needed.
    Tls13,
    /// Not TLS, or not parsable within the bound.
    Unknown,
}

/// The passive parser of a server's first flight.
#[derive(Debug, Default)]
pub struct ServerFlight {
    records: Vec<u8>,
    handshake: Vec<u8>,
    seen: usize,
    result: Option<Flight>,
}

impl ServerFlight {
    /// A parser waiting for bytes.
    pub fn new() -> ServerFlight {
        ServerFlight::default()
    }

    /// The result, once known.
    pub fn result(&self) -> Option<&Flight> {
        self.result.as_ref()
    }

    /// Feeds relayed bytes; returns the result once it is known.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<&Flight> {
        if self.result.is_some() {
            return self.result.as_ref();
        }
        self.seen += bytes.len();
        let room = MAX_FLIGHT.saturating_sub(self.records.len());
        self.records.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.result = self.parse();
        if self.result.is_none() && self.seen >= MAX_FLIGHT {
            self.result = Some(Flight::Unknown);
        }
        self.result.as_ref()
    }

    fn parse(&mut self) -> Option<Flight> {
        loop {
            if self.records.len() < 5 {
                return None;
            }
            let (kind, major) = (self.records[0], self.records[1]);
            let len = u16::from_be_bytes([self.records[3], self.records[4]]) as usize;
            if !(20..=23).contains(&kind) || major != 3 || len > 18 * 1024 {
                return Some(Flight::Unknown);
            }
            if kind != 22 {
                // ChangeCipherSpec, alert or data before a Certificate: nothing to see.
                return Some(Flight::Unknown);
            }
            if self.records.len() < 5 + len {
                return None;
            }
            let fragment: Vec<u8> = self.records.drain(..5 + len).skip(5).collect();
            self.handshake.extend_from_slice(&fragment);
            if let Some(result) = self.messages() {
                return Some(result);
            }
        }
    }

    /// Handles complete handshake messages.
    fn messages(&mut self) -> Option<Flight> {
        loop {
            if self.handshake.len() < 4 {
                return None;
            }
            let kind = self.handshake[0];
            let len = u32::from_be_bytes([0, self.handshake[1], self.handshake[2], self.handshake[3]]) as usize;
            if len > MAX_FLIGHT {
                return Some(Flight::Unknown);
            }
            if self.handshake.len() < 4 + len {
                return None;
            }
            let body: Vec<u8> = self.handshake.drain(..4 + len).skip(4).collect();
            match kind {
                2 if server_hello_is_tls13(&body) => return Some(Flight::Tls13),
                11 => return Some(certificates(&body).map_or(Flight::Unknown, Flight::Chain)),
                _ => {}
            }
        }
    }
}

/// Reads a big-endian length of `n` bytes at `*at`.
fn take_len(b: &[u8], at: &mut usize, n: usize) -> Option<usize> {
    let bytes = b.get(*at..*at + n)?;
    *at += n;
    Some(bytes.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize))
}

fn server_hello_is_tls13(body: &[u8]) -> bool {
    let mut at = 2 + 32;
    let Some(sid) = take_len(body, &mut at, 1) else {
        return false;
    };
    at += sid + 2 + 1;
    let Some(ext_len) = take_len(body, &mut at, 2) else {
        return false;
    };
    let end = (at + ext_len).min(body.len());
    while at + 4 <= end {
        let (Some(kind), Some(len)) = (take_len(body, &mut at, 2), take_len(body, &mut at, 2)) else {
            return false;
        };
        if kind == 43 && len == 2 {
            return body.get(at..at + 2) == Some(&[3, 4]);
        }
        at += len;
    }
    false
}

/// The TLS 1.2 Certificate message: u24 list length, then u24-prefixed DER.
fn certificates(body: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let mut at = 0;
    let total = take_len(body, &mut at, 3)?;
    let end = at.checked_add(total)?;
    if end > body.len() {
        return None;
    }
    let mut chain = Vec::new();
    while at < end {
        let len = take_len(body, &mut at, 3)?;
        let der = body.get(at..at + len)?;
        chain.push(CertificateDer::from(der.to_vec()));
        at += len;
    }
    (!chain.is_empty()).then_some(chain)
}

/// The SNI in a client's first bytes (a ClientHello), if there is one.
pub fn client_sni(first_bytes: &[u8]) -> Option<String> {
    match client_hello(first_bytes) {
        Hello::Whole(sni) => sni,
        Hello::Partial | Hello::NotTls => None,
    }
}

/// What a client's first bytes hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A whole ClientHello, and the name it asks for, if any.
    Whole(Option<String>),
    /// The start of one: more bytes are needed.
    Partial,
    /// Not a TLS ClientHello.
    NotTls,
}

/// Reads a client's first bytes as a TLS ClientHello.
pub fn client_hello(first_bytes: &[u8]) -> Hello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = first_bytes;
    while !reader.is_empty() {
        match acceptor.read_tls(&mut reader) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Whole(accepted.client_hello().server_name().map(str::to_owned)),
        Ok(None) => Hello::Partial,
        Err(_) => Hello::NotTls,
    }
}

/// Accepts any certificate chain: the probe only records what the server
/// presents and judges it separately with [`crate::tls::chain::analyze`].
/// Handshake signatures are still checked, so the chain is the server's own.
#[derive(Debug)]
struct DangerAcceptAnyChain(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One handshake over `stream` with `sni`, returning the chain presented.
/// Session resumption is off, so the server always sends its chain.
pub async fn handshake<S>(stream: S, sni: &str) -> Result<Vec<CertificateDer<'static>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyChain(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| format!("'{sni}' is not a server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake failed: {}", super::failure::describe(&e)))?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    if chain.is_empty() {
        return Err("the server sent no certificates".into());
    }
    Ok(chain)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The report on a self-signed leaf for `host`.
    fn untrusted_report(host: &str) -> ChainReport {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut public = rustls::RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let verifiers = crate::tls::chain::Verifiers::new(public.into(), crate::tls::anchors::Roots::empty()).unwrap();
        crate::tls::chain::analyze(&verifiers, &[cert.der().clone()], Some(host)).unwrap()
    }

    /// A real ClientHello for `name` (a host name, or an address: no SNI).
    pub(crate) fn hello_for(name: &str) -> Vec<u8> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();
        hello
    }

    #[test]
    fn a_client_hello_is_whole_partial_or_not_one() {
        let hello = hello_for("proxy.golang.org");
        assert_eq!(client_hello(&hello), Hello::Whole(Some("proxy.golang.org".into())));
        assert_eq!(client_hello(&hello[..hello.len() - 1]), Hello::Partial);
        assert_eq!(client_hello(&hello[..3]), Hello::Partial);
        assert_eq!(client_hello(&hello_for("10.0.0.1")), Hello::Whole(None));
        assert_eq!(client_hello(b"SSH-2.0-OpenSSH_9.6\r\n"), Hello::NotTls);
        // What follows a whole ClientHello (the client's ChangeCipherSpec)
        // is never read as one.
        let mut then = hello.clone();
        then.extend_from_slice(&record(20, &[1]));
        assert_eq!(client_hello(&then), Hello::Whole(Some("proxy.golang.org".into())));
        assert_eq!(client_sni(&hello), Some("proxy.golang.org".into()));
    }

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    fn cert_message(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in certs {
            list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(c);
        }
        let mut body = (list.len() as u32).to_be_bytes()[1..].to_vec();
        body.extend_from_slice(&list);
        message(11, &body)
    }

    fn server_hello(tls13: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let ext: Vec<u8> = if tls13 {
            vec![0, 43, 0, 2, 3, 4]
        } else {
            vec![0xff, 1, 0, 1, 0]
        };
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        message(2, &body)
    }

    #[test]
    fn a_tls12_certificate_message_is_found_across_split_records_and_writes() {
        let mut flight = server_hello(false);
        flight.extend(cert_message(&[b"leaf-der", b"intermediate-der"]));
        // One handshake stream split over two records, fed a byte at a time.
        let (a, b) = flight.split_at(30);
        let mut bytes = record(22, a);
        bytes.extend(record(22, b));
        let mut p = ServerFlight::new();
        let mut result = None;
        for byte in &bytes {
            if let Some(r) = p.feed(std::slice::from_ref(byte)) {
                result = Some(r.clone());
                break;
            }
        }
        let Some(Flight::Chain(chain)) = result else {
            panic!("no chain: {result:?}")
        };
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), b"leaf-der");
    }

    #[test]
    fn tls13_and_garbage_are_recognised() {
        let mut p = ServerFlight::new();
        assert_eq!(p.feed(&record(22, &server_hello(true))), Some(&Flight::Tls13));
        let mut p = ServerFlight::new();
        assert_eq!(p.feed(b"HTTP/1.1 200 OK\r\n\r\n"), Some(&Flight::Unknown));
        let mut p = ServerFlight::new();
        assert_eq!(
            p.feed(&[22, 3, 3, 0xff, 0xff]),
            Some(&Flight::Unknown),
            "an oversized record is refused"
        );
        let mut p = ServerFlight::new();
        let truncated = cert_message(&[b"x"]);
        assert_eq!(
            p.feed(&record(22, &truncated[..truncated.len() - 1])),
            None,
            "waits for more"
        );
    }

    /// Issue 9 item 4: probes are cached per address and name, limited per
    /// address, and limited in number at once.
    #[test]
    fn issue9_probes_are_bounded_per_address_and_overall() {
        let probes = Probes::new(Duration::from_secs(60));
        let a: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:443".parse().unwrap();
        let mut permits = Vec::new();
        for i in 0..MAX_NAMES_PER_ADDRESS {
            let name = format!("n{i}.test");
            match probes.begin(a, &name) {
                ProbeStart::Start(p) => permits.push(p),
                other => panic!("{name}: {other:?}"),
            }
            if permits.len() == MAX_CONCURRENT_PROBES {
                permits.clear();
            }
            probes.finish(a, &name, None);
        }
        assert!(matches!(probes.begin(a, "n0.test"), ProbeStart::Known(None)));
        assert!(matches!(probes.begin(a, "one-more.test"), ProbeStart::Refused(_)));
        // Another address has its own budget and its own results.
        let report = Arc::new(untrusted_report("n0.test"));
        assert!(matches!(probes.begin(b, "n0.test"), ProbeStart::Start(_)));
        probes.finish(b, "n0.test", Some(report.clone()));
        assert!(matches!(probes.begin(b, "n0.test"), ProbeStart::Known(Some(r)) if Arc::ptr_eq(&r, &report)));
        // At most MAX_CONCURRENT_PROBES run at once.
        permits.clear();
        for i in 0..MAX_CONCURRENT_PROBES {
            match probes.begin(b, &format!("c{i}.test")) {
                ProbeStart::Start(p) => permits.push(p),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(probes.begin(b, "late.test"), ProbeStart::Refused(_)));
        drop(permits);
        assert!(matches!(probes.begin(b, "late.test"), ProbeStart::Start(_)));
    }

    #[test]
    fn the_parser_is_bounded() {
        let mut p = ServerFlight::new();
        let big = message(11, &vec![0u8; 40_000]);
        for chunk in record(22, &big[..16_000]).chunks(1000) {
            p.feed(chunk);
        }
        for _ in 0..100 {
            p.feed(&[0u8; 1000]);
        }
        assert!(p.result().is_some());
        assert!(p.records.len() <= MAX_FLIGHT);
    }
}

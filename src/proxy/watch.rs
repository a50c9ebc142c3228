//! Watching a relayed tunnel's upstream chain without touching its bytes.
//!
//! Two taps see copies of relayed bytes after they were written on: one
//! collects the client's ClientHello (for the SNI), the other feeds the
//! passive TLS 1.2 Certificate parser. When the server speaks TLS 1.3 and
//! `tls.probe = "active"`, one probe handshake per host:port and
//! `tls.probe_ttl` gets the chain instead, in its own task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;

use crate::config::Probe;
use crate::core::host::Authority;
use crate::core::verdict::Judgement;
use crate::proxy::context::Context;
use crate::proxy::relay;
use crate::tls::chain::analyze;
use crate::tls::probe::{self, Flight, ServerFlight, client_sni};

/// What is known about a tunnel's upstream chain, filled in by the watcher.
pub type Seen = Arc<Mutex<Option<Judgement>>>;

/// The most client bytes kept while looking for a ClientHello.
const MAX_HELLO: usize = 16 * 1024;

/// A relay tap: sees bytes after they were written on, returns false once
/// it has seen enough.
type Tap = Box<dyn FnMut(&[u8]) -> bool + Send>;

/// The two taps of a tunnel and what they report to the watcher.
pub struct Taps {
    hello: Tap,
    flight: Tap,
    watch: Option<Watch>,
    /// The verdict, once the watcher reaches one.
    pub seen: Seen,
}

/// What the watcher receives from the taps.
pub struct Watch {
    client_hello: oneshot::Receiver<Vec<u8>>,
    flight: oneshot::Receiver<Flight>,
    seen: Seen,
}

impl Taps {
    /// Taps for a tunnel whose client already sent `early`.
    pub fn new(early: &[u8]) -> Taps {
        let (hello_tx, client_hello) = oneshot::channel();
        let mut hello_tx = Some(hello_tx);
        let mut bytes = early.to_vec();
        let mut hello: Tap = Box::new(move |more: &[u8]| {
            bytes.extend_from_slice(more);
            if client_sni(&bytes).is_some() || bytes.len() >= MAX_HELLO {
                if let Some(tx) = hello_tx.take() {
                    let _ = tx.send(std::mem::take(&mut bytes));
                }
                return false;
            }
            true
        });
        // Early bytes may already hold the whole ClientHello.
        if !early.is_empty() {
            hello(&[]);
        }
        let (flight_tx, flight) = oneshot::channel();
        let mut flight_tx = Some(flight_tx);
        let mut parser = ServerFlight::new();
        let flight_tap: Tap = Box::new(move |bytes: &[u8]| match parser.feed(bytes) {
            Some(result) => {
                if let Some(tx) = flight_tx.take() {
                    let _ = tx.send(result.clone());
                }
                false
            }
            None => true,
        });
        let seen = Seen::default();
        Taps {
            hello,
            flight: flight_tap,
            watch: Some(Watch {
                client_hello,
                flight,
                seen: seen.clone(),
            }),
            seen,
        }
    }

    /// The watcher's side; taken once.
    pub fn take_watch(&mut self) -> Option<Watch> {
        self.watch.take()
    }

    /// The taps, as the relay takes them.
    pub fn relay_taps(&mut self) -> relay::Taps<'_> {
        relay::Taps {
            up: Some(self.hello.as_mut()),
            down: Some(self.flight.as_mut()),
        }
    }
}

/// Judges a relayed tunnel's upstream chain: from the server's TLS 1.2
/// Certificate message when there is one, else (TLS 1.3, `probe =
/// "active"`) from one probe handshake per host:port and TTL.
pub async fn watch(ctx: Arc<Context>, dest: Authority, addr: SocketAddr, watch: Option<Watch>) {
    let Some(mut watch) = watch else { return };
    let Ok(flight) = (&mut watch.flight).await else { return };
    let sni = watch.client_hello.try_recv().ok().and_then(|bytes| client_sni(&bytes));
    let host = sni.unwrap_or_else(|| dest.host.to_string());
    match flight {
        Flight::Chain(chain) => {
            judge(&ctx, &chain, &host, &watch.seen);
        }
        Flight::Tls13 if ctx.config.tls.probe == Probe::Active => active_probe(&ctx, &host, &dest, addr, watch.seen),
        _ => {}
    }
}

/// Analyzes a chain for `host`, records evidence, and notes the verdict.
fn judge(ctx: &Context, chain: &[CertificateDer<'static>], host: &str, seen: &Seen) -> Option<Judgement> {
    let report = match analyze(ctx.verifier.verifiers(), chain, Some(host)) {
        Ok(report) => report,
        Err(e) => {
            tracing::debug!(host, error = %e, "cannot judge the tunnel's chain");
            return None;
        }
    };
    ctx.verifier.observe(&report, chain);
    let judgement = Judgement {
        verdict: report.verdict,
        vendor: report.vendor.clone(),
    };
    if let Ok(mut slot) = seen.lock() {
        *slot = Some(judgement.clone());
    }
    Some(judgement)
}

/// One probe handshake per host:port and `tls.probe_ttl`, in its own task,
/// so the tunnel is never delayed.
fn active_probe(ctx: &Arc<Context>, host: &str, dest: &Authority, addr: SocketAddr, seen: Seen) {
    let key = format!("{host}:{}", dest.port);
    if let Some(known) = ctx.probes.get(&key) {
        if let (Some(known), Ok(mut slot)) = (known, seen.lock()) {
            *slot = Some(known);
        }
        return;
    }
    ctx.probes.insert(key.clone(), None);
    let (ctx, host, dest) = (ctx.clone(), host.to_owned(), dest.clone());
    tokio::spawn(async move {
        let t = ctx.config.timeouts;
        let chain = async {
            let dialed = ctx
                .dialer
                .dial(&dest, Some(&[addr]), t.connect)
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(t.header, probe::handshake(dialed.stream, &host))
                .await
                .map_err(|_| "handshake timed out".to_owned())?
        };
        match chain.await {
            Ok(chain) => {
                let result = judge(&ctx, &chain, &host, &seen);
                ctx.probes.insert(key, result);
            }
            Err(e) => tracing::debug!(host = %host, addr = %addr, error = %e, "active probe failed"),
        }
    });
}

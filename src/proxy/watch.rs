//! Watching a relayed tunnel's upstream chain without touching its bytes.
//!
//! Two taps see copies of relayed bytes after they were written on: one
//! collects the client's ClientHello (for the SNI), the other feeds the
//! passive TLS 1.2 Certificate parser. When the server speaks TLS 1.3 and
//! `tls.probe = "active"`, one probe handshake per address, name and
//! `tls.probe_ttl` gets the chain instead, in the watcher's own task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::{OnInterception, Probe};
use crate::core::error::Error;
use crate::core::escape::escape;
use crate::core::host::{Authority, Host};
use crate::core::timer;
use crate::core::verdict::{Judgement, Verdict};
use crate::policy::parent::Via;
use crate::proxy::context::Context;
use crate::proxy::relay;
use crate::tls::chain::{ChainReport, analyze};
use crate::tls::evidence::Sighted;
use crate::tls::probe::{self, Flight, ProbeStart, ServerFlight, client_sni};
use crate::tls::verifier::Refusal;

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
        // Read until the ClientHello is whole (with or without a name), or
        // is not one; never again after: the client's later records (its
        // ChangeCipherSpec) are not a ClientHello, and rustls warns of each.
        let mut hello: Tap = Box::new(move |more: &[u8]| {
            if hello_tx.is_none() {
                return false;
            }
            bytes.extend_from_slice(more);
            if probe::client_hello(&bytes) == probe::Hello::Partial && bytes.len() < MAX_HELLO {
                return true;
            }
            if let Some(tx) = hello_tx.take() {
                let _ = tx.send(std::mem::take(&mut bytes));
            }
            false
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
/// "active"`) from one probe handshake per address, name and TTL, run here
/// in the watcher's own task. The chain is judged for the name the client
/// sent (its SNI) and recorded against the destination modgate connected
/// to, so a tunnel to one host that borrows another's name labels only
/// the host it went to.
///
/// A chain the policy refuses ([`refuses`]) closes the tunnel at once
/// through `cut` (the tunnel says so, when it was still open): untrusted
/// always, intercepted under
/// `tls.on_interception = "block"`. Probes go the way the rule's `via`
/// says: through `[parent]` or direct.
pub async fn watch(
    ctx: Arc<Context>,
    dest: Authority,
    addr: SocketAddr,
    via: Via,
    watch: Option<Watch>,
    cut: CancellationToken,
) {
    let Some(mut watch) = watch else { return };
    let seen = watch.seen.clone();
    observe_tunnel(&ctx, &dest, addr, via, &mut watch).await;
    let judged = seen.lock().ok().and_then(|s| s.clone());
    if judged.is_some_and(|j| refuses(&ctx, &j)) {
        cut.cancel();
    }
}

/// Whether the policy refuses a chain with this verdict: untrusted chains
/// always fail; intercepted ones fail under `on_interception = "block"`.
pub fn refuses(ctx: &Context, judgement: &Judgement) -> bool {
    match judgement.verdict {
        Verdict::Untrusted => true,
        Verdict::Intercepted => ctx.config.tls.on_interception == OnInterception::Block,
        Verdict::Public => false,
    }
}

/// Under `on_interception = "block"` the verdict comes before the tunnel:
/// one probe handshake with the CONNECT host's name, reused for
/// `tls.probe_ttl`, before `200 Connection established`. A chain the policy
/// refuses is the CONNECT's refusal, with the same line an intercepted
/// connection of modgate's own would get. A server that does not speak TLS
/// cannot be judged, and is let through. The probe goes the way the tunnel
/// will (`via`).
pub async fn preflight(ctx: &Context, dest: &Authority, addr: SocketAddr, via: Via) -> Result<(), Error> {
    if ctx.config.tls.probe == Probe::Off {
        return Ok(());
    }
    let name = dest.host.to_string().trim_matches(['[', ']']).to_owned();
    let refused = |judgement: &Judgement, refusal: String| Error::Chain {
        target: dest.https_url(),
        refusal,
        by_policy: judgement.verdict == Verdict::Intercepted,
        verdict: judgement.verdict,
        vendor: judgement.vendor.clone().unwrap_or_else(|| "unknown".into()),
    };
    let sighted = Sighted::at(&name, &name, Some(addr));
    let permit = match ctx.probes.begin(addr, &name) {
        ProbeStart::Known(Some(report)) if refuses(ctx, &report.judgement()) => {
            // A CONNECT judged from the reused result is a sighting too.
            ctx.verifier.observe_again(&report, &sighted);
            let known = report.judgement();
            let refusal = format!(
                "presented a chain judged {} ({}) by an earlier probe: tls.on_interception = \"block\" refuses it",
                known.verdict,
                known.vendor.as_deref().unwrap_or("unknown")
            );
            return Err(refused(&known, refusal));
        }
        ProbeStart::Known(_) | ProbeStart::Refused(_) => return Ok(()),
        ProbeStart::Start(permit) => permit,
    };
    let t = ctx.config.timeouts;
    let chain = async {
        let dialed = ctx
            .dialer_for(via)
            .dial(dest, Some(&[addr]), t.connect)
            .await
            .map_err(|e| e.to_string())?;
        timer::timeout(t.header, probe::handshake(dialed.stream, &name))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
    };
    let chain = match chain.await {
        Ok(chain) => chain,
        Err(e) => {
            tracing::debug!(host = %escape(&name), addr = %addr, error = %escape(&e), "preflight probe failed; not judged");
            ctx.probes.finish(addr, &name, None);
            return Ok(());
        }
    };
    let report = match analyze(ctx.verifier.verifiers(), &chain, Some(&name)) {
        Ok(report) => report,
        Err(_) => {
            ctx.probes.finish(addr, &name, None);
            return Ok(());
        }
    };
    let saved = ctx.verifier.observe(&report, &chain, &sighted);
    let report = Arc::new(report);
    let judgement = report.judgement();
    ctx.probes.finish(addr, &name, Some(report.clone()));
    drop(permit);
    if !refuses(ctx, &judgement) {
        return Ok(());
    }
    let refusal = Refusal {
        report,
        saved,
        by_policy: judgement.verdict == Verdict::Intercepted,
    };
    Err(refused(&judgement, refusal.to_string()))
}

/// The verdict on the tunnel's chain, noted in its `seen`.
async fn observe_tunnel(ctx: &Arc<Context>, dest: &Authority, addr: SocketAddr, via: Via, watch: &mut Watch) {
    let Ok(flight) = (&mut watch.flight).await else { return };
    let sni = watch.client_hello.try_recv().ok().and_then(|bytes| client_sni(&bytes));
    let host = dest.host.to_string().trim_matches(['[', ']']).to_owned();
    // A client that named no host and went to an address checks the
    // certificate against that address itself: its chain is judged on
    // trust alone, since a server's default certificate naming something
    // else is no sign of interception.
    let named = sni.is_some() || !matches!(dest.host, Host::Ip(_));
    let name = sni.unwrap_or_else(|| host.clone());
    let sighted = Sighted::at(&host, &name, Some(addr));
    let judged = Judged { name: &name, named };
    match flight {
        Flight::Chain(chain) => {
            judge(ctx, &chain, judged, &sighted, &watch.seen);
        }
        Flight::Tls13 if ctx.config.tls.probe == Probe::Active => {
            active_probe(ctx, judged, &sighted, (dest, addr, via), &watch.seen).await
        }
        _ => {}
    }
}

/// The name a relayed tunnel's chain is judged for.
#[derive(Clone, Copy)]
struct Judged<'a> {
    /// The client's SNI, or the tunnel's host.
    name: &'a str,
    /// Whether the chain must be valid for `name`: not when the client
    /// named no host and went to an address.
    named: bool,
}

/// Analyzes a chain for `judged`, records evidence, and notes the verdict.
fn judge(
    ctx: &Context,
    chain: &[CertificateDer<'static>],
    judged: Judged<'_>,
    sighted: &Sighted,
    seen: &Seen,
) -> Option<Arc<ChainReport>> {
    let name = judged.name;
    let report = match analyze(ctx.verifier.verifiers(), chain, judged.named.then_some(name)) {
        Ok(report) => report,
        Err(e) => {
            tracing::debug!(host = %escape(name), error = %escape(&e), "cannot judge the tunnel's chain");
            return None;
        }
    };
    ctx.verifier.observe(&report, chain, sighted);
    note(seen, Some(report.judgement()));
    Some(Arc::new(report))
}

fn note(seen: &Seen, judgement: Option<Judgement>) {
    if let (Some(judgement), Ok(mut slot)) = (judgement, seen.lock()) {
        *slot = Some(judgement);
    }
}

/// One probe handshake to `addr` with `name`, unless one ran within
/// `tls.probe_ttl` (its result is reused, and the tunnel counted as a
/// sighting of its chain) or the probe bounds say no. It goes the way the
/// tunnel went: through the parent when the tunnel did.
async fn active_probe(
    ctx: &Context,
    judged: Judged<'_>,
    sighted: &Sighted,
    (dest, addr, via): (&Authority, SocketAddr, Via),
    seen: &Seen,
) {
    let name = judged.name;
    let permit = match ctx.probes.begin(addr, name) {
        ProbeStart::Known(known) => {
            if let Some(report) = &known {
                ctx.verifier.observe_again(report, sighted);
            }
            return note(seen, known.map(|report| report.judgement()));
        }
        ProbeStart::Refused(why) => {
            tracing::debug!(host = %escape(name), addr = %addr, why, "active probe skipped");
            return;
        }
        ProbeStart::Start(permit) => permit,
    };
    let t = ctx.config.timeouts;
    let chain = async {
        let dialed = ctx
            .dialer_for(via)
            .dial(dest, Some(&[addr]), t.connect)
            .await
            .map_err(|e| e.to_string())?;
        timer::timeout(t.header, probe::handshake(dialed.stream, name))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
    };
    let result = match chain.await {
        Ok(chain) => judge(ctx, &chain, judged, sighted, seen),
        Err(e) => {
            tracing::debug!(host = %escape(name), addr = %addr, error = %escape(&e), "active probe failed");
            None
        }
    };
    ctx.probes.finish(addr, name, result);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::probe::tests::hello_for;

    #[test]
    fn the_hello_tap_reads_one_whole_hello_and_nothing_after() {
        let change_cipher_spec = [20u8, 3, 3, 0, 1, 1];
        for name in ["proxy.golang.org", "10.0.0.1"] {
            let hello = hello_for(name);
            // Arriving in the relay, in two pieces.
            let mut taps = Taps::new(&[]);
            let mut watch = taps.take_watch().unwrap();
            assert!((taps.hello)(&hello[..10]), "{name}: more is wanted");
            assert!(!(taps.hello)(&hello[10..]), "{name}: whole");
            assert!(!(taps.hello)(&change_cipher_spec), "{name}: done for good");
            assert_eq!(watch.client_hello.try_recv().unwrap(), hello, "{name}");
            // Already read with the connection's first bytes (transparent).
            let mut taps = Taps::new(&hello);
            assert!(!(taps.hello)(&change_cipher_spec), "{name}: done for good");
        }
    }
}

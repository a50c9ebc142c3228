//! Reaching the destination: `[hosts]` overrides, DNS (with a short cache),
//! the `dst` check, and TCP connect within `timeouts.connect`.
//!
//! The `dst` check and the connect use the same address list, so a name that
//! resolves differently a second time (DNS rebinding) cannot reach an
//! address that was not checked.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{HostOverrides, fmt_duration};
use crate::error::Error;
use crate::policy::{self, Decision, Facts, Rule};
use crate::request::{Authority, Host};
use crate::verdict::{Judged, VerdictVerifier};

/// How long a DNS answer is reused. getaddrinfo does not report TTLs; this
/// keeps lookups off the per-request path without holding stale answers long.
const DNS_CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries kept before the cache is pruned.
const DNS_CACHE_MAX: usize = 4096;

/// A cached DNS answer: when it was looked up, and the addresses.
type Answer = (Instant, Arc<[IpAddr]>);

/// Name resolution: `[hosts]` first, then the system resolver.
#[derive(Debug)]
pub struct Resolver {
    overrides: HostOverrides,
    cache: Mutex<HashMap<String, Answer>>,
}

impl Resolver {
    /// A resolver with the given `[hosts]` table.
    pub fn new(overrides: HostOverrides) -> Resolver {
        Resolver {
            overrides,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The socket addresses for `dest`, in the order to try them.
    pub async fn resolve(&self, dest: &Authority) -> Result<Vec<SocketAddr>, Error> {
        let name = match &dest.host {
            Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, dest.port)]),
            Host::Name(name) => name,
        };
        if let Some(fixed) = self.overrides.get(name) {
            return Ok(fixed.iter().map(|a| a.with_port(dest.port)).collect());
        }
        if let Some(ips) = self.cached(name) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, dest.port)).collect());
        }
        let lookup = tokio::net::lookup_host((name.as_str(), dest.port)).await;
        let addrs: Vec<SocketAddr> = lookup
            .map_err(|e| Error::Resolve {
                host: name.clone(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Resolve {
                host: name.clone(),
                reason: "no addresses".into(),
            });
        }
        self.remember(name, addrs.iter().map(SocketAddr::ip).collect());
        Ok(addrs)
    }

    fn cached(&self, name: &str) -> Option<Arc<[IpAddr]>> {
        let cache = self.cache.lock().ok()?;
        let (at, ips) = cache.get(name)?;
        (at.elapsed() < DNS_CACHE_TTL).then(|| ips.clone())
    }

    fn remember(&self, name: &str, ips: Arc<[IpAddr]>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= DNS_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < DNS_CACHE_TTL);
            if cache.len() >= DNS_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(name.to_owned(), (Instant::now(), ips));
    }
}

/// The policy's answer for a destination, with the addresses it checked.
pub struct Checked<'a> {
    /// The rule's decision.
    pub decision: Decision<'a>,
    /// The addresses every rule was checked against, when a rule depended on
    /// them. Connect only to these.
    pub addrs: Option<Vec<SocketAddr>>,
}

/// Decides for `facts`, resolving the destination only when a rule depends
/// on its address (a `dst` field), and then deciding for every address.
pub async fn check<'a>(
    rules: &'a [Rule],
    resolver: &Resolver,
    facts: Facts<'_>,
    timeout: Duration,
) -> Result<Checked<'a>, Error> {
    let decision = policy::decide(rules, &facts);
    let (Decision::NeedsAddress, Some(dest)) = (decision, facts.dest) else {
        return Ok(Checked { decision, addrs: None });
    };
    let addrs = tokio::time::timeout(timeout, resolver.resolve(dest))
        .await
        .map_err(|_| Error::Resolve {
            host: dest.host.to_string(),
            reason: format!("no answer within {}", fmt_duration(timeout)),
        })??;
    let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
    let decision = policy::decide_resolved(rules, &facts, &ips);
    Ok(Checked {
        decision,
        addrs: Some(addrs),
    })
}

/// Connects to the first of `addrs` that accepts, within `timeout` in all.
pub async fn connect(
    target: &Authority,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), Error> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for &addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, addr));
            }
            Ok(Err(e)) => {
                last = Some(Error::Connect {
                    target: target.to_string(),
                    addr,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(Error::ConnectTimeout {
                    target: target.to_string(),
                    addr,
                    after: timeout,
                });
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Resolve {
        host: target.host.to_string(),
        reason: "no addresses".into(),
    }))
}

/// Resolves and connects to `dest` within `timeout`.
pub async fn dial(resolver: &Resolver, dest: &Authority, timeout: Duration) -> Result<(TcpStream, SocketAddr), Error> {
    let deadline = Instant::now() + timeout;
    let addrs = tokio::time::timeout_at(deadline, resolver.resolve(dest))
        .await
        .map_err(|_| Error::Resolve {
            host: dest.host.to_string(),
            reason: format!("no answer within {}", fmt_duration(timeout)),
        })??;
    connect(dest, &addrs, deadline.saturating_duration_since(Instant::now())).await
}

/// Where a pooled response came from, put into the response's extensions
/// for the access log.
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    /// The upstream's address.
    pub addr: SocketAddr,
    /// The verdict on its chain and the vendor, for TLS upstreams.
    pub verdict: Option<Judged>,
}

/// A pooled upstream connection: plain TCP, or TLS over TCP.
pub enum PooledStream {
    /// `http://` origins and mirrors.
    Plain(TokioIo<TcpStream>, SocketAddr),
    /// `https://` origins and mirrors.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>, UpstreamInfo),
}

impl Connection for PooledStream {
    fn connected(&self) -> Connected {
        match self {
            PooledStream::Plain(_, peer) => Connected::new().extra(UpstreamInfo {
                addr: *peer,
                verdict: None,
            }),
            PooledStream::Tls(io, info) => {
                let h2 = io.inner().get_ref().1.alpn_protocol() == Some(b"h2");
                let connected = Connected::new().extra(info.clone());
                if h2 { connected.negotiated_h2() } else { connected }
            }
        }
    }
}

impl hyper::rt::Read for PooledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, _) => Pin::new(io).poll_read(cx, buf),
            PooledStream::Tls(io, _) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for PooledStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PooledStream::Plain(io, _) => Pin::new(io).poll_write(cx, buf),
            PooledStream::Tls(io, _) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, _) => Pin::new(io).poll_flush(cx),
            PooledStream::Tls(io, _) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            PooledStream::Plain(io, _) => Pin::new(io).poll_shutdown(cx),
            PooledStream::Tls(io, _) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            PooledStream::Plain(io, _) => io.is_write_vectored(),
            PooledStream::Tls(io, _) => io.is_write_vectored(),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            PooledStream::Plain(io, _) => Pin::new(io).poll_write_vectored(cx, bufs),
            PooledStream::Tls(io, _) => Pin::new(io.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// The connector behind the pooled client: resolves through [`Resolver`],
/// connects within the connect timeout, and for `https://` runs a verified
/// TLS handshake (offering h2 and http/1.1) within the same timeout.
/// Forwarded requests whose rule checked addresses arrive with an IP literal
/// in the URI, so the connector connects exactly there.
#[derive(Clone)]
pub struct Connector {
    resolver: Arc<Resolver>,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    verifier: Arc<VerdictVerifier>,
}

impl Connector {
    /// A connector using `resolver`, the connect `timeout`, and `tls` (whose
    /// chains go through `verifier`) for `https://` upstreams.
    pub fn new(
        resolver: Arc<Resolver>,
        timeout: Duration,
        tls: Arc<rustls::ClientConfig>,
        verifier: Arc<VerdictVerifier>,
    ) -> Connector {
        Connector {
            resolver,
            timeout,
            tls,
            verifier,
        }
    }

    async fn open(self, uri: Uri) -> Result<PooledStream, Error> {
        let https = uri.scheme_str() == Some("https");
        let host = Host::parse(uri.host().unwrap_or_default())
            .map_err(|e| Error::Internal(format!("pooled connect to '{uri}': {e}")))?;
        let dest = Authority {
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
        };
        let deadline = Instant::now() + self.timeout;
        let (stream, peer) = dial(&self.resolver, &dest, self.timeout).await?;
        if !https {
            return Ok(PooledStream::Plain(TokioIo::new(stream), peer));
        }
        let name = match &dest.host {
            Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
                .map_err(|e| Error::Internal(format!("server name {n}: {e}")))?,
            Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = tokio::time::timeout_at(deadline, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectTimeout {
                target: dest.to_string(),
                addr: peer,
                after: self.timeout,
            })?
            .map_err(|e| tls_error(&https_url(&dest), &e))?;
        let host = dest.host.to_string();
        let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let verdict = leaf.and_then(|leaf| self.verifier.known(leaf, &host));
        Ok(PooledStream::Tls(
            Box::new(TokioIo::new(tls)),
            UpstreamInfo { addr: peer, verdict },
        ))
    }
}

/// `https://host`, with the port only when it is not 443.
fn https_url(dest: &Authority) -> String {
    if dest.port == 443 {
        format!("https://{}", dest.host)
    } else {
        format!("https://{dest}")
    }
}

/// A failed handshake as modgate's error: the verifier's refusal (naming
/// the issuer, the product and the fix) when it refused the chain.
pub fn tls_error(target: &str, e: &std::io::Error) -> Error {
    match crate::verdict::refusal_in(e) {
        Some(refusal) => Error::Chain {
            target: target.to_owned(),
            refusal: refusal.to_string(),
            by_policy: refusal.by_policy,
            verdict: refusal.report.verdict,
            vendor: refusal.report.vendor.clone().unwrap_or_else(|| "unknown".into()),
        },
        None => Error::Tls {
            target: target.to_owned(),
            reason: crate::error::chain(e),
        },
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = PooledStream;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<PooledStream, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().open(uri))
    }
}

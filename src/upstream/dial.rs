//! Opening a TCP connection towards a destination: the [`Dialer`] seam.
//!
//! [`DirectDialer`] connects itself, only to addresses the policy checked
//! when it checked any. [`ProxyDialer`] asks an HTTP proxy for a CONNECT
//! tunnel (`modgate inspect --proxy`); a corporate parent proxy is another
//! dialer behind the same trait. Tunnels, the pooled client, probes and
//! `inspect` all dial through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::core::error::Error;
use crate::core::host::Authority;
use crate::upstream::resolve::Resolver;

/// A connection towards a destination.
#[derive(Debug)]
pub struct Dialed {
    /// The stream; bytes written go to the destination.
    pub stream: TcpStream,
    /// The address the TCP connection went to (the destination's, or a
    /// proxy's).
    pub peer: SocketAddr,
}

/// Opens connections towards destinations.
pub trait Dialer: Send + Sync {
    /// A connection towards `dest` within `timeout`. `checked`, when the
    /// policy resolved `dest` to check its addresses, is that list: a
    /// dialer that connects itself connects only to one of those.
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>>;
}

/// Connects straight to the destination.
#[derive(Debug, Clone)]
pub struct DirectDialer {
    resolver: Arc<Resolver>,
}

impl DirectDialer {
    /// A dialer resolving names through `resolver`.
    pub fn new(resolver: Arc<Resolver>) -> DirectDialer {
        DirectDialer { resolver }
    }
}

impl Dialer for DirectDialer {
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let addrs = match checked {
                Some(addrs) => addrs.to_vec(),
                None => self.resolver.resolve_within(dest, timeout).await?,
            };
            connect(dest, &addrs, deadline, timeout).await
        })
    }
}

/// How long one connection attempt runs alone before the next address is
/// tried beside it (RFC 8305's Connection Attempt Delay).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to `addrs` with Happy Eyeballs (RFC 8305): the first address
/// at once, and each next one when the previous has not connected within
/// [`ATTEMPT_DELAY`] or has failed; the first to connect wins and the rest
/// are dropped. A black-holed address costs one delay, not the whole
/// `timeout`.
async fn connect(
    target: &Authority,
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<Dialed, Error> {
    let Some(&first) = addrs.first() else {
        return Err(Error::Resolve {
            host: target.host.to_string(),
            reason: "no addresses".into(),
        });
    };
    let mut attempts = tokio::task::JoinSet::new();
    let mut pending = addrs.iter().copied();
    let mut last_error = None;
    let mut last_addr = first;
    loop {
        if let Some(addr) = pending.next() {
            last_addr = addr;
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
        if attempts.is_empty() {
            break;
        }
        let next_try = Instant::now() + ATTEMPT_DELAY;
        let wake = if pending.len() > 0 {
            next_try.min(deadline)
        } else {
            deadline
        };
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok((addr, Ok(stream)))) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Dialed { stream, peer: addr });
                }
                Some(Ok((addr, Err(e)))) => {
                    last_error = Some(Error::Connect {
                        target: target.to_string(),
                        addr,
                        reason: e.to_string(),
                    });
                    // A failure starts the next attempt at once.
                    continue;
                }
                Some(Err(e)) => last_error = Some(Error::Internal(format!("connect task: {e}"))),
                None => break,
            },
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(Error::ConnectTimeout {
                        target: target.to_string(),
                        addr: last_addr,
                        after: timeout,
                    });
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::Resolve {
        host: target.host.to_string(),
        reason: "no addresses".into(),
    }))
}

/// Reaches destinations through an HTTP proxy's CONNECT.
#[derive(Debug, Clone)]
pub struct ProxyDialer {
    /// The proxy as the user wrote it, for messages.
    url: String,
    proxy: Authority,
    direct: DirectDialer,
}

/// The longest CONNECT response head read from a proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

impl ProxyDialer {
    /// A dialer through the proxy at `url` (`http://host:port`), whose own
    /// name is resolved by `resolver`.
    pub fn new(url: &str, resolver: Arc<Resolver>) -> Result<ProxyDialer, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad proxy URL '{url}': {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("bad proxy URL '{url}': expected http://host:port"));
        }
        let host = uri.host().ok_or_else(|| format!("bad proxy URL '{url}': no host"))?;
        let proxy = Authority::parse_connect(&format!("{host}:{}", uri.port_u16().unwrap_or(3128)))
            .map_err(|e| format!("bad proxy URL '{url}': {e}"))?;
        Ok(ProxyDialer {
            url: url.to_owned(),
            proxy,
            direct: DirectDialer::new(resolver),
        })
    }

    async fn tunnel(&self, dest: &Authority, timeout: Duration) -> Result<Dialed, Error> {
        let deadline = Instant::now() + timeout;
        let failed = |reason: String| Error::Upstream {
            target: format!("proxy {}", self.url),
            reason,
        };
        let mut dialed = self.direct.dial(&self.proxy, None, timeout).await?;
        let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
        dialed
            .stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| failed(e.to_string()))?;
        // Read the response head a byte at a time, so no byte of the tunnel
        // that follows it is consumed here.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout_at(deadline, dialed.stream.read(&mut byte))
                .await
                .map_err(|_| failed(format!("no answer to CONNECT {dest}")))?
                .map_err(|e| failed(e.to_string()))?;
            if n == 0 || head.len() > MAX_CONNECT_RESPONSE {
                return Err(failed(format!("closed the connection during CONNECT {dest}")));
            }
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head);
        let status = text.lines().next().unwrap_or_default().trim().to_owned();
        if !status
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('2'))
        {
            return Err(failed(format!("refused CONNECT {dest}: {status}")));
        }
        Ok(dialed)
    }
}

impl Dialer for ProxyDialer {
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        _checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        Box::pin(self.tunnel(dest, timeout))
    }
}

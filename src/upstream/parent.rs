//! Reaching upstreams through the corporate parent proxy (`[parent]`, or
//! `inspect --proxy`).
//!
//! A connection to a destination the parent serves is a CONNECT to the
//! parent, carrying its `Proxy-Authorization`:
//!
//! ```text
//! CONNECT proxy.golang.org:443 HTTP/1.1
//! Host: proxy.golang.org:443
//! Proxy-Authorization: Basic YWxpY2U6czNjcmV0
//! ```
//!
//! The name is sent, never an address: the policy resolved the name only
//! to check `dst` rules. A plain-HTTP request instead goes to the parent
//! itself, in absolute form. Destinations in `no_parent` are dialed
//! directly. Every failure of the parent is its own error, naming the
//! parent and, when it answered, its status line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::core::error::Error;
use crate::core::escape::escape;
use crate::core::host::{Authority, Host};
use crate::core::proxy_url::ProxyUrl;
use crate::core::timer;
use crate::policy::parent::{Leg, ParentRoute, Via};
use crate::upstream::dial::{Dialed, Dialer, DirectDialer};
use crate::upstream::own::{OwnListeners, is_local};

/// The longest CONNECT response head read from a parent.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;
/// How long a parent's answer that is not HTTP is read for, to quote it.
const QUOTE_WAIT: Duration = Duration::from_millis(200);

/// Dials through the parent proxies of a [`ParentRoute`], and directly to
/// the destinations it exempts.
#[derive(Debug, Clone)]
pub struct ParentDialer {
    route: ParentRoute,
    direct: DirectDialer,
}

impl ParentDialer {
    /// A dialer following `route`; `direct` reaches the parents and the
    /// exempt destinations.
    pub fn new(route: ParentRoute, direct: DirectDialer) -> ParentDialer {
        ParentDialer { route, direct }
    }

    /// Every connection through `parent` (`inspect --proxy`).
    pub fn through(parent: ProxyUrl, direct: DirectDialer) -> ParentDialer {
        let route = ParentRoute {
            https: Some(parent.clone()),
            http: Some(parent),
            ..ParentRoute::default()
        };
        ParentDialer::new(route, direct)
    }

    /// A TCP connection to the parent itself.
    async fn reach(&self, parent: &ProxyUrl, target: &Authority, timeout: Duration) -> Result<Dialed, Error> {
        let unreachable = |reason: String| Error::ParentUnreachable {
            parent: parent.to_string(),
            target: target.to_string(),
            reason,
        };
        match self.direct.dial(&parent.authority, None, timeout).await {
            Ok(mut dialed) => {
                dialed.parent = Some(parent.clone());
                Ok(dialed)
            }
            Err(Error::ConnectTimeout { addr, after, .. }) => Err(Error::ParentTimeout {
                parent: parent.to_string(),
                target: target.to_string(),
                doing: format!("connecting to it ({addr})"),
                after,
            }),
            Err(Error::Connect { addr, reason, .. }) => Err(unreachable(format!("{reason} ({addr})"))),
            Err(Error::Resolve { reason, .. }) => Err(unreachable(format!("cannot resolve its name: {reason}"))),
            Err(Error::ResolveTimeout { after, .. }) => Err(Error::ParentTimeout {
                parent: parent.to_string(),
                target: target.to_string(),
                doing: "resolving its name".into(),
                after,
            }),
            Err(other) => Err(unreachable(other.to_string())),
        }
    }

    /// A TCP connection to `parent`, for a request towards `dest` that
    /// does not lead back to modgate through it.
    async fn reach_for(&self, parent: &ProxyUrl, dest: &Authority, timeout: Duration) -> Result<Dialed, Error> {
        let dialed = self.reach(parent, dest, timeout).await?;
        if let Some(listener) = reached_through(self.direct.listeners(), dest, dialed.peer) {
            return Err(Error::Loop(format!(
                "{dest} through the parent {parent} is {listener}, modgate's own listener; a mirror, [hosts] entry or CONNECT target must name the real upstream, not modgate"
            )));
        }
        Ok(dialed)
    }

    /// `CONNECT dest` through `parent`, within `timeout` in all.
    async fn tunnel(&self, parent: &ProxyUrl, dest: &Authority, timeout: Duration) -> Result<Dialed, Error> {
        let deadline = Instant::now() + timeout;
        let mut dialed = self.reach_for(parent, dest, timeout).await?;
        let failed = |reason: String| Error::ParentFailed {
            parent: parent.to_string(),
            target: dest.to_string(),
            reason,
        };
        let lost = |e: std::io::Error| failed(format!("the connection failed during CONNECT: {e}"));
        // modgate's own `Via` entry: a parent that hands the CONNECT back
        // to modgate (a port forward, a load balancer, HTTPS_PROXY pointing
        // at modgate) makes it come back with it, refused after one round.
        let via = crate::core::via::sent(http::Version::HTTP_11);
        let via = via.to_str().unwrap_or("1.1 modgate");
        let mut request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\nVia: {via}\r\n");
        if let Some(credentials) = parent.proxy_authorization() {
            request.push_str(&format!("Proxy-Authorization: {credentials}\r\n"));
        }
        request.push_str("\r\n");
        dialed.stream.write_all(request.as_bytes()).await.map_err(lost)?;
        // Read the response head a byte at a time, so no byte of the tunnel
        // that follows it is consumed here.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
            let read = timer::timeout_at(deadline, dialed.stream.read(&mut byte)).await;
            let n = match read {
                Ok(n) => n.map_err(lost)?,
                Err(_) => {
                    return Err(Error::ParentTimeout {
                        parent: parent.to_string(),
                        target: dest.to_string(),
                        doing: format!("waiting for its answer to CONNECT {dest}"),
                        after: timeout,
                    });
                }
            };
            if n == 0 {
                return Err(failed(format!(
                    "it closed the connection instead of answering CONNECT {dest}"
                )));
            }
            head.push(byte[0]);
            if !is_http_start(&head) {
                // No tunnel follows an answer that is not HTTP: a little
                // more of it is read, so the error can quote it.
                let mut more = [0u8; 64];
                if let Ok(Ok(n)) = timer::timeout(QUOTE_WAIT, dialed.stream.read(&mut more)).await {
                    head.extend_from_slice(&more[..n]);
                }
                return Err(failed(format!(
                    "it answered CONNECT {dest} with something that is not HTTP, starting '{}'",
                    status_line(&head)
                )));
            }
            if head.len() > MAX_CONNECT_RESPONSE {
                return Err(failed(format!(
                    "its answer to CONNECT {dest} has a head over {} KiB",
                    MAX_CONNECT_RESPONSE / 1024
                )));
            }
        }
        let status_line = status_line(&head);
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if !code.starts_with('2') {
            return Err(Error::ParentRefused {
                parent: parent.to_string(),
                request: format!("CONNECT {dest}"),
                status: status_line.clone(),
                hint: refusal_hint(code, parent),
            });
        }
        Ok(dialed)
    }
}

/// The listener of modgate's that a parent reached at `parent` would
/// connect to for `dest`, when `dest` names an address outright: an IP
/// literal or `localhost`. A loopback address means the parent's own host,
/// so it is modgate only when the parent runs beside it. A name the parent
/// resolves cannot be checked here; a request that comes back that way
/// carries modgate's own `Via` and is refused when it arrives.
fn reached_through(listeners: &OwnListeners, dest: &Authority, parent: SocketAddr) -> Option<SocketAddr> {
    let addrs: Vec<IpAddr> = match &dest.host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
            } else {
                return None;
            }
        }
    };
    let parent_beside = parent.ip().is_loopback() || is_local(parent.ip());
    addrs
        .into_iter()
        .filter(|ip| parent_beside || !(ip.to_canonical().is_loopback() || ip.to_canonical().is_unspecified()))
        .find_map(|ip| listeners.reached_by(SocketAddr::new(ip, dest.port)))
}

/// Whether `head`, so far, can be the start of an HTTP/1.x status line
/// (`HTTP/1.1 200`): anything else is known not to be HTTP at its first
/// wrong byte, without waiting for a head that will not come.
fn is_http_start(head: &[u8]) -> bool {
    const START: &[u8] = b"HTTP/1.";
    let n = head.len().min(START.len());
    head[..n] == START[..n]
}

/// The first line of a response head, escaped (it came from the network).
fn status_line(head: &[u8]) -> String {
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(first);
    escape(text.trim()).into_owned()
}

/// What to do about a parent's refusal with status `code`.
pub fn refusal_hint(code: &str, parent: &ProxyUrl) -> String {
    match (code, parent.user()) {
        ("407", Some(user)) => format!("the parent did not accept the credentials of '{user}' in [parent] url"),
        ("407", None) => {
            "the parent wants credentials: put them in [parent] url (http://user:password@host:port)".into()
        }
        ("403", _) => "the parent's own policy refuses this destination".into(),
        ("508", _) => {
            "the parent led back to this modgate (a loop): [parent] url must name a proxy that does not send its requests to modgate".into()
        }
        _ => "the parent refused the request".into(),
    }
}

impl Dialer for ParentDialer {
    fn dial<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        Box::pin(async move {
            match self.route.leg(Via::Parent, dest, true) {
                Leg::Parent(parent) => self.tunnel(parent, dest, timeout).await,
                Leg::Direct(_) => self.direct.dial(dest, checked, timeout).await,
            }
        })
    }

    fn forward_proxy(&self, dest: &Authority) -> Option<&ProxyUrl> {
        match self.route.leg(Via::Parent, dest, false) {
            Leg::Parent(parent) => Some(parent),
            Leg::Direct(_) => None,
        }
    }

    fn dial_plain<'a>(
        &'a self,
        dest: &'a Authority,
        checked: Option<&'a [SocketAddr]>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Dialed, Error>> {
        Box::pin(async move {
            match self.forward_proxy(dest) {
                Some(parent) => self.reach_for(parent, dest, timeout).await,
                None => self.direct.dial(dest, checked, timeout).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_one_escaped_line() {
        assert_eq!(
            status_line(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"),
            "HTTP/1.1 407 Proxy Authentication Required"
        );
        assert_eq!(status_line(b"HTTP/1.1 403 \x1b[2J\r\n\r\n"), "HTTP/1.1 403 \\u{1b}[2J");
    }

    #[test]
    fn only_an_http_status_line_can_start_an_answer() {
        for ok in [&b"H"[..], b"HTTP/1.", b"HTTP/1.1 200 OK\r\n"] {
            assert!(is_http_start(ok), "{ok:?}");
        }
        for bad in [&b"<"[..], b"HTTP/2", b"\x16\x03\x01", b"SSH-2.0"] {
            assert!(!is_http_start(bad), "{bad:?}");
        }
    }

    #[test]
    fn hints_name_the_fix() {
        let with = ProxyUrl::parse("http://alice:x@p:1").unwrap();
        let without = ProxyUrl::parse("http://p:1").unwrap();
        assert!(refusal_hint("407", &with).contains("'alice'"));
        assert!(refusal_hint("407", &without).contains("http://user:password@host:port"));
        assert!(refusal_hint("403", &with).contains("own policy"));
        assert!(refusal_hint("508", &with).contains("a loop"));
    }
}

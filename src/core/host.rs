//! Where a request goes: [`Host`] and [`Authority`] as a client names them,
//! and the `[hosts]` table ([`HostOverrides`]) that pins names to addresses.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::core::error::Error;

/// A host as a client named it, normalised: lower case, no trailing dot,
/// IP literals parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host: a DNS name, an IPv4 literal, or an IPv6 literal with or
    /// without brackets.
    pub fn parse(s: &str) -> Result<Host, String> {
        // Errors show the text escaped: it may come from a peer or a config
        // value, and an error is one line.
        let shown = || crate::core::escape::escape(s);
        let bare = s.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if bare.len() != s.len() {
            return Err(format!("'{}' is not an IPv6 address", shown()));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if name.is_empty() {
            return Err("empty host name".into());
        }
        // `127.0.0.1.` is an address written as an absolute name.
        if let Ok(ip) = name.parse::<std::net::Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        // No top-level domain is numeric: a name ending in a number is an
        // IPv4 address in another spelling (`2130706433`, `127.1`,
        // `0x7f.1`), which resolvers disagree about. Refuse it.
        let last = name.rsplit('.').next().unwrap_or_default();
        let hex = last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!(
                "'{}' is not a host name (it ends in a number); write an IPv4 address as four decimal numbers, a.b.c.d",
                shown()
            ));
        }
        if name.len() > 253 {
            return Err(format!("host name '{}' is longer than 253 bytes", shown()));
        }
        for label in name.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(format!("'{}' is not a valid host name", shown()));
            }
        }
        Ok(Host::Name(name))
    }

    /// The IP address, when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }

    /// The host as its [`Display`](fmt::Display) writes it: a name is
    /// borrowed, an address formatted.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Host::Name(name) => Cow::Borrowed(name),
            Host::Ip(_) => Cow::Owned(self.to_string()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A destination: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// The host as the client named it.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

/// The port a URL of scheme https (`true`) or http leaves unwritten.
pub fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

impl Authority {
    /// Parses `host:port` as written after CONNECT. The port is required.
    pub fn parse_connect(s: &str) -> Result<Authority, Error> {
        let shown = || crate::core::escape::escape(s);
        if s.contains('/') {
            return Err(Error::BadRequest(format!(
                "CONNECT target '{}' is a URL or a path; CONNECT takes host:port",
                shown()
            )));
        }
        if s.contains('@') {
            return Err(Error::BadRequest(format!(
                "CONNECT target '{}' carries credentials; CONNECT takes host:port, and credentials for modgate go in Proxy-Authorization",
                shown()
            )));
        }
        if s.starts_with('[') && !s.contains("]:") {
            return Err(Error::BadRequest(format!(
                "CONNECT target '{}' is not [IPv6 address]:port; use [addr]:port",
                shown()
            )));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| Error::BadRequest(format!("CONNECT target '{}' has no port; use host:port", shown())))?;
        if host.contains(':') && !host.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(Error::BadRequest(format!(
                "CONNECT target '{}' has an IPv6 address without brackets; use [addr]:port",
                shown()
            )));
        }
        let port = parse_port(port)
            .ok_or_else(|| Error::BadRequest(format!("CONNECT target '{}' has a bad port", shown())))?;
        let host = Host::parse(host).map_err(|e| Error::BadRequest(format!("CONNECT target: {e}")))?;
        Ok(Authority { host, port })
    }
}

impl Authority {
    /// The host and port of a URI's authority (`host`, `host:port`,
    /// `[v6]:port`), with `default_port` when it names none. A port that is
    /// not 1-65535 is an error: `http::Uri` parses `host:99999` and reports
    /// no port, and the default in its place would send the request to
    /// another service.
    pub fn of_uri(authority: &http::uri::Authority, default_port: u16) -> Result<Authority, String> {
        let text = authority.as_str();
        let host = authority.host();
        let host_port = text.rsplit_once('@').map_or(text, |(_, rest)| rest);
        let port = match host_port.strip_prefix(host) {
            None | Some("") | Some(":") => default_port,
            Some(rest) => rest.strip_prefix(':').and_then(parse_port).ok_or_else(|| {
                format!(
                    "'{}' has a bad port; ports are 1-65535",
                    crate::core::escape::escape(text)
                )
            })?,
        };
        Ok(Authority {
            host: Host::parse(host)?,
            port,
        })
    }

    /// `https://host`, with the port only when it is not 443: the origin of
    /// an intercepted tunnel, or an upstream in messages.
    pub fn https_url(&self) -> String {
        if self.port == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{self}")
        }
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The `[hosts]` table: host name to fixed addresses, consulted before DNS
/// (like /etc/hosts or `curl --resolve`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOverrides(HashMap<String, Vec<OverrideAddr>>);

/// One address in a `[hosts]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideAddr {
    /// An address that keeps the port the client asked for.
    Ip(IpAddr),
    /// An address and port that replace both.
    Socket(SocketAddr),
}

impl OverrideAddr {
    /// The socket address to connect to for a request to `port`.
    pub fn with_port(&self, port: u16) -> SocketAddr {
        match *self {
            OverrideAddr::Ip(ip) => SocketAddr::new(ip, port),
            OverrideAddr::Socket(sa) => sa,
        }
    }
}

impl FromStr for OverrideAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(format!(
                    "bad address '{}': port 0 cannot be connected to; give the port the server listens on",
                    crate::core::escape::escape(s)
                ));
            }
            return Ok(OverrideAddr::Socket(sa));
        }
        let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        bare.parse::<IpAddr>().map(OverrideAddr::Ip).map_err(|_| {
            format!(
                "bad address '{}': expected an IP address or IP:port, e.g. 127.0.0.1:8443",
                crate::core::escape::escape(s)
            )
        })
    }
}

impl fmt::Display for OverrideAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideAddr::Ip(ip) => write!(f, "{ip}"),
            OverrideAddr::Socket(sa) => write!(f, "{sa}"),
        }
    }
}

impl HostOverrides {
    /// A table from validated entries.
    pub fn new(entries: HashMap<String, Vec<OverrideAddr>>) -> HostOverrides {
        HostOverrides(entries)
    }

    /// The fixed addresses for `host`, if it has an entry.
    pub fn get(&self, host: &str) -> Option<&[OverrideAddr]> {
        self.0.get(host).map(Vec::as_slice)
    }

    /// The addresses `dest` is pinned to: its IP literal, or its `[hosts]`
    /// entry. `None` when only DNS can tell.
    pub fn pinned(&self, dest: &Authority) -> Option<Vec<SocketAddr>> {
        match &dest.host {
            Host::Ip(ip) => Some(vec![SocketAddr::new(*ip, dest.port)]),
            Host::Name(name) => self
                .get(name)
                .map(|list| list.iter().map(|a| a.with_port(dest.port)).collect()),
        }
    }

    /// Entries sorted by name, for display.
    pub fn sorted(&self) -> Vec<(&String, &Vec<OverrideAddr>)> {
        let mut v: Vec<_> = self.0.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_needs_a_port() {
        let err = Authority::parse_connect("example.com").unwrap_err();
        assert!(err.to_string().contains("has no port"), "{err}");
        assert!(Authority::parse_connect("example.com:0").is_err());
        assert!(Authority::parse_connect("example.com:99999").is_err());
        assert!(Authority::parse_connect("example.com:+1").is_err());
        assert!(Authority::parse_connect("::1:443").is_err());
        assert!(Authority::parse_connect(":443").is_err());
        for unclosed in ["[::1", "[::1:443", "[::1]"] {
            let err = Authority::parse_connect(unclosed).unwrap_err();
            assert!(
                err.to_string().contains("is not [IPv6 address]:port"),
                "{unclosed}: {err}"
            );
        }
        assert_eq!(Authority::parse_connect("[::1]:443").unwrap().port, 443);
    }

    #[test]
    fn connect_targets_parse() {
        let a = Authority::parse_connect("Proxy.Golang.org:443").unwrap();
        assert_eq!(a.host, Host::Name("proxy.golang.org".into()));
        assert_eq!(a.port, 443);
        let a = Authority::parse_connect("[::1]:8443").unwrap();
        assert_eq!(a.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(a.to_string(), "[::1]:8443");
    }

    #[test]
    fn host_names_are_validated() {
        assert!(Host::parse("a_b.example").is_ok());
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a/b",
            "[::1",
            "[example.com]",
            "ä.com",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by fuzzing (`fuzz/seeds/host_authority/found-ipv4-with-…`):
    /// `0.0.120.100.` parsed as the name `0.0.120.100`, which printed and
    /// parsed again as an address.
    #[test]
    fn an_ipv4_address_with_a_trailing_dot_is_that_address() {
        let ip = Host::Ip("0.0.120.100".parse().unwrap());
        assert_eq!(Host::parse("0.0.120.100.").unwrap(), ip);
        assert_eq!(Host::parse(&ip.to_string()).unwrap(), ip);
        let a = Authority::parse_connect("127.0.0.1.:443").unwrap();
        assert_eq!(a.host, Host::Ip("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn names_ending_in_a_number_are_refused_as_odd_ipv4_spellings() {
        for odd in [
            "2130706433",
            "127.1",
            "0x7f.1",
            "0x7f000001",
            "1.2.3.4.5",
            "a.b.123",
            "0177.0.0.1.",
        ] {
            let err = Host::parse(odd).unwrap_err();
            assert!(err.contains("ends in a number"), "{odd:?}: {err}");
        }
        // A number inside a name is fine, and so is a hex-looking word.
        for ok in ["123.example", "a1.b2.c3d", "0xfe.example", "0xg"] {
            assert!(Host::parse(ok).is_ok(), "{ok:?}");
        }
    }
}

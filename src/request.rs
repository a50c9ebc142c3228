//! Classifying a request: what does the client want to reach?
//!
//! A proxy sees three request forms (RFC 9112 §3.2):
//! - authority-form, `CONNECT www.example.com:443 HTTP/1.1`: a tunnel;
//! - absolute-form, `GET http://www.example.com/x HTTP/1.1`: a forward;
//! - origin-form, `GET /x HTTP/1.1`: a request to modgate itself.

use std::fmt;
use std::net::IpAddr;

use http::{Method, Request, Uri};

use crate::error::Error;

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
        let bare = s.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if bare.len() != s.len() {
            return Err(format!("'{s}' is not an IPv6 address"));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if name.is_empty() {
            return Err("empty host name".into());
        }
        if name.len() > 253 {
            return Err(format!("host name '{s}' is longer than 253 bytes"));
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
                return Err(format!("'{s}' is not a valid host name"));
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

impl Authority {
    /// Parses `host:port` as written after CONNECT. The port is required.
    pub fn parse_connect(s: &str) -> Result<Authority, Error> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| Error::BadRequest(format!("CONNECT target '{s}' has no port; use host:port")))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(Error::BadRequest(format!(
                "CONNECT target '{s}' has an IPv6 address without brackets; use [addr]:port"
            )));
        }
        let port = parse_port(port).ok_or_else(|| Error::BadRequest(format!("CONNECT target '{s}' has a bad port")))?;
        let host = Host::parse(host).map_err(|e| Error::BadRequest(format!("CONNECT target: {e}")))?;
        Ok(Authority { host, port })
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

/// What a request asks modgate to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `CONNECT host:port`: relay bytes to that destination.
    Tunnel(Authority),
    /// `GET http://host:port/path`: forward the request to that origin.
    Forward(Authority),
    /// `GET /path`: a request addressed to modgate itself.
    Endpoint,
}

/// Classifies a request parsed by hyper.
pub fn classify<B>(req: &Request<B>) -> Result<Target, Error> {
    if req.method() == Method::CONNECT {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| req.uri().to_string());
        return Authority::parse_connect(&authority).map(Target::Tunnel);
    }
    let uri = req.uri();
    if uri.scheme().is_none() && uri.authority().is_none() {
        return Ok(Target::Endpoint);
    }
    forward_authority(uri).map(Target::Forward)
}

/// The origin of an absolute-form request URI.
fn forward_authority(uri: &Uri) -> Result<Authority, Error> {
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Error::BadRequest(format!(
                "'{uri}' is an https URL; send CONNECT {}:443 and speak TLS through the tunnel",
                uri.host().unwrap_or("host")
            )));
        }
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "scheme '{other}' is not supported; modgate forwards http:// URLs and CONNECT tunnels"
            )));
        }
        None => return Err(Error::BadRequest(format!("'{uri}' has no scheme"))),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| Error::BadRequest(format!("'{uri}' has no host")))?;
    if authority.as_str().contains('@') {
        return Err(Error::BadRequest(
            "credentials in the URL are not forwarded; remove user:password@".into(),
        ));
    }
    let host = Host::parse(authority.host()).map_err(Error::BadRequest)?;
    let port = authority.port_u16().unwrap_or(80);
    if port == 0 {
        return Err(Error::BadRequest(format!("'{uri}' has port 0")));
    }
    Ok(Authority { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn connect_needs_a_port() {
        let err = Authority::parse_connect("example.com").unwrap_err();
        assert!(err.to_string().contains("has no port"), "{err}");
        assert!(Authority::parse_connect("example.com:0").is_err());
        assert!(Authority::parse_connect("example.com:99999").is_err());
        assert!(Authority::parse_connect("example.com:+1").is_err());
        assert!(Authority::parse_connect("::1:443").is_err());
        assert!(Authority::parse_connect(":443").is_err());
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
    fn request_forms_are_classified() {
        assert_eq!(classify(&req("GET", "/x")).unwrap(), Target::Endpoint);
        assert_eq!(
            classify(&req("GET", "http://example.com/x")).unwrap(),
            Target::Forward(Authority {
                host: Host::Name("example.com".into()),
                port: 80
            })
        );
        assert_eq!(
            classify(&req("POST", "http://10.1.2.3:8080/x")).unwrap(),
            Target::Forward(Authority {
                host: Host::Ip("10.1.2.3".parse().unwrap()),
                port: 8080
            })
        );
        assert!(matches!(
            classify(&req("CONNECT", "example.com:443")).unwrap(),
            Target::Tunnel(_)
        ));
        assert!(classify(&req("GET", "https://example.com/")).is_err());
        assert!(classify(&req("GET", "ftp://example.com/")).is_err());
        assert!(classify(&req("GET", "http://u:p@example.com/")).is_err());
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
}

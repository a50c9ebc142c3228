//! Host globs for the `hosts` match field.
//!
//! - `example.com` matches that host only (case-insensitive, trailing dot ignored);
//! - `*.example.com` matches every subdomain of example.com, but not example.com;
//! - `*` matches any host;
//! - an IP literal such as `169.254.169.254` or `::1` matches that address as
//!   the client wrote it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::request::Host;

/// A parsed host glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostGlob {
    /// `*`: every host.
    Any,
    /// `*.suffix`: every host strictly below `suffix`.
    Subdomains(String),
    /// One exact host name.
    Exact(String),
    /// One IP address.
    Ip(IpAddr),
}

impl HostGlob {
    /// Whether `host` matches this glob.
    pub fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostGlob::Any, _) => true,
            (HostGlob::Exact(name), Host::Name(h)) => name == h,
            (HostGlob::Subdomains(suffix), Host::Name(h)) => h
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostGlob::Ip(ip), Host::Ip(h)) => ip == h,
            _ => false,
        }
    }
}

impl FromStr for HostGlob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(HostGlob::Any);
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            return match Host::parse(suffix) {
                Ok(Host::Name(name)) => Ok(HostGlob::Subdomains(name)),
                Ok(Host::Ip(_)) => Err(format!(
                    "bad host glob '{s}': '*.' must be followed by a domain name, not an IP address"
                )),
                Err(e) => Err(format!("bad host glob '{s}': {e}")),
            };
        }
        if s.contains('*') {
            return Err(format!(
                "bad host glob '{s}': '*' is allowed only as the whole glob or as a leading '*.'"
            ));
        }
        match Host::parse(s) {
            Ok(Host::Name(name)) => Ok(HostGlob::Exact(name)),
            Ok(Host::Ip(ip)) => Ok(HostGlob::Ip(ip)),
            Err(e) => Err(format!("bad host glob '{s}': {e}")),
        }
    }
}

impl fmt::Display for HostGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostGlob::Any => f.write_str("*"),
            HostGlob::Subdomains(s) => write!(f, "*.{s}"),
            HostGlob::Exact(s) => f.write_str(s),
            HostGlob::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, host: &str) -> bool {
        let g: HostGlob = glob.parse().unwrap();
        g.matches(&Host::parse(host).unwrap())
    }

    #[test]
    fn exact_is_case_insensitive_and_ignores_trailing_dot() {
        assert!(m("Example.com", "example.COM"));
        assert!(m("example.com", "example.com."));
        assert!(!m("example.com", "www.example.com"));
        assert!(!m("example.com", "example.co"));
    }

    #[test]
    fn star_dot_matches_subdomains_only() {
        assert!(m("*.example.com", "a.example.com"));
        assert!(m("*.example.com", "a.b.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(!m("*.example.com", "badexample.com"));
        assert!(!m("*.example.com", "example.com.evil"));
    }

    #[test]
    fn star_matches_everything() {
        assert!(m("*", "anything.test"));
        assert!(m("*", "10.1.2.3"));
    }

    #[test]
    fn ip_literals_match_addresses() {
        assert!(m("169.254.169.254", "169.254.169.254"));
        assert!(m("::1", "[::1]"));
        assert!(!m("10.0.0.1", "10.0.0.2"));
        assert!(!m("10.0.0.1", "ten.example"));
    }

    #[test]
    fn bad_globs_are_rejected() {
        for bad in [
            "",
            "a*.example.com",
            "*example.com",
            "ex*ample.com",
            "*.",
            "*.10.0.0.1",
            "bad host",
            "a..b",
            "-x.com",
        ] {
            assert!(
                bad.parse::<HostGlob>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}

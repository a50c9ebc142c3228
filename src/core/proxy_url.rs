//! An HTTP proxy as users write it: `http://user:pass@proxy.corp:8080`, the
//! form of `HTTPS_PROXY` and of `[parent] url`. The credentials become a
//! `Proxy-Authorization: Basic` value and are never shown: the URL prints
//! as `http://host:port`.

use std::fmt;

use base64::Engine as _;
use percent_encoding::percent_decode_str;

use crate::core::host::{Authority, Host};

/// A parent HTTP proxy: where it is, and the credentials it wants.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The proxy's host and port.
    pub authority: Authority,
    /// `user:password` from the URL, decoded.
    credentials: Option<(String, String)>,
}

impl ProxyUrl {
    /// Parses `http://[user[:password]@]host[:port]`. As `go` and curl do,
    /// a bare `host:port` means `http://`; the port defaults to 80, as it
    /// does in Go's proxy variables. Percent escapes in the user and
    /// password are decoded.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let bad = |why: &str| format!("bad proxy URL '{}': {why}", redacted(text));
        let with_scheme = match text.contains("://") {
            true => text.to_owned(),
            false => format!("http://{text}"),
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "a parent reached over TLS (https://) is not supported; use http://host:port",
                ));
            }
            other => return Err(bad(&format!("scheme '{other}' is not supported; use http://host:port"))),
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "expected http://[user:password@]host:port with nothing after the port",
            ));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        let host = Host::parse(host).map_err(|e| bad(&e))?;
        let port = url.port_or_known_default().unwrap_or(80);
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        let decode = |s: &str, what: &str| {
            if !escapes_are_whole(s) {
                return Err(bad(&format!(
                    "the {what} has a '%' that is not a %XX escape; write '%' as %25"
                )));
            }
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad(&format!("the {what} is not UTF-8")))
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            ("", Some(_)) => {
                return Err(bad(
                    "a password without a user name; write http://user:password@host:port",
                ));
            }
            (user, password) => {
                let user = decode(user, "user name")?;
                if user.contains(':') {
                    // Basic credentials are `user:password`: the parent
                    // would read the user name up to the first ':'.
                    return Err(bad(
                        "the user name has a ':' (%3A), which Basic credentials cannot carry",
                    ));
                }
                Some((user, decode(password.unwrap_or_default(), "password")?))
            }
        };
        Ok(ProxyUrl {
            authority: Authority { host, port },
            credentials,
        })
    }

    /// The user name from the URL, if it has credentials.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|(user, _)| user.as_str())
    }

    /// The `Proxy-Authorization` value for the URL's credentials:
    /// `Basic base64(user:password)`.
    pub fn proxy_authorization(&self) -> Option<String> {
        let (user, password) = self.credentials.as_ref()?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {token}"))
    }
}

/// Whether every `%` in `s` starts a `%XX` escape, as Go's URL parser
/// requires (the `url` crate keeps a stray `%` as it is).
fn escapes_are_whole(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%' || (bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit())
    })
}

/// `text` with any password replaced by `***`, for messages about a URL
/// that did not parse.
fn redacted(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), text),
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return text.to_owned();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    format!("{scheme}{user}:***@{host}")
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.user() {
            Some(user) => write!(f, "ProxyUrl(http://{user}:***@{})", self.authority),
            None => write!(f, "ProxyUrl({self})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let p = ProxyUrl::parse("http://ali%40ce:p%3Ass@proxy.corp.example:8080").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp.example:8080");
        assert_eq!(p.user(), Some("ali@ce"));
        assert_eq!(
            p.proxy_authorization().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("ali@ce:p:ss")
            )
        );
        assert!(!format!("{p:?}").contains("p:ss"), "{p:?}");
    }

    #[test]
    fn port_zero_is_refused() {
        let e = ProxyUrl::parse("http://u:secret@p.example:0").unwrap_err();
        assert!(e.contains("port 0") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn bare_host_port_is_http_and_the_port_defaults_to_80() {
        let p = ProxyUrl::parse("proxy.corp:3128").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp:3128");
        assert_eq!(p.proxy_authorization(), None);
        assert_eq!(ProxyUrl::parse("http://proxy.corp").unwrap().authority.port, 80);
        assert_eq!(
            ProxyUrl::parse("http://[::1]:8080/").unwrap().to_string(),
            "http://[::1]:8080"
        );
    }

    #[test]
    fn other_schemes_and_paths_are_refused_without_echoing_the_password() {
        let e = ProxyUrl::parse("https://u:secret@proxy:443").unwrap_err();
        assert!(e.contains("not supported") && !e.contains("secret"), "{e}");
        assert!(ProxyUrl::parse("socks5://proxy:1080").unwrap_err().contains("socks5"));
        let e = ProxyUrl::parse("http://u:secret@proxy:8080/path").unwrap_err();
        assert!(e.contains("nothing after the port") && !e.contains("secret"), "{e}");
        assert!(ProxyUrl::parse("http://:8080").is_err());
    }

    #[test]
    fn credentials_basic_cannot_carry_are_refused_without_echoing_the_password() {
        for (url, why) in [
            ("http://u%3Ax:secret@proxy:3128", "the user name has a ':'"),
            (
                "http://u:sec%zzret@proxy:3128",
                "the password has a '%' that is not a %XX escape",
            ),
            (
                "http://u:secret%2@proxy:3128",
                "the password has a '%' that is not a %XX escape",
            ),
            ("http://u%:secret@proxy:3128", "the user name has a '%'"),
            ("http://:secret@proxy:3128", "a password without a user name"),
        ] {
            let e = ProxyUrl::parse(url).unwrap_err();
            assert!(e.contains(why) && !e.contains("secret"), "{url}: {e}");
        }
        let ok = ProxyUrl::parse("http://u:p%25%3A%40@proxy:3128").unwrap();
        assert_eq!(ok.credentials, Some(("u".into(), "p%:@".into())));
    }
}

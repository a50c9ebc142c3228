//! The form of a request (RFC 9112 §3.2), and so what the client wants to
//! reach:
//! - authority-form, `CONNECT www.example.com:443 HTTP/1.1`: a tunnel;
//! - absolute-form, `GET http://www.example.com/x HTTP/1.1`: a forward;
//! - origin-form, `GET /x HTTP/1.1`: a request to modgate itself.

use http::{Method, Request, Uri};

use crate::core::error::Error;
use crate::core::host::Authority;

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
    Authority::of_uri(authority, 80).map_err(Error::BadRequest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::host::Host;

    fn req(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
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
        // A port the URI parser reports as none is refused, not taken as 80.
        for bad in ["93617", "65536", "0", "99999999999999999999", "0x50"] {
            let err = classify(&req("GET", &format!("http://127.0.0.1:{bad}/x"))).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("bad request: '127.0.0.1:{bad}' has a bad port; ports are 1-65535")
            );
        }
        let v6 = classify(&req("GET", "http://[::1]:8080/x")).unwrap();
        assert_eq!(v6, Target::Forward(Authority::parse_connect("[::1]:8080").unwrap()));
        let empty_port = classify(&req("GET", "http://example.com:/x")).unwrap();
        assert_eq!(
            empty_port,
            Target::Forward(Authority::parse_connect("example.com:80").unwrap())
        );
    }
}

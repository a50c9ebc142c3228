//! The one request gate: the checks every door makes before a request is
//! classified — the proxy port (its keep-alive requests), intercepted
//! HTTP/1.1 and h2, and the transparent listener. Head and header limits are
//! the same number everywhere (`proxy::head`), enforced by modgate's own
//! parser for a connection's first head and by hyper (with the
//! [front door](crate::proxy::frontdoor) giving its refusals a `modgate:`
//! line) after that.

use http::{Method, Request, Version, header};

use crate::core::error::Error;
use crate::core::hop::other_transfer_coding;
use crate::core::host::{Authority, Host};

/// Where a request came in.
#[derive(Debug, Clone, Copy)]
pub enum Entrance<'a> {
    /// The proxy port: proxy requests and the module endpoint.
    ProxyPort,
    /// Inside a tunnel to this destination, whose TLS modgate terminated.
    Tunnel(&'a Authority),
    /// A plain-HTTP connection redirected to the transparent listener: its
    /// Host names where it goes (and is verified against the original
    /// destination later).
    Redirected,
}

/// The refusal of a CONNECT that is not its connection's first request.
pub fn connect_not_first() -> Error {
    Error::BadRequest("CONNECT must be the first request on a connection; open a new connection for each tunnel".into())
}

/// The refusal of a request that carries this process's own `Via` entry.
pub fn came_back() -> Error {
    Error::Loop(
        "the request already came through this modgate (its Via names it): a parent, mirror or [hosts] entry leads back to modgate; it must name the real upstream".into(),
    )
}

/// Checks a request before it is classified.
pub fn check<B>(req: &Request<B>, entrance: Entrance<'_>) -> Result<(), Error> {
    if crate::core::via::came_through_here(req.headers()) {
        return Err(came_back());
    }
    // Only a connection's first request may be a CONNECT (modgate reads
    // that one itself): a later one is answered so, whatever else is wrong
    // with it.
    if let (Entrance::ProxyPort, &Method::CONNECT) = (entrance, req.method()) {
        return Err(connect_not_first());
    }
    if let (Entrance::Redirected, &Method::CONNECT) = (entrance, req.method()) {
        return Err(Error::BadRequest(
            "CONNECT on a connection the firewall redirected: it goes to its original destination as it is; send CONNECT to modgate's proxy port (HTTPS_PROXY)".into(),
        ));
    }
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Err(Error::BadRequest("more than one Host header".into()));
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    if req.version() == Version::HTTP_11 && hosts == 0 {
        return Err(Error::BadRequest("an HTTP/1.1 request needs a Host header".into()));
    }
    if let Some(coding) = other_transfer_coding(req.headers()) {
        return Err(Error::NotImplemented(format!(
            "the request body uses the transfer coding '{coding}'; modgate passes on only chunked"
        )));
    }
    let Entrance::Tunnel(dest) = entrance else {
        return Ok(());
    };
    if req.method() == Method::CONNECT {
        return Err(Error::BadRequest(format!(
            "CONNECT inside the tunnel to {dest}: open a new connection to modgate for each tunnel"
        )));
    }
    // `*` alone over HTTP/1.1; over h2, hyper puts `:path *` below the
    // scheme and authority.
    if req.uri().path() == "*" {
        return Err(Error::BadRequest(format!(
            "'{} *' inside the tunnel to {dest}: modgate serves module requests here",
            req.method()
        )));
    }
    // A path the origin may read as another (`//lookup/M@V`, `/./`,
    // `/x/../`) would slip past what the policy read in it: a private
    // module's name on its way to the public checksum database. go never
    // sends one.
    if let Some(element) = unclean_element(req.uri().path()) {
        return Err(Error::BadRequest(format!(
            "the path '{}' inside the tunnel to {dest} has {element}; modgate passes on clean paths only",
            crate::core::escape::escape(req.uri().path())
        )));
    }
    // Policy, the upstream, the certificate and the log all name the
    // tunnel's host: a request may not name another.
    let named = req
        .uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()));
    if let Some(named) = named {
        if !names_tunnel(named, dest) {
            return Err(Error::Misdirected {
                named: named.to_owned(),
                tunnel: dest.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether `authority` (a Host value or URI authority) names `dest`: the
/// same host, and the same port when it names one (a Host without a port
/// names the host; the tunnel already fixed the port the policy checked).
fn names_tunnel(authority: &str, dest: &Authority) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (authority, None),
        Some((h, p)) => match p.parse::<u16>() {
            Ok(port) => (h, Some(port)),
            Err(_) => return false,
        },
        None => (authority, None),
    };
    if port.is_some_and(|p| p != dest.port) {
        return false;
    }
    // A name written as the tunnel's (already normalised) is that name.
    match &dest.host {
        Host::Name(name) if host == name => true,
        _ => Host::parse(host).is_ok_and(|host| host == dest.host),
    }
}

/// What makes `path` unclean, if anything: an empty element inside it
/// (`//`; a trailing `/` is fine), or a `.` or `..` element, written out
/// or percent-encoded.
fn unclean_element(path: &str) -> Option<&'static str> {
    // Read as the laxest origin would: `%2F`, `%5C` and `\` separate
    // elements, `%2E` is a dot (`/example.test%2Falpha/` is still clean).
    let lax = path
        .to_ascii_lowercase()
        .replace("%2f", "/")
        .replace("%5c", "/")
        .replace('\\', "/")
        .replace("%2e", ".");
    let inner = lax.strip_prefix('/').unwrap_or(&lax);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return None;
    }
    inner.split('/').find_map(|element| {
        // Java origins (Artifactory, Nexus behind Tomcat) drop a `;`
        // parameter before they resolve `..;`.
        let name = element.split(';').next().unwrap_or_default();
        match (element, name) {
            ("", _) => Some("an empty element"),
            (_, "." | "..") => Some("a '.' or '..' element"),
            _ => None,
        }
    })
}

/// Module paths answer GET and HEAD; anything else is a 405.
pub fn module_method(method: &Method) -> Result<(), Error> {
    if method == Method::GET || method == Method::HEAD {
        return Ok(());
    }
    Err(Error::MethodNotAllowed(method.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_tunnel_host_is_the_only_host_a_request_may_name() {
        let dest = Authority::parse_connect("proxy.golang.org:443").unwrap();
        let inside = Entrance::Tunnel(&dest);
        assert!(check(&req("GET", "/x", Some("proxy.golang.org")), inside).is_ok());
        assert!(check(&req("GET", "/x", Some("PROXY.golang.org:443")), inside).is_ok());
        for other in [
            "secret.example",
            "10.9.9.9",
            "proxy.golang.org:8443",
            "proxy.golang.org:x",
        ] {
            let e = check(&req("GET", "/x", Some(other)), inside).unwrap_err();
            assert_eq!(e.status(), 421, "{other}: {e}");
        }
        let e = check(
            &req("GET", "https://secret.example/x", Some("proxy.golang.org")),
            inside,
        )
        .unwrap_err();
        assert_eq!(e.status(), 421);
        assert_eq!(
            check(&req("OPTIONS", "*", Some("proxy.golang.org")), inside)
                .unwrap_err()
                .status(),
            400
        );
        // As h2 hands it over: `:path *` with the scheme and authority.
        for method in ["OPTIONS", "GET"] {
            let uri = http::Uri::builder()
                .scheme("https")
                .authority("proxy.golang.org")
                .path_and_query("*")
                .build()
                .unwrap();
            let h2 = Request::builder()
                .method(method)
                .version(http::Version::HTTP_2)
                .uri(uri.clone())
                .body(())
                .unwrap();
            let e = check(&h2, inside).unwrap_err();
            assert_eq!(e.status(), 400, "{method} {uri}: {e}");
        }
        assert_eq!(
            check(&req("CONNECT", "a.test:443", Some("a.test:443")), inside)
                .unwrap_err()
                .status(),
            400
        );
        // Paths an origin may read as other paths than the policy did.
        for path in [
            "//lookup/git.corp.test/x@v1.0.0",
            "/./lookup/git.corp.test/x@v1.0.0",
            "/x/../lookup/git.corp.test/x@v1.0.0",
            "/sumdb//sum.golang.org/lookup/m@v1.0.0",
            "/%2e%2E/lookup/m@v1.0.0",
            "/a/%2e/b",
            "/a/..",
            "/x%2F..%2Flookup/m@v1.0.0",
            "/x/..;/lookup/m@v1.0.0",
            "/x/.;a/lookup",
            "/x\\..\\lookup/m@v1.0.0",
            "/x%5c../lookup",
            "/x%2F%2Flookup",
        ] {
            let e = check(&req("GET", path, Some("sum.golang.org")), inside).unwrap_err();
            assert_eq!(e.status(), 400, "{path}: {e}");
            assert!(e.to_string().contains("modgate passes on clean paths only"), "{e}");
        }
        for path in [
            "/",
            "/lookup/m@v1.0.0",
            "/golang.org/x/mod/",
            "/a..b/.c/%2e.x",
            "/example.test%2Falpha/@v/list",
        ] {
            assert!(
                check(&req("GET", path, Some("proxy.golang.org")), inside).is_ok(),
                "{path}"
            );
        }
        let ip = Authority::parse_connect("[::1]:8443").unwrap();
        assert!(check(&req("GET", "/x", Some("[::1]:8443")), Entrance::Tunnel(&ip)).is_ok());
    }

    #[test]
    fn http11_needs_one_host() {
        let e = check(&req("GET", "/x", None), Entrance::ProxyPort).unwrap_err();
        assert_eq!(e.status(), 400);
        let mut two = req("GET", "/x", Some("a"));
        two.headers_mut().append("host", "b".parse().unwrap());
        assert!(check(&two, Entrance::ProxyPort).is_err());
        assert_eq!(module_method(&Method::PUT).unwrap_err().status(), 405);
        assert!(module_method(&Method::HEAD).is_ok());
    }

    #[test]
    fn a_later_connect_is_refused_as_one_whatever_its_headers() {
        for host in [None, Some("example.com:443")] {
            let e = check(&req("CONNECT", "example.com:443", host), Entrance::ProxyPort).unwrap_err();
            assert!(e.to_string().contains("CONNECT must be the first request"), "{e}");
        }
        let e = check(&req("CONNECT", "example.com:443", None), Entrance::Redirected).unwrap_err();
        assert!(e.to_string().contains("the firewall redirected"), "{e}");
    }
}

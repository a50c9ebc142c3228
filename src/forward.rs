//! Forwarding absolute-form requests (`GET http://host/path`) to the origin
//! over pooled keep-alive connections, streaming bodies both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority as UriAuthority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::access::{Counter, Metered};
use crate::error::{self, Error};
use crate::request::Authority;
use crate::upstream::{Connector, Resolver};

/// Errors of a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type modgate sends and answers with.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
/// The pooled client for origins and mirrors, over plain TCP or TLS.
pub type HttpClient = Client<Connector, Body>;

/// The `Via` value modgate adds (RFC 9110 §7.6.3).
const VIA: &str = "1.1 modgate";

/// Builds the pooled client. Idle pooled connections are closed after
/// `idle`.
pub fn client(
    resolver: Arc<Resolver>,
    connect_timeout: Duration,
    idle: Duration,
    tls: Arc<rustls::ClientConfig>,
    verifier: Arc<crate::verdict::VerdictVerifier>,
) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .timer(TokioTimer::new())
        .build(Connector::new(resolver, connect_timeout, tls, verifier))
}

/// A body from bytes, for modgate's own answers.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The plain-text answer for an error.
pub fn error_response(err: &Error) -> Response<Body> {
    let mut resp = Response::new(full(err.body()));
    *resp.status_mut() = err.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Forwards `req` to `dest` over `scheme` (http, or https for intercepted
/// connections). When the policy checked the destination's addresses,
/// `connect_to` is the checked address to use (plain HTTP only: TLS needs
/// the name). The request body is counted into `bytes_in`.
pub async fn forward(
    client: &HttpClient,
    req: Request<Incoming>,
    scheme: Scheme,
    dest: &Authority,
    connect_to: Option<SocketAddr>,
    header_timeout: Duration,
    bytes_in: Counter,
) -> Result<Response<Incoming>, Error> {
    let (mut parts, body) = req.into_parts();
    let host_header = host_header(&parts.uri, dest)?;
    let connect_to = connect_to.filter(|_| scheme == Scheme::HTTP);
    parts.uri = upstream_uri(&parts.uri, &scheme, dest, connect_to)?;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, host_header);
    parts.headers.append(header::VIA, HeaderValue::from_static(VIA));
    parts.version = http::Version::HTTP_11;
    let body = Metered::new(body, bytes_in).map_err(BoxError::from).boxed_unsync();

    let request = client.request(Request::from_parts(parts, body));
    let mut resp = match tokio::time::timeout(header_timeout, request).await {
        Err(_) => {
            return Err(Error::UpstreamTimeout {
                target: dest.to_string(),
                after: header_timeout,
            });
        }
        Ok(Err(e)) => return Err(client_error(&format!("{scheme}://{dest}"), &e)),
        Ok(Ok(resp)) => resp,
    };
    strip_hop_by_hop(resp.headers_mut());
    resp.headers_mut().append(header::VIA, HeaderValue::from_static(VIA));
    Ok(resp)
}

/// Turns a pooled-client error into modgate's error, keeping the
/// connector's own error (DNS, connect, TLS, timeout) when that is the cause.
pub fn client_error(target: &str, err: &hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(own) = e.downcast_ref::<Error>() {
            return own.clone();
        }
        source = e.source();
    }
    Error::Upstream {
        target: target.to_owned(),
        reason: error::chain(err),
    }
}

/// The Host header for the origin: the authority of the request URI
/// (RFC 9112 §3.2.2: a proxy replaces a received Host with it).
fn host_header(uri: &Uri, dest: &Authority) -> Result<HeaderValue, Error> {
    let text = match uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None if dest.port == 443 || dest.port == 80 => dest.host.to_string(),
        None => dest.to_string(),
    };
    HeaderValue::from_str(&text).map_err(|_| Error::BadRequest(format!("bad host '{text}'")))
}

/// The URI the pooled client uses: the checked address when there is one,
/// so the connection goes exactly where the policy looked.
fn upstream_uri(uri: &Uri, scheme: &Scheme, dest: &Authority, connect_to: Option<SocketAddr>) -> Result<Uri, Error> {
    let authority = match connect_to {
        Some(addr) => UriAuthority::try_from(addr.to_string().as_str()),
        None => UriAuthority::try_from(dest.to_string().as_str()),
    }
    .map_err(|e| Error::Internal(format!("upstream authority for {dest}: {e}")))?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| Error::Internal(format!("upstream URI for {dest}: {e}")))
}

/// Removes the headers that describe one hop rather than the message
/// (RFC 9110 §7.6.1), including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const HOP: [&str; 9] = [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .chain(headers.get_all("proxy-connection").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic eA=="));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn checked_address_replaces_the_name() {
        let dest = Authority::parse_connect("example.com:8080").unwrap();
        let uri: Uri = "http://example.com:8080/a?b=c".parse().unwrap();
        let up = upstream_uri(&uri, &Scheme::HTTP, &dest, Some("[2001:db8::1]:8080".parse().unwrap())).unwrap();
        assert_eq!(up.to_string(), "http://[2001:db8::1]:8080/a?b=c");
        assert_eq!(host_header(&uri, &dest).unwrap(), "example.com:8080");
        let up = upstream_uri(&uri, &Scheme::HTTP, &dest, None).unwrap();
        assert_eq!(up.to_string(), "http://example.com:8080/a?b=c");
    }
}

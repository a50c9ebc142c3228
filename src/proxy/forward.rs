//! Forwarding a request to its origin over pooled keep-alive connections,
//! streaming bodies both ways: absolute-form requests (`GET
//! http://host/path`), and `direct` requests inside intercepted tunnels.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::{Authority as UriAuthority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::core::body::{Body, BoxError};
use crate::core::error::Error;
use crate::core::hop::strip_hop_by_hop;
use crate::core::host::Authority;
use crate::policy::plan::Door;
use crate::policy::rule::Facts;
use crate::proxy::context::Context;
use crate::proxy::respond::note_upstream;
use crate::proxy::route::route;
use crate::telemetry::access::{Access, Counter, Metered};
use crate::upstream::pool::{HttpClient, client_error};

/// The `Via` value modgate adds (RFC 9110 §7.6.3).
const VIA: &str = "1.1 modgate";

/// `GET http://host/path`: plan, then forward to a checked address.
pub async fn serve(
    ctx: &Context,
    access: &mut Access,
    req: Request<Incoming>,
    dest: Authority,
) -> Result<Response<Body>, Error> {
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
    };
    let routed = route(ctx, Door::Forward, facts, &dest.to_string(), access).await?;
    let connect_to = routed.checked.as_ref().and_then(|a| a.first().copied());
    let bytes_in = access.bytes_in.clone();
    let t = ctx.config.timeouts;
    let resp = forward(&ctx.client, req, Scheme::HTTP, &dest, connect_to, t.header, bytes_in).await?;
    note_upstream(access, resp.extensions());
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Forwarding a request to its origin over pooled keep-alive connections,
//! streaming bodies both ways: absolute-form requests (`GET
//! http://host/path`), and `direct` requests inside intercepted tunnels.
//!
//! Behind a parent proxy, a plain-HTTP request goes to the parent in
//! absolute form with the parent's `Proxy-Authorization` (the client's own
//! credentials for modgate were already removed with the hop-by-hop
//! headers); a 407 from the parent is modgate's error, not the client's.

use std::net::IpAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority as UriAuthority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::core::body::{Body, BoxError, declared_length};
use crate::core::error::Error;
use crate::core::hop::{strip_hop_by_hop, unusable_response};
use crate::core::host::{Authority, Host, default_port};
use crate::core::proxy_url::ProxyUrl;
use crate::core::timer;
use crate::policy::parent::Via;
use crate::policy::plan::Door;
use crate::policy::rule::Facts;
use crate::proxy::context::Context;
use crate::proxy::prefetch::{PREFETCH_MAX, Prefetched};
use crate::proxy::respond::note_upstream;
use crate::proxy::route::{Routed, route};
use crate::proxy::upload::{Progress, Upload, client_body_failure};
use crate::telemetry::access::{Access, Counter};
use crate::telemetry::metrics::FetchOutcome;
use crate::upstream::parent::refusal_hint;
use crate::upstream::pool::{self, HttpClient, SlotWatch, client_error};

/// `GET http://host/path`: plan, then forward to a checked address.
pub async fn serve(
    ctx: &Context,
    access: &mut Access,
    req: Request<Incoming>,
    dest: Authority,
) -> Result<Response<Body>, Error> {
    let user = access.user.clone();
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(&dest),
        addr: None,
        module: None,
        user: user.as_deref(),
        version: None,
        sumdb_lookup: false,
        sumdb_tree: false,
    };
    let routed = route(ctx, Door::Forward, facts, &dest, access).await?;
    send(ctx, access, req, dest, routed).await
}

/// Sends a planned plain-HTTP request to `dest`, only to the addresses the
/// plan checked, through the rule's clients (the parent's, unless it says
/// `parent = false`). A redirected connection's requests come here too.
pub async fn send(
    ctx: &Context,
    access: &mut Access,
    req: Request<Incoming>,
    dest: Authority,
    routed: Routed<'_>,
) -> Result<Response<Body>, Error> {
    let via = Via::of(routed.plan.rule());
    let client = ctx.clients.via(via).for_dest(&dest, routed.checked.as_deref());
    let parent = ctx.dialer_for(via).forward_proxy(&dest);
    let bytes_in = access.bytes_in.clone();
    // Named in the access record even when it fails to answer.
    if let Some(parent) = parent {
        access.parent = Some(parent.to_string());
    }
    let resp = forward_counted(ctx, &client, req, Scheme::HTTP, &dest, bytes_in, parent).await?;
    note_upstream(access, resp.extensions());
    Ok(resp)
}

/// Forwards `req` to `dest` over `scheme` (http, or https for intercepted
/// connections) with `client`. The request body is counted into
/// `bytes_in`. `parent`, for a plain-HTTP request the client's dialer sends
/// to a parent proxy, adds its credentials. A small body that has already
/// arrived comes with the head ([`prefetch`](crate::proxy::prefetch)).
pub async fn forward(
    client: &HttpClient,
    req: Request<Incoming>,
    scheme: Scheme,
    dest: &Authority,
    header_timeout: Duration,
    bytes_in: Counter,
    parent: Option<&ProxyUrl>,
) -> Result<Response<Body>, Error> {
    let (mut parts, body) = req.into_parts();
    parts.uri = upstream_uri(std::mem::take(&mut parts.uri), &scheme, dest)?;
    strip_hop_by_hop(&mut parts.headers);
    // The Host sent is the destination's (RFC 9112 §3.2.2). Plain HTTP goes
    // upstream as HTTP/1.1, so it is set here, keeping the client's when it
    // says the same; over TLS the pooled client writes it on HTTP/1.1, and
    // `:authority` alone goes on HTTP/2, where a Host beside it makes
    // servers such as nginx answer 400.
    match parts.headers.remove(header::HOST) {
        Some(host) if scheme == Scheme::HTTP => {
            let value = host_for(&parts.uri, host)?;
            parts.headers.insert(header::HOST, value);
        }
        _ => {}
    }
    parts.headers.append(header::VIA, crate::core::via::sent(parts.version));
    if let Some(credentials) = parent.and_then(ProxyUrl::proxy_authorization) {
        let value = HeaderValue::from_str(&credentials)
            .map_err(|_| Error::Internal("the parent's credentials are not a header value".into()))?;
        parts.headers.insert(header::PROXY_AUTHORIZATION, value);
    }
    // Named in a parent's refusal; only a request sent to a parent needs it.
    let request_line = parent.map(|_| format!("{} {}", parts.method, parts.uri));
    parts.version = http::Version::HTTP_11;
    let (body, sent) = Upload::start(body, bytes_in);

    // Pinned here and lent to `answered`: a future moved into another
    // async fn is kept in both state machines.
    let request = std::pin::pin!(pool::send(client, Request::from_parts(parts, body)));
    let mut resp = match answered(request, header_timeout, &sent).await {
        None => {
            return Err(match parent {
                Some(parent) => Error::ParentTimeout {
                    parent: parent.to_string(),
                    target: dest.to_string(),
                    doing: format!(
                        "waiting for its answer to {}",
                        request_line.as_deref().unwrap_or("the request")
                    ),
                    after: header_timeout,
                },
                None => Error::UpstreamTimeout {
                    target: dest.to_string(),
                    after: header_timeout,
                },
            });
        }
        Some(Err(e)) => match client_body_failure(&e) {
            Some(failure) => return Err(Error::BadRequest(failure.to_string())),
            None => return Err(client_error(&format!("{scheme}://{dest}"), parent, &e)),
        },
        Some(Ok(resp)) => resp,
    };
    if let (Some(parent), Some(request), StatusCode::PROXY_AUTHENTICATION_REQUIRED) =
        (parent, request_line, resp.status())
    {
        return Err(Error::ParentRefused {
            parent: parent.to_string(),
            request,
            status: format!("HTTP/1.1 407 {}", resp.status().canonical_reason().unwrap_or_default()),
            hint: refusal_hint("407", parent),
        });
    }
    if let Some(why) = unusable_response(resp.status(), resp.headers()) {
        return Err(Error::Upstream {
            target: dest.to_string(),
            reason: why,
        });
    }
    strip_hop_by_hop(resp.headers_mut());
    let received = crate::core::via::received(resp.version());
    resp.headers_mut().append(header::VIA, received);
    // modgate speaks HTTP/1.1 (or h2) to its client whatever the upstream
    // spoke: an HTTP/1.0 status line passed on would misdescribe the
    // client's own connection.
    *resp.version_mut() = http::Version::HTTP_11;
    // Small or unsized (chunked) bodies: what has arrived goes with the head,
    // and a body that fails before its first byte is still a 502.
    let small = declared_length(resp.headers()).is_none_or(|n| n <= PREFETCH_MAX);
    if !small {
        return Ok(resp.map(|body| body.map_err(BoxError::from).boxed_unsync()));
    }
    let (parts, body) = resp.into_parts();
    let body = Prefetched::take_ready(body, PREFETCH_MAX);
    if let Some(e) = body.failed_at_once() {
        return Err(Error::Upstream {
            target: dest.to_string(),
            reason: format!("its response body failed before its first byte: {}", pool::failure(e)),
        });
    }
    Ok(Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()))
}

/// `request`'s answer, or `None` if its head did not arrive within
/// `limit` of the request's end ([`Progress`]): the upstream's time starts
/// once it has the whole request, so a slow upload is not its timeout. A
/// client whose upload stalls is closed by the idle timeout.
async fn answered<F: Future>(mut request: Pin<&mut F>, limit: Duration, sent: &Progress) -> Option<F::Output> {
    let handed = tokio::time::Instant::now();
    let mut deadline = handed + limit;
    loop {
        match timer::timeout_at(deadline, request.as_mut()).await {
            Ok(answer) => return Some(answer),
            Err(_) => {
                let now = tokio::time::Instant::now();
                deadline = match sent.done_at(handed) {
                    Some(done) if done + limit <= now => return None,
                    Some(done) => done + limit,
                    None => now + limit,
                };
            }
        }
    }
}

/// [`forward`], with the time to the response head counted in the
/// metrics as the source `direct`.
pub async fn forward_counted(
    ctx: &Context,
    client: &HttpClient,
    req: Request<Incoming>,
    scheme: Scheme,
    dest: &Authority,
    bytes_in: Counter,
    parent: Option<&ProxyUrl>,
) -> Result<Response<Body>, Error> {
    let started = Instant::now();
    let watch = SlotWatch::default();
    let result = watch
        .watching(forward(
            client,
            req,
            scheme,
            dest,
            ctx.config.timeouts.header,
            bytes_in,
            parent,
        ))
        .await
        .map_err(|e| ctx.clients.budget().explain_timeout(e, &watch));
    let outcome = match &result {
        Ok(r) if r.status().is_server_error() => FetchOutcome::Error,
        Ok(r) if r.status() == 404 || r.status() == 410 => FetchOutcome::NotFound,
        Ok(_) => FetchOutcome::Found,
        Err(_) => FetchOutcome::Error,
    };
    ctx.telemetry
        .metrics
        .observe_fetch("direct", outcome, started.elapsed());
    result
}

/// The URI the pooled client uses: the destination and the request's path.
/// A request that already names the destination as it is written (an
/// absolute-form request, an h2 request inside a tunnel) keeps its URI;
/// otherwise the authority is rebuilt from the destination.
fn upstream_uri(uri: Uri, scheme: &Scheme, dest: &Authority) -> Result<Uri, Error> {
    let own = uri.authority().filter(|own| names(own, scheme, dest));
    if own.is_some() && uri.scheme() == Some(scheme) && uri.path_and_query().is_some() {
        return Ok(uri);
    }
    let authority = match own {
        Some(own) => own.clone(),
        None => UriAuthority::try_from(dest.to_string().as_str())
            .map_err(|e| Error::Internal(format!("upstream authority for {dest}: {e}")))?,
    };
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

/// The Host header for `uri` on HTTP/1.1, written as the pooled client
/// would: the authority without credentials, and without the port when it
/// is the scheme's default. `client`, the client's own Host, is kept when
/// it says exactly that.
fn host_for(uri: &Uri, client: HeaderValue) -> Result<HeaderValue, Error> {
    let Some(authority) = uri.authority() else {
        return Err(Error::Internal(format!("upstream URI {uri} has no authority")));
    };
    let written = authority.as_str();
    let (default_port, default_suffix) = if uri.scheme() == Some(&Scheme::HTTPS) {
        (443, ":443")
    } else {
        (80, ":80")
    };
    // Usually the authority as written is the Host, and no parsing is needed:
    // only credentials or a written default port change it.
    let text = if written.contains('@') || written.ends_with(default_suffix) {
        match authority.port_u16() {
            Some(port) if port == default_port => authority.host(),
            _ => written.rsplit_once('@').map_or(written, |(_, rest)| rest),
        }
    } else {
        written
    };
    if client.as_bytes() == text.as_bytes() {
        return Ok(client);
    }
    HeaderValue::from_str(text).map_err(|_| Error::Internal(format!("upstream host {text} is not a header value")))
}

/// Whether `own`, a request's authority, is `dest` written the same way
/// over `scheme`: no credentials, the same host text and the same port.
fn names(own: &UriAuthority, scheme: &Scheme, dest: &Authority) -> bool {
    let default_port = default_port(*scheme == Scheme::HTTPS);
    match &dest.host {
        // The usual case, settled by comparing texts: the name, then nothing
        // (the default port) or `:` and the port's digits. A name has no
        // `@`, so a request with credentials never matches.
        Host::Name(name) => match own.as_str().strip_prefix(name.as_str()) {
            Some("") => dest.port == default_port,
            Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
                port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p == dest.port)
            }),
            None => false,
        },
        Host::Ip(ip) => {
            if own.as_str().contains('@') || own.port_u16().unwrap_or(default_port) != dest.port {
                return false;
            }
            let text = own.host().trim_start_matches('[').trim_end_matches(']');
            text.parse::<IpAddr>().is_ok_and(|own| own == *ip)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_uri_keeps_the_name_and_path() {
        let cases = [
            // (destination, request URI, upstream scheme, upstream URI)
            (
                "example.com:8080",
                "http://example.com:8080/a?b=c",
                Scheme::HTTP,
                "http://example.com:8080/a?b=c",
            ),
            // Another spelling of the destination is rebuilt from it.
            (
                "example.com:8080",
                "http://EXAMPLE.com:8080/a",
                Scheme::HTTP,
                "http://example.com:8080/a",
            ),
            // The client's own text is kept when it is the destination's.
            ("[::1]:80", "http://[::1]/x", Scheme::HTTP, "http://[::1]/x"),
            (
                "example.com:80",
                "http://example.com/a",
                Scheme::HTTP,
                "http://example.com/a",
            ),
            // A name that only starts with the destination's is another host.
            (
                "example.com:8080",
                "http://example.com.evil:8080/a",
                Scheme::HTTP,
                "http://example.com:8080/a",
            ),
            (
                "example.com:8080",
                "http://example.com/a",
                Scheme::HTTP,
                "http://example.com:8080/a",
            ),
            (
                "example.com:80",
                "http://example.com:8080/a",
                Scheme::HTTP,
                "http://example.com:80/a",
            ),
            // An origin-form request inside a tunnel gets the tunnel's origin.
            (
                "proxy.golang.org:443",
                "/golang.org/x/mod/@v/list",
                Scheme::HTTPS,
                "https://proxy.golang.org:443/golang.org/x/mod/@v/list",
            ),
            // Credentials or another port are never carried over.
            (
                "proxy.golang.org:443",
                "https://u@proxy.golang.org/x",
                Scheme::HTTPS,
                "https://proxy.golang.org:443/x",
            ),
            (
                "proxy.golang.org:443",
                "https://proxy.golang.org:8443/x",
                Scheme::HTTPS,
                "https://proxy.golang.org:443/x",
            ),
            // The scheme is the upstream's, whatever the request said.
            (
                "proxy.golang.org:443",
                "http://proxy.golang.org/x",
                Scheme::HTTPS,
                "https://proxy.golang.org/x",
            ),
        ];
        for (dest, uri, scheme, want) in cases {
            let dest = Authority::parse_connect(dest).unwrap();
            let up = upstream_uri(uri.parse().unwrap(), &scheme, &dest).unwrap();
            assert_eq!(up.to_string(), want, "{uri}");
        }
    }

    #[test]
    fn the_host_sent_is_the_destination_as_the_client_wrote_it_or_rebuilt() {
        let cases = [
            // (upstream URI, the client's Host, the Host sent)
            ("http://example.com:8080/a", "example.com:8080", "example.com:8080"),
            ("http://example.com:8080/a", "EXAMPLE.com:8080", "example.com:8080"),
            ("http://example.com:8080/a", "elsewhere.test", "example.com:8080"),
            ("http://example.com:80/a", "example.com:80", "example.com"),
            ("http://example.com/a", "example.com", "example.com"),
            ("http://[::1]:8080/", "[::1]:8080", "[::1]:8080"),
            ("http://[::1]:80/", "x", "[::1]"),
        ];
        for (uri, client, want) in cases {
            let uri: Uri = uri.parse().unwrap();
            let sent = host_for(&uri, HeaderValue::from_static(client)).unwrap();
            assert_eq!(sent, want, "{uri} with Host {client}");
        }
    }
}

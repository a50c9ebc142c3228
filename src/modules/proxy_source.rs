//! A module proxy as a source: `https://host/prefix` or `http://…`, fetched
//! over the pooled client. `direct` inside an intercepted tunnel is the same
//! thing with the original URL, sent only to the addresses the policy
//! checked.
//!
//! Redirects (goproxy.cn, Athens and Artifactory send `.zip` downloads to
//! storage) are followed here, at most [`MAX_REDIRECTS`], each target
//! checked by the policy first, never from https to http, as `go` would.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::core::body::{Body, BoxError, full, text};
use crate::core::error::Error;
use crate::core::escape::escape;
use crate::core::hop::{strip_hop_by_hop, unusable_response};
use crate::core::host::{Authority, Host};
use crate::gomod::request::{MAX_ZIP_BYTES, ModuleRequest};
use crate::modules::source::{Answer, ModuleSource, SourceRequest};
use crate::upstream::pool::{Clients, HttpClient, client_error};

/// The most redirects followed for one request (go's own limit).
pub const MAX_REDIRECTS: usize = 10;

/// A module proxy at a base URL.
pub struct ProxySource {
    base: String,
    clients: Clients,
}

impl ProxySource {
    /// The proxy at `base` (no trailing slash), reached with `clients`.
    pub fn new(base: String, clients: Clients) -> ProxySource {
        ProxySource { base, clients }
    }
}

impl ModuleSource for ProxySource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let url = format!("{}{}", self.base, req.rel_path);
            let client = self.clients.default_client().clone();
            get(&self.clients, client, &self.base, url, req).await
        })
    }
}

/// `direct`: the original host of an intercepted tunnel; on modgate's own
/// endpoint, a 404 telling `go` to use its own `direct`.
pub struct OriginSource {
    clients: Clients,
}

impl OriginSource {
    /// The original host, reached with `clients`.
    pub fn new(clients: Clients) -> OriginSource {
        OriginSource { clients }
    }
}

impl ModuleSource for OriginSource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            match req.origin {
                Some(origin) => {
                    let client = self.clients.for_checked(origin.checked);
                    get(&self.clients, client, origin.url, origin.url.to_owned(), req).await
                }
                None => Answer::NotFound(go_direct(req.rule, &req.what())),
            }
        })
    }
}

/// The 404 that tells `go` to fetch `what` itself (its own `direct`).
pub fn go_direct(rule: &str, what: &str) -> Response<Body> {
    text(
        StatusCode::NOT_FOUND,
        &format!(
            "modgate: rule '{rule}' sends {what} direct: go fetches it itself (end GOPROXY with ,direct and make sure GONOSUMDB/GOPRIVATE cover private modules)"
        ),
    )
}

/// GETs `url` from the upstream named `base` in messages, following
/// redirects.
async fn get(clients: &Clients, mut client: HttpClient, base: &str, mut url: String, req: SourceRequest<'_>) -> Answer {
    let failed = |reason: String| {
        Answer::Failed(Error::Upstream {
            target: base.to_owned(),
            reason,
        })
    };
    let mut hops = 0;
    let resp = loop {
        let resp = match send(&client, base, &url, &req).await {
            Ok(resp) => resp,
            Err(e) => return Answer::Failed(e),
        };
        let Some(location) = redirect_target(&resp) else {
            break resp;
        };
        hops += 1;
        if hops > MAX_REDIRECTS {
            return failed(format!(
                "redirected more than {MAX_REDIRECTS} times for {} (last to {location})",
                req.what()
            ));
        }
        let next = match follow(&url, &location) {
            Ok(next) => next,
            Err(why) => return failed(format!("redirect for {}: {why}", req.what())),
        };
        let dest = match authority_of(&next) {
            Ok(dest) => dest,
            Err(why) => return failed(format!("redirect for {}: {why}", req.what())),
        };
        let checked = match req.redirects.admit(&dest).await {
            Ok(checked) => checked,
            Err(e) => return Answer::Failed(e),
        };
        client = clients.for_checked(checked.as_deref());
        url = next.to_string();
    };
    let status = resp.status();
    if let Some(why) = unusable_response(status, resp.headers()) {
        return failed(why.to_owned());
    }
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Answer::NotFound(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()));
    }
    if !status.is_success() {
        return failed(format!("answered {status} for {}", req.what()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let ModuleRequest::Zip { .. } = req.request {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_ZIP_BYTES) {
            return Answer::Failed(zip_too_large(base, &req));
        }
        let too_large = zip_too_large(base, &req).to_string();
        let limited = Limited::new(body, MAX_ZIP_BYTES as usize)
            .map_err(move |e| match e.is::<http_body_util::LengthLimitError>() {
                true => BoxError::from(too_large.clone()),
                false => e,
            })
            .boxed_unsync();
        return Answer::Found(Response::from_parts(parts, limited));
    }
    Answer::Found(Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()))
}

/// One GET within the header timeout.
async fn send(
    client: &HttpClient,
    base: &str,
    url: &str,
    req: &SourceRequest<'_>,
) -> Result<Response<hyper::body::Incoming>, Error> {
    let method = if req.head {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header(header::USER_AGENT, "modgate")
        .body(full(Bytes::new()))
        .map_err(|e| Error::Internal(format!("bad upstream URL {url}: {e}")))?;
    match tokio::time::timeout(req.header_timeout, client.request(request)).await {
        Err(_) => Err(Error::UpstreamTimeout {
            target: base.to_owned(),
            after: req.header_timeout,
        }),
        Ok(Err(e)) => Err(client_error(base, &e)),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// The `Location` of a redirect response (301, 302, 303, 307, 308).
fn redirect_target<B>(resp: &Response<B>) -> Option<String> {
    let redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
    if !redirect {
        return None;
    }
    Some(
        resp.headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    )
}

/// `location` resolved against `current`; never from https to http.
fn follow(current: &str, location: &str) -> Result<url::Url, String> {
    if location.is_empty() {
        return Err("a redirect without a Location".into());
    }
    let base = url::Url::parse(current).map_err(|e| format!("bad URL {current}: {e}"))?;
    let next = base
        .join(location)
        .map_err(|e| format!("bad Location '{}': {e}", escape(location)))?;
    match (base.scheme(), next.scheme()) {
        ("https", "https") | ("http", "http" | "https") => Ok(next),
        ("https", "http") => Err(format!("refused to follow a redirect from https to http ({next})")),
        (_, other) => Err(format!("refused to follow a redirect to scheme '{}'", escape(other))),
    }
}

/// The host and port a URL names.
fn authority_of(url: &url::Url) -> Result<Authority, String> {
    let host = url.host_str().ok_or_else(|| format!("{url} has no host"))?;
    let host = Host::parse(host)?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{url} has no port"))?;
    Ok(Authority { host, port })
}

/// The refusal of a zip over go's 500 MiB limit.
pub(crate) fn zip_too_large(source: &str, req: &SourceRequest<'_>) -> Error {
    Error::Upstream {
        target: source.to_owned(),
        reason: format!("the zip of {} is larger than go's limit of 500 MiB", req.what()),
    }
}

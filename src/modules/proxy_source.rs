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

use crate::config::mirrors::Credential;
use crate::core::body::{Body, BoxError, Unframed, declared_length, full, text};
use crate::core::error::Error;
use crate::core::escape::escape;
use crate::core::hop::{strip_hop_by_hop, unusable_response};
use crate::core::host::{Authority, Host};
use crate::core::proxy_url::ProxyUrl;
use crate::core::timer;
use crate::gomod::escape::encode_path;
use crate::gomod::request::{MAX_ZIP_BYTES, ModuleRequest};
use crate::modules::source::{Answer, ModuleSource, SourceRequest};
use crate::modules::{decode, shape};
use crate::upstream::parent::refusal_hint;
use crate::upstream::pool::{self, Clients, HttpClient, SlotWatch, client_error};

/// The most redirects followed for one request (go's own limit).
pub const MAX_REDIRECTS: usize = 10;

/// A module proxy at a base URL.
pub struct ProxySource {
    base: String,
    clients: Clients,
    login: Option<Login>,
}

/// The `Authorization` a mirror needs, and the origin it may go to.
struct Login {
    header: http::HeaderValue,
    origin: url::Origin,
}

impl ProxySource {
    /// The proxy at `base` (no trailing slash), reached with `clients`.
    pub fn new(base: String, clients: Clients) -> ProxySource {
        ProxySource {
            base,
            clients,
            login: None,
        }
    }

    /// The same proxy, logged in with `credential`: its `Authorization`
    /// goes to the base URL's origin (scheme, host and port) only, never to
    /// a host a redirect leads to.
    pub fn with_login(mut self, credential: &Credential) -> ProxySource {
        let origin = url::Url::parse(&self.base).map(|u| u.origin()).ok();
        self.login = match (credential.header(), origin) {
            (Some(header), Some(origin)) => Some(Login { header, origin }),
            _ => None,
        };
        self
    }
}

impl ModuleSource for ProxySource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let url = format!("{}{}", self.base, encode_path(req.rel_path));
            let clients = self.clients.via(req.via);
            let client = clients.for_url(&url, None).into_owned();
            get(clients, client, &self.base, url, req, self.login.as_ref()).await
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
                    let clients = self.clients.via(req.via);
                    let client = clients.for_url(origin.url, origin.checked).into_owned();
                    get(clients, client, origin.url, origin.url.to_owned(), req, None).await
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
/// redirects; `login` goes along to its own origin only.
async fn get(
    clients: &Clients,
    mut client: HttpClient,
    base: &str,
    mut url: String,
    req: SourceRequest<'_>,
    login: Option<&Login>,
) -> Answer {
    let failed = |reason: String| {
        Answer::Failed(Error::Upstream {
            target: base.to_owned(),
            reason,
        })
    };
    let mut hops = 0;
    // The origin asked first (a configured mirror, or the host the policy
    // let the request go to), and how it was reached.
    let first = (url::Url::parse(&url).ok().map(|u| u.origin()), client.clone());
    let resp = loop {
        let auth = login.filter(|l| url::Url::parse(&url).is_ok_and(|u| u.origin() == l.origin));
        let parent = parent_for(clients, &url);
        let watch = SlotWatch::default();
        let sent = watch.watching(send(&client, base, &url, &req, auth.map(|l| &l.header), parent));
        let resp = match sent.await {
            Ok(resp) => resp,
            Err(e) => return Answer::Failed(clients.budget().explain_timeout(e, &watch)),
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
        if first.0.as_ref().is_some_and(|origin| *origin == next.origin()) {
            // Back to the origin asked first: it was admitted already.
            client = first.1.clone();
            url = next.to_string();
            continue;
        }
        let dest = match authority_of(&next) {
            Ok(dest) => dest,
            Err(why) => return failed(format!("redirect for {}: {why}", req.what())),
        };
        let checked = match req.redirects.admit(&dest).await {
            Ok(checked) => checked,
            Err(e) => return Answer::Failed(e),
        };
        client = clients.for_dest(&dest, checked.as_deref()).into_owned();
        url = next.to_string();
    };
    let status = resp.status();
    if let (Some(parent), StatusCode::PROXY_AUTHENTICATION_REQUIRED) = (parent_for(clients, &url), status) {
        return Answer::Failed(Error::ParentRefused {
            parent: parent.to_string(),
            request: format!("{} {url}", if req.head { "HEAD" } else { "GET" }),
            status: format!("HTTP/1.1 {status}"),
            hint: refusal_hint("407", parent),
        });
    }
    if let Some(why) = unusable_response(status, resp.headers()) {
        return failed(why);
    }
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        // The mirror's `Connection: close` is about its connection, not the
        // client's: passed on, it closed the client's keep-alive connection.
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return Answer::NotFound(Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()));
    }
    // A module file is a 200: any other status (a 204 with no file, a 304
    // to a request that was not conditional) is no answer to pass on.
    if status != StatusCode::OK {
        return Answer::Failed(Error::UpstreamStatus {
            target: base.to_owned(),
            status,
            what: shape::what(req.request),
        });
    }
    let (mut parts, body) = resp.into_parts();
    if Unframed::of(parts.version, &parts.headers) {
        parts.extensions.insert(Unframed);
    }
    strip_hop_by_hop(&mut parts.headers);
    // A HEAD's answer has no body to decode, but its headers describe the
    // file as a GET would get it: decoded.
    let body = match decode::decoded(&mut parts.headers, body.map_err(BoxError::from).boxed_unsync()) {
        Ok(_) if req.head => full(Bytes::new()),
        Ok(body) => body,
        Err(reason) => {
            return Answer::Failed(Error::BadAnswer {
                target: base.to_owned(),
                reason: format!("{}: {reason}", shape::what(req.request)),
            });
        }
    };
    if let ModuleRequest::Zip { .. } = req.request {
        if declared_length(&parts.headers).is_some_and(|n| n > MAX_ZIP_BYTES) {
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
    Answer::Found(Response::from_parts(parts, body))
}

/// The parent proxy a plain-HTTP `url` is sent to in absolute form, if any.
fn parent_for<'c>(clients: &'c Clients, url: &str) -> Option<&'c ProxyUrl> {
    let url = url::Url::parse(url).ok().filter(|u| u.scheme() == "http")?;
    clients.forward_proxy(&authority_of(&url).ok()?)
}

/// One GET within the header timeout, with `auth` as `Authorization`;
/// through `parent` with its credentials, when a plain-HTTP URL goes to one.
async fn send(
    client: &HttpClient,
    base: &str,
    url: &str,
    req: &SourceRequest<'_>,
    auth: Option<&http::HeaderValue>,
    parent: Option<&ProxyUrl>,
) -> Result<Response<hyper::body::Incoming>, Error> {
    let method = if req.head {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header(header::USER_AGENT, "modgate")
        .header(header::VIA, crate::core::via::sent(http::Version::HTTP_11));
    if let Some(credentials) = parent.and_then(ProxyUrl::proxy_authorization) {
        request = request.header(header::PROXY_AUTHORIZATION, credentials);
    }
    let mut request = request
        .body(full(Bytes::new()))
        .map_err(|e| Error::Internal(format!("bad upstream URL {url}: {e}")))?;
    if let Some(auth) = auth {
        request.headers_mut().insert(header::AUTHORIZATION, auth.clone());
    }
    match timer::timeout(req.header_timeout, pool::send(client, request)).await {
        Err(_) => Err(Error::UpstreamTimeout {
            target: base.to_owned(),
            after: req.header_timeout,
        }),
        Ok(Err(e)) => Err(client_error(base, parent, &e)),
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

//! A module proxy as a source: `https://host/prefix` or `http://…`, fetched
//! over the pooled client. `direct` inside an intercepted tunnel is the same
//! thing with the original URL.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::core::body::{Body, BoxError, full, text};
use crate::core::error::Error;
use crate::core::hop::strip_hop_by_hop;
use crate::gomod::request::{MAX_ZIP_BYTES, ModuleRequest};
use crate::modules::source::{Answer, ModuleSource, SourceRequest};
use crate::upstream::pool::{HttpClient, client_error};

/// A module proxy at a base URL.
pub struct ProxySource {
    base: String,
    client: HttpClient,
}

impl ProxySource {
    /// The proxy at `base` (no trailing slash), reached with `client`.
    pub fn new(base: String, client: HttpClient) -> ProxySource {
        ProxySource { base, client }
    }
}

impl ModuleSource for ProxySource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let url = format!("{}{}", self.base, req.rel_path);
            get(&self.client, &self.base, &url, req).await
        })
    }
}

/// `direct`: the original host of an intercepted tunnel; on modgate's own
/// endpoint, a 404 telling `go` to use its own `direct`.
pub struct OriginSource {
    client: HttpClient,
}

impl OriginSource {
    /// The original host, reached with `client`.
    pub fn new(client: HttpClient) -> OriginSource {
        OriginSource { client }
    }
}

impl ModuleSource for OriginSource {
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            match req.origin_url {
                Some(url) => get(&self.client, url, url, req).await,
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

/// GETs `url` from the upstream named `base` in messages.
async fn get(client: &HttpClient, base: &str, url: &str, req: SourceRequest<'_>) -> Answer {
    let request = match Request::get(url)
        .header(header::USER_AGENT, "modgate")
        .body(full(Bytes::new()))
    {
        Ok(r) => r,
        Err(e) => return Answer::Failed(Error::Internal(format!("bad upstream URL {url}: {e}"))),
    };
    let resp = match tokio::time::timeout(req.header_timeout, client.request(request)).await {
        Err(_) => {
            return Answer::Failed(Error::UpstreamTimeout {
                target: base.to_owned(),
                after: req.header_timeout,
            });
        }
        Ok(Err(e)) => return Answer::Failed(client_error(base, &e)),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Answer::NotFound(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()));
    }
    if !(status.is_success() || status.is_redirection()) {
        return Answer::Failed(Error::Upstream {
            target: base.to_owned(),
            reason: format!("answered {status} for {}", req.what()),
        });
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
        let limited = Limited::new(body, MAX_ZIP_BYTES as usize)
            .map_err(BoxError::from)
            .boxed_unsync();
        return Answer::Found(Response::from_parts(parts, limited));
    }
    Answer::Found(Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()))
}

/// The refusal of a zip over go's 500 MiB limit.
pub(crate) fn zip_too_large(source: &str, req: &SourceRequest<'_>) -> Error {
    Error::Upstream {
        target: source.to_owned(),
        reason: format!("the zip of {} is larger than go's limit of 500 MiB", req.what()),
    }
}

//! The module-source seam: anything that can answer a GOPROXY or sumdb
//! request. One source stands for each entry of a mirror list; the
//! fall-through loop ([`fetch`](crate::modules::fetch)) only sees this
//! trait, so a cache or a health-checked mirror is one more implementation
//! or wrapper.

use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Response;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::gomod::request::ModuleRequest;

/// One module request, as every source sees it.
#[derive(Debug, Clone, Copy)]
pub struct SourceRequest<'a> {
    /// The request, classified.
    pub request: &'a ModuleRequest,
    /// The path relative to a GOPROXY base, e.g. `/golang.org/x/mod/@v/list`
    /// or `/sumdb/sum.golang.org/latest`.
    pub rel_path: &'a str,
    /// The original URL, when there is an original host (an intercepted
    /// tunnel); `None` on modgate's own endpoint.
    pub origin_url: Option<&'a str>,
    /// The rule that sent the request here, for messages.
    pub rule: &'a str,
    /// Time allowed for an upstream's response head.
    pub header_timeout: Duration,
}

impl SourceRequest<'_> {
    /// The module path, or the request kind when it names none (sumdb
    /// `latest`, tiles), for messages.
    pub fn what(&self) -> String {
        self.request
            .module()
            .map_or_else(|| self.request.kind().to_owned(), str::to_owned)
    }
}

/// How a source answered.
pub enum Answer {
    /// 2xx or 3xx: this is the answer.
    Found(Response<Body>),
    /// 404 or 410: "not here"; `go`'s `,` moves on.
    NotFound(Response<Body>),
    /// Anything else: connect, TLS, timeout, 5xx, or a refusal.
    Failed(Error),
}

/// Something that answers module requests.
pub trait ModuleSource: Send + Sync {
    /// Answers one request.
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer>;
}

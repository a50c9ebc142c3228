//! The module-source seam: anything that can answer a GOPROXY or sumdb
//! request. One source stands for each entry of a mirror list; the
//! fall-through loop ([`fetch`](crate::modules::fetch)) only sees this
//! trait, so a cache or a health-checked mirror is one more implementation
//! or wrapper.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::Response;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::core::host::Authority;
use crate::gomod::request::ModuleRequest;
use crate::modules::verify::ContentCheck;
use crate::policy::parent::Via;
use crate::telemetry::metrics::FetchOutcome;

/// The original host of an intercepted tunnel, for `direct`.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The original URL, `https://host/path`.
    pub url: &'a str,
    /// The host's addresses the policy checked, when it checked any:
    /// connect only to these.
    pub checked: Option<&'a [SocketAddr]>,
}

/// Checks a host an upstream redirected to, the way the policy checks a
/// request to it: refused, or allowed with the addresses it checked.
pub trait RedirectPolicy: Send + Sync {
    /// Whether modgate may follow a redirect to `dest`.
    fn admit<'a>(&'a self, dest: &'a Authority) -> BoxFuture<'a, Result<Option<Vec<SocketAddr>>, Error>>;
}

/// One module request, as every source sees it.
#[derive(Clone, Copy)]
pub struct SourceRequest<'a> {
    /// The request, classified.
    pub request: &'a ModuleRequest,
    /// The path relative to a GOPROXY base, e.g. `/golang.org/x/mod/@v/list`
    /// or `/sumdb/sum.golang.org/latest`.
    pub rel_path: &'a str,
    /// The original host, inside an intercepted tunnel; `None` on
    /// modgate's own endpoint.
    pub origin: Option<Origin<'a>>,
    /// Checks each redirect target before it is followed.
    pub redirects: &'a dyn RedirectPolicy,
    /// The rule that sent the request here, for messages.
    pub rule: &'a str,
    /// Time allowed for an upstream's response head, and then for its
    /// body's first bytes ([`started`](crate::modules::started)).
    pub header_timeout: Duration,
    /// Time a started body may go without a byte (`timeouts.idle`).
    pub idle_timeout: Duration,
    /// Whether the rule lets upstream connections use `[parent]`.
    pub via: Via,
    /// A HEAD request: sources answer with the head only, and ask their
    /// upstreams with HEAD, never fetching a body.
    pub head: bool,
    /// Judges a module file that arrives whole before it is served, when
    /// the answer goes to a cache that checks content.
    pub content: Option<&'a ContentCheck>,
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

impl Answer {
    /// How the fetch ended, for the latency histogram.
    pub fn outcome(&self) -> FetchOutcome {
        match self {
            Answer::Found(_) => FetchOutcome::Found,
            Answer::NotFound(_) => FetchOutcome::NotFound,
            Answer::Failed(_) => FetchOutcome::Error,
        }
    }
}

/// Something that answers module requests.
pub trait ModuleSource: Send + Sync {
    /// Answers one request.
    fn fetch<'a>(&'a self, req: SourceRequest<'a>) -> BoxFuture<'a, Answer>;
}

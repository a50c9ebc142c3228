//! Carrying out a `mirror` plan for a module request (and an intercepted
//! `direct` one): through the module cache when it is on and the rule
//! allows it, from the rule's mirror list, or, for the checksum database
//! modgate is configured with, from `sumdb.url`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Response, StatusCode};

use crate::core::body::{Body, text};
use crate::core::error::Error;
use crate::gomod::request::{ModuleRequest, SumdbKind};
use crate::modules::cached::{CacheStatus, Fetched};
use crate::modules::fetch::fetch;
use crate::modules::source::{Answer, ModuleSource, Origin, SourceRequest};
use crate::modules::started;
use crate::modules::verify::ContentCheck;
use crate::policy::mirrors::MirrorList;
use crate::policy::parent::Via;
use crate::policy::rule::Rule;
use crate::proxy::context::Context;
use crate::proxy::respond::note_upstream;
use crate::proxy::route::RedirectCheck;
use crate::telemetry::access::{Access, AnswerSource};

/// Where an intercepted request came from: the original host's URL and
/// the addresses the policy checked for it.
pub struct Original<'a> {
    /// `https://host/path`.
    pub url: &'a str,
    /// The checked addresses, when the plan checked any.
    pub checked: Option<&'a [SocketAddr]>,
}

/// Answers `request` (at `rel_path` below a GOPROXY base) under `rule`'s
/// `mirrors`. A HEAD (`head`) gets the head of a cached answer, or asks the
/// upstream with HEAD; it is never answered by fetching a body.
#[allow(clippy::too_many_arguments)]
pub async fn answer(
    ctx: &Arc<Context>,
    access: &mut Access,
    request: &ModuleRequest,
    rel_path: &str,
    head: bool,
    rule: &Rule,
    mirrors: &MirrorList,
    original: Option<Original<'_>>,
) -> Result<Response<Body>, Error> {
    let own_sumdb = matches!(request, ModuleRequest::Sumdb { db, .. } if db == ctx.config.sumdb.name());
    if own_sumdb
        && matches!(
            request,
            ModuleRequest::Sumdb {
                kind: SumdbKind::Supported,
                ..
            }
        )
    {
        // go asks before it sends lookups and tiles here.
        access.cache = Some(CacheStatus::Bypass);
        return Ok(text(StatusCode::OK, ""));
    }
    let sumdb_path = own_sumdb.then(|| {
        let prefix = format!("/sumdb/{}", ctx.config.sumdb.name());
        rel_path.strip_prefix(&prefix).unwrap_or(rel_path).to_owned()
    });
    // Where the upstream is asked, which a remembered 404 is for.
    let scope = ctx.cache.as_ref().map(|_| match &original {
        Some(o) => format!("{mirrors} for {}", o.url),
        None => mirrors.to_string(),
    });
    // The plan has already confined a private module to where it may go;
    // its objects are cached apart, or not at all with `[private] cache =
    // false`.
    let private = &ctx.config.policy.private;
    let is_private = request.module().is_some_and(|m| private.is_private(m));
    let cache = ctx
        .cache
        .as_ref()
        .filter(|_| rule.cache && (!is_private || private.cache));
    let job = Upstream {
        ctx: ctx.clone(),
        src: access.client.ip(),
        request: request.clone(),
        rel_path: sumdb_path.unwrap_or_else(|| rel_path.to_owned()),
        origin: original.map(|o| (o.url.to_owned(), o.checked.map(<[SocketAddr]>::to_vec))),
        rule: rule.name.clone(),
        mirrors: mirrors.clone(),
        own_sumdb,
        user: access.user.clone(),
        via: Via::of(Some(rule)),
        head,
        // Checked whenever a check is configured, cached or not: a rule
        // that bypasses the cache still gets verified small files.
        content: ctx.cache.as_ref().and_then(|c| c.check()),
    };
    let upstream = move || -> BoxFuture<'static, Fetched> { Box::pin(job.fetch()) };
    if let (true, Some(cache)) = (head, cache) {
        if let Some(resp) = cache.head(request, rel_path, is_private).await {
            access.cache = Some(CacheStatus::Hit);
            access.upstream = Some(AnswerSource::CACHE);
            return Ok(resp);
        }
    }
    let (result, source, status) = match (cache, head) {
        (Some(cache), false) => {
            let scope = scope.unwrap_or_default();
            let cached = cache.serve(request, rel_path, is_private, &scope, upstream).await;
            (cached.result, cached.source, cached.status)
        }
        _ => {
            let (result, source) = upstream().await;
            let result = result.map(|mut r| {
                r.headers_mut()
                    .insert("x-cache", http::HeaderValue::from_static(CacheStatus::Bypass.as_str()));
                r
            });
            (result, Some(source), CacheStatus::Bypass)
        }
    };
    access.cache = Some(status);
    if !own_sumdb {
        access.mirror_state = ctx.sources.unhealthy_in(mirrors);
    }
    access.upstream = Some(source.map_or(AnswerSource::CACHE, AnswerSource::from));
    if let Ok(resp) = &result {
        note_upstream(access, resp.extensions());
    }
    result
}

/// One upstream fetch, owning what it needs, so that it can finish after
/// the request that started it (a stale-while-revalidate refresh).
struct Upstream {
    ctx: Arc<Context>,
    src: IpAddr,
    request: ModuleRequest,
    rel_path: String,
    /// The original URL and the addresses checked for it, when intercepted.
    origin: Option<(String, Option<Vec<SocketAddr>>)>,
    rule: Arc<str>,
    mirrors: MirrorList,
    /// A request for the checksum database modgate is configured with.
    own_sumdb: bool,
    /// The user the request authenticated as, for redirect checks.
    user: Option<String>,
    /// Through `[parent]` or not, as the rule says.
    via: Via,
    head: bool,
    /// The cache's content check, when the answer goes to the cache.
    content: Option<Arc<ContentCheck>>,
}

impl Upstream {
    /// Asks the mirror list (or `sumdb.url`).
    async fn fetch(self) -> Fetched {
        let ctx = &*self.ctx;
        let redirects = RedirectCheck {
            ctx,
            src: self.src,
            module: self.request.module(),
            user: self.user.as_deref(),
        };
        let source_request = SourceRequest {
            request: &self.request,
            rel_path: &self.rel_path,
            origin: self.origin.as_ref().map(|(url, checked)| Origin {
                url,
                checked: checked.as_deref(),
            }),
            redirects: &redirects,
            rule: &self.rule,
            header_timeout: ctx.config.timeouts.header,
            idle_timeout: ctx.config.timeouts.idle,
            via: self.via,
            head: self.head,
            content: self.content.as_deref(),
        };
        if !self.own_sumdb {
            return fetch(&self.mirrors, &ctx.sources, source_request).await;
        }
        let url = &ctx.config.sumdb.url;
        let started = std::time::Instant::now();
        let answer = match ctx.sumdb_source.fetch(source_request).await {
            Answer::Found(r) if !self.head => {
                match started::started(r, url, ctx.config.timeouts.header, ctx.config.timeouts.idle).await {
                    Ok(r) => Answer::Found(r),
                    Err(e) => Answer::Failed(e),
                }
            }
            answer => answer,
        };
        ctx.telemetry
            .metrics
            .observe_fetch(url, answer.outcome(), started.elapsed());
        match answer {
            Answer::Found(r) | Answer::NotFound(r) => (Ok(r), url.clone()),
            Answer::Failed(e) => (Err(e), url.clone()),
        }
    }
}

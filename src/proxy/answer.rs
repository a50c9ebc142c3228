//! Carrying out a `mirror` plan for a module request (and an intercepted
//! `direct` one): through the module cache when it is on and the rule
//! allows it, from the rule's mirror list, or, for the checksum database
//! modgate is configured with, from `sumdb.url`.

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use http::{Response, StatusCode};

use crate::core::body::{Body, text};
use crate::core::error::Error;
use crate::gomod::request::{ModuleRequest, SumdbKind};
use crate::modules::cached::{CacheStatus, Fetched};
use crate::modules::fetch::fetch;
use crate::modules::source::{ModuleSource, Origin, SourceRequest};
use crate::policy::mirrors::MirrorList;
use crate::policy::rule::Rule;
use crate::proxy::context::Context;
use crate::proxy::respond::note_upstream;
use crate::proxy::route::RedirectCheck;
use crate::telemetry::access::Access;

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
    ctx: &Context,
    access: &mut Access,
    request: &ModuleRequest,
    rel_path: &str,
    head: bool,
    rule: &Rule,
    mirrors: &MirrorList,
    original: Option<Original<'_>>,
) -> Result<Response<Body>, Error> {
    let own_sumdb = match request {
        ModuleRequest::Sumdb { db, kind } if db == ctx.config.sumdb.name() => Some(kind),
        _ => None,
    };
    if let Some(SumdbKind::Supported) = own_sumdb {
        // go asks before it sends lookups and tiles here.
        access.cache = Some(CacheStatus::Bypass);
        return Ok(text(StatusCode::OK, ""));
    }
    let redirects = RedirectCheck {
        ctx,
        src: access.client.ip(),
        module: request.module(),
    };
    let sumdb_path = own_sumdb.map(|_| {
        let prefix = format!("/sumdb/{}", ctx.config.sumdb.name());
        rel_path.strip_prefix(&prefix).unwrap_or(rel_path).to_owned()
    });
    let source_request = SourceRequest {
        request,
        rel_path: sumdb_path.as_deref().unwrap_or(rel_path),
        origin: original.map(|o| Origin {
            url: o.url,
            checked: o.checked,
        }),
        redirects: &redirects,
        rule: &rule.name,
        header_timeout: ctx.config.timeouts.header,
        head,
    };
    let upstream = || -> BoxFuture<'_, Fetched> {
        Box::pin(async move {
            if own_sumdb.is_some() {
                let sumdb = &ctx.sumdb_source;
                let started = std::time::Instant::now();
                let answer = sumdb.fetch(source_request).await;
                let url = &ctx.config.sumdb.url;
                ctx.telemetry
                    .metrics
                    .observe_fetch(url, answer.outcome(), started.elapsed());
                return match answer {
                    crate::modules::source::Answer::Found(r) | crate::modules::source::Answer::NotFound(r) => {
                        (Ok(r), ctx.config.sumdb.url.clone())
                    }
                    crate::modules::source::Answer::Failed(e) => (Err(e), ctx.config.sumdb.url.clone()),
                };
            }
            fetch(mirrors, &ctx.sources, source_request).await
        })
    };
    let cache = ctx.cache.as_ref().filter(|_| rule.cache);
    if let (true, Some(cache)) = (head, cache) {
        if let Some(resp) = cache.head(request, rel_path).await {
            access.cache = Some(CacheStatus::Hit);
            access.upstream = Some("cache".into());
            return Ok(resp);
        }
    }
    let (result, source, status) = match (cache, head) {
        (Some(cache), false) => {
            let cached = cache.serve(request, rel_path, upstream).await;
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
    access.upstream = source.or_else(|| Some("cache".into()));
    if let Ok(resp) = &result {
        note_upstream(access, resp.extensions());
    }
    result
}

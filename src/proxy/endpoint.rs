//! modgate's own module endpoint: `GOPROXY=http://<modgate>`.
//!
//! Origin-form requests (`GET /golang.org/x/mod/@v/list`) are classified as
//! GOPROXY or sumdb requests and planned with no destination host (rules
//! with `hosts`, `ports` or `dst` never match them). `mirror` fetches from
//! the list; `direct` answers 404 with a `modgate:` line, so a client with
//! `GOPROXY=http://<modgate>,direct` falls through to its own direct fetch;
//! `block` answers 403.

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::core::body::Body;
use crate::core::error::Error;
use crate::gomod::classify::classify_proxy_path;
use crate::gomod::escape::decode_path;
use crate::modules::proxy_source::go_direct;
use crate::policy::plan::{Door, Plan};
use crate::policy::rule::Facts;
use crate::proxy::context::Context;
use crate::proxy::route::route;
use crate::proxy::versions::Screen;
use crate::telemetry::access::Access;

/// Answers one request addressed to modgate itself.
pub async fn serve(ctx: &Arc<Context>, access: &mut Access, req: Request<Incoming>) -> Result<Response<Body>, Error> {
    serve_path(ctx, access, req.method(), req.uri().path()).await
}

/// Answers `method raw_path` on the endpoint: what `serve` does for a
/// client, and what `cache warm` does for each file it fetches.
pub async fn serve_path(
    ctx: &Arc<Context>,
    access: &mut Access,
    method: &Method,
    raw_path: &str,
) -> Result<Response<Body>, Error> {
    let path = &decode_path(raw_path).map_err(Error::BadRequest)?;
    let Some(request) = classify_proxy_path(path).map_err(Error::BadRequest)? else {
        return Err(Error::BadRequest(format!(
            "'{method} {path}' is neither a proxy request nor a module request; send an absolute URL (http://host/path), CONNECT host:port, or a GOPROXY path such as /golang.org/x/mod/@v/list"
        )));
    };
    crate::proxy::gate::module_method(method)?;
    let user = access.user.clone();
    let mut facts = Facts::of_request(access.client.ip(), None, &request);
    facts.user = user.as_deref();
    let what = request.module().unwrap_or(path);
    let routed = route(ctx, Door::Endpoint, facts, what, access).await?;
    let (rule, mirrors) = match routed.plan {
        Plan::Mirror(rule, mirrors) => (rule, mirrors),
        Plan::ClientDirect(rule) => return Ok(go_direct(&rule.name, what)),
        other => return Err(Error::Internal(format!("the endpoint cannot carry out {other:?}"))),
    };
    let head = method == Method::HEAD;
    let screen = Screen {
        ctx,
        door: Door::Endpoint,
        src: access.client.ip(),
        user: access.user.clone(),
        dest: None,
        checked: None,
        rule,
        mirrors: &mirrors,
    };
    screen.answer(access, &request, path, head, None).await
}

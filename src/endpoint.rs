//! modgate's own module endpoint: `GOPROXY=http://<modgate>`.
//!
//! Origin-form requests (`GET /golang.org/x/mod/@v/list`) are classified as
//! GOPROXY or sumdb requests and decided with no destination host (rules
//! with `hosts`, `ports` or `dst` never match them). `mirror` fetches from
//! the list; `direct` answers 404 with a `modgate:` line, so a client with
//! `GOPROXY=http://<modgate>,direct` falls through to its own direct fetch;
//! `block` answers 403.

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::access::Access;
use crate::error::Error;
use crate::forward::Body;
use crate::mirror::{self, Fetch};
use crate::module;
use crate::policy::{self, Action, Facts};
use crate::server::{Shared, decided, note_upstream};

/// Answers one request addressed to modgate itself.
pub(crate) async fn serve(
    shared: &Shared,
    access: &mut Access,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let path = &module::decode_path(req.uri().path()).map_err(Error::BadRequest)?;
    let Some(request) = module::classify_proxy_path(path).map_err(Error::BadRequest)? else {
        return Err(Error::BadRequest(format!(
            "'{} {path}' is neither a proxy request nor a module request; send an absolute URL (http://host/path), CONNECT host:port, or a GOPROXY path such as /golang.org/x/mod/@v/list",
            req.method()
        )));
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Error::BadRequest(format!(
            "the module endpoint answers GET, not {}",
            req.method()
        )));
    }
    let facts = Facts {
        src: access.client.ip(),
        dest: None,
        addr: None,
        module: request.module(),
    };
    let what = request.module().unwrap_or(path.as_str()).to_owned();
    let rule = decided(policy::decide(&shared.config.rules, &facts), access, &what)?;
    let Action::Mirror { mirrors } = &rule.action else {
        return Ok(mirror::direct_answer(&rule.name, &what));
    };
    let fetch = Fetch {
        client: &shared.client,
        header_timeout: shared.config.timeouts.header,
        request: &request,
        rel_path: path,
        origin: None,
        rule: &rule.name,
    };
    let (result, source) = mirror::fetch(mirrors, &fetch).await;
    access.upstream = Some(source);
    if let Ok(resp) = &result {
        note_upstream(access, resp.extensions());
    }
    result
}

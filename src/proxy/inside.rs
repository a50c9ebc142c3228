//! One request inside an intercepted tunnel: classified (GOPROXY path,
//! sumdb path, or neither), planned with its module path known, and then
//! mirrored, sent to the original host, or refused.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::{Authority as UriAuthority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use crate::core::body::{Body, text};
use crate::core::error::Error;
use crate::core::host::Authority;
use crate::gomod::check::check_elem;
use crate::gomod::classify::{classify_proxy_path, classify_sumdb_path};
use crate::gomod::escape::decode_path;
use crate::gomod::request::ModuleRequest;
use crate::modules::fetch::direct_only;
use crate::policy::parent::Via;
use crate::policy::plan::{Door, Plan};
use crate::policy::private::Private;
use crate::policy::rule::Facts;
use crate::proxy::answer::Original;
use crate::proxy::context::Context;
use crate::proxy::forward::forward_counted;
use crate::proxy::gate::{self, Entrance};
use crate::proxy::respond::{note_upstream, respond};
use crate::proxy::route::route;
use crate::proxy::versions::Screen;
use crate::telemetry::access::{Access, Unanswered, method_name};

/// Who sent an intercepted tunnel's requests.
#[derive(Debug)]
pub struct Sender<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The user its CONNECT authenticated (`[auth]`), if one did.
    pub user: Option<&'a str>,
    /// For a redirected connection, its original destination: the one
    /// address its requests go to.
    pub original: Option<SocketAddr>,
    /// Why the request is refused before anything else, when a limit
    /// refuses it.
    pub over: Option<Error>,
}

/// An intercepted tunnel's destination in the forms its requests need,
/// written once per tunnel rather than once per request.
#[derive(Debug)]
pub struct Origin {
    /// The tunnel's host and port.
    pub dest: Authority,
    /// `https://host`, with the port unless it is 443: the start of each
    /// request's URL in its access record.
    url: String,
    /// `host:port` as a URI authority, for the upstream request.
    authority: Option<UriAuthority>,
}

impl Origin {
    /// The origin of a tunnel to `dest`.
    pub fn new(dest: Authority) -> Origin {
        Origin {
            url: dest.https_url(),
            authority: UriAuthority::try_from(dest.to_string()).ok(),
            dest,
        }
    }

    /// Makes an origin-form `uri` (as HTTP/1.1 requests inside a tunnel
    /// are) an absolute URL on the tunnel's destination, whose authority
    /// forwarding then takes as it is.
    fn absolute(&self, uri: &mut Uri) {
        let Some(authority) = self.authority.clone().filter(|_| uri.authority().is_none()) else {
            return;
        };
        let mut parts = std::mem::take(uri).into_parts();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        // Only a URI that was valid with its path becomes one with it.
        if let Ok(absolute) = Uri::from_parts(parts) {
            *uri = absolute;
        }
    }
}

/// Answers one request inside the tunnel to `origin`, under the rules in
/// effect now (the tunnel's own TLS stays as it began).
pub async fn serve(ctx: &Arc<Context>, sender: Sender<'_>, origin: &Origin, req: Request<Incoming>) -> Response<Body> {
    let ctx = &ctx.latest();
    let path = url_path(req.uri().path_and_query());
    let mut target = String::with_capacity(origin.url.len() + path.len());
    target.push_str(&origin.url);
    target.push_str(path);
    let mut access = Unanswered::new(ctx.access(sender.peer, method_name(req.method()), target));
    access.user = sender.user.map(str::to_owned);
    access.original = sender.original;
    if let Err(e) = gate::check(&req, Entrance::Tunnel(&origin.dest)) {
        return respond(Err(e), access.answered());
    }
    if let Some(over) = sender.over {
        return respond(Err(over), access.answered());
    }
    let result = carry_out(ctx, &mut access, origin, req).await;
    respond(result, access.answered())
}

/// A classified module request and its (decoded) path relative to a
/// GOPROXY base. `private` settles a path that reads as a module request
/// both from `/` and below a prefix whose elements look like a module path
/// of their own (`/cache.corp.example/x/github.com/corp/lib/@v/list`):
/// when a reading below the prefix names a private module, that one is
/// taken, so a private name never reaches a public mirror under a public
/// reading of the same path.
fn classify(host: &str, raw_path: &str, private: &Private) -> Result<Option<Classified>, Error> {
    let path = decode_path(raw_path).map_err(Error::BadRequest)?;
    match classify_proxy_path(&path) {
        Ok(Some(request)) => {
            let public = request.module().is_some_and(|m| !private.is_private(m));
            if public && !private.modules.is_empty() {
                let as_private =
                    below_a_prefix(&path).find(|(below, _, _)| below.module().is_some_and(|m| private.is_private(m)));
                if let Some(classified) = as_private {
                    return Ok(Some(classified));
                }
            }
            return Ok(Some((request, path.into_owned(), false)));
        }
        Ok(None) => {}
        Err(why) => {
            // Below a prefix, the first reading naming a private module
            // wins over the shortest prefix's, as above.
            let readings: Vec<Classified> = below_a_prefix(&path).collect();
            let private_reading = readings
                .iter()
                .position(|(below, _, _)| below.module().is_some_and(|m| private.is_private(m)));
            return readings
                .into_iter()
                .nth(private_reading.unwrap_or(0))
                .map(Some)
                .ok_or(Error::BadRequest(why));
        }
    }
    // A checksum database proxied below a GOPROXY base with a path of its
    // own: `/api/go/remote/sumdb/sum.golang.org/lookup/M@V`.
    if path.contains("/sumdb/") {
        if let Some(classified) =
            below_a_prefix(&path).find(|(below, _, _)| matches!(below, ModuleRequest::Sumdb { .. }))
        {
            return Ok(Some(classified));
        }
    }
    match classify_sumdb_path(host, &path).map_err(Error::BadRequest)? {
        Some(request) => Ok(Some((request, format!("/sumdb/{host}{path}"), false))),
        None => Ok(None),
    }
}

/// A module request inside a tunnel: the request, its path below the
/// GOPROXY base (what a mirror is asked for), and whether that base has a
/// path of its own on the original host ([`below_a_prefix`]).
type Classified = (ModuleRequest, String, bool);

/// Leading path elements a GOPROXY base on an intercepted host may have
/// (`https://proxy.golang.org/cached-only`, an Artifactory-style
/// `https://host/api/go/remote`) that are looked past.
const MAX_PREFIX_ELEMENTS: usize = 8;

/// The module requests below a GOPROXY base that has a path of its own,
/// shortest prefix first: `/cached-only/example.com/m/@v/list` is
/// `example.com/m`'s list, with `/example.com/m/@v/list` the path a mirror
/// is asked for (the original host is still asked for the whole path). The
/// prefix's own elements must be clean path elements (no empty, `.` or
/// `..` one): an origin that merges slashes or resolves dot segments would
/// otherwise answer for another module than the one the rules judged.
fn below_a_prefix(path: &str) -> impl Iterator<Item = Classified> + '_ {
    path.match_indices('/')
        .skip(1)
        .take(MAX_PREFIX_ELEMENTS)
        .take_while(|&(at, _)| {
            path[..at]
                .rsplit('/')
                .next()
                .is_some_and(|elem| !elem.is_empty() && check_elem(elem).is_ok())
        })
        .filter_map(|(at, _)| match classify_proxy_path(&path[at..]) {
            Ok(Some(request)) => Some((request, path[at..].to_owned(), true)),
            _ => None,
        })
}

/// What a refusal inside a tunnel names: the module, or the request's URL
/// (as in its access record).
struct Named<'a> {
    module: Option<&'a str>,
    origin: &'a Origin,
    path_and_query: Option<&'a PathAndQuery>,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.module {
            Some(module) => f.write_str(module),
            None => write!(f, "{}{}", self.origin.url, url_path(self.path_and_query)),
        }
    }
}

/// The path and query of a request URL: `/` when it has none.
fn url_path(path_and_query: Option<&PathAndQuery>) -> &str {
    path_and_query.map_or("/", PathAndQuery::as_str)
}

async fn carry_out(
    ctx: &Arc<Context>,
    access: &mut Access,
    origin: &Origin,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let dest = &origin.dest;
    let classified = classify(&dest.host.text(), req.uri().path(), &ctx.config.policy.private)?;
    if classified.is_some() {
        gate::module_method(req.method())?;
    }
    let module = classified.as_ref().and_then(|(m, _, _)| m.module());
    let user = access.user.clone();
    let original = access.original;
    let mut facts = match &classified {
        Some((request, _, _)) => Facts::of_request(access.client.ip(), Some(dest), request),
        None => Facts {
            src: access.client.ip(),
            dest: Some(dest),
            addr: None,
            module: None,
            user: None,
            version: None,
            sumdb_lookup: false,
            sumdb_tree: false,
        },
    };
    facts.user = user.as_deref();
    facts.addr = original.map(|a| a.ip());
    let what = Named {
        module,
        origin,
        path_and_query: req.uri().path_and_query(),
    };
    let door = Door::Intercepted {
        module_request: classified.is_some(),
    };
    let mut routed = route(ctx, door, facts, &what, access).await?;
    if let Some(original) = original {
        // A redirected connection goes to its original destination only.
        routed.checked = Some(vec![original]);
    }
    let head = req.method() == Method::HEAD;
    // A mirrored module request, or an intercepted `direct` module GET or
    // HEAD: the original host as a one-entry list, so the cache serves it too.
    // Below a prefix of the original host's own (`/api/go/repoA/`), the
    // origin's answer is that repository's, not the module's everywhere:
    // it is passed through, not cached under the module.
    let list = match (&routed.plan, &classified) {
        (Plan::Mirror(rule, mirrors), Some(_)) => Some((*rule, &**mirrors)),
        (Plan::Origin(rule), Some((_, _, false))) if req.method() == Method::GET || head => {
            Some((*rule, direct_only()))
        }
        _ => None,
    };
    if let (Some((rule, mirrors)), Some((request, rel_path, _))) = (list, &classified) {
        let screen = Screen {
            ctx,
            door,
            src: access.client.ip(),
            user: access.user.clone(),
            dest: Some(dest),
            checked: routed.checked.as_deref(),
            rule,
            mirrors,
        };
        let url = access.target.clone();
        let original = Original {
            url: &url,
            checked: routed.checked.as_deref(),
        };
        // Boxed: the module path's state (cache, mirrors) would otherwise
        // make every request's future, which hyper moves and spawns, kilobytes
        // larger.
        return Box::pin(screen.answer(access, request, rel_path, head, Some(original))).await;
    }
    match routed.plan {
        Plan::NotModule(rule) => Ok(text(
            StatusCode::NOT_FOUND,
            &format!(
                "modgate: {} is not a module request, and rule '{}' only mirrors module requests",
                req.uri().path(),
                rule.name
            ),
        )),
        Plan::Origin(rule) => {
            let bytes_in = access.bytes_in.clone();
            access.upstream = Some(origin.url.clone().into());
            origin.absolute(req.uri_mut());
            let client = ctx
                .clients
                .via(Via::of(Some(rule)))
                .for_dest(dest, routed.checked.as_deref());
            let resp = forward_counted(ctx, &client, req, Scheme::HTTPS, dest, bytes_in, None).await?;
            note_upstream(access, resp.extensions());
            Ok(resp)
        }
        other => Err(Error::Internal(format!(
            "a request inside a tunnel cannot be planned as {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_goproxy_base_with_a_path_of_its_own_is_looked_past() {
        for (path, module, rel) in [
            (
                "/cached-only/example.com/m/@v/list",
                "example.com/m",
                "/example.com/m/@v/list",
            ),
            (
                "/api/go/remote/github.com/!azure/x/@v/v1.0.0.zip",
                "github.com/Azure/x",
                "/github.com/!azure/x/@v/v1.0.0.zip",
            ),
            ("/example.com/m/@latest", "example.com/m", "/example.com/m/@latest"),
        ] {
            let (request, rel_path, prefixed) = classify("proxy.golang.org", path, &Private::default())
                .unwrap()
                .unwrap();
            assert_eq!((request.module(), rel_path.as_str()), (Some(module), rel), "{path}");
            assert_eq!(prefixed, path != rel, "{path}");
        }
        // Not a module request anywhere in it: still refused, with the
        // reason for the whole path. A prefix with an empty or dot element
        // is none: an origin merging `//` or resolving `.` would answer for
        // `github.com/evil/golang.org/x/text`.
        for path in [
            "/a.com//b/@v/list",
            "/x/y/a.com//b/@v/list",
            "/1/2/3/4/5/6/7/8/9/example.com/m/@v/list",
            "/github.com/evil//golang.org/x/text/@v/list",
            "/github.com/evil/./golang.org/x/text/@v/list",
            "/evil/../golang.org/x/text/@v/list",
            "//golang.org/x/text/@v/list",
        ] {
            let err = classify("proxy.golang.org", path, &Private::default()).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{path}: {err}");
        }
        assert!(
            classify("proxy.golang.org", "/", &Private::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_checksum_database_below_a_prefix_is_one_and_a_private_reading_wins() {
        let none = Private::default();
        for (path, rel) in [
            (
                "/pfx/a/sumdb/sum.golang.org/lookup/github.com/!burnt!sushi/toml@v1.3.2",
                "/sumdb/sum.golang.org/lookup/github.com/!burnt!sushi/toml@v1.3.2",
            ),
            (
                "/api/go/remote/sumdb/sum.golang.org/supported",
                "/sumdb/sum.golang.org/supported",
            ),
            (
                "/pfx/sumdb/sum.golang.org/tile/8/0/001",
                "/sumdb/sum.golang.org/tile/8/0/001",
            ),
        ] {
            let (request, rel_path, prefixed) = classify("proxy.golang.org", path, &none).unwrap().unwrap();
            assert!(
                matches!(request, ModuleRequest::Sumdb { ref db, .. } if db == "sum.golang.org"),
                "{path}"
            );
            assert_eq!((rel_path.as_str(), prefixed), (rel, true), "{path}");
        }
        let lookup = "/pfx/a/sumdb/sum.golang.org/lookup/github.com/!burnt!sushi/toml@v1.3.2";
        let (request, _, _) = classify("proxy.golang.org", lookup, &none).unwrap().unwrap();
        assert_eq!(request.module(), Some("github.com/BurntSushi/toml"));
        // A module path is no checksum database, whatever its elements.
        let (request, _, prefixed) = classify("proxy.golang.org", "/example.com/sumdb/x/@v/list", &none)
            .unwrap()
            .unwrap();
        assert_eq!((request.module(), prefixed), (Some("example.com/sumdb/x"), false));

        // A prefix that reads as a module path of its own: the private
        // reading wins; without [private], the reading from `/` stands.
        let path = "/cache.corp.example/x/github.com/!burnt!sushi/toml/@v/v1.3.2.info";
        let (request, _, prefixed) = classify("proxy.golang.org", path, &none).unwrap().unwrap();
        assert_eq!(
            (request.module(), prefixed),
            (Some("cache.corp.example/x/github.com/BurntSushi/toml"), false)
        );
        let private = Private {
            modules: vec!["github.com/BurntSushi/*".parse().unwrap()],
            ..Private::default()
        };
        let (request, rel_path, prefixed) = classify("proxy.golang.org", path, &private).unwrap().unwrap();
        assert_eq!(request.module(), Some("github.com/BurntSushi/toml"));
        assert_eq!(
            (rel_path.as_str(), prefixed),
            ("/github.com/!burnt!sushi/toml/@v/v1.3.2.info", true)
        );
        // A module that is private from `/` stays as it is.
        let own = Private {
            modules: vec!["cache.corp.example/*".parse().unwrap()],
            ..Private::default()
        };
        // A prefix without a dot first: the private reading wins over the
        // shortest prefix's too.
        let path = "/go/cache.corp.example/x/github.com/!burnt!sushi/toml/@v/v1.3.2.info";
        let (request, _, _) = classify("proxy.golang.org", path, &none).unwrap().unwrap();
        assert_eq!(
            request.module(),
            Some("cache.corp.example/x/github.com/BurntSushi/toml")
        );
        let (request, rel_path, _) = classify("proxy.golang.org", path, &private).unwrap().unwrap();
        assert_eq!(
            (request.module(), rel_path.as_str()),
            (
                Some("github.com/BurntSushi/toml"),
                "/github.com/!burnt!sushi/toml/@v/v1.3.2.info"
            )
        );
        let path = "/cache.corp.example/x/github.com/!burnt!sushi/toml/@v/v1.3.2.info";
        let (request, _, prefixed) = classify("proxy.golang.org", path, &own).unwrap().unwrap();
        assert_eq!(
            (request.module(), prefixed),
            (Some("cache.corp.example/x/github.com/BurntSushi/toml"), false)
        );
    }
}

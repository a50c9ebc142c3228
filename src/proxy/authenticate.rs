//! Who is asking, on the explicit listener (`[auth]`).
//!
//! A CONNECT or an absolute-form request authenticates with
//! `Proxy-Authorization` (else 407 with `Proxy-Authenticate`). A request to
//! modgate's own module endpoint may use `Authorization` too (else 401
//! with `WWW-Authenticate`), since a GOPROXY client sends that. The
//! credentials stop here: `Proxy-Authorization` is a hop-by-hop header,
//! removed before anything is forwarded, and the endpoint forwards no
//! client header at all. The transparent listener has no credentials; it
//! never comes here.

use std::net::IpAddr;

use http::Request;
use http::header::{AUTHORIZATION, PROXY_AUTHORIZATION};

use crate::auth::{Door, Presented};
use crate::core::error::Error;
use crate::proxy::context::Context;
use crate::proxy::head::{FirstRequest, MAX_HEADERS};

/// The user a CONNECT's head authenticates; `None` when `[auth]` is off.
pub async fn connect(ctx: &Context, first: &FirstRequest, client: IpAddr) -> Result<Option<String>, Error> {
    let Some(auth) = &ctx.auth else {
        return Ok(None);
    };
    let head = first.buf.get(..first.head_len).unwrap_or_default();
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // The head parsed once already, when it was read.
    let _ = req.parse(head);
    let values = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(PROXY_AUTHORIZATION.as_str()))
        .map(|h| h.value);
    auth.authenticate(client, Presented::of(values), Door::Proxy)
        .await
        .map(Some)
}

/// The user a request served by hyper authenticates; `None` when `[auth]`
/// is off. `endpoint`: it is for modgate's own module endpoint.
pub async fn request<B>(
    ctx: &Context,
    req: &Request<B>,
    client: IpAddr,
    endpoint: bool,
) -> Result<Option<String>, Error> {
    let Some(auth) = &ctx.auth else {
        return Ok(None);
    };
    let headers = req.headers();
    let values = |name| Presented::of(headers.get_all(name).iter().map(|v| v.as_bytes()));
    let (presented, door) = match endpoint {
        true => match values(AUTHORIZATION) {
            Presented::Missing => (values(PROXY_AUTHORIZATION), Door::ModuleEndpoint),
            presented => (presented, Door::ModuleEndpoint),
        },
        false => (values(PROXY_AUTHORIZATION), Door::Proxy),
    };
    auth.authenticate(client, presented, door).await.map(Some)
}

//! The floor: a minimal hyper-1 forward proxy in the shape of hyper's own
//! `examples/http_proxy.rs` (accept → proxy() → CONNECT branch → tunnel()),
//! with no policy and no logging. Absolute-form requests go through one
//! pooled keep-alive client, the best a forward proxy on this stack can do.
//!
//! usage: hyper-floor 127.0.0.1:PORT

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<HttpConnector, Incoming>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(addr).await?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| proxy(client.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(true)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn proxy(client: Upstream, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // CONNECT www.domain.com:443 HTTP/1.1
    if req.method() == Method::CONNECT {
        let Some(target) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let _ = tunnel(upgraded, target).await;
            }
        });
        return Ok(status(StatusCode::OK));
    }
    // GET http://www.domain.com/path HTTP/1.1
    match client.request(req).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

async fn tunnel(upgraded: hyper::upgrade::Upgraded, target: String) -> std::io::Result<()> {
    let mut server = TcpStream::connect(target).await?;
    let _ = server.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut server).await?;
    Ok(())
}

fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = code;
    resp
}

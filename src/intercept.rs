//! Terminating TLS for `tls.intercept` hosts and routing each request inside.
//!
//! After `200 Connection established`, modgate reads the ClientHello, answers
//! with a leaf from its local CA for the SNI (or the CONNECT host), offers h2
//! and http/1.1, and serves the connection with hyper. Each request inside is
//! classified (GOPROXY path, sumdb path, or neither), decided with its module
//! path known, and then mirrored, sent to the original host, or refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::access::Access;
use crate::ca::LocalCa;
use crate::error::{self, Error};
use crate::forward::{self, Body, BoxError};
use crate::http1::Rewind;
use crate::idle::{Activity, Watched};
use crate::mirror::{self, Fetch};
use crate::module::{self, ModuleRequest};
use crate::policy::{Action, Facts};
use crate::request::{Authority, Host};
use crate::server::{Shared, decided, note_upstream, respond};
use crate::upstream;

/// How long a per-host TLS server configuration is reused.
const CONFIG_REUSE: Duration = Duration::from_secs(12 * 3600);
/// Per-host configurations kept before the cache is pruned.
const CONFIG_CACHE_MAX: usize = 1024;

/// The local CA and the TLS server configurations built from its leaves.
pub struct Interceptor {
    ca: LocalCa,
    configs: Mutex<HashMap<String, (Instant, Arc<rustls::ServerConfig>)>>,
}

impl Interceptor {
    /// An interceptor issuing from `ca`.
    pub fn new(ca: LocalCa) -> Interceptor {
        Interceptor {
            ca,
            configs: Mutex::new(HashMap::new()),
        }
    }

    /// The server configuration for `host`: its leaf, h2 and http/1.1. One
    /// per host, so TLS session resumption works across connections.
    fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, Error> {
        if let Ok(cache) = self.configs.lock() {
            if let Some((at, config)) = cache.get(host) {
                if at.elapsed() < CONFIG_REUSE {
                    return Ok(config.clone());
                }
            }
        }
        let leaf = self
            .ca
            .leaf(host)
            .map_err(|e| Error::Internal(format!("issuing a certificate for {host}: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS server config: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(leaf)));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut cache) = self.configs.lock() {
            if cache.len() >= CONFIG_CACHE_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < CONFIG_REUSE);
                if cache.len() >= CONFIG_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(host.to_owned(), (Instant::now(), config.clone()));
        }
        Ok(config)
    }
}

/// Serves an intercepted tunnel until the client closes it. `access` is the
/// tunnel's record; each request inside gets its own.
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    client: TcpStream,
    early: Bytes,
    peer: SocketAddr,
    dest: Authority,
    access: &mut Access,
) {
    let Some(interceptor) = shared.interceptor.as_ref() else {
        return;
    };
    let t = shared.config.timeouts;
    let activity = Arc::new(Activity::new());
    let io = Watched::counting(
        Rewind::new(early, client),
        activity.clone(),
        access.bytes_in.clone(),
        access.bytes_out.clone(),
    );
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(t.header, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            access.error = Some(format!("no TLS ClientHello from the client: {e}"));
            return;
        }
        Err(_) => {
            access.error = Some(format!(
                "no TLS ClientHello within {}",
                crate::config::fmt_duration(t.header)
            ));
            return;
        }
    };
    let name = start
        .client_hello()
        .server_name()
        .and_then(|sni| Host::parse(sni).ok())
        .filter(|sni| shared.config.tls.intercepts(sni))
        .unwrap_or_else(|| dest.host.clone())
        .to_string();
    let config = match interceptor.server_config(&name) {
        Ok(config) => config,
        Err(e) => {
            access.error = Some(e.to_string());
            return;
        }
    };
    let tls = match tokio::time::timeout(t.header, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            access.error = Some(handshake_failure(&e));
            tracing::warn!(client = %peer, host = %name, error = %error::chain(&e), "intercepted TLS handshake failed");
            return;
        }
        Err(_) => {
            access.error = Some("TLS handshake with the client timed out".into());
            return;
        }
    };

    let dest = Arc::new(dest);
    let inner_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = inner_shared.clone();
        let dest = dest.clone();
        async move { Ok::<_, Infallible>(route_inner(&shared, peer, &dest, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(t.header);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(None);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %peer, error = %e, "intercepted connection ended");
                }
                return;
            }
            () = shared.draining.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(t.idle) => {
                access.error = Some(format!("closed after {} idle", crate::config::fmt_duration(t.idle)));
                return;
            }
        }
    }
}

/// One line saying why the client refused modgate's certificate.
fn handshake_failure(e: &std::io::Error) -> String {
    let text = error::chain(e);
    if text.contains("UnknownCA") || text.contains("BadCertificate") || text.contains("CertificateUnknown") {
        return format!(
            "the client does not trust modgate's CA ({text}); give it `modgate ca bundle` as SSL_CERT_FILE"
        );
    }
    format!("TLS handshake with the client failed: {text}")
}

async fn route_inner(shared: &Shared, peer: SocketAddr, dest: &Authority, req: Request<Incoming>) -> Response<Body> {
    let origin = origin_url(dest);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut access = Access::new(peer, req.method().as_str(), format!("{origin}{path}"));
    let result = inner(shared, &mut access, dest, req).await;
    respond(result, access)
}

/// `https://host` (with the port when it is not 443).
fn origin_url(dest: &Authority) -> String {
    if dest.port == 443 {
        format!("https://{}", dest.host)
    } else {
        format!("https://{dest}")
    }
}

/// A classified module request and its (decoded) path relative to a
/// GOPROXY base.
fn classify(host: &str, raw_path: &str) -> Result<Option<(ModuleRequest, String)>, Error> {
    let path = module::decode_path(raw_path).map_err(Error::BadRequest)?;
    if let Some(request) = module::classify_proxy_path(&path).map_err(Error::BadRequest)? {
        return Ok(Some((request, path)));
    }
    match module::classify_sumdb_path(host, &path).map_err(Error::BadRequest)? {
        Some(request) => Ok(Some((request, format!("/sumdb/{host}{path}")))),
        None => Ok(None),
    }
}

async fn inner(
    shared: &Shared,
    access: &mut Access,
    dest: &Authority,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let t = shared.config.timeouts;
    let classified = classify(&dest.host.to_string(), req.uri().path())?;
    let module = classified.as_ref().and_then(|(m, _)| m.module());
    let facts = Facts {
        src: access.client.ip(),
        dest: Some(dest),
        addr: None,
        module,
    };
    let checked = upstream::check(&shared.config.rules, &shared.resolver, facts, t.connect).await?;
    let what = module.map_or_else(|| access.target.clone(), str::to_owned);
    let rule = decided(checked.decision, access, &what)?;
    let origin = origin_url(dest);
    match (&rule.action, classified) {
        (Action::Mirror { mirrors }, Some((request, rel_path))) => {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let fetch = Fetch {
                client: &shared.client,
                header_timeout: t.header,
                request: &request,
                rel_path: &rel_path,
                origin: Some(format!("{origin}{path}")),
                rule: &rule.name,
            };
            let (result, source) = mirror::fetch(mirrors, &fetch).await;
            access.upstream = Some(source);
            if let Ok(resp) = &result {
                note_upstream(access, resp.extensions());
            }
            result
        }
        (Action::Mirror { .. }, None) => Ok(mirror::text(
            StatusCode::NOT_FOUND,
            &format!(
                "modgate: {} is not a module request, and rule '{}' only mirrors module requests",
                req.uri().path(),
                rule.name
            ),
        )),
        _ => {
            let bytes_in = access.bytes_in.clone();
            access.upstream = Some(origin);
            let resp = forward::forward(&shared.client, req, Scheme::HTTPS, dest, None, t.header, bytes_in).await?;
            note_upstream(access, resp.extensions());
            Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
        }
    }
}

//! Fetching module files into the cache the way `serve` would for a client:
//! the same rules, mirrors, verification and cache, without a listener.
//! `modgate cache warm` drives it.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Method;
use http_body_util::BodyExt;

use crate::config::Config;
use crate::core::error::Error;
use crate::modules::cached::CacheStatus;
use crate::proxy::context::Context;
use crate::proxy::endpoint::serve_path;
use crate::proxy::server::{StartError, build_context};
use crate::telemetry::access::Access;

/// One fetched file.
#[derive(Debug, Clone, Copy)]
pub struct Warmed {
    /// Bytes of the file.
    pub bytes: u64,
    /// Whether it was already cached.
    pub cache: Option<CacheStatus>,
}

/// The proxy's request path, for one process that only fills the cache.
pub struct Warmer {
    ctx: Arc<Context>,
}

impl Warmer {
    /// Everything `serve` builds from `config`, minus the listener; an error
    /// when the config has no cache to fill.
    pub async fn new(config: Config) -> Result<Warmer, StartError> {
        let ctx = build_context(config).await?;
        if ctx.cache.is_none() {
            return Err(StartError::NoCache);
        }
        Ok(Warmer { ctx: Arc::new(ctx) })
    }

    /// The checksum database whose records go needs offline, unless the
    /// module is outside it (`sumdb.nosumdb`).
    pub fn sumdb_for(&self, module: &str) -> Option<&str> {
        let sumdb = &self.ctx.config.sumdb;
        (!sumdb.is_private(module)).then(|| sumdb.name())
    }

    /// GETs `path` (a GOPROXY path such as `/golang.org/x/mod/@v/v0.20.0.zip`)
    /// as a client on this machine would, and reads the whole answer.
    pub async fn fetch(&self, path: &str) -> Result<Warmed, Error> {
        let mut access = Access::new(SocketAddr::from(([127, 0, 0, 1], 0)), "GET", path);
        let resp = serve_path(&self.ctx, &mut access, &Method::GET, path).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        let mut first = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Error::Upstream {
                target: access
                    .upstream
                    .as_ref()
                    .map_or_else(|| "upstream".into(), ToString::to_string),
                reason: format!("{path}: the body failed after {bytes} bytes: {e}"),
            })?;
            if let Some(data) = frame.data_ref() {
                if first.len() < 512 {
                    first.extend_from_slice(&data[..data.len().min(512 - first.len())]);
                }
                bytes += data.len() as u64;
            }
        }
        if !status.is_success() {
            let said = String::from_utf8_lossy(&first);
            return Err(Error::Upstream {
                target: access
                    .upstream
                    .as_ref()
                    .map_or_else(|| "upstream".into(), ToString::to_string),
                reason: format!(
                    "{path}: answered {status}: {}",
                    said.lines().next().unwrap_or("").trim()
                ),
            });
        }
        Ok(Warmed {
            bytes,
            cache: access.cache,
        })
    }
}

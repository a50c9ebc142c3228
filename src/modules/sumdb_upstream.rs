//! The checksum database as an upstream: `sumdb.url` fetched over the
//! pooled client. The verifier reads lookups and tiles through
//! [`SumdbFetcher`], which keeps them in the cache store (they never
//! change, once checked to be a lookup or tile at all), so `cache warm`
//! leaves behind what an offline `go` asks for.
//!
//! A database that fails (no connection, no answer in time, an answer
//! other than 200, 404 or 410) is not asked again for [`DOWN_FOR`]: in an outage, each module
//! file would otherwise wait the whole timeout for it, every time. Its
//! files are then served unverified and not cached, as when it fails.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;

use crate::cache::{Key, Store};
use crate::core::body::full;
use crate::core::timer;
use crate::gomod::classify::classify_sumdb_path;
use crate::gomod::request::ModuleRequest;
use crate::modules::sumdb::{FetchError, TileFetcher};
use crate::modules::verify::sumdb_answer_shape;
use crate::upstream::pool::{self, Clients};

/// How long a database that failed to answer is not asked again.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// Fetches database answers from `url`, keeping lookups and tiles.
pub struct SumdbFetcher {
    name: String,
    url: String,
    clients: Clients,
    timeout: Duration,
    store: Option<Store>,
    /// Until when it is not asked, and why.
    down: Mutex<Option<(Instant, String)>>,
}

impl SumdbFetcher {
    /// The database `name` at `url`, fetched with `clients` within
    /// `timeout`, kept in `store` when there is one.
    pub fn new(name: &str, url: &str, clients: Clients, timeout: Duration, store: Option<Store>) -> SumdbFetcher {
        SumdbFetcher {
            name: name.to_owned(),
            url: url.to_owned(),
            clients,
            timeout,
            store,
            down: Mutex::new(None),
        }
    }

    /// The failure to answer with while the database is down.
    fn still_down(&self) -> Option<FetchError> {
        let down = self.down.lock().ok()?;
        let (until, why) = down.as_ref()?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(FetchError::Failed(format!(
            "{why}; not asked again for {}",
            crate::core::duration::fmt_duration(Duration::from_secs(left.as_secs().max(1)))
        )))
    }

    /// Notes how asking it went: a failure to answer marks it down.
    fn outcome(&self, result: &Result<Bytes, FetchError>) {
        let Ok(mut down) = self.down.lock() else { return };
        match result {
            Err(FetchError::Failed(why)) => *down = Some((Instant::now() + DOWN_FOR, why.clone())),
            _ => *down = None,
        }
    }

    /// The cache key of an immutable answer (`lookup/…`, `tile/…`).
    fn key(&self, path: &str) -> Option<Key> {
        let immutable = path.starts_with("lookup/") || path.starts_with("tile/");
        immutable.then(|| Key::sumdb(&self.name, path).ok()).flatten()
    }

    async fn get(&self, path: &str, limit: usize) -> Result<Bytes, FetchError> {
        let key = self.key(path);
        if let (Some(store), Some(key)) = (&self.store, &key) {
            if let Ok(Some(hit)) = store.get(key).await {
                if let Ok(bytes) = hit.bytes().await {
                    if bytes.len() <= limit {
                        return Ok(bytes);
                    }
                }
            }
        }
        if let Some(down) = self.still_down() {
            return Err(down);
        }
        let fetched = self.ask(path, limit).await;
        self.outcome(&fetched);
        let bytes = fetched?;
        if let (Some(store), Some(key)) = (&self.store, &key) {
            let shape =
                classify_sumdb_path(&self.name, &format!("/{path}"))
                    .ok()
                    .flatten()
                    .map(|request| match request {
                        ModuleRequest::Sumdb { kind, .. } => sumdb_answer_shape(&kind, path, &bytes),
                        _ => Ok(()),
                    });
            match shape {
                Some(Err(why)) => {
                    tracing::warn!(key = key.as_str(), reason = %why, "not caching a checksum-database answer that is not one");
                }
                _ => {
                    if let Err(e) = store.put(key, bytes.clone()).await {
                        tracing::warn!(key = key.as_str(), error = %e, "cannot cache a checksum-database answer");
                    }
                }
            }
        }
        Ok(bytes)
    }

    /// Asks the database for `path`.
    async fn ask(&self, path: &str, limit: usize) -> Result<Bytes, FetchError> {
        let url = format!("{}/{path}", self.url);
        let request = Request::get(&url)
            .header(header::USER_AGENT, "modgate")
            .header(header::VIA, crate::core::via::sent(http::Version::HTTP_11))
            .body(full(Bytes::new()))
            .map_err(|e| FetchError::Failed(format!("bad URL {url}: {e}")))?;
        let client = self.clients.for_url(&url, None);
        let resp = timer::timeout(self.timeout, pool::send(&client, request))
            .await
            .map_err(|_| FetchError::Failed(format!("{url}: no answer within {:?}", self.timeout)))?
            .map_err(|e| FetchError::Failed(format!("{url}: {}", crate::core::error::chain(&e))))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Err(FetchError::NotFound),
            other => return Err(FetchError::Failed(format!("{url} answered {other}"))),
        }
        let mut body = resp.into_body();
        let mut bytes = BytesMut::new();
        let read = timer::timeout(self.timeout, async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| FetchError::Failed(format!("{url}: {e}")))?;
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > limit {
                        return Err(FetchError::TooLarge(limit));
                    }
                    bytes.extend_from_slice(data);
                }
            }
            Ok(())
        })
        .await;
        match read {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(FetchError::Failed(format!("{url}: the body did not arrive in time"))),
        }
        Ok(bytes.freeze())
    }
}

impl TileFetcher for SumdbFetcher {
    fn fetch<'a>(&'a self, path: &'a str, limit: usize) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(self.get(path, limit))
    }
}

//! The checksum database as an upstream: `sumdb.url` fetched over the
//! pooled client. The verifier reads lookups and tiles through
//! [`SumdbFetcher`], which keeps them in the cache store (they never
//! change), so `cache warm` leaves behind what an offline `go` asks for.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;

use crate::cache::{Key, Store};
use crate::core::body::full;
use crate::core::timer;
use crate::modules::sumdb::{FetchError, TileFetcher};
use crate::upstream::pool::{self, Clients};

/// Fetches database answers from `url`, keeping lookups and tiles.
pub struct SumdbFetcher {
    name: String,
    url: String,
    clients: Clients,
    timeout: Duration,
    store: Option<Store>,
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
        let url = format!("{}/{path}", self.url);
        let request = Request::get(&url)
            .header(header::USER_AGENT, "modgate")
            .body(full(Bytes::new()))
            .map_err(|e| FetchError::Failed(format!("bad URL {url}: {e}")))?;
        let client = self.clients.default_client();
        let resp = timer::timeout(self.timeout, pool::send(client, request))
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
        let bytes = bytes.freeze();
        if let (Some(store), Some(key)) = (&self.store, &key) {
            if let Err(e) = store.put(key, bytes.clone()).await {
                tracing::warn!(key = key.as_str(), error = %e, "cannot cache a checksum-database answer");
            }
        }
        Ok(bytes)
    }
}

impl TileFetcher for SumdbFetcher {
    fn fetch<'a>(&'a self, path: &'a str, limit: usize) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(self.get(path, limit))
    }
}

//! The cache on object storage (`s3://`, `gs://`, `az://`, `file://`)
//! through the object_store crate.
//!
//! Keys are object names under the URL's prefix, unchanged. Credentials,
//! region and endpoint come from the environment the way each service's
//! own tools read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_*`,
//! `AZURE_*`). There is no size limit and no eviction: object storage has
//! lifecycle rules for that.
//!
//! A write is buffered up to one part ([`PART_SIZE`]); an object that ends
//! within it is sent with one PUT. A bigger one becomes a multipart upload
//! with at most [`PARTS_IN_FLIGHT`] parts in memory, completed only on
//! commit and aborted otherwise, so nothing partial is ever visible.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::cache::dir::HIDDEN_DIR;
use crate::cache::entry::{CounterSnapshot, Counters, Entry, GcReport, Stats};
use crate::cache::error::CacheError;
use crate::cache::key::Key;
use crate::cache::object::{CachedObject, ObjectStream};
use crate::config::cache::{Service, StoreUrl};

/// One part of a multipart upload (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once; bounds a writer's memory.
pub const PARTS_IN_FLIGHT: usize = 2;

/// A cache in object storage.
pub(crate) struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    /// The URL, for messages.
    name: String,
    counters: Counters,
}

impl RemoteStore {
    /// Builds the client for `url`. With `env`, the `AWS_*`, `GOOGLE_*` and
    /// `AZURE_*` settings are taken from it instead of this process's
    /// environment. No request is made.
    pub(crate) fn open(url: &StoreUrl, env: Option<&[(String, String)]>) -> Result<Arc<RemoteStore>, CacheError> {
        let name = url.to_string();
        let open_error = |e: object_store::Error| CacheError::Open {
            backend: name.clone(),
            detail: crate::cache::error::one_line(e),
        };
        // reqwest is built without a crypto provider of its own; modgate's
        // is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base: Arc<dyn ObjectStore> = match url.service {
            Service::S3 => {
                use object_store::aws::AmazonS3Builder;
                let builder = match env {
                    None => AmazonS3Builder::from_env(),
                    Some(vars) => with_env(AmazonS3Builder::new(), vars, "AWS_", |b, k, v| b.with_config(k, v)),
                };
                Arc::new(
                    builder
                        .with_url(url.url.as_str())
                        .with_retry(retry())
                        .build()
                        .map_err(open_error)?,
                )
            }
            Service::Gcs => {
                use object_store::gcp::GoogleCloudStorageBuilder;
                let builder = match env {
                    None => GoogleCloudStorageBuilder::from_env(),
                    Some(vars) => with_env(GoogleCloudStorageBuilder::new(), vars, "GOOGLE_", |b, k, v| {
                        b.with_config(k, v)
                    }),
                };
                Arc::new(
                    builder
                        .with_url(url.url.as_str())
                        .with_retry(retry())
                        .build()
                        .map_err(open_error)?,
                )
            }
            Service::Azure => {
                use object_store::azure::MicrosoftAzureBuilder;
                let builder = match env {
                    None => MicrosoftAzureBuilder::from_env(),
                    Some(vars) => with_env(MicrosoftAzureBuilder::new(), vars, "AZURE_", |b, k, v| {
                        b.with_config(k, v)
                    }),
                };
                Arc::new(
                    builder
                        .with_url(url.url.as_str())
                        .with_retry(retry())
                        .build()
                        .map_err(open_error)?,
                )
            }
            Service::File => {
                let dir = url.url.to_file_path().map_err(|()| CacheError::Open {
                    backend: name.clone(),
                    detail: "not a local path".into(),
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| CacheError::Open {
                    backend: name.clone(),
                    detail: format!("{}: {e}", dir.display()),
                })?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(open_error)?
                    .with_fsync(true);
                // The URL's path is the root itself: no prefix below.
                return Ok(Arc::new(RemoteStore {
                    store: Arc::new(local),
                    name,
                    counters: Counters::default(),
                }));
            }
        };
        let prefix = url.url.path().trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            base
        } else {
            let prefix = ObjectPath::parse(prefix).map_err(|e| CacheError::Open {
                backend: name.clone(),
                detail: format!("bad prefix: {e}"),
            })?;
            Arc::new(PrefixStore::new(base, prefix))
        };
        Ok(Arc::new(RemoteStore {
            store,
            name,
            counters: Counters::default(),
        }))
    }

    /// The URL.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> CacheError {
        CacheError::backend(&self.name, op, key, e)
    }

    fn path_of(&self, key: &Key) -> Result<ObjectPath, CacheError> {
        ObjectPath::parse(key.as_str()).map_err(|e| self.error("key", key.as_str(), e.into()))
    }

    pub(crate) async fn get(&self, key: &Key) -> Result<Option<CachedObject>, CacheError> {
        let path = self.path_of(key)?;
        let result = match self.store.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("read", key.as_str(), e)),
        };
        let (size, stored_at) = (result.meta.size, SystemTime::from(result.meta.last_modified));
        let (name, k) = (self.name.clone(), key.clone());
        let chunks = result
            .into_stream()
            .map_err(move |e| CacheError::backend(&name, "read", k.as_str(), e))
            .boxed();
        Ok(Some(CachedObject::new(
            key.clone(),
            size,
            stored_at,
            ObjectStream::new(chunks, None),
        )))
    }

    pub(crate) fn writer(self: &Arc<Self>, key: &Key) -> Result<RemoteWriter, CacheError> {
        Ok(RemoteWriter {
            store: self.clone(),
            key: key.clone(),
            path: self.path_of(key)?,
            state: Upload::Buffering(Vec::new(), 0),
        })
    }

    pub(crate) async fn delete(&self, key: &Key) -> Result<(), CacheError> {
        let path = self.path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", key.as_str(), e)),
        }
    }

    /// Objects whose key starts with `prefix`, sorted by key. Objects whose
    /// names are not keys (other tools' files, the hidden prefix) are left
    /// out.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Entry>, CacheError> {
        // object_store lists by whole path elements: list the directory the
        // prefix is in, then filter by the string prefix.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let dir = ObjectPath::parse(dir).map_err(|e| self.error("list", prefix, e.into()))?;
        let dir = (!dir.as_ref().is_empty()).then_some(dir);
        let mut listing = self.store.list(dir.as_ref());
        let mut entries = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.error("list", prefix, e))?;
            let name = meta.location.as_ref();
            if !name.starts_with(prefix) || name.starts_with(HIDDEN_DIR) {
                continue;
            }
            if let Ok(key) = Key::parse(name) {
                entries.push(Entry {
                    key,
                    size: meta.size,
                    stored_at: SystemTime::from(meta.last_modified),
                    last_used: None,
                });
            }
        }
        entries.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        Ok(entries)
    }

    /// Totals from a full listing.
    pub(crate) async fn stats(&self) -> Result<Stats, CacheError> {
        let entries = self.list("").await?;
        Ok(Stats::of(
            &self.name,
            None,
            entries.iter().map(|e| (&e.key, e.size)),
            self.counters.snapshot(),
        ))
    }

    pub(crate) fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Nothing to collect: uploads that were never committed are aborted
    /// when their writer is dropped, and there is no size limit. (A crash
    /// can leave an incomplete multipart upload, invisible and billed;
    /// a bucket lifecycle rule removes those.)
    pub(crate) fn gc(&self) -> GcReport {
        GcReport::default()
    }

    /// Writes and deletes a small object under the hidden prefix.
    pub(crate) async fn ready(&self) -> Result<(), CacheError> {
        let name = format!("{HIDDEN_DIR}/ready-{}-{}", std::process::id(), rand_suffix());
        let path = ObjectPath::parse(&name).map_err(|e| self.error("ready", &name, e.into()))?;
        self.store
            .put(&path, PutPayload::from_static(b"ok\n"))
            .await
            .map_err(|e| self.error("ready", &name, e))?;
        self.store
            .delete(&path)
            .await
            .map_err(|e| self.error("ready", &name, e))
    }
}

/// Few, quick retries: a cache that is down must fail fast, so the
/// semantics above can serve stale objects or go to the upstream instead.
/// (object_store's default retries for up to three minutes.)
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(30),
        ..Default::default()
    }
}

/// Applies the `prefix`ed variables of `vars` whose names are config keys,
/// the way the builders' own `from_env` does.
fn with_env<B, K: std::str::FromStr>(
    mut builder: B,
    vars: &[(String, String)],
    prefix: &str,
    apply: impl Fn(B, K, &str) -> B,
) -> B {
    for (name, value) in vars {
        if name.starts_with(prefix) {
            if let Ok(key) = name.to_ascii_lowercase().parse::<K>() {
                builder = apply(builder, key, value);
            }
        }
    }
    builder
}

/// A few random hex digits for probe names, from the clock and a counter.
fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos:08x}{:04x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Starts a multipart upload with the chunks buffered so far. It owns
/// what it needs, so the future stays `Send` (a writer's multipart state is
/// not `Sync` and must not be borrowed across the await).
async fn start_multipart(
    store: Arc<RemoteStore>,
    key: Key,
    path: ObjectPath,
    buffered: Vec<Bytes>,
) -> Result<WriteMultipart, CacheError> {
    let upload = store
        .store
        .put_multipart(&path)
        .await
        .map_err(|e| store.error("write", key.as_str(), e))?;
    let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    for chunk in buffered {
        upload.put(chunk);
    }
    Ok(upload)
}

/// Where an object-storage write is.
enum Upload {
    /// Chunks so far, and their length: below one part.
    Buffering(Vec<Bytes>, usize),
    /// A multipart upload under way.
    Multipart(WriteMultipart),
    /// Committed or aborted.
    Done,
}

/// An object being written to object storage.
pub(crate) struct RemoteWriter {
    store: Arc<RemoteStore>,
    key: Key,
    path: ObjectPath,
    state: Upload,
}

impl RemoteWriter {
    pub(crate) fn backend(&self) -> &str {
        &self.store.name
    }

    fn error(&self, op: &'static str, e: object_store::Error) -> CacheError {
        self.store.error(op, self.key.as_str(), e)
    }

    /// Buffers `chunk` while the object fits in one part; past that, starts
    /// the multipart upload and sends parts, waiting while
    /// [`PARTS_IN_FLIGHT`] are under way.
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<(), CacheError> {
        if let Upload::Buffering(chunks, len) = &mut self.state {
            if *len + chunk.len() < PART_SIZE {
                *len += chunk.len();
                chunks.push(chunk);
                return Ok(());
            }
            let buffered = std::mem::take(chunks);
            let upload = start_multipart(self.store.clone(), self.key.clone(), self.path.clone(), buffered).await?;
            self.state = Upload::Multipart(upload);
        }
        let Upload::Multipart(upload) = &mut self.state else {
            return Err(CacheError::backend(
                &self.store.name,
                "write",
                self.key.as_str(),
                "already finished",
            ));
        };
        let capacity = upload.wait_for_capacity(PARTS_IN_FLIGHT).await;
        match capacity {
            Ok(()) => {
                upload.put(chunk);
                Ok(())
            }
            Err(e) => Err(self.error("write", e)),
        }
    }

    /// Completes the object (one PUT, or the multipart upload) and counts
    /// its `size` bytes.
    pub(crate) async fn commit(mut self, size: u64) -> Result<(), CacheError> {
        let done = match std::mem::replace(&mut self.state, Upload::Done) {
            Upload::Buffering(chunks, _) => {
                let payload: PutPayload = chunks.into_iter().collect();
                self.store.store.put(&self.path, payload).await.map(drop)
            }
            Upload::Multipart(upload) => upload.finish().await.map(drop),
            Upload::Done => {
                return Err(CacheError::backend(
                    &self.store.name,
                    "commit",
                    self.key.as_str(),
                    "already finished",
                ));
            }
        };
        done.map_err(|e| self.error("commit", e))?;
        self.store.counters.stored(size);
        Ok(())
    }

    /// Stops a multipart upload so the store discards its parts.
    pub(crate) async fn abort(mut self) -> Result<(), CacheError> {
        match std::mem::replace(&mut self.state, Upload::Done) {
            Upload::Multipart(upload) => upload.abort().await.map_err(|e| self.error("abort", e)),
            _ => Ok(()),
        }
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if let Upload::Multipart(upload) = std::mem::replace(&mut self.state, Upload::Done) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let (name, key) = (self.store.name.clone(), self.key.to_string());
                    runtime.spawn(async move {
                        if let Err(e) = upload.abort().await {
                            tracing::warn!(backend = %name, %key, error = %e, "cache could not abort an uncommitted upload");
                        }
                    });
                }
                Err(_) => {
                    tracing::warn!(backend = %self.store.name, key = %self.key, "cache upload dropped outside a runtime; not aborted")
                }
            }
        }
    }
}

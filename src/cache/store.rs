//! [`Store`]: the cache's one entry point, over a directory or object
//! storage.

use std::sync::Arc;

use bytes::Bytes;

use crate::cache::dir::DirStore;
use crate::cache::entry::{CounterSnapshot, Entry, GcReport, Stats};
use crate::cache::error::CacheError;
use crate::cache::key::Key;
use crate::cache::object::CachedObject;
use crate::cache::remote::RemoteStore;
use crate::cache::writer::{ObjectWriter, Target};
use crate::config::cache::{CacheLocation, CacheSettings};

/// The module cache's storage. Cheap to clone; clones share one index and
/// one set of counters.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Dir(Arc<DirStore>),
    Remote(Arc<RemoteStore>),
}

impl Store {
    /// Opens the cache `settings` describe: `None` when it is off. A
    /// directory is created if needed and indexed (a walk of the tree);
    /// object storage is not contacted until the first operation (see
    /// [`Store::ready`]). Credentials come from the environment.
    pub async fn open(settings: &CacheSettings) -> Result<Option<Store>, CacheError> {
        Store::open_in(settings, None).await
    }

    /// [`Store::open`] with the object-storage environment (`AWS_*`,
    /// `GOOGLE_*`, `AZURE_*`) taken from `env` instead of this process's.
    pub async fn open_with_env(
        settings: &CacheSettings,
        env: &[(String, String)],
    ) -> Result<Option<Store>, CacheError> {
        Store::open_in(settings, Some(env)).await
    }

    async fn open_in(settings: &CacheSettings, env: Option<&[(String, String)]>) -> Result<Option<Store>, CacheError> {
        let backend = match &settings.location {
            CacheLocation::Off { .. } => return Ok(None),
            CacheLocation::Dir { path, max_size } => Backend::Dir(DirStore::open(path, *max_size).await?),
            CacheLocation::Url(url) => Backend::Remote(RemoteStore::open(url, env)?),
        };
        Ok(Some(Store { backend }))
    }

    /// What opening the store worked around, one line each (a directory
    /// cache's unreadable subdirectories, or its read-only root).
    pub fn warnings(&self) -> Vec<String> {
        match &self.backend {
            Backend::Dir(d) => d.warnings(),
            Backend::Remote(_) => Vec::new(),
        }
    }

    /// A directory cache's hidden directory (`.modgate/`), for files of
    /// modgate's own that belong on the cache's disk; `None` for object
    /// storage.
    pub fn hidden_dir(&self) -> Option<std::path::PathBuf> {
        match &self.backend {
            Backend::Dir(d) => Some(d.root().join(crate::cache::dir::HIDDEN_DIR)),
            Backend::Remote(_) => None,
        }
    }

    /// The backend, for messages: `dir /var/cache/modgate` or
    /// `s3://bucket/prefix`.
    pub fn backend(&self) -> &str {
        match &self.backend {
            Backend::Dir(d) => d.name(),
            Backend::Remote(r) => r.name(),
        }
    }

    /// The object under `key`, or `None`. Its body streams; the object is
    /// pinned (never evicted) until the [`CachedObject`] and its stream are
    /// dropped.
    pub async fn get(&self, key: &Key) -> Result<Option<CachedObject>, CacheError> {
        match &self.backend {
            Backend::Dir(d) => d.get(key).await,
            Backend::Remote(r) => r.get(key).await,
        }
    }

    /// A writer for the object under `key`; nothing is visible until its
    /// [`ObjectWriter::commit`].
    pub async fn writer(&self, key: &Key) -> Result<ObjectWriter, CacheError> {
        let target = match &self.backend {
            Backend::Dir(d) => Target::Dir(d.writer(key).await?),
            Backend::Remote(r) => Target::Remote(r.writer(key)?),
        };
        Ok(ObjectWriter::new(key.clone(), target))
    }

    /// Stores a small object in one call (a writer, one chunk, a commit).
    pub async fn put(&self, key: &Key, body: Bytes) -> Result<u64, CacheError> {
        let mut writer = self.writer(key).await?;
        writer.write(body).await?;
        writer.commit().await
    }

    /// Removes the object under `key`; removing a missing one is not an
    /// error. A reader already streaming it finishes reading it.
    pub async fn delete(&self, key: &Key) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Dir(d) => d.delete(key).await.map(drop),
            Backend::Remote(r) => r.delete(key).await,
        }
    }

    /// The objects whose key starts with `prefix` (`""` for all), sorted by
    /// key, with their sizes and times. A directory answers from its index;
    /// object storage lists the bucket.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, CacheError> {
        match &self.backend {
            Backend::Dir(d) => Ok(d.list(prefix)),
            Backend::Remote(r) => r.list(prefix).await,
        }
    }

    /// Objects and bytes, in total and by kind, and the counters.
    pub async fn stats(&self) -> Result<Stats, CacheError> {
        match &self.backend {
            Backend::Dir(d) => Ok(d.stats()),
            Backend::Remote(r) => r.stats().await,
        }
    }

    /// Objects and bytes stored and evicted since the store was opened:
    /// cheap, for the metrics layer.
    pub fn counters(&self) -> CounterSnapshot {
        match &self.backend {
            Backend::Dir(d) => d.counters(),
            Backend::Remote(r) => r.counters(),
        }
    }

    /// Removes temp files that crashed writers left (older than
    /// [`ORPHAN_AGE`](crate::cache::dir::ORPHAN_AGE)) and evicts down to
    /// `max_size`. Object storage has nothing to collect.
    pub async fn gc(&self) -> Result<GcReport, CacheError> {
        match &self.backend {
            Backend::Dir(d) => d.gc().await,
            Backend::Remote(r) => Ok(r.gc()),
        }
    }

    /// Whether the cache can be written now: writes and removes a small
    /// object under the hidden `.modgate/` prefix. For `/readyz`.
    pub async fn ready(&self) -> Result<(), CacheError> {
        match &self.backend {
            Backend::Dir(d) => d.ready().await,
            Backend::Remote(r) => r.ready().await,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish()
    }
}

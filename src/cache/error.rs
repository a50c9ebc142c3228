//! The one error type of the cache: every message is one line that names
//! the backend and the key.

use std::fmt::Display;
use std::io;

/// What went wrong in the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A key that is not a GOPROXY or checksum-database path the cache keeps.
    #[error("bad cache key {key:?}: {why}")]
    BadKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// The backend failed an operation.
    #[error("cache {backend}: {op} {key}: {detail}")]
    Backend {
        /// `dir /var/cache/modgate` or `s3://bucket/prefix`.
        backend: String,
        /// `read`, `write`, `commit`, `delete`, `list`, ...
        op: &'static str,
        /// The key, or `-` for the whole store.
        key: String,
        /// The cause, on one line.
        detail: String,
        /// The I/O error kind when the cause was one (e.g. `StorageFull`).
        kind: Option<io::ErrorKind>,
    },
    /// An object over [`MAX_OBJECT_BYTES`](crate::cache::writer::MAX_OBJECT_BYTES).
    #[error("cache {backend}: write {key}: larger than the {limit}-byte limit for one object; nothing was stored")]
    TooLarge {
        /// The backend.
        backend: String,
        /// The key.
        key: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A write after an earlier one failed: the object cannot be completed.
    #[error("cache {backend}: write {key}: an earlier write failed; nothing was stored")]
    Failed {
        /// The backend.
        backend: String,
        /// The key.
        key: String,
    },
    /// The cache cannot be opened as configured.
    #[error("cache {backend}: cannot open: {detail}")]
    Open {
        /// The backend.
        backend: String,
        /// Why, on one line.
        detail: String,
    },
}

impl CacheError {
    /// A failed I/O operation on `key`.
    pub(crate) fn io(backend: &str, op: &'static str, key: &str, e: &io::Error) -> CacheError {
        CacheError::Backend {
            backend: backend.to_owned(),
            op,
            key: key.to_owned(),
            detail: one_line(e),
            kind: Some(e.kind()),
        }
    }

    /// A failed operation whose cause is not an I/O error (object storage,
    /// a task that panicked).
    pub(crate) fn backend(backend: &str, op: &'static str, key: &str, e: impl Display) -> CacheError {
        CacheError::Backend {
            backend: backend.to_owned(),
            op,
            key: key.to_owned(),
            detail: one_line(e),
            kind: None,
        }
    }

    /// Whether the cause was a full disk or quota.
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            CacheError::Backend {
                kind: Some(io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded),
                ..
            }
        )
    }
}

/// `e` on one line: object stores quote response bodies that span lines.
pub(crate) fn one_line(e: impl Display) -> String {
    let text = e.to_string();
    let mut out: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    out.dedup();
    out.join("; ")
}

//! Writing an object: chunks as they arrive, then one commit that makes the
//! whole object visible at once. Dropped or aborted without a commit,
//! nothing is visible; after any failed write, nothing can be committed.

use bytes::Bytes;

use crate::cache::dir::DirWriter;
use crate::cache::error::CacheError;
use crate::cache::key::Key;
use crate::cache::remote::RemoteWriter;

/// The largest object the cache stores: above the 500 MiB zip limit of
/// `go`, so any valid module fits, and a runaway body fails.
pub const MAX_OBJECT_BYTES: u64 = 512 << 20;

/// An object being written. Call [`ObjectWriter::write`] for each chunk,
/// then [`ObjectWriter::commit`].
pub struct ObjectWriter {
    key: Key,
    target: Target,
    written: u64,
    failed: bool,
}

/// Where the bytes go.
pub(crate) enum Target {
    /// A temp file in the cache directory.
    Dir(DirWriter),
    /// A buffer, then a multipart upload.
    Remote(RemoteWriter),
}

impl ObjectWriter {
    pub(crate) fn new(key: Key, target: Target) -> ObjectWriter {
        ObjectWriter {
            key,
            target,
            written: 0,
            failed: false,
        }
    }

    fn backend(&self) -> String {
        match &self.target {
            Target::Dir(w) => w.backend().to_owned(),
            Target::Remote(w) => w.backend().to_owned(),
        }
    }

    /// The key being written.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk. An error (a full disk, an object over
    /// [`MAX_OBJECT_BYTES`], a failed upload) fails the whole object:
    /// later writes and the commit fail too, and nothing becomes visible.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), CacheError> {
        if self.failed {
            return Err(CacheError::Failed {
                backend: self.backend(),
                key: self.key.to_string(),
            });
        }
        let len = chunk.len() as u64;
        if self.written + len > MAX_OBJECT_BYTES {
            self.failed = true;
            return Err(CacheError::TooLarge {
                backend: self.backend(),
                key: self.key.to_string(),
                limit: MAX_OBJECT_BYTES,
            });
        }
        let result = match &mut self.target {
            Target::Dir(w) => w.write(&chunk).await,
            Target::Remote(w) => w.write(chunk).await,
        };
        match result {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Makes the object visible, whole, under its key (replacing any
    /// previous one). Returns its size.
    pub async fn commit(self) -> Result<u64, CacheError> {
        if self.failed {
            return Err(CacheError::Failed {
                backend: self.backend(),
                key: self.key.to_string(),
            });
        }
        let size = self.written;
        match self.target {
            Target::Dir(w) => w.commit(size).await?,
            Target::Remote(w) => w.commit(size).await?,
        }
        Ok(size)
    }

    /// Discards what was written. Dropping the writer does the same; this
    /// also reports whether the clean-up worked.
    pub async fn abort(self) -> Result<(), CacheError> {
        match self.target {
            Target::Dir(w) => w.abort().await,
            Target::Remote(w) => w.abort().await,
        }
    }
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .field("written", &self.written)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

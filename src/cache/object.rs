//! A cached object being read: its metadata and a streaming body that keeps
//! the object pinned until the body is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use crate::cache::error::CacheError;
use crate::cache::key::Key;
use crate::cache::lru::PinGuard;

/// A cache hit: metadata, and the body as a stream of chunks. While this
/// value or its [`ObjectStream`] lives, eviction leaves the object alone.
pub struct CachedObject {
    /// The key it was found under.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored (the backend's last-modified time): the semantics
    /// layer measures time to live from here.
    pub stored_at: SystemTime,
    body: ObjectStream,
}

impl CachedObject {
    pub(crate) fn new(key: Key, size: u64, stored_at: SystemTime, body: ObjectStream) -> CachedObject {
        CachedObject {
            key,
            size,
            stored_at,
            body,
        }
    }

    /// The body, chunk by chunk (64 KiB to 1 MiB each from a directory).
    pub fn into_stream(self) -> ObjectStream {
        self.body
    }

    /// Reads the whole body into memory: for the small objects (`.info`,
    /// `.mod`, lists, sumdb records) and for tests. Stream zips instead.
    pub async fn bytes(self) -> Result<Bytes, CacheError> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(chunks.concat().into())
    }
}

impl std::fmt::Debug for CachedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedObject")
            .field("key", &self.key)
            .field("size", &self.size)
            .field("stored_at", &self.stored_at)
            .finish_non_exhaustive()
    }
}

/// The body of a [`CachedObject`]: chunks of bytes, never the whole object
/// at once. It holds the object's pin until dropped.
pub struct ObjectStream {
    chunks: BoxStream<'static, Result<Bytes, CacheError>>,
    _pin: Option<PinGuard>,
}

impl ObjectStream {
    pub(crate) fn new(chunks: BoxStream<'static, Result<Bytes, CacheError>>, pin: Option<PinGuard>) -> ObjectStream {
        ObjectStream { chunks, _pin: pin }
    }
}

impl Stream for ObjectStream {
    type Item = Result<Bytes, CacheError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.as_mut().poll_next(cx)
    }
}

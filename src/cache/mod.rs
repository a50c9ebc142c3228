//! The storage layer of the module cache: objects under GOPROXY-layout
//! keys, on a local directory or in object storage. What to cache and for
//! how long is decided above this layer; this one stores, streams, pins,
//! evicts and reports.
//!
//! - [`key`]: [`Key`], the GOPROXY path of a cached object.
//! - [`store`]: [`Store`], open / get / writer / delete / list / stats /
//!   gc / ready.
//! - [`object`]: [`CachedObject`], a hit with a streaming, pinned body.
//! - [`writer`]: [`ObjectWriter`], chunks in, one atomic commit.
//! - [`dir`]: the directory backend (temp file, fsync, rename), with
//!   [`lru`], the index that evicts least recently used objects, and
//!   [`file_body`], which streams a file from the page cache.
//! - [`remote`]: object storage through object_store.
//! - [`entry`]: listings, statistics, counters, gc reports.
//! - [`error`]: one error enum for all of it, [`CacheError`].

pub mod dir;
pub mod entry;
pub mod error;
pub mod file_body;
pub mod key;
pub(crate) mod lru;
pub mod object;
pub mod remote;
pub mod store;
pub mod writer;

pub use entry::{CounterSnapshot, Entry, GcReport, KindStats, Stats};
pub use error::CacheError;
pub use key::{Key, KeyKind};
pub use object::{CachedObject, ObjectStream};
pub use store::Store;
pub use writer::{MAX_OBJECT_BYTES, ObjectWriter};

//! What the cache reports about itself: listed entries, statistics by kind,
//! the counters the metrics layer reads, and what `gc` did.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::cache::key::{Key, KeyKind};

/// One stored object, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored (the backend's last-modified time).
    pub stored_at: SystemTime,
    /// When this process last read or stored it (directory caches only).
    pub last_used: Option<SystemTime>,
}

/// Object count and bytes of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindStats {
    /// Objects.
    pub objects: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What the cache holds, and what it has done since it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// The backend: `dir /var/cache/modgate` or `s3://bucket/prefix`.
    pub backend: String,
    /// Objects held.
    pub objects: u64,
    /// Bytes held.
    pub bytes: u64,
    /// The directory's size limit (`cache.max_size`); `None` for object
    /// storage.
    pub max_size: Option<u64>,
    /// Objects and bytes by kind; every kind is present.
    pub by_kind: BTreeMap<KeyKind, KindStats>,
    /// Activity since the store was opened.
    pub counters: CounterSnapshot,
}

impl Stats {
    /// Totals over `entries`.
    pub(crate) fn of<'a>(
        backend: &str,
        max_size: Option<u64>,
        entries: impl Iterator<Item = (&'a Key, u64)>,
        counters: CounterSnapshot,
    ) -> Stats {
        let mut by_kind: BTreeMap<KeyKind, KindStats> =
            KeyKind::ALL.iter().map(|k| (*k, KindStats::default())).collect();
        let (mut objects, mut bytes) = (0, 0);
        for (key, size) in entries {
            let kind = by_kind.entry(key.kind()).or_default();
            kind.objects += 1;
            kind.bytes += size;
            objects += 1;
            bytes += size;
        }
        Stats {
            backend: backend.to_owned(),
            objects,
            bytes,
            max_size,
            by_kind,
            counters,
        }
    }
}

/// Counters of a store since it was opened, for the metrics layer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stored_objects: AtomicU64,
    stored_bytes: AtomicU64,
    evicted_objects: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn stored(&self, bytes: u64) {
        self.stored_objects.fetch_add(1, Ordering::Relaxed);
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn evicted(&self, bytes: u64) {
        self.evicted_objects.fetch_add(1, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            stored_objects: self.stored_objects.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
            evicted_objects: self.evicted_objects.load(Ordering::Relaxed),
            evicted_bytes: self.evicted_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Objects committed.
    pub stored_objects: u64,
    /// Bytes committed.
    pub stored_bytes: u64,
    /// Objects evicted to stay under `cache.max_size`.
    pub evicted_objects: u64,
    /// Bytes evicted.
    pub evicted_bytes: u64,
}

/// What [`Store::gc`](crate::cache::store::Store::gc) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Temp files left by writers that never committed (a crash).
    pub temp_files: u64,
    /// Their bytes.
    pub temp_bytes: u64,
    /// Objects evicted to get under `cache.max_size`.
    pub evicted_objects: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
}

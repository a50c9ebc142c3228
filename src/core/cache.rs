//! The one bounded cache type: entries expire after a time to live and the
//! least recently used go first when the cache is full.
//!
//! Leaves and TLS server configurations, DNS answers, verdicts and probe
//! results all use it, so no cache in modgate can grow without bound or
//! be flushed wholesale by a client that fills it.

use std::hash::Hash;
use std::time::Duration;

/// A concurrent cache with a capacity and a time to live (moka).
pub type Bounded<K, V> = moka::sync::Cache<K, V>;

/// A cache of at most `capacity` entries, each kept for at most `ttl`.
pub fn bounded<K, V>(capacity: u64, ttl: Duration) -> Bounded<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

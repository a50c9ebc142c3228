//! `/metrics`: the proxy's metrics ([`Metrics`](crate::telemetry::metrics::Metrics))
//! plus the module cache's counters, read at each scrape by a
//! [`CacheCollector`].

use std::sync::Arc;

use http::{Response, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

use crate::core::body::{Body, full};
use crate::modules::cached::ModuleCache;
use crate::telemetry::metrics::{CONTENT_TYPE, Metrics};

/// The module cache's counters, as metrics.
pub struct CacheCollector(pub Arc<ModuleCache>);

impl std::fmt::Debug for CacheCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CacheCollector").field(&self.0.store()).finish()
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.0.counters;
        let s = self.0.store().counters();
        let counters: [(&str, &str, u64); 9] = [
            (
                "modgate_cache_hits",
                "Module requests answered from the cache",
                c.hits.load(Relaxed),
            ),
            (
                "modgate_cache_misses",
                "Module requests fetched upstream through the cache",
                c.misses.load(Relaxed),
            ),
            (
                "modgate_cache_coalesced",
                "Module requests that joined another request's fetch of the same object",
                c.coalesced.load(Relaxed),
            ),
            (
                "modgate_cache_stale_served",
                "Expired answers served because every upstream failed (stale-if-error)",
                c.stale.load(Relaxed),
            ),
            (
                "modgate_cache_stored_objects",
                "Objects committed to the cache",
                s.stored_objects,
            ),
            (
                "modgate_cache_stored_bytes",
                "Bytes committed to the cache",
                s.stored_bytes,
            ),
            (
                "modgate_cache_evicted_objects",
                "Objects evicted to stay under cache.max_size",
                s.evicted_objects,
            ),
            (
                "modgate_cache_evicted_bytes",
                "Bytes evicted to stay under cache.max_size",
                s.evicted_bytes,
            ),
            (
                "modgate_sumdb_verification_failures",
                "Module files refused because their hash did not match the checksum database (or the first hash seen)",
                c.refused.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The exposition text.
pub fn serve(metrics: &Metrics) -> Response<Body> {
    let mut resp = Response::new(full(metrics.encode()));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
    resp
}

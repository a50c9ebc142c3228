//! `/metrics`: the proxy's metrics ([`Metrics`](crate::telemetry::metrics::Metrics))
//! plus the module cache's counters and every mirror's health, read at
//! each scrape by a [`CacheCollector`] and a [`MirrorCollector`].

use std::sync::Arc;

use http::{Response, header};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::core::body::{Body, full};
use crate::modules::cached::ModuleCache;
use crate::modules::health::State;
use crate::proxy::context::Context;
use crate::proxy::live::Live;
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

/// Every module proxy's health, under the config in effect, as metrics:
/// `modgate_mirror_state{mirror,state}` (1 for its state, 0 for the
/// others), its failures in a row, and the requests that skipped it.
pub struct MirrorCollector(pub Arc<Live<Context>>);

impl std::fmt::Debug for MirrorCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorCollector").finish_non_exhaustive()
    }
}

impl Collector for MirrorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let statuses = self.0.current().sources.statuses();
        if statuses.is_empty() {
            return Ok(());
        }
        let gauge = ConstGauge::new(0i64);
        let mut metric = encoder.encode_descriptor(
            "modgate_mirror_state",
            "Each module proxy's health: 1 for its state (up, down, half-open), 0 for the others",
            None,
            gauge.metric_type(),
        )?;
        for s in &statuses {
            for state in [State::Up, State::Down, State::HalfOpen] {
                let labels = [("mirror", s.mirror.as_str()), ("state", state.as_str())];
                ConstGauge::new(i64::from(s.state == state)).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "modgate_mirror_consecutive_failures",
            "Failures in a row of each module proxy (it is marked down at its max_fails)",
            None,
            gauge.metric_type(),
        )?;
        for s in &statuses {
            let labels = [("mirror", s.mirror.as_str())];
            ConstGauge::new(i64::from(s.fails)).encode(metric.encode_family(&labels)?)?;
        }
        let counter = ConstCounter::new(0u64);
        let mut metric = encoder.encode_descriptor(
            "modgate_mirror_skipped",
            "Requests that skipped a module proxy because it was down",
            None,
            counter.metric_type(),
        )?;
        for s in &statuses {
            let labels = [("mirror", s.mirror.as_str())];
            ConstCounter::new(s.skipped).encode(metric.encode_family(&labels)?)?;
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

//! [`Telemetry`]: where a running proxy's access events go besides the
//! log: the metrics and the recent decisions. One per process, kept across
//! config reloads.

use std::time::Instant;

use crate::telemetry::access::{Access, AccessSink};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::recent::{Decision, Recent};

/// The metrics, the recent decisions and the start time of one proxy.
#[derive(Debug)]
pub struct Telemetry {
    /// The metrics.
    pub metrics: Metrics,
    /// The last `admin.recent` decisions.
    pub recent: Recent,
    /// When the proxy started, for the uptime.
    pub started: Instant,
}

impl Telemetry {
    /// Empty metrics, keeping `recent` decisions.
    pub fn new(recent: usize) -> Telemetry {
        Telemetry {
            metrics: Metrics::new(),
            recent: Recent::new(recent),
            started: Instant::now(),
        }
    }
}

impl AccessSink for Telemetry {
    fn record(&self, access: Access) {
        self.metrics.observe_access(&access);
        self.recent.push(Decision::of(access));
    }
}

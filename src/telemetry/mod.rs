//! What modgate tells its operator: one access event per request or
//! tunnel, the metrics counted from those events and from the stages, and
//! the recent decisions the admin page lists.
//!
//! - [`access`]: the access record, filled in as a request passes the
//!   stages and emitted when it ends, with byte counters.
//! - [`log_writer`]: log lines written out in batches by one thread.
//! - [`metrics`]: the Prometheus metrics, in an explicit registry.
//! - [`recent`]: the last N decisions.
//! - [`sink`]: [`Telemetry`](sink::Telemetry), where a running proxy's
//!   access events go besides the log.

pub mod access;
pub mod log_writer;
pub mod metrics;
pub mod recent;
pub mod sink;

//! What modgate tells its operator: one access event per request or tunnel.
//!
//! - [`access`]: the access record, filled in as a request passes the
//!   stages and emitted when it ends, with byte counters.

pub mod access;

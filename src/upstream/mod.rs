//! Reaching upstreams: names, connections, and the pooled HTTP client.
//!
//! - [`resolve`]: `[hosts]`, then DNS, with a bounded cache.
//! - [`dial`]: the [`Dialer`](dial::Dialer) seam: direct connections to
//!   checked addresses, or CONNECT through an HTTP proxy.
//! - [`pool`]: the pooled keep-alive client over TCP or verified TLS.

pub mod dial;
pub mod pool;
pub mod resolve;

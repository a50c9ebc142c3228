//! Reaching upstreams: names, connections, and the pooled HTTP client.
//!
//! - [`resolve`]: `[hosts]`, then DNS, with a bounded cache.
//! - [`dial`]: the [`Dialer`](dial::Dialer) seam: direct connections to
//!   checked addresses, with the socket options modgate sets.
//! - [`parent`]: through the corporate parent proxy: CONNECT, or absolute
//!   form for plain HTTP.
//! - [`own`]: modgate's own upstream sockets, to recognise a loop.
//! - [`pool`]: the pooled keep-alive client over TCP or verified TLS.

pub mod dial;
pub mod own;
pub mod parent;
pub mod pool;
pub mod resolve;

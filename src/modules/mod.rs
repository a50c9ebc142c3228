//! Answering module requests from sources: module proxies, GOPROXY
//! directories and original hosts, tried in a mirror list's order.
//!
//! - [`source`]: the [`ModuleSource`](source::ModuleSource) seam.
//! - [`proxy_source`]: module proxies over HTTP(S), and `direct`.
//! - [`dir_source`]: GOPROXY-layout directories (`file://`).
//! - [`fetch`]: the fall-through loop over a mirror list.
//! - [`decode`]: a mirror's gzip or deflate answer, decoded as it streams.
//! - [`started`]: an answer whose body starts in time and never stalls
//!   for longer than the idle timeout.
//! - [`shape`]: `.info` and `@latest` answers checked as `go` reads them.
//! - [`flight`], [`spool`]: one fetch per file however many ask, spooled
//!   to disk as it arrives.
//! - [`sumdb`]: verifying module hashes against a checksum database.

pub mod cached;
pub mod decode;
pub mod dir_source;
pub mod fetch;
pub mod flight;
pub mod health;
pub mod proxy_source;
pub mod shape;
pub mod source;
pub mod spool;
pub mod started;
pub mod sumdb;
pub mod sumdb_upstream;
pub mod verify;

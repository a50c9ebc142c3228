//! The bottom layer: what every other subsystem names and nothing here
//! depends on the rest of the crate.
//!
//! - [`host`]: [`Host`](host::Host), [`Authority`](host::Authority) and the `[hosts]` table.
//! - [`error`]: the one error type, which says which side failed.
//! - [`escape`]: peer text made safe for logs, terminals and PEM comments.
//! - [`body`]: the body type and modgate's own `text/plain` answers.
//! - [`hop`]: hop-by-hop headers, removed in both directions.
//! - [`duration`]: durations as the config writes them.
//! - [`size`]: sizes as the config writes them.
//! - [`cache`]: the one bounded, expiring cache type.
//! - [`proxy_url`]: a parent proxy URL and its credentials.
//! - [`verdict`]: the trust verdict on an upstream chain.
//! - [`timer`]: the serving path's timeouts, on a timer thread of their own.
//! - [`slot`]: which worker thread this is, for state kept once per worker.
//! - [`via`]: the `Via` entries modgate adds, and loops found through them.

pub mod body;
pub mod cache;
pub mod duration;
pub mod error;
pub mod escape;
pub mod hop;
pub mod host;
pub mod proxy_url;
pub mod size;
pub mod slot;
pub mod timer;
pub mod verdict;
pub mod via;

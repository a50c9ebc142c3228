//! modgate: a forward proxy for Go module traffic.
//!
//! # Layout
//!
//! One folder per subsystem; dependencies point down this list, never up
//! (`tests/it/layout.rs` checks it). In the order a request meets them:
//!
//! - [`cli`]: the commands; `serve` starts the [`proxy`] and the [`admin`]
//!   listener.
//! - [`admin`]: the admin listener: metrics, health, the admin page.
//! - [`proxy`]: listeners and the request path: first head → classify →
//!   route (the policy's plan, with DNS) → tunnel / intercept / endpoint /
//!   forward → respond.
//! - [`modules`]: answering module requests from sources (mirrors,
//!   directories, origins) through the fall-through loop; verifying module
//!   hashes against a checksum database.
//! - [`cache`]: the module cache's storage: GOPROXY-layout keys on a
//!   directory (LRU to a size limit) or in object storage.
//! - [`upstream`]: reaching upstreams: resolve, dial, the pooled client.
//! - [`telemetry`]: the access event of each request and tunnel.
//! - [`tls`]: the local CA, trust, verdicts on upstream chains, evidence,
//!   probes.
//! - [`config`]: the TOML file, resolved once into a validated
//!   [`Config`](config::Config).
//! - [`policy`]: the rule table and the one decision made from it, the
//!   [`Plan`](policy::plan::Plan) that `serve` carries out and `explain`
//!   prints. Pure.
//! - [`gomod`]: the Go module protocol on the wire: GOPROXY and sumdb
//!   paths, escapings, path and version checks, sumdb proofs and `h1:`
//!   hashes. Pure.
//! - [`core`]: host, authority, the error type, bodies and answers,
//!   durations, the bounded cache.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod core;
pub mod gomod;
pub mod modules;
pub mod policy;
pub mod proxy;
pub mod telemetry;
pub mod tls;
pub mod upstream;

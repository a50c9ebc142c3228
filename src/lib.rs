//! modgate: a forward proxy for Go module traffic.
//!
//! # Layout
//!
//! The modules in the order a request meets them:
//!
//! - [`server`]: accepts clients, runs one task per connection, shuts down gracefully.
//! - [`http1`]: reads the first request head of a connection; CONNECT or hyper.
//! - [`request`]: classifies a request: tunnel, forward, or modgate's own endpoint.
//! - [`module`]: classifies GOPROXY and sumdb paths into module requests.
//! - [`intercept`]: terminates TLS for `tls.intercept` hosts and routes each request inside.
//! - [`endpoint`]: modgate's own GOPROXY endpoint (`GOPROXY=http://<modgate>`).
//! - [`policy`]: the rule table and the pure decision, [`policy::decide`].
//! - [`upstream`]: `[hosts]`, DNS, the `dst` check, and connecting.
//! - [`mirror`]: the mirror list (GOPROXY syntax) and fetching from it.
//! - [`tunnel`]: relays CONNECT tunnels, with half-close and idle timeout.
//! - [`forward`]: forwards absolute-form requests over pooled connections.
//! - [`probe`]: checks tunnels modgate does not terminate (passive TLS 1.2 parse, active probe).
//! - [`access`]: one access event per request or tunnel.
//!
//! Supporting modules:
//!
//! - [`ca`]: the local CA: `ca init`, and leaves for intercepted hosts.
//! - [`config`]: the TOML file, resolved once into a validated [`config::Config`].
//! - [`glob`]: host globs and module-path globs (GOPRIVATE semantics).
//! - [`trust`]: the roots upstream chains are verified against.
//! - [`verdict`]: verdicts on upstream chains (public, intercepted, untrusted) and the verifier.
//! - [`evidence`]: intercepting chains saved as PEM, `index.jsonl`, the interception event.
//! - [`vendor`]: names the TLS-interception product from issuer names.
//! - [`idle`]: the idle-timeout clock.
//! - [`error`]: the one error type, and the `modgate:` answers clients see.
//! - [`inspect`]: `modgate inspect`, the interception diagnosis for a host or a saved chain.
//! - [`explain`]: the dry run behind `modgate explain`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod ca;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod evidence;
pub mod explain;
pub mod forward;
pub mod glob;
pub mod http1;
pub mod idle;
pub mod inspect;
pub mod intercept;
pub mod mirror;
pub mod module;
pub mod policy;
pub mod probe;
pub mod request;
pub mod server;
pub mod trust;
pub mod tunnel;
pub mod upstream;
pub mod vendor;
pub mod verdict;

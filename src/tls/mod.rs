//! TLS: the local CA that terminates intercepted tunnels, and everything
//! modgate concludes about the chains upstreams present.
//!
//! - [`ca`]: the local CA: `ca init`, and minting leaves for intercepted hosts.
//! - [`interceptor`]: the TLS server configuration for each intercepted host.
//! - [`trust`]: the root stores (public, system, `tls.extra_roots`) and the
//!   upstream TLS client configuration.
//! - [`anchors`]: the roots' own dates, which webpki ignores and go does not.
//! - [`chain`]: the verdict on a chain (public, intercepted, untrusted) and
//!   its report.
//! - [`certinfo`]: one certificate, described for people.
//! - [`vendor`]: names the interception product from issuer names.
//! - [`evidence`]: intercepting chains saved as PEM, `index.jsonl`, the
//!   `interception` event.
//! - [`verifier`]: the rustls verifier behind every upstream connection.
//! - [`probe`]: looking at tunnels modgate does not terminate (passive TLS
//!   1.2 parse, active probe handshake, and the bounds on probing).
//! - [`pem`]: reading and writing PEM.
//! - [`failure`]: why a handshake failed, in words (old TLS named).

pub mod anchors;
pub mod ca;
pub mod certinfo;
pub mod chain;
pub mod evidence;
pub mod failure;
pub mod interceptor;
pub mod pem;
pub mod probe;
#[cfg(test)]
pub(crate) mod testing;
pub mod trust;
pub mod vendor;
pub mod verifier;

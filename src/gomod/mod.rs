//! The Go module protocol on the wire, as pure functions: which GOPROXY or
//! checksum-database request a path is, its escapings, and what counts as a
//! valid module path and version. No I/O.
//!
//! - [`request`]: [`ModuleRequest`](request::ModuleRequest), what a request asks for.
//! - [`escape`]: percent-decoding and the `!` case-encoding.
//! - [`check`]: module path, version and database-name validation.
//! - [`classify`]: GOPROXY and sumdb paths into module requests.
//! - [`semver`]: semantic versions as go reads, compares and canonicalises them.
//! - [`sumdb`]: verifying module hashes against a checksum database: signed
//!   notes, tree proofs through tiles, `h1:` hashes.

pub mod check;
pub mod classify;
pub mod escape;
pub mod request;
pub mod semver;
pub mod sumdb;

//! Verifying module content against a Go checksum database, as pure code:
//! no I/O (but for reading a zip file given by path), no async. The
//! specification is go's `golang.org/x/mod/sumdb` (note, tlog, dirhash).
//!
//! In the order a verifying client uses them:
//!
//! - [`record`]: the `lookup/M@V` answer: record id, record text (the two
//!   go.sum lines), signed tree note.
//! - [`note`]: verifier keys and signed notes (Ed25519).
//! - [`tlog`]: RFC 6962 hashing, stored-hash numbering, the signed
//!   [`Tree`](tlog::Tree).
//! - [`proof`]: inclusion and consistency proofs over stored hashes.
//! - [`tile`]: tiles of height 8 and their paths.
//! - [`tile_read`]: reading stored hashes out of tiles, every tile checked
//!   against the signed tree.
//! - [`audit`]: the two checks, planned (which tiles?) then run (with
//!   their bytes): a record is in a tree, a tree extends an older one.
//! - [`dirhash`]: the `h1:` hashes of a go.mod and of a module zip,
//!   streamed.
//! - [`zip_names`]: which file names and sizes a module zip may hold.

pub mod audit;
pub mod dirhash;
pub mod note;
pub mod proof;
pub mod record;
pub mod tile;
pub mod tile_read;
pub mod tlog;
pub mod zip_names;

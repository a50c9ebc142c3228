//! Verifying module hashes against a Go checksum database before content
//! enters the cache: the async client around the pure checks of
//! [`gomod::sumdb`](crate::gomod::sumdb).
//!
//! - [`verifier`]: [`SumdbVerifier`]: lookup,
//!   signature, inclusion, consistency with the kept tree.
//! - [`seams`]: where answers come from ([`TileFetcher`])
//!   and where the verified tree is kept ([`TreeStore`],
//!   [`FileTreeStore`]).
//! - `tiles`: fetching the tiles a check needs, with a bounded cache.
//! - [`error`]: [`SumdbError`], which check failed.

pub mod error;
pub mod seams;
pub(crate) mod tiles;
pub mod verifier;

pub use error::SumdbError;
pub use seams::{FetchError, FileTreeStore, TileFetcher, TreeStore};
pub use verifier::SumdbVerifier;

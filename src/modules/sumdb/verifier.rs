//! The verifying client: what go's `sumdb.Client` does, in order, for a
//! cache that must not store what the checksum database does not vouch for.
//!
//! `lookup(M, V)`:
//!
//! 1. fetch `lookup/M@V`; split it into record id, record and note;
//! 2. open the note with the configured key: the signed tree (N, hash);
//! 3. prove the record is in that tree, through tiles;
//! 4. prove the tree consistent with the latest verified tree (kept in
//!    the [`TreeStore`]), through tiles; move the kept tree forward only
//!    then. A failed proof is a fork: refused, logged loudly, the old tree
//!    kept;
//! 5. return the record's `h1:` hashes; comparing them with what the
//!    upstream served is the caller's job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::gomod::escape::encode_case;
use crate::gomod::sumdb::audit::{RecordInclusion, TreeConsistency};
use crate::gomod::sumdb::note::{self, MAX_NOTE_SIZE, VerifierKey};
use crate::gomod::sumdb::record::{self, MAX_LOOKUP_SIZE, ModuleHashes};
use crate::gomod::sumdb::tlog::{TlogError, Tree};
use crate::modules::sumdb::error::SumdbError;
use crate::modules::sumdb::seams::{FetchError, TileFetcher, TreeStore};
use crate::modules::sumdb::tiles::TileSource;

/// How many verified tiles are cached by default: at most 8 MiB.
pub const DEFAULT_TILE_CACHE: u64 = 1024;

/// How long a verified tile stays cached by default.
pub const DEFAULT_TILE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A verified tree and its signed note.
#[derive(Debug, Clone)]
struct Kept {
    tree: Tree,
    note: Bytes,
}

/// What the verifier knows of the latest verified tree.
enum Latest {
    /// The store was not read yet.
    Unread,
    /// The store had none: every tree extends the empty one.
    Empty,
    /// The latest verified tree.
    Verified(Kept),
}

/// Verifies module hashes against one checksum database.
pub struct SumdbVerifier {
    key: VerifierKey,
    fetcher: Arc<dyn TileFetcher>,
    tiles: TileSource,
    store: Arc<dyn TreeStore>,
    /// The latest verified tree. The lock is held while a newer tree is
    /// checked, so the kept tree moves forward one check at a time.
    latest: Mutex<Latest>,
    /// The last save of a verified tree failed (said once until one works).
    save_failing: AtomicBool,
}

impl SumdbVerifier {
    /// A verifier for the database `key` names, answers from `fetcher`,
    /// the latest verified tree kept in `store`, and the default tile
    /// cache.
    pub fn new(key: VerifierKey, fetcher: Arc<dyn TileFetcher>, store: Arc<dyn TreeStore>) -> SumdbVerifier {
        SumdbVerifier::with_tile_cache(key, fetcher, store, DEFAULT_TILE_CACHE, DEFAULT_TILE_TTL)
    }

    /// As [`SumdbVerifier::new`], caching at most `capacity` verified tiles
    /// for `ttl`.
    pub fn with_tile_cache(
        key: VerifierKey,
        fetcher: Arc<dyn TileFetcher>,
        store: Arc<dyn TreeStore>,
        capacity: u64,
        ttl: Duration,
    ) -> SumdbVerifier {
        let tiles = TileSource::new(key.name(), fetcher.clone(), capacity, ttl);
        SumdbVerifier {
            key,
            fetcher,
            tiles,
            store,
            latest: Mutex::new(Latest::Unread),
            save_failing: AtomicBool::new(false),
        }
    }

    /// The database name, e.g. `sum.golang.org`.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// The `h1:` hashes the database vouches for `module` `version`, after
    /// checking the note's signature, the record's inclusion in the signed
    /// tree, and that tree's consistency with the latest verified one.
    pub async fn lookup(&self, module: &str, version: &str) -> Result<ModuleHashes, SumdbError> {
        check_request(module, version)?;
        let path = format!("lookup/{}@{}", encode_case(module), encode_case(version));
        let answer = match self.fetch(&path, MAX_LOOKUP_SIZE).await {
            Ok(answer) => answer,
            Err(FetchError::NotFound) => {
                return Err(SumdbError::NotFound {
                    db: self.name().to_owned(),
                    module: module.to_owned(),
                    version: version.to_owned(),
                });
            }
            Err(error) => return Err(self.fetch_failed(&path, error)),
        };
        let lookup = record::parse_lookup(&answer).map_err(|e| self.malformed("lookup", e))?;
        let hashes = record::module_hashes(lookup.record, module, version).map_err(|e| self.malformed("lookup", e))?;
        let tree = self.open(lookup.note)?;
        let not_in_tree = || SumdbError::NotInTree {
            db: self.name().to_owned(),
            module: module.to_owned(),
            version: version.to_owned(),
            id: lookup.id,
            size: tree.size,
        };
        let check = RecordInclusion::new(tree, lookup.id).map_err(|_| not_in_tree())?;
        let record = lookup.record.as_bytes();
        match self
            .tiles
            .checked(check.tiles(), |tiles| check.check(tiles, record))
            .await?
        {
            Ok(()) => {}
            Err(TlogError::ProofFailed) => return Err(not_in_tree()),
            Err(other) => return Err(self.tile_error(tree.size, other)),
        }
        self.keep(tree, Bytes::copy_from_slice(lookup.note)).await?;
        Ok(hashes)
    }

    /// Checks a signed tree note seen on the wire (from `latest` or a
    /// lookup) against the latest verified tree, and keeps it if it is
    /// newer. Returns its tree.
    pub async fn check_latest(&self, note: &[u8]) -> Result<Tree, SumdbError> {
        let tree = self.open(note)?;
        self.keep(tree, Bytes::copy_from_slice(note)).await?;
        Ok(tree)
    }

    /// Fetches `latest` and checks it as [`SumdbVerifier::check_latest`]
    /// does.
    pub async fn refresh(&self) -> Result<Tree, SumdbError> {
        let note = self
            .fetch("latest", MAX_NOTE_SIZE)
            .await
            .map_err(|e| self.fetch_failed("latest", e))?;
        self.check_latest(&note).await
    }

    /// The latest verified tree, loading it from the store on first use.
    pub async fn verified_tree(&self) -> Result<Option<Tree>, SumdbError> {
        let mut latest = self.latest.lock().await;
        Ok(self.loaded(&mut latest).await?.map(|kept| kept.tree))
    }

    /// One answer from the fetcher, bounded.
    async fn fetch(&self, path: &str, limit: usize) -> Result<Bytes, FetchError> {
        let bytes = self.fetcher.fetch(path, limit).await?;
        if bytes.len() > limit {
            return Err(FetchError::TooLarge(limit));
        }
        Ok(bytes)
    }

    fn fetch_failed(&self, path: &str, error: FetchError) -> SumdbError {
        SumdbError::Fetch {
            db: self.name().to_owned(),
            path: path.to_owned(),
            reason: error.to_string(),
        }
    }

    /// The tree a note signs, once its signature by the key is checked.
    fn open(&self, note: &[u8]) -> Result<Tree, SumdbError> {
        let text = note::open(note, &self.key).map_err(|e| match e {
            note::NoteError::Malformed(_) => self.malformed("tree note", e),
            other => SumdbError::Signature {
                db: self.name().to_owned(),
                reason: other.to_string(),
            },
        })?;
        Tree::from_note_text(text).map_err(|e| self.malformed("tree note", e))
    }

    /// Keeps `tree` as the latest verified tree if it is newer and
    /// consistent with the kept one; refuses a fork.
    async fn keep(&self, tree: Tree, note: Bytes) -> Result<(), SumdbError> {
        let mut latest = self.latest.lock().await;
        let seen = Kept { tree, note };
        let Some(kept) = self.loaded(&mut latest).await? else {
            return self.save(&mut latest, seen).await;
        };
        if seen.tree.size < kept.tree.size {
            // An older tree: it must be a prefix of the kept one.
            return self.check_consistency(&seen, &kept).await;
        }
        self.check_consistency(&kept, &seen).await?;
        if seen.tree.size == kept.tree.size {
            return Ok(());
        }
        self.save(&mut latest, seen).await
    }

    /// The kept tree, loaded from the store (its note verified again) on
    /// first use. A kept note that does not verify (a damaged file, a
    /// half-copied cache) guards against nothing: it is said loudly, set
    /// aside, and checking goes on from the database's next signed tree,
    /// as it began. A store that cannot be read is an error, tried again
    /// on the next request.
    async fn loaded(&self, latest: &mut Latest) -> Result<Option<Kept>, SumdbError> {
        if let Latest::Unread = latest {
            *latest = match self.store.load().await {
                Ok(None) => Latest::Empty,
                Ok(Some(note)) => match self.open(&note) {
                    Ok(tree) => Latest::Verified(Kept { tree, note }),
                    Err(e) => {
                        let why = match &e {
                            SumdbError::Malformed { reason, .. } | SumdbError::Signature { reason, .. } => {
                                reason.clone()
                            }
                            other => other.to_string(),
                        };
                        let aside = match self.store.set_aside().await {
                            Ok(aside) => format!("moved to {aside}"),
                            Err(e) => format!("left in place: {e}"),
                        };
                        tracing::error!(
                            db = %self.name(),
                            kept = %self.store.name(),
                            error = %why,
                            damaged = %aside,
                            "the kept checksum-database tree note is damaged (not the database's fault); starting again from the database's next signed tree"
                        );
                        Latest::Empty
                    }
                },
                // Unreadable is not damaged (a descriptor limit, a
                // permission): the file may hold the tree that guards
                // against a fork, so nothing goes on without it, and the
                // next request reads it again.
                Err(reason) => return Err(self.store_error(format!("cannot read the kept tree: {reason}"))),
            };
        }
        match latest {
            Latest::Verified(kept) => Ok(Some(kept.clone())),
            Latest::Unread | Latest::Empty => Ok(None),
        }
    }

    /// Keeps a newer verified tree in memory and saves it. A save that
    /// fails (a full or read-only disk) is said once, not a failure of the
    /// check: the tree was verified, and the comparison holds.
    async fn save(&self, latest: &mut Latest, newer: Kept) -> Result<(), SumdbError> {
        match self.store.save(&newer.note).await {
            Ok(()) => {
                if self.save_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(db = %self.name(), kept = %self.store.name(), "the verified tree is saved again");
                }
                tracing::info!(db = %self.name(), size = newer.tree.size, hash = %newer.tree.hash, "checksum database tree verified and kept");
            }
            Err(reason) => {
                if !self.save_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        db = %self.name(),
                        error = %self.store_error(reason),
                        "cannot save the verified tree; it is kept in memory and checks go on, but a restart starts from the last one saved"
                    );
                }
            }
        }
        *latest = Latest::Verified(newer);
        Ok(())
    }

    /// Proves `newer` extends `older`; a failed proof is a fork, logged
    /// with both notes.
    async fn check_consistency(&self, older: &Kept, newer: &Kept) -> Result<(), SumdbError> {
        let check = TreeConsistency::new(older.tree, newer.tree).map_err(|e| self.tile_error(newer.tree.size, e))?;
        let outcome = self.tiles.checked(check.tiles(), |tiles| check.check(tiles)).await?;
        match outcome {
            Ok(()) => Ok(()),
            Err(TlogError::ProofFailed) => {
                tracing::error!(
                    db = %self.name(),
                    old_note = %String::from_utf8_lossy(&older.note),
                    new_note = %String::from_utf8_lossy(&newer.note),
                    "SECURITY ERROR: checksum database misbehavior: two signed trees are not consistent; keeping the verified one"
                );
                Err(SumdbError::Fork {
                    db: self.name().to_owned(),
                    old_size: older.tree.size,
                    old_hash: older.tree.hash.to_string(),
                    new_size: newer.tree.size,
                    new_hash: newer.tree.hash.to_string(),
                })
            }
            Err(other) => Err(self.tile_error(newer.tree.size, other)),
        }
    }

    fn malformed(&self, what: &str, error: impl std::fmt::Display) -> SumdbError {
        SumdbError::Malformed {
            db: self.name().to_owned(),
            what: what.to_owned(),
            reason: error.to_string(),
        }
    }

    fn store_error(&self, reason: String) -> SumdbError {
        SumdbError::Store {
            db: self.name().to_owned(),
            reason,
        }
    }

    /// A tile-level failure: tiles that do not match the signed tree, or a
    /// malformed tile.
    fn tile_error(&self, size: u64, error: TlogError) -> SumdbError {
        match error {
            TlogError::TileMismatch { path, .. } => SumdbError::TileMismatch {
                db: self.name().to_owned(),
                size,
                detail: path,
            },
            other => self.malformed("tile", other),
        }
    }
}

/// A module path and version go could look up (not `…/go.mod`).
fn check_request(module: &str, version: &str) -> Result<(), SumdbError> {
    let checks =
        crate::gomod::check::check_module_path(module).and_then(|()| crate::gomod::check::check_version(version));
    checks.map_err(|reason| SumdbError::BadRequest {
        module: crate::gomod::escape::quote(module),
        version: crate::gomod::escape::quote(version),
        reason,
    })
}

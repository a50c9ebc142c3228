//! Fetching the tiles a planned check needs, with a bounded cache of tiles
//! that passed a check, so consecutive lookups do not fetch the same full
//! tiles again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::try_join_all;

use crate::core::cache::{Bounded, bounded};
use crate::gomod::sumdb::tile::{MAX_TILE_BYTES, Tile};
use crate::gomod::sumdb::tlog::TlogError;
use crate::modules::sumdb::error::SumdbError;
use crate::modules::sumdb::seams::TileFetcher;

/// Tiles of one database, fetched or from the cache.
pub(crate) struct TileSource {
    db: String,
    fetcher: Arc<dyn TileFetcher>,
    /// Tiles whose every byte was checked against a signed tree. A full
    /// tile never changes (nor does a partial one of a given width) unless
    /// the database forks, which the next check using it detects.
    verified: Bounded<Tile, Bytes>,
}

impl TileSource {
    /// Tiles of database `db` from `fetcher`, caching at most `capacity`
    /// verified tiles (8 KiB each at most) for `ttl`.
    pub(crate) fn new(db: &str, fetcher: Arc<dyn TileFetcher>, capacity: u64, ttl: Duration) -> TileSource {
        TileSource {
            db: db.to_owned(),
            fetcher,
            verified: bounded(capacity, ttl),
        }
    }

    /// Gets `tiles` and runs `check` on their bytes; the tiles are cached
    /// once it passes. If it fails with a tile mismatch after cached tiles
    /// were used, they are dropped and the check runs once more on fresh
    /// tiles, so a stale cache never decides. The outer error is a fetch
    /// failure; the inner result is the check's.
    pub(crate) async fn checked<T>(
        &self,
        tiles: &[Tile],
        check: impl Fn(&[Bytes]) -> Result<T, TlogError>,
    ) -> Result<Result<T, TlogError>, SumdbError> {
        let (mut data, from_cache) = self.get_all(tiles, true).await?;
        let mut outcome = check(&data);
        if from_cache && matches!(outcome, Err(TlogError::TileMismatch { .. })) {
            for tile in tiles {
                self.verified.invalidate(tile);
                self.verified.invalidate(&tile.full());
            }
            data = self.get_all(tiles, false).await?.0;
            outcome = check(&data);
        }
        if outcome.is_ok() {
            for (tile, bytes) in tiles.iter().zip(&data) {
                self.verified.insert(*tile, bytes.clone());
            }
        }
        Ok(outcome)
    }

    /// All tiles, concurrently; and whether any came from the cache.
    async fn get_all(&self, tiles: &[Tile], use_cache: bool) -> Result<(Vec<Bytes>, bool), SumdbError> {
        let got = try_join_all(tiles.iter().map(|tile| self.get(*tile, use_cache))).await?;
        let from_cache = got.iter().any(|(_, cached)| *cached);
        Ok((got.into_iter().map(|(bytes, _)| bytes).collect(), from_cache))
    }

    /// One tile: from the cache (a partial one may be cut from its cached
    /// full tile), else fetched; a partial tile that cannot be fetched is
    /// cut from the full tile, as go does once the tile has filled up.
    async fn get(&self, tile: Tile, use_cache: bool) -> Result<(Bytes, bool), SumdbError> {
        if use_cache {
            if let Some(bytes) = self.verified.get(&tile) {
                return Ok((bytes, true));
            }
            if let Some(full) = self.verified.get(&tile.full()) {
                if full.len() >= tile.byte_len() {
                    return Ok((full.slice(..tile.byte_len()), true));
                }
            }
        }
        let path = tile.path();
        let error = match self.fetcher.fetch(&path, tile.byte_len()).await {
            Ok(bytes) => return Ok((bytes, false)),
            Err(error) => error,
        };
        if !tile.is_full() {
            if let Ok(full) = self.fetcher.fetch(&tile.full().path(), MAX_TILE_BYTES).await {
                if full.len() == MAX_TILE_BYTES {
                    return Ok((full.slice(..tile.byte_len()), false));
                }
            }
        }
        Err(SumdbError::Fetch {
            db: self.db.clone(),
            path,
            reason: error.to_string(),
        })
    }
}

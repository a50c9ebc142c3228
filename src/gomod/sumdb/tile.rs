//! Tiles: how a checksum database serves its stored hashes.
//!
//! A tile of height 8 holds up to 256 consecutive hashes of one tree level
//! (levels 0, 8, 16, … are tile levels 0, 1, 2, …); the hashes of the 7
//! levels between follow from them. A full tile is immutable; the last
//! tile of each level is partial (`.p/W`, W hashes) until the log grows.
//!
//! `tile_read` reads stored hashes out of them.

use std::ops::Range;

use super::tlog::{HASH_SIZE, Hash, TlogError, node_hash, split_stored_hash_index};

/// The tile height sum.golang.org and every go client use.
pub const TILE_HEIGHT: u32 = 8;

/// The number of hashes in a full tile.
const FULL_WIDTH: u32 = 1 << TILE_HEIGHT;

/// The size of a full tile, in bytes: the most a tile fetch may return.
pub const MAX_TILE_BYTES: usize = FULL_WIDTH as usize * HASH_SIZE;

/// Tile levels above 7 would start above tree level 56, past
/// [`MAX_TREE_SIZE`](super::tlog::MAX_TREE_SIZE).
const MAX_TILE_LEVEL: u32 = 7;

/// One hash tile: `width` hashes of tile level `level`, starting at hash
/// number `number * 256` of that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// The tile level: tree level `8 * level`.
    pub level: u32,
    /// Which tile of its level, from 0.
    pub number: u64,
    /// How many hashes it holds, 1 to 256; 256 is a full tile.
    pub width: u32,
}

impl Tile {
    /// Whether the tile holds all 256 hashes (and so never changes).
    pub fn is_full(&self) -> bool {
        self.width == FULL_WIDTH
    }

    /// The full tile at the same place.
    pub fn full(self) -> Tile {
        Tile {
            width: FULL_WIDTH,
            ..self
        }
    }

    /// The tile's size in bytes: 32 per hash.
    pub fn byte_len(&self) -> usize {
        self.width as usize * HASH_SIZE
    }

    /// The tile's path below the database's base URL:
    /// `tile/8/0/x001/234.p/5` is 5 hashes of tile 1234 of level 0.
    pub fn path(&self) -> String {
        let mut number = format!("{:03}", self.number % 1000);
        let mut rest = self.number / 1000;
        while rest > 0 {
            number = format!("x{:03}/{number}", rest % 1000);
            rest /= 1000;
        }
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/{TILE_HEIGHT}/{}/{number}{partial}", self.level)
    }

    /// Parses a hash tile's path, as [`Tile::path`] writes it; anything
    /// else (another height, data tiles, non-canonical numbers) is an error.
    pub fn from_path(path: &str) -> Result<Tile, TlogError> {
        let bad = |why: &str| TlogError::MalformedTile {
            path: crate::gomod::escape::quote(path),
            reason: why.to_owned(),
        };
        if path.len() > 80 {
            return Err(bad("too long"));
        }
        let rest = path.strip_prefix("tile/8/").ok_or_else(|| bad("not a tile/8/ path"))?;
        let (level, rest) = rest.split_once('/').ok_or_else(|| bad("no tile number"))?;
        let level: u32 = parse_decimal(level).ok_or_else(|| bad("level is not a number"))?;
        let (number, width) = match rest.split_once(".p/") {
            Some((number, width)) => {
                let width = parse_decimal(width).ok_or_else(|| bad("width is not a number"))?;
                (number, width)
            }
            None => (rest, FULL_WIDTH),
        };
        let mut n: u64 = 0;
        for group in number.split('/') {
            let digits = group.strip_prefix('x').unwrap_or(group);
            let value: u64 = parse_decimal(digits).ok_or_else(|| bad("number is not x-grouped digits"))?;
            n = n
                .checked_mul(1000)
                .and_then(|n| n.checked_add(value))
                .ok_or_else(|| bad("number too large"))?;
        }
        let tile = Tile {
            level,
            number: n,
            width,
        };
        tile.validate().map_err(|why| bad(&why))?;
        if tile.path() != path {
            return Err(bad("not in canonical form"));
        }
        Ok(tile)
    }

    /// Whether level and width are in range.
    fn validate(&self) -> Result<(), String> {
        if self.level > MAX_TILE_LEVEL {
            return Err(format!("level {} is above {MAX_TILE_LEVEL}", self.level));
        }
        if self.width == 0 || self.width > FULL_WIDTH {
            return Err(format!("width {} is not 1 to {FULL_WIDTH}", self.width));
        }
        Ok(())
    }
}

/// Parses plain decimal digits (no sign), as tile paths write them.
fn parse_decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The smallest tile that holds stored hash `index`, and where in the tile
/// the hashes it is computed from lie, in bytes.
pub(crate) fn smallest_tile_for(index: u64) -> (Tile, Range<usize>) {
    let (level, n) = split_stored_hash_index(index);
    let tile_level = level / TILE_HEIGHT;
    let within = level % TILE_HEIGHT;
    // The node's first and last hash at the tile's base level.
    let first = n << within;
    let number = first >> TILE_HEIGHT;
    let offset = first - (number << TILE_HEIGHT);
    let end = offset + (1 << within);
    let tile = Tile {
        level: tile_level,
        number,
        width: end as u32,
    };
    (tile, offset as usize * HASH_SIZE..end as usize * HASH_SIZE)
}

/// The tile `up` tile levels above `tile`, as wide as a tree of `size`
/// records has it; `None` when that tree has no hashes there.
pub(crate) fn tile_in_tree(tile: Tile, up: u32, size: u64) -> Option<Tile> {
    let level = tile.level + up;
    let number = tile.number.checked_shr(TILE_HEIGHT * up)?;
    let hashes_at_level = size.checked_shr(TILE_HEIGHT * level)?;
    let start = number.checked_shl(TILE_HEIGHT)?;
    if start >= hashes_at_level {
        return None;
    }
    let width = (hashes_at_level - start).min(u64::from(FULL_WIDTH)) as u32;
    Some(Tile { level, number, width })
}

/// Reads stored hash `index` out of `tile`'s bytes, which must be
/// `tile.byte_len()` long.
pub(crate) fn hash_from_tile(tile: &Tile, data: &[u8], index: u64) -> Result<Hash, TlogError> {
    let (smallest, range) = smallest_tile_for(index);
    if smallest.level != tile.level || smallest.number != tile.number || smallest.width > tile.width {
        return Err(TlogError::OutOfRange(format!(
            "stored hash {index} is not in {}",
            tile.path()
        )));
    }
    let bytes = data.get(range).ok_or_else(|| TlogError::MalformedTile {
        path: tile.path(),
        reason: "too short".into(),
    })?;
    Ok(subtree_hash(bytes))
}

/// The hash of the subtree whose bottom hashes are `hashes` (a power of two
/// of them, as `hash_from_tile` slices them).
pub(crate) fn subtree_hash(hashes: &[u8]) -> Hash {
    if hashes.len() <= HASH_SIZE {
        let mut out = [0u8; HASH_SIZE];
        out[..hashes.len()].copy_from_slice(hashes);
        return Hash(out);
    }
    let (left, right) = hashes.split_at(hashes.len() / 2);
    node_hash(&subtree_hash(left), &subtree_hash(right))
}

#[cfg(test)]
mod tests {
    use super::super::tlog::stored_hash_index;
    use super::*;

    #[test]
    fn paths_group_numbers_in_threes() {
        let tile = |level, number, width| Tile { level, number, width };
        assert_eq!(tile(0, 0, 256).path(), "tile/8/0/000");
        assert_eq!(tile(0, 1, 44).path(), "tile/8/0/001.p/44");
        assert_eq!(tile(1, 1234, 256).path(), "tile/8/1/x001/234");
        assert_eq!(tile(2, 1_234_067, 3).path(), "tile/8/2/x001/x234/067.p/3");
        for t in [
            tile(0, 0, 256),
            tile(1, 1234, 256),
            tile(2, 1_234_067, 3),
            tile(7, 0, 1),
        ] {
            assert_eq!(Tile::from_path(&t.path()).unwrap(), t);
        }
    }

    #[test]
    fn malformed_paths_are_errors() {
        for path in [
            "",
            "tile/8/0",
            "tile/8/0/",
            "tile/4/0/000",
            "tile/8/data/000",
            "tile/8/0/0",
            "tile/8/0/1234",
            "tile/8/0/001/234",
            "tile/8/0/x000/234",
            "tile/8/0/000.p/0",
            "tile/8/0/000.p/256",
            "tile/8/0/000.p/",
            "tile/8/0/000.p/-1",
            "tile/8/8/000",
            "tile/8/-1/000",
            "tile/8/0/x999/x999/x999/x999/x999/x999/x999/999",
            "tile/8/0/+01",
            "tile/8/0/000.p/1/2",
        ] {
            assert!(Tile::from_path(path).is_err(), "{path}");
        }
    }

    #[test]
    fn the_smallest_tile_of_a_hash() {
        // Record 300's leaf: tile 1 of level 0, entry 44.
        let (tile, range) = smallest_tile_for(stored_hash_index(0, 300));
        assert_eq!((tile.level, tile.number, tile.width), (0, 1, 45));
        assert_eq!(range, 44 * 32..45 * 32);
        // The node over records [256, 288): level 5 in tile 1 of level 0.
        let (tile, range) = smallest_tile_for(stored_hash_index(5, 8));
        assert_eq!((tile.level, tile.number, tile.width), (0, 1, 32));
        assert_eq!(range, 0..32 * 32);
        // The node over records [0, 256): level 8 is tile level 1.
        let (tile, range) = smallest_tile_for(stored_hash_index(8, 0));
        assert_eq!((tile.level, tile.number, tile.width), (1, 0, 1));
        assert_eq!(range, 0..32);
    }

    #[test]
    fn tiles_in_a_tree_of_300() {
        let base = Tile {
            level: 0,
            number: 1,
            width: 1,
        };
        assert_eq!(tile_in_tree(base, 0, 300).unwrap().width, 44);
        assert_eq!(
            tile_in_tree(base, 1, 300).unwrap(),
            Tile {
                level: 1,
                number: 0,
                width: 1
            }
        );
        assert_eq!(tile_in_tree(base, 2, 300), None);
        assert_eq!(tile_in_tree(base, 9, u64::MAX), None);
    }
}

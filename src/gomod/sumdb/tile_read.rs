//! Reading stored hashes of a signed tree through tiles, every byte of
//! every tile checked against the tree.
//!
//! `TileRead` plans which tiles are needed (the right-edge tiles, which
//! must hash to the tree's root, and the full tiles below them down to the
//! hashes asked for, each of which must hash to its entry in the tile
//! above), then checks the fetched bytes and reads the hashes out.

use std::collections::HashMap;

use super::tile::{TILE_HEIGHT, Tile, hash_from_tile, smallest_tile_for, subtree_hash, tile_in_tree};
use super::tlog::{Hash, TlogError, Tree, stored_hash_index, tree_hash, tree_hash_indexes};

/// A plan to read stored hashes of a signed tree through tiles: first
/// [`TileRead::tiles`] says what to fetch, then [`TileRead::read`] checks
/// the fetched bytes against the tree and returns the hashes.
#[derive(Debug, Clone)]
pub(crate) struct TileRead {
    tree: Tree,
    /// What to fetch: the right-edge tiles first, then full tiles, each
    /// after the tile above it.
    tiles: Vec<Tile>,
    /// How many of `tiles` are right-edge tiles, checked against the root.
    edge_tiles: usize,
    /// The stored hashes of the tree's complete subtrees, and their tiles.
    roots: Vec<(u64, usize)>,
    /// The hashes asked for, and their tiles.
    wanted: Vec<(u64, usize)>,
}

impl TileRead {
    /// Plans reading stored hashes `indexes` of `tree`. Asking for nothing
    /// needs no tiles.
    pub(crate) fn new(tree: Tree, indexes: &[u64]) -> Result<TileRead, TlogError> {
        let mut read = TileRead {
            tree,
            tiles: Vec::new(),
            edge_tiles: 0,
            roots: Vec::new(),
            wanted: Vec::new(),
        };
        if indexes.is_empty() {
            return Ok(read);
        }
        let mut position: HashMap<Tile, usize> = HashMap::new();
        let bad_math = |what: &str| TlogError::OutOfRange(format!("tile arithmetic failed: {what}"));
        for index in tree_hash_indexes(tree.size) {
            let tile = tile_in_tree(smallest_tile_for(index).0, 0, tree.size).ok_or_else(|| bad_math("root"))?;
            let at = read.plan(&mut position, tile);
            read.roots.push((index, at));
        }
        read.edge_tiles = read.tiles.len();
        let end = stored_hash_index(0, tree.size);
        for &index in indexes {
            if index >= end {
                return Err(TlogError::OutOfRange(format!(
                    "stored hash {index} is not in the tree of size {}",
                    tree.size
                )));
            }
            let base = smallest_tile_for(index).0;
            // Climb to the first tile already planned (at the latest, a
            // right-edge tile), then plan the full tiles below it.
            let mut up = 0;
            while !position.contains_key(&tile_in_tree(base, up, tree.size).ok_or_else(|| bad_math("climb"))?) {
                up += 1;
            }
            for down in (0..up).rev() {
                let tile = tile_in_tree(base, down, tree.size).ok_or_else(|| bad_math("descend"))?;
                if !tile.is_full() {
                    return Err(bad_math("partial tile below the edge"));
                }
                read.plan(&mut position, tile);
            }
            let tile = tile_in_tree(base, 0, tree.size).ok_or_else(|| bad_math("own tile"))?;
            let at = position.get(&tile).copied().ok_or_else(|| bad_math("lost tile"))?;
            read.wanted.push((index, at));
        }
        Ok(read)
    }

    /// Adds `tile` to the plan once; its position.
    fn plan(&mut self, position: &mut HashMap<Tile, usize>, tile: Tile) -> usize {
        *position.entry(tile).or_insert_with(|| {
            self.tiles.push(tile);
            self.tiles.len() - 1
        })
    }

    /// The tiles to fetch, in the order [`TileRead::read`] takes their bytes.
    pub(crate) fn tiles(&self) -> &[Tile] {
        &self.tiles
    }

    /// Checks every tile against the tree and returns the hashes asked for,
    /// in order. `data[i]` holds the bytes of `tiles()[i]`.
    pub(crate) fn read<B: AsRef<[u8]>>(&self, data: &[B]) -> Result<Vec<Hash>, TlogError> {
        if data.len() != self.tiles.len() {
            return Err(TlogError::OutOfRange(format!(
                "{} tiles given for {} planned",
                data.len(),
                self.tiles.len()
            )));
        }
        for (tile, bytes) in self.tiles.iter().zip(data) {
            if bytes.as_ref().len() != tile.byte_len() {
                return Err(TlogError::MalformedTile {
                    path: tile.path(),
                    reason: format!("{} bytes, not {}", bytes.as_ref().len(), tile.byte_len()),
                });
            }
        }
        if self.tiles.is_empty() {
            return Ok(Vec::new());
        }
        // From here on, every position held in `roots` and `wanted` (and
        // every `at` below) indexes `tiles`, and `data` is as long as
        // `tiles`: the indexing below cannot fail.
        self.check_edge(data)?;
        self.check_below_edge(data)?;
        self.wanted
            .iter()
            .map(|&(index, at)| hash_from_tile(&self.tiles[at], data[at].as_ref(), index))
            .collect()
    }

    /// The right-edge tiles must hash to the signed root.
    fn check_edge<B: AsRef<[u8]>>(&self, data: &[B]) -> Result<(), TlogError> {
        let roots = self
            .roots
            .iter()
            .map(|&(index, at)| hash_from_tile(&self.tiles[at], data[at].as_ref(), index))
            .collect::<Result<Vec<_>, _>>()?;
        if tree_hash(self.tree.size, &roots)? == self.tree.hash {
            return Ok(());
        }
        let paths: Vec<String> = self.tiles[..self.edge_tiles].iter().map(Tile::path).collect();
        Err(TlogError::TileMismatch {
            path: paths.join(" "),
            size: self.tree.size,
        })
    }

    /// Every other tile must hash to its entry in the tile above, which was
    /// planned (and so is checked) before it.
    fn check_below_edge<B: AsRef<[u8]>>(&self, data: &[B]) -> Result<(), TlogError> {
        for (at, tile) in self.tiles.iter().enumerate().skip(self.edge_tiles) {
            let parent = tile_in_tree(*tile, 1, self.tree.size);
            let parent_at = parent.and_then(|p| self.tiles[..at].iter().position(|t| *t == p));
            let (Some(parent), Some(parent_at)) = (parent, parent_at) else {
                return Err(TlogError::OutOfRange(format!("no tile above {}", tile.path())));
            };
            let entry = stored_hash_index(TILE_HEIGHT * parent.level, tile.number);
            let expected = hash_from_tile(&parent, data[parent_at].as_ref(), entry)?;
            if subtree_hash(data[at].as_ref()) != expected {
                return Err(TlogError::TileMismatch {
                    path: tile.path(),
                    size: self.tree.size,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tlog::{node_hash, record_hash};
    use super::*;

    /// The tiles of a log of `size` records "r0", "r1", …: full ones for
    /// every complete tile, partial ones of the tree's width at the edge.
    fn tiles_of(size: u64) -> (Tree, HashMap<Tile, Vec<u8>>) {
        let leaves: Vec<Hash> = (0..size).map(|k| record_hash(format!("r{k}").as_bytes())).collect();
        // Level-by-level hashes of complete subtrees.
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let above: Vec<Hash> = below.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
            levels.push(above);
        }
        let mut tiles = HashMap::new();
        for (tile_level, hashes) in levels.iter().step_by(8).enumerate() {
            for (number, chunk) in hashes.chunks(256).enumerate() {
                let tile = Tile {
                    level: tile_level as u32,
                    number: number as u64,
                    width: chunk.len() as u32,
                };
                tiles.insert(tile, chunk.iter().flat_map(|h| h.0).collect());
            }
        }
        let roots: Vec<Hash> = super::super::tlog::subtrees(0, size)
            .into_iter()
            .map(|(level, n)| levels[level as usize][n as usize])
            .collect();
        let hash = tree_hash(size, &roots).unwrap();
        (Tree { size, hash }, tiles)
    }

    fn fetch(read: &TileRead, tiles: &HashMap<Tile, Vec<u8>>) -> Vec<Vec<u8>> {
        read.tiles().iter().map(|t| tiles[t].clone()).collect()
    }

    #[test]
    fn reads_leaves_through_full_partial_and_upper_tiles() {
        let (tree, tiles) = tiles_of(70_000);
        let wanted = [
            stored_hash_index(0, 0),
            stored_hash_index(0, 300),
            stored_hash_index(0, 65_535),
            stored_hash_index(0, 69_999),
            stored_hash_index(8, 3),
            stored_hash_index(3, 1000),
        ];
        let read = TileRead::new(tree, &wanted).unwrap();
        let paths: Vec<String> = read.tiles().iter().map(Tile::path).collect();
        assert!(paths.contains(&"tile/8/2/000.p/1".to_owned()), "{paths:?}");
        assert!(paths.contains(&"tile/8/1/000".to_owned()), "{paths:?}");
        assert!(paths.contains(&"tile/8/0/273.p/112".to_owned()), "{paths:?}");
        let hashes = read.read(&fetch(&read, &tiles)).unwrap();
        assert_eq!(hashes[0], record_hash(b"r0"));
        assert_eq!(hashes[1], record_hash(b"r300"));
        assert_eq!(hashes[2], record_hash(b"r65535"));
        assert_eq!(hashes[3], record_hash(b"r69999"));
    }

    #[test]
    fn a_wrong_byte_in_any_tile_is_a_mismatch() {
        let (tree, tiles) = tiles_of(1000);
        let read = TileRead::new(tree, &[stored_hash_index(0, 5), stored_hash_index(0, 999)]).unwrap();
        let good = fetch(&read, &tiles);
        read.read(&good).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i][17] ^= 1;
            assert!(
                matches!(read.read(&bad), Err(TlogError::TileMismatch { .. })),
                "tile {}",
                read.tiles()[i].path()
            );
        }
        let mut short = good.clone();
        short[0].pop();
        assert!(matches!(read.read(&short), Err(TlogError::MalformedTile { .. })));
        assert!(read.read(&good[1..]).is_err());
    }

    #[test]
    fn hashes_outside_the_tree_are_errors() {
        let (tree, _) = tiles_of(10);
        assert!(TileRead::new(tree, &[stored_hash_index(0, 10)]).is_err());
        assert!(TileRead::new(tree, &[u64::MAX]).is_err());
        assert!(TileRead::new(tree, &[]).unwrap().tiles().is_empty());
    }
}

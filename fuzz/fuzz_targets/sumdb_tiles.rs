//! Tiles of a checksum database's log (`gomod::sumdb::tile`, `audit`).
//!
//! Three halves:
//! - tile paths: whatever `Tile::from_path` accepts prints back as the
//!   same path;
//! - a real log of up to 255 records, built here by the RFC 6962
//!   recursion (independent of the stored-hash code): honest tiles prove
//!   every inclusion and consistency the fuzzer asks for; a tile with one
//!   byte changed, or another record, never does;
//! - any tree size and id: planning never panics, plans only tiles that
//!   exist, and garbage tile bytes are an error, not a panic.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modgate::gomod::sumdb::audit::{RecordInclusion, TreeConsistency};
use modgate::gomod::sumdb::tile::{MAX_TILE_BYTES, Tile};
use modgate::gomod::sumdb::tlog::{Hash, Tree, node_hash, record_hash};

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Path(&'a str),
    Log {
        size: u8,
        id: u8,
        old: u8,
        flip: Option<(u16, u8)>,
        other: bool,
    },
    Plan {
        size: u64,
        id: u64,
        old: u64,
        hash: [u8; 32],
        tiles: Vec<&'a [u8]>,
    },
}

/// The root of `hashes` by the RFC 6962 recursion.
fn mth(hashes: &[Hash]) -> Hash {
    if hashes.len() == 1 {
        return hashes[0];
    }
    // The largest power of two smaller than the length.
    let k = 1 << (usize::BITS - 1 - (hashes.len() - 1).leading_zeros());
    node_hash(&mth(&hashes[..k]), &mth(&hashes[k..]))
}

/// A log of `size` records "r0".."r{size-1}": its tree and its one
/// level-0 tile.
fn log(size: u64) -> (Tree, Vec<u8>) {
    let leaves: Vec<Hash> = (0..size).map(|i| record_hash(format!("r{i}\n").as_bytes())).collect();
    let tile = leaves.iter().flat_map(|h| h.0).collect();
    (
        Tree {
            size,
            hash: mth(&leaves),
        },
        tile,
    )
}

/// The bytes of `tiles` from a log whose only tile is `level0` (under 256 records).
fn fetch(tiles: &[Tile], level0: &[u8]) -> Vec<Vec<u8>> {
    tiles
        .iter()
        .map(|t| {
            assert_eq!(
                (t.level, t.number),
                (0, 0),
                "a log of under 256 records has one tile: {t:?}"
            );
            level0[..t.byte_len()].to_vec()
        })
        .collect()
}

fn flipped(mut tiles: Vec<Vec<u8>>, flip: Option<(u16, u8)>) -> Option<Vec<Vec<u8>>> {
    let (at, xor) = flip?;
    let total: usize = tiles.iter().map(Vec::len).sum();
    if xor == 0 || total == 0 {
        return None;
    }
    let mut at = usize::from(at) % total;
    for t in &mut tiles {
        if at < t.len() {
            t[at] ^= xor;
            return Some(tiles);
        }
        at -= t.len();
    }
    None
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Path(path) => {
        if let Ok(tile) = Tile::from_path(path) {
            assert_eq!(tile.path(), path);
            assert!(tile.byte_len() <= MAX_TILE_BYTES && tile.byte_len() > 0);
        }
    }
    Input::Log {
        size,
        id,
        old,
        flip,
        other,
    } => {
        // 1 to 255 records: one partial level-0 tile (256 would add a level-1 tile).
        let size = u64::from(size).max(1);
        let (tree, level0) = log(size);
        let id = u64::from(id) % size;
        let check = RecordInclusion::new(tree, id).expect("an id inside the tree plans");
        let tiles = fetch(check.tiles(), &level0);
        let record = format!("r{id}\n");
        check
            .check(&tiles, record.as_bytes())
            .expect("honest tiles prove inclusion");
        if other {
            let wrong = format!("r{}\n", id + 1);
            assert!(
                check.check(&tiles, wrong.as_bytes()).is_err(),
                "another record is not record {id}"
            );
        }
        if let Some(bad) = flipped(tiles, flip) {
            assert!(
                check.check(&bad, record.as_bytes()).is_err(),
                "a changed tile proves inclusion"
            );
        }
        let (old_tree, _) = log(u64::from(old) % size + 1);
        let consistent = TreeConsistency::new(old_tree, tree).expect("a smaller tree plans");
        let tiles = fetch(consistent.tiles(), &level0);
        consistent.check(&tiles).expect("honest tiles prove consistency");
        if let Some(bad) = flipped(tiles, flip) {
            assert!(consistent.check(&bad).is_err(), "a changed tile proves consistency");
        }
    }
    Input::Plan {
        size,
        id,
        old,
        hash,
        tiles,
    } => {
        let tree = Tree { size, hash: Hash(hash) };
        if let Ok(check) = RecordInclusion::new(tree, id) {
            assert!(id < size);
            for t in check.tiles() {
                assert_eq!(Tile::from_path(&t.path()), Ok(*t));
            }
            let _ = check.check(&tiles, b"r0\n");
        }
        let old = Tree {
            size: old,
            hash: Hash(hash),
        };
        if let Ok(consistent) = TreeConsistency::new(old, tree) {
            for t in consistent.tiles() {
                assert_eq!(Tile::from_path(&t.path()), Ok(*t));
            }
            let _ = consistent.check(&tiles);
        }
    }
});

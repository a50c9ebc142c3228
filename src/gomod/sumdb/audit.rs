//! The two checks a verifying client makes on a signed tree, each read
//! through tiles: a record is in the tree (inclusion), and the tree extends
//! an older one (consistency).
//!
//! Each check is planned first and run second, so the caller fetches the
//! tiles however it likes in between:
//!
//! ```text
//! let check = RecordInclusion::new(tree, id)?;
//! let tiles = fetch_all(check.tiles()).await?;   // tile/8/0/001.p/44 …
//! check.check(&tiles, record_text)?;
//! ```
//!
//! Every tile is checked against the tree before any hash is used, so a
//! [`TlogError::TileMismatch`] means the server's tiles are not those of
//! the tree it signed, and a [`TlogError::ProofFailed`] means the tiles
//! are right but the record is not in the tree (inclusion) or the older
//! tree is not a prefix of the newer (consistency: a fork).

use super::proof::{ProofShape, check_record_proof, check_tree_proof};
use super::tile::Tile;
use super::tile_read::TileRead;
use super::tlog::{TlogError, Tree, record_hash};

/// A planned check that record `id` is in a signed tree.
#[derive(Debug, Clone)]
pub struct RecordInclusion {
    tree: Tree,
    id: u64,
    shape: ProofShape,
    read: TileRead,
}

impl RecordInclusion {
    /// Plans the check that record `id` is in `tree`.
    pub fn new(tree: Tree, id: u64) -> Result<RecordInclusion, TlogError> {
        let shape = ProofShape::record(tree.size, id)?;
        let read = TileRead::new(tree, &shape.indexes())?;
        Ok(RecordInclusion { tree, id, shape, read })
    }

    /// The tiles to fetch (none for a tree of one record).
    pub fn tiles(&self) -> &[Tile] {
        self.read.tiles()
    }

    /// Checks that `record` (the record text, as hashed into the log) is
    /// record `id`, given the bytes of [`RecordInclusion::tiles`] in order.
    pub fn check<B: AsRef<[u8]>>(&self, tiles: &[B], record: &[u8]) -> Result<(), TlogError> {
        let proof = self.shape.assemble(&self.read.read(tiles)?)?;
        check_record_proof(&proof, self.tree.size, &self.tree.hash, self.id, &record_hash(record))
    }
}

/// A planned check that a newer signed tree extends an older one.
#[derive(Debug, Clone)]
pub struct TreeConsistency {
    old: Tree,
    new: Tree,
    /// `None` when the old tree is empty: every tree extends it.
    shape: Option<ProofShape>,
    read: TileRead,
}

impl TreeConsistency {
    /// Plans the check that `new` extends `old`; `old` must not be larger.
    pub fn new(old: Tree, new: Tree) -> Result<TreeConsistency, TlogError> {
        if old.size > new.size {
            return Err(TlogError::OutOfRange(format!(
                "the tree of size {} cannot extend the larger one of size {}",
                new.size, old.size
            )));
        }
        let shape = match old.size {
            0 => None,
            _ => Some(ProofShape::tree(new.size, old.size)?),
        };
        let indexes = shape.as_ref().map(ProofShape::indexes).unwrap_or_default();
        let read = TileRead::new(new, &indexes)?;
        Ok(TreeConsistency { old, new, shape, read })
    }

    /// The tiles to fetch, all of the newer tree (none when the old tree is
    /// empty or the same size).
    pub fn tiles(&self) -> &[Tile] {
        self.read.tiles()
    }

    /// Checks the proof, given the bytes of [`TreeConsistency::tiles`] in
    /// order. [`TlogError::ProofFailed`] means the trees forked.
    pub fn check<B: AsRef<[u8]>>(&self, tiles: &[B]) -> Result<(), TlogError> {
        let Some(shape) = &self.shape else {
            return Ok(());
        };
        let proof = shape.assemble(&self.read.read(tiles)?)?;
        check_tree_proof(&proof, self.new.size, &self.new.hash, self.old.size, &self.old.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tlog::{Hash, node_hash};
    use super::*;

    /// The root (by the RFC 6962 recursion, independent of the stored-hash
    /// code) of a small log of "r0".."r{n-1}", and its one level-0 tile.
    fn small_log(size: u64) -> (Tree, Vec<u8>) {
        fn mth(hashes: &[Hash]) -> Hash {
            if hashes.len() == 1 {
                return hashes[0];
            }
            let k = hashes.len().next_power_of_two() / 2;
            node_hash(&mth(&hashes[..k]), &mth(&hashes[k..]))
        }
        let leaves: Vec<Hash> = (0..size).map(|k| record_hash(format!("r{k}").as_bytes())).collect();
        let tile: Vec<u8> = leaves.iter().flat_map(|h| h.0).collect();
        (
            Tree {
                size,
                hash: mth(&leaves),
            },
            tile,
        )
    }

    #[test]
    fn inclusion_in_a_tree_of_five() {
        let (tree, tile) = small_log(5);
        let check = RecordInclusion::new(tree, 3).unwrap();
        let paths: Vec<String> = check.tiles().iter().map(Tile::path).collect();
        assert_eq!(paths, ["tile/8/0/000.p/5"]);
        check.check(&[&tile], b"r3").unwrap();
        assert_eq!(check.check(&[&tile], b"r4"), Err(TlogError::ProofFailed));
        assert!(RecordInclusion::new(tree, 5).is_err());
    }

    #[test]
    fn a_tree_of_one_needs_no_tiles() {
        let (tree, _) = small_log(1);
        let check = RecordInclusion::new(tree, 0).unwrap();
        assert!(check.tiles().is_empty());
        check.check::<&[u8]>(&[], b"r0").unwrap();
        assert_eq!(check.check::<&[u8]>(&[], b"r1"), Err(TlogError::ProofFailed));
    }

    #[test]
    fn consistency_and_fork() {
        let (old, _) = small_log(3);
        let (new, tile) = small_log(7);
        let check = TreeConsistency::new(old, new).unwrap();
        check.check(&[&tile]).unwrap();
        let forked = Tree {
            size: 3,
            hash: record_hash(b"another log"),
        };
        let check = TreeConsistency::new(forked, new).unwrap();
        assert_eq!(check.check(&[&tile]), Err(TlogError::ProofFailed));
        assert!(TreeConsistency::new(new, old).is_err());
    }

    #[test]
    fn same_size_trees_must_be_equal_and_empty_is_a_prefix_of_all() {
        let (tree, _) = small_log(4);
        let same = TreeConsistency::new(tree, tree).unwrap();
        assert!(same.tiles().is_empty());
        same.check::<&[u8]>(&[]).unwrap();
        let other = Tree {
            size: 4,
            hash: record_hash(b"x"),
        };
        assert_eq!(
            TreeConsistency::new(other, tree).unwrap().check::<&[u8]>(&[]),
            Err(TlogError::ProofFailed)
        );
        let empty = Tree {
            size: 0,
            hash: Hash::empty_tree(),
        };
        let check = TreeConsistency::new(empty, tree).unwrap();
        assert!(check.tiles().is_empty());
        check.check::<&[u8]>(&[]).unwrap();
    }

    /// A lookup, its key and its one tile, as the test server built from
    /// go's own x/mod (tests/sumdb) served them for two modules.
    const GO_KEY: &str = "sum.test+0a706dc8+Aee6F4XyC/DF63C0V2Z1QzJ75GOB/bxjnGz6TgZ3AFgV";
    const GO_LOOKUP: &str = "1\n\
        example.test/alpha v1.0.0 h1:AdMatwqCpRdY6m/HKtUsvWANsoSqVV90fW+QJejqlDM=\n\
        example.test/alpha v1.0.0/go.mod h1:1gBd5DIMtmGQ2fIeS8x2XZDJQJ1av+qQvKi4MORNlrA=\n\
        \n\
        go.sum database tree\n\
        2\n\
        EUHa4um/+QMRWH4YqZud0eyKuTS8lMgQoVqh/qt4DiA=\n\
        \n\
        \u{2014} sum.test CnBtyEB019xAbT38P/pSH6D6s4E4BuFvB5TPuCxSflgMZBeK23m4EiCsEmEupmPUO4ALw9Rfkw8dqmVC0WfhLLtjkQ0=\n";
    const GO_TILE_0_P2: &str =
        "7DUY1vYDjYbdAo/eD9y1qs3ZmlPX7CxHTgp/zW79VB4vjWVlTM5XGFDq/3SBo+bI+/kNgdEdLDb1ISQn3UCuyQ==";

    #[test]
    fn a_lookup_from_gos_own_server_verifies() {
        use super::super::{note, record};
        use base64::Engine as _;
        let key = note::VerifierKey::parse(GO_KEY).unwrap();
        let lookup = record::parse_lookup(GO_LOOKUP.as_bytes()).unwrap();
        let tree = Tree::from_note_text(note::open(lookup.note, &key).unwrap()).unwrap();
        assert_eq!(tree.size, 2);
        let check = RecordInclusion::new(tree, lookup.id).unwrap();
        let paths: Vec<String> = check.tiles().iter().map(Tile::path).collect();
        assert_eq!(paths, ["tile/8/0/000.p/2"]);
        let tile = base64::engine::general_purpose::STANDARD.decode(GO_TILE_0_P2).unwrap();
        check.check(&[&tile], lookup.record.as_bytes()).unwrap();
        let hashes = record::module_hashes(lookup.record, "example.test/alpha", "v1.0.0").unwrap();
        assert_eq!(hashes.zip_h1, "h1:AdMatwqCpRdY6m/HKtUsvWANsoSqVV90fW+QJejqlDM=");
        // Record 0 is the other module's: the same tile, another record.
        let other = RecordInclusion::new(tree, 0).unwrap();
        assert_eq!(
            other.check(&[&tile], lookup.record.as_bytes()),
            Err(TlogError::ProofFailed)
        );
    }
}

//! The transparent log's hashing (RFC 6962), where each hash is stored,
//! and the tree a checksum database signs.
//!
//! A log of N records is a Merkle tree whose leaves are
//! `SHA256(0x00 || record)` and whose inner nodes are
//! `SHA256(0x01 || left || right)`. Every node that covers a complete,
//! aligned power-of-two run of records is a *stored hash*, numbered in the
//! order the log appends them; tiles (`tile.rs`) hold these stored hashes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::digest::{Context, SHA256};

/// The size of a hash, in bytes.
pub const HASH_SIZE: usize = 32;

/// The largest tree size accepted: a sanity bound far above any real log
/// (sum.golang.org holds tens of millions of records) that keeps every
/// index computation clear of overflow.
pub const MAX_TREE_SIZE: u64 = 1 << 56;

/// The first line of a signed tree note's text.
const TREE_NOTE_HEADER: &str = "go.sum database tree\n";

/// What went wrong reading a log: a malformed tree, tile or proof input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    /// The tree note text is not `go.sum database tree\nN\nHASH\n`.
    #[error("malformed tree note: {0}")]
    MalformedTree(String),
    /// A tile path or tile's bytes are malformed.
    #[error("malformed tile {path}: {reason}")]
    MalformedTile {
        /// The tile's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tiles do not hash to the signed tree: the server answered with
    /// tiles of another tree.
    #[error("tile {path} does not match the tree of size {size}")]
    TileMismatch {
        /// The first tile that failed.
        path: String,
        /// The size of the tree it was checked against.
        size: u64,
    },
    /// A proof did not lead to the expected tree hash.
    #[error("invalid transparency proof")]
    ProofFailed,
    /// The inputs name a record or tree that is not there.
    #[error("{0}")]
    OutOfRange(String),
}

/// A SHA-256 hash in the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The hash of the empty tree, `SHA256("")`.
    pub fn empty_tree() -> Hash {
        sha256(&[&[]])
    }

    /// Parses standard, padded base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<Hash> {
        let bytes = BASE64.decode(text).ok()?;
        Some(Hash(bytes.try_into().ok()?))
    }

    /// Copies a hash out of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        Some(Hash(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for Hash {
    /// Standard, padded base64, as in tree notes and go.sum.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// SHA-256 over the concatenation of `parts`.
pub(crate) fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    for part in parts {
        ctx.update(part);
    }
    let digest = ctx.finish();
    let mut out = [0u8; HASH_SIZE];
    out.copy_from_slice(digest.as_ref());
    Hash(out)
}

/// The leaf hash of a record: `SHA256(0x00 || record)`.
pub fn record_hash(record: &[u8]) -> Hash {
    sha256(&[&[0x00], record])
}

/// The hash of an inner node: `SHA256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], &left.0, &right.0])
}

/// The index, in append order, of the stored hash at `level` covering
/// records `[n << level, (n + 1) << level)`.
///
/// Appending record k stores its leaf hash, then one hash for every
/// subtree that record completes; so the leaf of record k sits after all
/// the hashes stored for records `0..k`, of which there are
/// `2k - popcount(k)`.
/// Callers keep `n << level` within [`MAX_TREE_SIZE`].
pub(crate) fn stored_hash_index(level: u32, n: u64) -> u64 {
    // The last record under this node, then the hashes stored before its
    // leaf, then its leaf, then one per level up to this node.
    let last = ((n + 1) << level) - 1;
    2 * last - u64::from(last.count_ones()) + u64::from(level)
}

/// The inverse of [`stored_hash_index`]: which level and node an index is.
/// Callers keep `index` within the hashes of a tree of at most
/// [`MAX_TREE_SIZE`] records.
pub(crate) fn split_stored_hash_index(index: u64) -> (u32, u64) {
    // The record whose leaf comes last at or before `index`: leaves are at
    // 2k - popcount(k) (strictly increasing in k), so search from index/2.
    let mut k = index / 2;
    while k > 0 && stored_hash_index(0, k) > index {
        k -= 1;
    }
    while stored_hash_index(0, k + 1) <= index {
        k += 1;
    }
    let level = (index - stored_hash_index(0, k)) as u32;
    (level, k >> level)
}

/// The complete subtrees that cover records `[lo, hi)`, largest first, as
/// `(level, n)`: the binary decomposition of the range. `lo` must be
/// aligned to the first subtree, which holds at every use in a tree.
pub(crate) fn subtrees(mut lo: u64, hi: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    while lo < hi {
        let level = largest_pow2_level(hi - lo + 1);
        out.push((level, lo >> level));
        lo += 1 << level;
    }
    out
}

/// The level of the largest power of two strictly below `n` (n >= 2).
pub(crate) fn largest_pow2_level(n: u64) -> u32 {
    63 - (n - 1).leading_zeros()
}

/// The stored-hash indexes of the subtrees covering records `[lo, hi)`.
pub(crate) fn subtree_indexes(lo: u64, hi: u64) -> Vec<u64> {
    subtrees(lo, hi)
        .into_iter()
        .map(|(level, n)| stored_hash_index(level, n))
        .collect()
}

/// Folds the hashes of the subtrees covering a range (as
/// [`subtree_indexes`] lists them) into the range's hash: the smallest
/// subtrees on the right combine first.
pub(crate) fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |right, left| node_hash(left, &right)))
}

/// The stored-hash indexes whose hashes [`tree_hash`] needs for a tree of
/// `size` records.
pub(crate) fn tree_hash_indexes(size: u64) -> Vec<u64> {
    subtree_indexes(0, size)
}

/// The hash of a tree of `size` records from the stored hashes named by
/// [`tree_hash_indexes`], in that order.
pub(crate) fn tree_hash(size: u64, hashes: &[Hash]) -> Result<Hash, TlogError> {
    if size == 0 {
        return Ok(Hash::empty_tree());
    }
    let want = subtrees(0, size).len();
    if hashes.len() != want {
        return Err(TlogError::OutOfRange(format!(
            "a tree of size {size} needs {want} hashes, not {}",
            hashes.len()
        )));
    }
    fold_subtrees(hashes).ok_or(TlogError::ProofFailed)
}

/// A tree head: the number of records and the root hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    /// The number of records.
    pub size: u64,
    /// The root hash.
    pub hash: Hash,
}

impl Tree {
    /// The note text a checksum database signs for this tree:
    /// `go.sum database tree\nN\nHASH\n`.
    pub fn note_text(&self) -> String {
        format!("{TREE_NOTE_HEADER}{}\n{}\n", self.size, self.hash)
    }

    /// Parses a tree note's text (lines after the third are allowed and
    /// ignored, as go does).
    pub fn from_note_text(text: &str) -> Result<Tree, TlogError> {
        let bad = |why: &str| TlogError::MalformedTree(why.to_owned());
        let body = text
            .strip_prefix(TREE_NOTE_HEADER)
            .ok_or_else(|| bad("does not start with \"go.sum database tree\""))?;
        let mut lines = body.splitn(3, '\n');
        let (Some(size), Some(hash), Some(_)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(bad("fewer than three lines"));
        };
        let canonical =
            !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size == "0" || !size.starts_with('0'));
        let size: u64 = match size.parse() {
            Ok(n) if canonical => n,
            _ => return Err(bad("tree size is not a decimal number")),
        };
        if size > MAX_TREE_SIZE {
            return Err(bad("tree size is implausibly large"));
        }
        let hash = Hash::from_base64(hash).ok_or_else(|| bad("root hash is not base64 of 32 bytes"))?;
        if size == 0 && hash != Hash::empty_tree() {
            return Err(bad("an empty tree with a root hash that is not SHA256(\"\")"));
        }
        Ok(Tree { size, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hash_indexes_follow_append_order() {
        // Records 0..4 store: r0, r1, n(0..2), r2, r3, n(2..4), n(0..4), r4.
        let order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)];
        for (i, (level, n)) in order.into_iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), i as u64, "level {level} n {n}");
            assert_eq!(split_stored_hash_index(i as u64), (level, n), "index {i}");
        }
        for index in 0..5000 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
        }
    }

    #[test]
    fn huge_indexes_do_not_overflow() {
        let index = stored_hash_index(0, MAX_TREE_SIZE);
        assert_eq!(split_stored_hash_index(index), (0, MAX_TREE_SIZE));
    }

    #[test]
    fn subtrees_decompose_a_range() {
        assert_eq!(subtrees(0, 7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(subtrees(0, 8), vec![(3, 0)]);
        assert_eq!(subtrees(8, 12), vec![(2, 2)]);
        assert!(subtrees(5, 5).is_empty());
    }

    #[test]
    fn tree_hash_of_three_records_is_rfc6962() {
        let r: Vec<Hash> = [b"a", b"b", b"c"].iter().map(|d| record_hash(*d)).collect();
        let want = node_hash(&node_hash(&r[0], &r[1]), &r[2]);
        assert_eq!(tree_hash_indexes(3), vec![2, 3]);
        let stored = [node_hash(&r[0], &r[1]), r[2]];
        assert_eq!(tree_hash(3, &stored).unwrap(), want);
        assert!(tree_hash(3, &stored[..1]).is_err());
        assert_eq!(tree_hash(0, &[]).unwrap(), Hash::empty_tree());
    }

    #[test]
    fn empty_tree_hash_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty_tree().to_string(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn tree_note_text_round_trips() {
        let tree = Tree {
            size: 306,
            hash: Hash::from_base64("IJnkBX6yRA1LMfv31s/ZA8OJhp1tJ8kvljo6tZ3SIGM=").unwrap(),
        };
        let text = tree.note_text();
        assert_eq!(
            text,
            "go.sum database tree\n306\nIJnkBX6yRA1LMfv31s/ZA8OJhp1tJ8kvljo6tZ3SIGM=\n"
        );
        assert_eq!(Tree::from_note_text(&text).unwrap(), tree);
        assert_eq!(Tree::from_note_text(&format!("{text}extra line\n")).unwrap(), tree);
    }

    #[test]
    fn malformed_tree_notes_are_errors() {
        let hash = "IJnkBX6yRA1LMfv31s/ZA8OJhp1tJ8kvljo6tZ3SIGM=";
        for text in [
            String::new(),
            "go.sum database tree\n".to_owned(),
            format!("go.sum database tree\n5\n{hash}"),
            format!("go.sum database tree\n05\n{hash}\n"),
            format!("go.sum database tree\n+5\n{hash}\n"),
            format!("go.sum database tree\n-5\n{hash}\n"),
            format!("go.sum database tree\n99999999999999999999\n{hash}\n"),
            format!("go.sum database tree\n{}\n{hash}\n", MAX_TREE_SIZE + 1),
            "go.sum database tree\n5\nAAAA\n".to_owned(),
            format!("go.sum database tree\n0\n{hash}\n"),
            format!("go.sum database  tree\n5\n{hash}\n"),
        ] {
            assert!(Tree::from_note_text(&text).is_err(), "{text:?}");
        }
    }
}

//! RFC 6962 proofs over the log: that a record is in a tree (inclusion)
//! and that an older tree is a prefix of a newer one (consistency).
//!
//! A proof is a list of hashes, each the hash of a run of records. Which
//! runs is pure arithmetic on the tree sizes (`ProofShape`); each run's
//! hash is folded from the stored hashes of the complete subtrees that
//! cover it, so a proof can be assembled from stored hashes read out of
//! tiles and then checked against a signed root.

use super::tlog::{
    Hash, MAX_TREE_SIZE, TlogError, fold_subtrees, largest_pow2_level, node_hash, stored_hash_index, subtrees,
};

/// The runs of records, `[lo, hi)`, whose hashes make up one proof, in
/// proof order (the deepest sibling first, the root's child last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProofShape(Vec<(u64, u64)>);

impl ProofShape {
    /// The shape of a proof that record `id` is in a tree of `size`
    /// records.
    pub(crate) fn record(size: u64, id: u64) -> Result<ProofShape, TlogError> {
        if id >= size || size > MAX_TREE_SIZE {
            return Err(TlogError::OutOfRange(format!(
                "record {id} is not in a tree of size {size}"
            )));
        }
        let mut runs = Vec::new();
        record_runs(0, size, id, &mut runs);
        Ok(ProofShape(runs))
    }

    /// The shape of a proof that the tree of `old` records is a prefix of
    /// the tree of `new` records (0 < old <= new).
    pub(crate) fn tree(new: u64, old: u64) -> Result<ProofShape, TlogError> {
        if old == 0 || old > new || new > MAX_TREE_SIZE {
            return Err(TlogError::OutOfRange(format!(
                "no consistency proof from a tree of size {old} to one of size {new}"
            )));
        }
        let mut runs = Vec::new();
        tree_runs(0, new, old, &mut runs);
        Ok(ProofShape(runs))
    }

    /// The stored hashes the proof is assembled from, in the order
    /// [`ProofShape::assemble`] takes them.
    pub(crate) fn indexes(&self) -> Vec<u64> {
        self.0
            .iter()
            .flat_map(|&(lo, hi)| subtrees(lo, hi))
            .map(|(level, n)| stored_hash_index(level, n))
            .collect()
    }

    /// The proof, from the stored hashes named by [`ProofShape::indexes`].
    pub(crate) fn assemble(&self, mut stored: &[Hash]) -> Result<Vec<Hash>, TlogError> {
        let mut proof = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            let count = subtrees(lo, hi).len();
            let Some((run, rest)) = stored.split_at_checked(count) else {
                return Err(TlogError::OutOfRange("too few hashes for the proof".into()));
            };
            proof.push(fold_subtrees(run).ok_or(TlogError::ProofFailed)?);
            stored = rest;
        }
        if !stored.is_empty() {
            return Err(TlogError::OutOfRange("too many hashes for the proof".into()));
        }
        Ok(proof)
    }
}

/// The half of `[lo, hi)` that is a complete subtree on the left: its size.
fn left_size(lo: u64, hi: u64) -> u64 {
    1 << largest_pow2_level(hi - lo)
}

/// Siblings on the path from record `id` up to the subtree `[lo, hi)`.
fn record_runs(lo: u64, hi: u64, id: u64, runs: &mut Vec<(u64, u64)>) {
    if hi - lo == 1 {
        return;
    }
    let mid = lo + left_size(lo, hi);
    if id < mid {
        record_runs(lo, mid, id, runs);
        runs.push((mid, hi));
    } else {
        record_runs(mid, hi, id, runs);
        runs.push((lo, mid));
    }
}

/// What, beyond the old tree's records `[0, old)`, rebuilds both the old
/// tree and the subtree `[lo, hi)` of the new one.
fn tree_runs(lo: u64, hi: u64, old: u64, runs: &mut Vec<(u64, u64)>) {
    if old == hi {
        // The whole subtree is in the old tree: known already at the top,
        // else it is one proof element.
        if lo != 0 {
            runs.push((lo, hi));
        }
        return;
    }
    let mid = lo + left_size(lo, hi);
    if old <= mid {
        tree_runs(lo, mid, old, runs);
        runs.push((mid, hi));
    } else {
        tree_runs(mid, hi, old, runs);
        runs.push((lo, mid));
    }
}

/// Checks that `proof` shows the record with leaf hash `leaf` is record
/// `id` of the tree of `size` records with root hash `root`.
pub fn check_record_proof(proof: &[Hash], size: u64, root: &Hash, id: u64, leaf: &Hash) -> Result<(), TlogError> {
    if id >= size || size > MAX_TREE_SIZE {
        return Err(TlogError::OutOfRange(format!(
            "record {id} is not in a tree of size {size}"
        )));
    }
    match climb_from_record(proof, 0, size, id, leaf) {
        Some(computed) if computed == *root => Ok(()),
        _ => Err(TlogError::ProofFailed),
    }
}

/// The hash of `[lo, hi)` rebuilt from the leaf and the proof's siblings
/// (the last one is this level's); `None` if the proof has the wrong length.
fn climb_from_record(proof: &[Hash], lo: u64, hi: u64, id: u64, leaf: &Hash) -> Option<Hash> {
    if hi - lo == 1 {
        return proof.is_empty().then_some(*leaf);
    }
    let (sibling, rest) = proof.split_last()?;
    let mid = lo + left_size(lo, hi);
    if id < mid {
        Some(node_hash(&climb_from_record(rest, lo, mid, id, leaf)?, sibling))
    } else {
        Some(node_hash(sibling, &climb_from_record(rest, mid, hi, id, leaf)?))
    }
}

/// Checks that `proof` shows the tree of `old_size` records with root
/// `old_root` is a prefix of the tree of `new_size` records with root
/// `new_root`.
pub fn check_tree_proof(
    proof: &[Hash],
    new_size: u64,
    new_root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<(), TlogError> {
    if old_size == 0 || old_size > new_size || new_size > MAX_TREE_SIZE {
        return Err(TlogError::OutOfRange(format!(
            "no consistency proof from a tree of size {old_size} to one of size {new_size}"
        )));
    }
    match climb_both_trees(proof, 0, new_size, old_size, old_root) {
        Some((old, new)) if old == *old_root && new == *new_root => Ok(()),
        _ => Err(TlogError::ProofFailed),
    }
}

/// The hashes of the old tree's part of `[lo, hi)` and of `[lo, hi)`
/// itself, rebuilt from the proof; `None` if the proof has the wrong length.
fn climb_both_trees(proof: &[Hash], lo: u64, hi: u64, old: u64, old_root: &Hash) -> Option<(Hash, Hash)> {
    if old == hi {
        if lo == 0 {
            return proof.is_empty().then_some((*old_root, *old_root));
        }
        return match proof {
            [whole] => Some((*whole, *whole)),
            _ => None,
        };
    }
    let (sibling, rest) = proof.split_last()?;
    let mid = lo + left_size(lo, hi);
    if old <= mid {
        let (old_part, new_part) = climb_both_trees(rest, lo, mid, old, old_root)?;
        Some((old_part, node_hash(&new_part, sibling)))
    } else {
        let (old_part, new_part) = climb_both_trees(rest, mid, hi, old, old_root)?;
        Some((node_hash(sibling, &old_part), node_hash(sibling, &new_part)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tlog::{record_hash, tree_hash, tree_hash_indexes};
    use super::*;

    /// Every stored hash of a log of `size` records "r0", "r1", ...,
    /// indexed by stored-hash index.
    fn log(size: u64) -> Vec<Hash> {
        let mut stored = Vec::new();
        for k in 0..size {
            stored.push(record_hash(format!("r{k}").as_bytes()));
            // Each subtree record k completes.
            let mut level = 0;
            while (k >> level) & 1 == 1 {
                let n = k >> (level + 1);
                let left = stored[stored_hash_index(level, 2 * n) as usize];
                let right = stored[stored_hash_index(level, 2 * n + 1) as usize];
                stored.push(node_hash(&left, &right));
                level += 1;
            }
        }
        stored
    }

    fn read(stored: &[Hash], indexes: &[u64]) -> Vec<Hash> {
        indexes.iter().map(|&i| stored[i as usize]).collect()
    }

    fn root(stored: &[Hash], size: u64) -> Hash {
        tree_hash(size, &read(stored, &tree_hash_indexes(size))).unwrap()
    }

    #[test]
    fn every_record_proves_in_every_tree_up_to_40() {
        let stored = log(40);
        for size in 1..=40 {
            let root = root(&stored, size);
            for id in 0..size {
                let shape = ProofShape::record(size, id).unwrap();
                let proof = shape.assemble(&read(&stored, &shape.indexes())).unwrap();
                let leaf = record_hash(format!("r{id}").as_bytes());
                check_record_proof(&proof, size, &root, id, &leaf).unwrap();
                let other = record_hash(b"not this record");
                assert_eq!(
                    check_record_proof(&proof, size, &root, id, &other),
                    Err(TlogError::ProofFailed)
                );
                if !proof.is_empty() {
                    assert!(check_record_proof(&proof[1..], size, &root, id, &leaf).is_err());
                }
            }
        }
    }

    #[test]
    fn every_tree_is_consistent_with_every_larger_one_up_to_40() {
        let stored = log(40);
        for new in 1..=40 {
            let new_root = root(&stored, new);
            for old in 1..=new {
                let old_root = root(&stored, old);
                let shape = ProofShape::tree(new, old).unwrap();
                let proof = shape.assemble(&read(&stored, &shape.indexes())).unwrap();
                check_tree_proof(&proof, new, &new_root, old, &old_root).unwrap();
                let forged = record_hash(b"forged");
                assert_eq!(
                    check_tree_proof(&proof, new, &new_root, old, &forged),
                    Err(TlogError::ProofFailed),
                    "{old} -> {new}"
                );
            }
        }
    }

    #[test]
    fn a_tree_of_seven_and_record_six_need_the_left_subtrees() {
        // [0,4) at level 2 and [4,6) at level 1.
        let shape = ProofShape::record(7, 6).unwrap();
        assert_eq!(shape.indexes(), vec![stored_hash_index(1, 2), stored_hash_index(2, 0)]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let h = record_hash(b"x");
        assert!(ProofShape::record(5, 5).is_err());
        assert!(ProofShape::record(MAX_TREE_SIZE + 1, 0).is_err());
        assert!(ProofShape::tree(5, 0).is_err());
        assert!(ProofShape::tree(5, 6).is_err());
        assert!(check_record_proof(&[], 0, &h, 0, &h).is_err());
        assert!(check_record_proof(&[], u64::MAX, &h, 0, &h).is_err());
        assert!(check_tree_proof(&[], 1, &h, 2, &h).is_err());
        assert!(check_tree_proof(&[h; 70], u64::MAX, &h, 1, &h).is_err());
        // One record: no proof; the leaf is the root.
        check_record_proof(&[], 1, &h, 0, &h).unwrap();
        check_tree_proof(&[], 3, &h, 3, &h).unwrap();
        assert!(check_tree_proof(&[h], 3, &h, 3, &h).is_err());
        let shape = ProofShape::record(8, 3).unwrap();
        assert!(shape.assemble(&[h]).is_err());
        assert!(shape.assemble(&[h; 4]).is_err());
    }
}

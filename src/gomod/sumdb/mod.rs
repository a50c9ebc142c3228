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
//! - `tile_read`: reading stored hashes out of tiles, every tile checked
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
pub(crate) mod tile_read;
pub mod tlog;
pub mod zip_names;

#[cfg(test)]
mod garbage_tests {
    //! Random bytes into every parser: errors, never panics.

    use super::*;

    /// A small deterministic generator (xorshift64*), so failures repeat.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Bytes drawn mostly from `alphabet`, sometimes anything.
        fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
            let len = (self.next() % max as u64) as usize;
            (0..len)
                .map(|_| match self.next() % 8 {
                    0 => self.next() as u8,
                    _ => alphabet[(self.next() % alphabet.len() as u64) as usize],
                })
                .collect()
        }
    }

    #[test]
    fn random_input_is_an_error_or_a_value_never_a_panic() {
        let mut random = Random(0x5eed_cafe_f00d_d00d);
        let key = note::VerifierKey::parse("sum.test+2aa55928+AbIcssIFBAj82rtuLTTmrQiufurFQBFztY/KXbvusVb1").unwrap();
        let text_alphabet = "go.sum database tree\n0123456789+/=\u{2014} x@ h1:".as_bytes();
        let path_alphabet = b"tile/8/0123456789x.p/data";
        for _ in 0..20_000 {
            let input = random.bytes(text_alphabet, 200);
            let _ = note::open(&input, &key);
            let _ = record::parse_lookup(&input);
            if let Ok(text) = std::str::from_utf8(&input) {
                let _ = tlog::Tree::from_note_text(text);
                let _ = record::module_hashes(text, "m", "v");
                let _ = note::VerifierKey::parse(text);
            }
            let path = random.bytes(path_alphabet, 40);
            if let Ok(path) = std::str::from_utf8(&path) {
                let _ = tile::Tile::from_path(path);
            }
        }
        for _ in 0..500 {
            let zip = random.bytes(b"PK\x01\x02\x03\x04\x05\x06\x00m@v/", 300);
            let _ = dirhash::h1_of_zip(std::io::Cursor::new(zip), "m", "v");
        }
    }

    #[test]
    fn random_tree_sizes_and_ids_are_errors_or_checks() {
        let mut random = Random(42);
        let hash = tlog::record_hash(b"x");
        for _ in 0..2_000 {
            let size = random.next() >> (random.next() % 64);
            let id = random.next() >> (random.next() % 64);
            let tree = tlog::Tree { size, hash };
            if let Ok(check) = audit::RecordInclusion::new(tree, id) {
                let tiles: Vec<Vec<u8>> = check.tiles().iter().map(|t| vec![0; t.byte_len()]).collect();
                assert!(check.check(&tiles, b"record").is_err());
            }
            let old = tlog::Tree { size: id, hash };
            if let Ok(check) = audit::TreeConsistency::new(old, tree) {
                let tiles: Vec<Vec<u8>> = check.tiles().iter().map(|t| vec![0; t.byte_len()]).collect();
                let _ = check.check(&tiles);
            }
            let _ = proof::check_record_proof(&[hash; 3], size, &hash, id, &hash);
            let _ = proof::check_tree_proof(&[hash; 3], size, &hash, id, &hash);
        }
    }
}

//! Signed tree notes (`gomod::sumdb::note`, `tlog::Tree`), with a key
//! made here.
//!
//! Two halves:
//! - bytes as a note, opened with the key: no panic; errors are one line;
//!   an opened note's text is the note's own prefix; a tree read from it
//!   prints back to the same text;
//! - a tree chosen by the fuzzer, signed with the key, then one byte
//!   flipped: the signed note opens to the tree, the flipped one never
//!   opens to a different tree.
//!
//! Verifier keys given as text also parse without a panic, and a key that
//! parses prints as itself.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use modgate::gomod::sumdb::note::{VerifierKey, open};
use modgate::gomod::sumdb::tlog::{Hash, Tree};
use ring::signature::{Ed25519KeyPair, KeyPair};

const NAME: &str = "sum.fuzz.test";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Note(&'a [u8]),
    Signed {
        size: u64,
        hash: [u8; 32],
        flip: Option<(u16, u8)>,
    },
    Key(&'a str),
}

struct Signer {
    pair: Ed25519KeyPair,
    key: VerifierKey,
    hash: u32,
}

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a seed makes a key");
        let mut key = vec![1u8];
        key.extend_from_slice(pair.public_key().as_ref());
        let digest = ring::digest::digest(&ring::digest::SHA256, &[NAME.as_bytes(), b"\n", &key].concat());
        let hash = u32::from_be_bytes([
            digest.as_ref()[0],
            digest.as_ref()[1],
            digest.as_ref()[2],
            digest.as_ref()[3],
        ]);
        let vkey = format!("{NAME}+{hash:08x}+{}", BASE64.encode(&key));
        let key = VerifierKey::parse(&vkey).expect("the key made here parses");
        Signer { pair, key, hash }
    })
}

/// `text` signed as go's note.Sign does.
fn sign(text: &str) -> Vec<u8> {
    let s = signer();
    let mut sig = s.hash.to_be_bytes().to_vec();
    sig.extend_from_slice(s.pair.sign(text.as_bytes()).as_ref());
    format!("{text}\n— {NAME} {}\n", BASE64.encode(sig)).into_bytes()
}

fn opened(note: &[u8]) -> Option<Tree> {
    match open(note, &signer().key) {
        Ok(text) => {
            assert!(note.starts_with(text.as_bytes()), "the text is the note's prefix");
            match Tree::from_note_text(text) {
                Ok(tree) => {
                    assert_eq!(tree.note_text(), text, "a tree prints as its note");
                    Some(tree)
                }
                Err(e) => {
                    assert!(!e.to_string().contains('\n'), "{e}");
                    None
                }
            }
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "{e}");
            None
        }
    }
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Note(bytes) => {
        opened(bytes);
    }
    Input::Signed { size, hash, flip } => {
        let tree = Tree { size, hash: Hash(hash) };
        let text = tree.note_text();
        let mut note = sign(&text);
        match Tree::from_note_text(&text) {
            Ok(parsed) => {
                assert_eq!(parsed, tree);
                assert_eq!(opened(&note), Some(tree), "a signed note opens");
            }
            // Sizes past the largest tree are refused, signed or not.
            Err(_) => assert_eq!(opened(&note), None),
        }
        if let Some((at, xor)) = flip {
            if xor == 0 || note.is_empty() {
                return;
            }
            let at = usize::from(at) % note.len();
            note[at] ^= xor;
            if let Some(other) = opened(&note) {
                assert_eq!(other, tree, "a changed note opened to another tree");
            }
        }
    }
    Input::Key(text) => {
        if let Ok(key) = VerifierKey::parse(text) {
            // The text back, but for the hash's hex digits, which go also
            // reads in upper case; modgate prints them in lower case.
            let printed = key.to_string();
            let canonical = |t: &str| -> String {
                let mut parts: Vec<String> = t.splitn(3, '+').map(str::to_owned).collect();
                if let Some(hash) = parts.get_mut(1) {
                    *hash = hash.to_ascii_lowercase();
                }
                parts.join("+")
            };
            assert_eq!(printed, canonical(text));
            assert_eq!(VerifierKey::parse(&printed).expect("a printed key parses"), key);
        }
    }
});

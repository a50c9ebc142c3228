//! Signed notes and the verifier keys that check them, as
//! `golang.org/x/mod/sumdb/note` defines them.
//!
//! A verifier key names a database and its Ed25519 public key:
//!
//! ```text
//! sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO
//! <name>        +<key hash>+<base64(0x01 || 32-byte public key)>
//! ```
//!
//! A signed note is text, a blank line, and signature lines:
//!
//! ```text
//! go.sum database tree
//! 4
//! myGGeHNIfG+Y1DiJMze7u/gFR8ZB/Q6+00qRhqo7cZI=
//!
//! — sum.test Kqmx0b…(base64 of key hash || 64-byte signature)
//! ```
//!
//! The signature covers the text up to and including its last newline.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, UnparsedPublicKey};

use super::tlog::sha256;

/// The largest signed note accepted, in bytes. Tree notes are about 200
/// bytes; go allows at most 100 signatures.
pub const MAX_NOTE_SIZE: usize = 16 * 1024;

/// The most signature lines a note may have, as in go.
const MAX_SIGNATURES: usize = 100;

/// The algorithm byte of an Ed25519 key.
const ALG_ED25519: u8 = 1;

/// The prefix of a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// What is wrong with a verifier key or a signed note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The verifier key is not `name+hash+base64key`.
    #[error("malformed verifier key: {0}")]
    MalformedKey(String),
    /// The key hash in the verifier key does not match its name and key.
    #[error("verifier key hash {0:08x} does not match its name and key")]
    KeyHashMismatch(u32),
    /// The note is malformed.
    #[error("malformed note: {0}")]
    Malformed(String),
    /// A signature line by the key does not verify.
    #[error("invalid signature by key {name}+{hash:08x}")]
    BadSignature {
        /// The key's name.
        name: String,
        /// The key's hash.
        hash: u32,
    },
    /// No signature line is by the key.
    #[error("note has no signature by key {name}+{hash:08x}")]
    NotSignedByKey {
        /// The key's name.
        name: String,
        /// The key's hash.
        hash: u32,
    },
}

/// A verifier key: a database name and the Ed25519 key its notes are
/// signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    hash: u32,
    public_key: [u8; 32],
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifierKey({}+{:08x})", self.name, self.hash)
    }
}

impl VerifierKey {
    /// Parses `name+hash+base64key`, checking the key hash.
    pub fn parse(vkey: &str) -> Result<VerifierKey, NoteError> {
        let bad = |why: &str| NoteError::MalformedKey(why.to_owned());
        let (name, rest) = vkey.split_once('+').ok_or_else(|| bad("no '+' after the name"))?;
        let (hash_hex, key_b64) = rest.split_once('+').ok_or_else(|| bad("no '+' after the key hash"))?;
        if !is_valid_name(name) {
            return Err(bad("the name is empty or has spaces or '+'"));
        }
        if hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key hash is not 8 hex digits"));
        }
        let hash = u32::from_str_radix(hash_hex, 16).map_err(|_| bad("the key hash is not 8 hex digits"))?;
        let key = BASE64.decode(key_b64).map_err(|_| bad("the key is not base64"))?;
        let Some((&ALG_ED25519, public_key)) = key.split_first() else {
            return Err(bad("the key is not an Ed25519 key"));
        };
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| bad("the Ed25519 key is not 32 bytes"))?;
        if key_hash(name, &key) != hash {
            return Err(NoteError::KeyHashMismatch(hash));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            hash,
            public_key,
        })
    }

    /// The database name, e.g. `sum.golang.org`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash: the first 4 bytes of `SHA256(name || "\n" || 0x01 || key)`.
    pub fn hash(&self) -> u32 {
        self.hash
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    /// The key in its text form, `name+hash+base64key`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(&self.public_key);
        write!(f, "{}+{:08x}+{}", self.name, self.hash, BASE64.encode(key))
    }
}

/// The key hash of `name` and `key` (algorithm byte included).
fn key_hash(name: &str, key: &[u8]) -> u32 {
    let digest = sha256(&[name.as_bytes(), b"\n", key]);
    u32::from_be_bytes([digest.0[0], digest.0[1], digest.0[2], digest.0[3]])
}

/// A key or signer name: not empty, no white space, no `+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Verifies a signed note with `key` and returns its text (every line
/// before the blank line, newline included). Signatures by other keys are
/// ignored; a bad signature by `key` is an error, as in go.
pub fn open<'a>(note: &'a [u8], key: &VerifierKey) -> Result<&'a str, NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    if note.len() > MAX_NOTE_SIZE {
        return Err(bad(&format!("larger than {MAX_NOTE_SIZE} bytes")));
    }
    let note = std::str::from_utf8(note).map_err(|_| bad("not UTF-8"))?;
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    let Some(signatures) = signatures.strip_suffix('\n') else {
        return Err(bad("no signature lines, or no newline after the last"));
    };
    let mut verified = false;
    for (count, line) in signatures.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(bad("too many signatures"));
        }
        let (name, hash, signature) = parse_signature_line(line)?;
        if name != key.name || hash != key.hash || verified {
            continue;
        }
        if !key.verifies(text.as_bytes(), &signature) {
            return Err(NoteError::BadSignature {
                name: key.name.clone(),
                hash,
            });
        }
        verified = true;
    }
    if !verified {
        return Err(NoteError::NotSignedByKey {
            name: key.name.clone(),
            hash: key.hash,
        });
    }
    Ok(text)
}

/// Splits `— name base64(hash || signature)` into its parts.
fn parse_signature_line(line: &str) -> Result<(&str, u32, Vec<u8>), NoteError> {
    let bad = |why: &str| NoteError::Malformed(why.to_owned());
    let line = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
    let (name, b64) = line
        .split_once(' ')
        .ok_or_else(|| bad("a signature line has no signature"))?;
    if !is_valid_name(name) || b64.is_empty() {
        return Err(bad("a signature line has a bad name or no signature"));
    }
    let raw = BASE64.decode(b64).map_err(|_| bad("a signature is not base64"))?;
    let Some((hash, signature)) = raw.split_first_chunk::<4>() else {
        return Err(bad("a signature is too short"));
    };
    if signature.is_empty() {
        return Err(bad("a signature is too short"));
    }
    Ok((name, u32::from_be_bytes(*hash), signature.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sum.golang.org's key, as go's cmd/go/internal/modfetch/key.go has it.
    const GO_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

    /// A note signed by the test server (key and note from `sumdb` built
    /// from go's own x/mod sources).
    const TEST_KEY: &str = "sum.test+2aa55928+AbIcssIFBAj82rtuLTTmrQiufurFQBFztY/KXbvusVb1";

    #[test]
    fn parses_sum_golang_org_key() {
        let key = VerifierKey::parse(GO_KEY).unwrap();
        assert_eq!(key.name(), "sum.golang.org");
        assert_eq!(key.hash(), 0x033de0ae);
        assert_eq!(key.to_string(), GO_KEY);
        let test = VerifierKey::parse(TEST_KEY).unwrap();
        assert_eq!(test.to_string(), TEST_KEY);
    }

    /// Found by fuzzing (`fuzz/seeds/signed_note/found-upper-case-key-hash`):
    /// a key hash in upper-case hex parses, as in go (`strconv.ParseUint`
    /// with base 16), and the key prints in the canonical lower case. The
    /// target expected the text back unchanged; the target was wrong.
    #[test]
    fn an_upper_case_key_hash_parses_as_go_does_and_prints_lower_case() {
        let upper = GO_KEY.replace("033de0ae", "033DE0AE");
        let key = VerifierKey::parse(&upper).unwrap();
        assert_eq!(key, VerifierKey::parse(GO_KEY).unwrap());
        assert_eq!(key.to_string(), GO_KEY);
    }

    #[test]
    fn malformed_keys_are_errors() {
        let key_b64 = GO_KEY.splitn(3, '+').nth(2).unwrap();
        for vkey in [
            "",
            "sum.golang.org",
            "sum.golang.org+033de0ae",
            "+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO",
            "sum golang+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO",
            "sum.golang.org+33de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO",
            "sum.golang.org+-33de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO",
            "sum.golang.org+033de0ag+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO",
            "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7S",
            "sum.golang.org+033de0ae+",
            "sum.golang.org+033de0ae+AQ==",
            // Algorithm 2.
            &format!(
                "sum.golang.org+033de0ae+{}",
                BASE64.encode([&[2u8][..], &[7u8; 32]].concat())
            ),
        ] {
            assert!(
                matches!(VerifierKey::parse(vkey), Err(NoteError::MalformedKey(_))),
                "{vkey}"
            );
        }
        assert_eq!(
            VerifierKey::parse(&format!("sum.golang.org+033de0af+{key_b64}")),
            Err(NoteError::KeyHashMismatch(0x033de0af))
        );
        // A key with its tail garbled keeps its hash, which then fails.
        assert_eq!(
            VerifierKey::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ze6+mrRkzfkqs7SO"),
            Err(NoteError::KeyHashMismatch(0x033de0ae))
        );
        assert_eq!(
            VerifierKey::parse(&format!("sum.golang.com+033de0ae+{key_b64}")),
            Err(NoteError::KeyHashMismatch(0x033de0ae))
        );
    }

    /// A key pair made here, signing like go's `note.Sign`.
    struct Signer {
        name: String,
        pair: ring::signature::Ed25519KeyPair,
    }

    impl Signer {
        fn new(name: &str, seed: u8) -> Signer {
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
            Signer {
                name: name.to_owned(),
                pair,
            }
        }

        fn key(&self) -> VerifierKey {
            use ring::signature::KeyPair as _;
            let mut key = vec![ALG_ED25519];
            key.extend_from_slice(self.pair.public_key().as_ref());
            let vkey = format!(
                "{}+{:08x}+{}",
                self.name,
                key_hash(&self.name, &key),
                BASE64.encode(&key)
            );
            VerifierKey::parse(&vkey).unwrap()
        }

        fn line(&self, text: &str) -> String {
            let mut raw = self.key().hash().to_be_bytes().to_vec();
            raw.extend_from_slice(self.pair.sign(text.as_bytes()).as_ref());
            format!("\u{2014} {} {}\n", self.name, BASE64.encode(raw))
        }
    }

    const TEXT: &str = "go.sum database tree\n4\nmyGGeHNIfG+Y1DiJMze7u/gFR8ZB/Q6+00qRhqo7cZI=\n";

    #[test]
    fn opens_a_note_signed_by_the_key() {
        let signer = Signer::new("sum.test", 1);
        let other = Signer::new("other.test", 2);
        let note = format!("{TEXT}\n{}{}", other.line(TEXT), signer.line(TEXT));
        assert_eq!(open(note.as_bytes(), &signer.key()).unwrap(), TEXT);
        assert_eq!(
            open(note.as_bytes(), &other.key()).unwrap(),
            TEXT,
            "either key opens it"
        );
    }

    #[test]
    fn a_note_by_another_key_of_the_same_name_is_not_signed_by_the_key() {
        let signer = Signer::new("sum.test", 1);
        let impostor = Signer::new("sum.test", 3);
        let note = format!("{TEXT}\n{}", impostor.line(TEXT));
        assert!(matches!(
            open(note.as_bytes(), &signer.key()),
            Err(NoteError::NotSignedByKey { .. })
        ));
    }

    #[test]
    fn a_changed_text_is_a_bad_signature() {
        let signer = Signer::new("sum.test", 1);
        let forged = TEXT.replace("\n4\n", "\n5\n");
        let note = format!("{forged}\n{}", signer.line(TEXT));
        assert!(matches!(
            open(note.as_bytes(), &signer.key()),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let signer = Signer::new("sum.test", 1);
        let key = signer.key();
        let note = format!("{TEXT}\n{}", signer.line(TEXT));
        for cut in 0..note.len() {
            if let Some(prefix) = note.get(..cut) {
                assert!(open(prefix.as_bytes(), &key).is_err(), "cut at {cut}");
            }
        }
        for bad in [
            &b""[..],
            b"\n\n",
            b"text\n\n\n",
            b"text\n\n- sum.test AAAA\n",
            b"text\n\n\xe2\x80\x94 sum.test AAAA\n",
            b"text\n\n\xe2\x80\x94 sum.test !!!!\n",
            b"text\n\n\xe2\x80\x94 sum.test\n",
            b"te\x01xt\n\n\xe2\x80\x94 sum.test AAAAAAAA\n",
            b"\xff\xfe\n\n",
        ] {
            assert!(open(bad, &key).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let huge = format!("{TEXT}{}\n{}", "x".repeat(MAX_NOTE_SIZE), signer.line(TEXT));
        assert!(matches!(open(huge.as_bytes(), &key), Err(NoteError::Malformed(_))));
        let many = format!("{TEXT}\n{}", Signer::new("o.test", 4).line(TEXT).repeat(101));
        assert!(matches!(open(many.as_bytes(), &key), Err(NoteError::Malformed(_))));
    }
}

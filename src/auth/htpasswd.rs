//! The htpasswd file: `user:hash` lines, as `htpasswd -B` (bcrypt) or
//! `openssl passwd -5`/`-6` (sha-crypt) write them.
//!
//! Hashes are checked by the `bcrypt` and `sha-crypt` crates, whose
//! comparisons are constant-time. Formats they cannot check (Apache MD5
//! `$apr1$`, `{SHA}`, crypt(3) DES, plain text) are refused when the file
//! is loaded, naming the line and the way to write a supported one.

use std::collections::HashMap;
use std::path::Path;

use sha_crypt::{PasswordVerifier, ShaCrypt};

/// The largest htpasswd file read.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// One password hash.
#[derive(Clone)]
pub enum Hash {
    /// `$2a$`, `$2b$`, `$2x$` or `$2y$` (bcrypt).
    Bcrypt(String),
    /// `$5$` (SHA-256-crypt) or `$6$` (SHA-512-crypt).
    ShaCrypt(String),
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hash::Bcrypt(_) => "Hash::Bcrypt(..)",
            Hash::ShaCrypt(_) => "Hash::ShaCrypt(..)",
        })
    }
}

impl Hash {
    /// Parses the hash field of a line; an error names the format.
    fn parse(field: &str) -> Result<Hash, String> {
        let advice = "write bcrypt (htpasswd -B) or sha-crypt (openssl passwd -6) hashes";
        match field {
            f if ["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| f.starts_with(p)) => {
                let parts = f
                    .parse::<bcrypt::HashParts>()
                    .map_err(|e| format!("a bad bcrypt hash: {e}"))?;
                // bcrypt refuses to check a cost above 31: such a user
                // could never log in.
                match parts.get_cost() {
                    4..=31 => Ok(Hash::Bcrypt(f.to_owned())),
                    cost => Err(format!("a bad bcrypt hash: its cost {cost} is not between 4 and 31")),
                }
            }
            f if f.starts_with("$5$") || f.starts_with("$6$") => {
                // Its shape only: checking a password against it would cost
                // its rounds once per user at every start and reload.
                sha_crypt_shape(f).map_err(|e| format!("a bad sha-crypt hash: {e}"))?;
                Ok(Hash::ShaCrypt(f.to_owned()))
            }
            f if f.starts_with("$apr1$") || f.starts_with("$1$") => {
                Err(format!("MD5-crypt hashes ($apr1$, $1$) are not supported; {advice}"))
            }
            f if f.starts_with("{SHA}") => Err(format!("{{SHA}} hashes are not supported; {advice}")),
            f if f.starts_with("$argon2") => Err(format!("argon2 hashes are not supported; {advice}")),
            _ => Err(format!("not a supported password hash; {advice}")),
        }
    }

    /// Roughly what one check costs, in sha-crypt rounds: one bcrypt
    /// round (of `2^cost`) takes about as long as 78 of them.
    fn work(&self) -> u64 {
        match self {
            Hash::Bcrypt(h) => {
                let cost = h.parse::<bcrypt::HashParts>().map_or(0, |p| p.get_cost());
                (1u64 << cost.min(40)).saturating_mul(78)
            }
            Hash::ShaCrypt(h) => sha_crypt_shape(h).map_or(0, u64::from),
        }
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::ShaCrypt(h) => ShaCrypt::default().verify_password(password, h.as_str()).is_ok(),
        }
    }
}

/// Checks a sha-crypt hash's shape, `$5$[rounds=N$]SALT$HASH` (`$6$` for
/// SHA-512), as the sha-crypt crate that checks passwords reads it (its
/// `verify_password`, but for the hashing): a rounds field it accepts
/// (1000 to 999999999; 5000 when not given), a salt, and a digest that
/// decodes to the algorithm's length, with nothing after it. Returns the
/// rounds.
fn sha_crypt_shape(hash: &str) -> Result<u32, String> {
    use std::str::FromStr;
    let parsed = sha_crypt::PasswordHashRef::new(hash).map_err(|e| format!("not a crypt string ({e})"))?;
    let len = match parsed.id() {
        "5" => sha_crypt::BLOCK_SIZE_SHA256,
        "6" => sha_crypt::BLOCK_SIZE_SHA512,
        _ => return Err("it does not start with $5$ or $6$".into()),
    };
    let mut fields = parsed.fields();
    let mut next = fields.next().ok_or("no salt")?;
    let mut rounds = 5000;
    if let Some(n) = next.as_str().strip_prefix("rounds=") {
        if sha_crypt::Params::from_str(next.as_str()).is_err() {
            return Err(format!("its rounds '{n}' are not a number from 1000 to 999999999"));
        }
        rounds = n.parse().map_err(|_| format!("its rounds '{n}' are not a number"))?;
        next = fields.next().ok_or("no salt")?;
    }
    if next.as_str().is_empty() {
        return Err("its salt is empty".into());
    }
    let mut buf = [0u8; sha_crypt::BLOCK_SIZE_SHA512];
    let digest = fields
        .next()
        .ok_or("no hash after its salt")?
        .decode_base64_into(mcf::Base64::Crypt, &mut buf)
        .map_err(|e| format!("its hash is not crypt's base64 ({e})"))?;
    if digest.len() != len {
        return Err(format!("its hash is {} bytes, not {len}", digest.len()));
    }
    if fields.next().is_some() {
        return Err("more fields after its hash".into());
    }
    Ok(rounds)
}

/// The users of an htpasswd file.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, Hash>,
    /// The costliest hash in the file, checked for unknown users, so that
    /// they take as long as the slowest known one.
    decoy: Option<Hash>,
}

impl Users {
    /// Reads `path`. Errors read `path:line: message` (or `path: message`).
    pub fn load(path: &Path) -> Result<Users, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read the htpasswd file: {e}"))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!("{shown}: the htpasswd file is larger than 16 MiB"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read the htpasswd file: {e}"))?;
        Users::parse(&text).map_err(|(line, message)| match line {
            0 => format!("{shown}: {message}"),
            n => format!("{shown}:{n}: {message}"),
        })
    }

    /// Parses htpasswd text; an error is (1-based line, message), line 0
    /// for the file as a whole.
    pub fn parse(text: &str) -> Result<Users, (usize, String)> {
        let mut by_name = HashMap::new();
        let mut decoy = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((n, "expected user:hash".into()));
            };
            if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err((n, "the user name is empty or has whitespace".into()));
            }
            let hash = Hash::parse(hash.trim()).map_err(|e| (n, format!("user '{user}': {e}")))?;
            // Unknown users cost the costliest check in the file.
            if decoy.as_ref().is_none_or(|d: &Hash| d.work() < hash.work()) {
                decoy = Some(hash.clone());
            }
            if by_name.insert(user.to_owned(), hash).is_some() {
                return Err((n, format!("user '{user}' is listed twice")));
            }
        }
        if by_name.is_empty() {
            return Err((0, "the htpasswd file lists no users".into()));
        }
        Ok(Users { by_name, decoy })
    }

    /// Whether `user` exists and `password` is theirs. An unknown user
    /// costs one hash check too.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match (self.by_name.get(user), &self.decoy) {
            (Some(hash), _) => hash.verify(password),
            (None, Some(decoy)) => {
                let _ = decoy.verify(password);
                false
            }
            (None, None) => false,
        }
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the file lists no users (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl passwd -6 -salt saltsalt s3cret`.
    const SHA512: &str =
        "$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1";

    #[test]
    fn bcrypt_and_sha_crypt_entries_verify() {
        let bcrypt = bcrypt::hash("hunter2", 4).unwrap().replacen("$2b$", "$2y$", 1);
        let users = Users::parse(&format!("# comment\n\nalice:{SHA512}\nci-bot:{bcrypt}\n")).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify("alice", b"s3cret"));
        assert!(!users.verify("alice", b"s3cret "));
        assert!(users.verify("ci-bot", b"hunter2"));
        assert!(!users.verify("ci-bot", b"hunter3"));
        assert!(!users.verify("mallory", b"s3cret"));
    }

    #[test]
    fn unsupported_and_malformed_lines_are_named() {
        let e = |text: &str| Users::parse(text).unwrap_err();
        assert_eq!(e("bob:$apr1$xyz$abc\n").0, 1);
        assert!(e("bob:$apr1$xyz$abc\n").1.contains("htpasswd -B"));
        assert!(e("a:{SHA}abc=\n").1.contains("{SHA}"));
        assert!(e("a:plain\n").1.contains("not a supported"));
        assert_eq!(e(&format!("a:{SHA512}\nnocolon\n")).0, 2);
        assert!(e(&format!("a:{SHA512}\na:{SHA512}\n")).1.contains("twice"));
        assert!(e("a:$2y$04$short\n").1.contains("bcrypt"));
        assert!(e("# only comments\n").1.contains("no users"));
        // A cost bcrypt will not check: that user could never log in.
        let too_costly = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$99$", 1);
        assert!(
            e(&format!("a:{too_costly}\n"))
                .1
                .contains("its cost 99 is not between 4 and 31")
        );
        assert!(e("a:$5$salt$short\n").1.contains("its hash is not crypt's base64"));
        assert!(
            e(&format!("a:$6$rounds=lots$salt${SHA256_DIGEST}\n"))
                .1
                .contains("rounds 'lots'")
        );
        // What the crate that checks passwords would never match is refused.
        for never in [
            format!("$5$rounds=10$abc${SHA256_DIGEST}"),
            format!("$5$rounds=1000000000$abc${SHA256_DIGEST}"),
            format!("$5$${SHA256_DIGEST}"),
            format!("$5$a_b!c${SHA256_DIGEST}"),
            format!("$5$abc${SHA256_DIGEST}$more"),
            format!("$6$abc${SHA256_DIGEST}"),
        ] {
            assert!(Hash::parse(&never).is_err(), "{never}");
        }
    }

    /// Loading a file checks each hash's shape, never a password against
    /// it: a hash of a billion rounds loads at once (checking it once
    /// takes about a minute), and a reload never stalls on the file.
    /// Unknown users cost the costliest check in the file.
    #[test]
    fn loading_checks_shapes_and_unknown_users_cost_the_costliest_hash() {
        let slow = format!("$5$rounds=999999999$abc${SHA256_DIGEST}");
        let quick = bcrypt::hash("hunter2", 4).unwrap();
        let users = Users::parse(&format!("quick:{quick}\nslow:{slow}\n{SHA512_USER}\n")).unwrap();
        assert_eq!(users.len(), 3);
        assert!(matches!(&users.decoy, Some(Hash::ShaCrypt(h)) if *h == slow));
        assert!(users.verify("quick", b"hunter2"));
        let work = |h: &str| Hash::parse(h).unwrap().work();
        assert!(work(&slow) > work(SHA512) && work(SHA512) > work(&quick));
        // What openssl writes, with and without rounds, loads and verifies.
        let openssl = format!("$5$abc${SHA256_DIGEST}");
        assert!(Users::parse(&format!("u:{openssl}\n")).unwrap().verify("u", b"hunter2"));
        assert_eq!(
            sha_crypt_shape(&format!("$5$rounds=1000$abc${SHA256_DIGEST}")),
            Ok(1000)
        );
    }

    /// The hash of `openssl passwd -5 -salt abc hunter2`.
    const SHA256_DIGEST: &str = "aw8kcfRnzkuA1XFRzd1AgTNuyzM2RdMYKc3X22kKYc0";

    const SHA512_USER: &str =
        "alice:$6$saltsalt$As4wrv0kZlfch1du9WeH7qhskyLriQWySXrZzynnvi46nFnNxjdpl6ksRegrrKexvhIa/Iny8S8uF3fVWTMuC1";
}

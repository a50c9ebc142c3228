//! A checksum database's answer to `lookup/M@V`, and the two go.sum lines
//! of its record:
//!
//! ```text
//! 2                                                  record id
//! example.test/alpha v1.1.0 h1:B7uHGf…=              the record: the zip's hash
//! example.test/alpha v1.1.0/go.mod h1:1gBd5D…=       and the go.mod's
//!                                                    a blank line
//! go.sum database tree                               the signed tree note
//! 3
//! …
//! ```

use super::note::MAX_NOTE_SIZE;
use super::tlog::{Hash, MAX_TREE_SIZE};

/// The largest lookup answer accepted, in bytes: a record is two go.sum
/// lines, and the note is bounded too.
pub const MAX_LOOKUP_SIZE: usize = MAX_NOTE_SIZE + 8 * 1024;

/// What is wrong with a lookup answer or its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The answer or the record text is malformed.
    #[error("malformed lookup answer: {0}")]
    Malformed(String),
    /// The record is well formed but not for the module version asked for.
    #[error("the record is not for {wanted}: {line}")]
    OtherModule {
        /// `module version`, as asked for.
        wanted: String,
        /// The line that does not match, quoted.
        line: String,
    },
}

/// A lookup answer, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<'a> {
    /// The record's number in the log.
    pub id: u64,
    /// The record text, as hashed into the log (newline-terminated lines).
    pub record: &'a str,
    /// The signed tree note that follows the blank line.
    pub note: &'a [u8],
}

/// The two hashes a record holds for one module version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleHashes {
    /// The module zip's hash, `h1:…`.
    pub zip_h1: String,
    /// The go.mod file's hash, `h1:…`.
    pub mod_h1: String,
}

/// Splits a lookup answer into record id, record text and note.
pub fn parse_lookup(answer: &[u8]) -> Result<Lookup<'_>, RecordError> {
    let bad = |why: &str| RecordError::Malformed(why.to_owned());
    if answer.len() > MAX_LOOKUP_SIZE {
        return Err(bad(&format!("larger than {MAX_LOOKUP_SIZE} bytes")));
    }
    let newline = answer
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("no record id line"))?;
    let (id_line, rest) = (&answer[..newline], &answer[newline + 1..]);
    let id = std::str::from_utf8(id_line)
        .ok()
        .and_then(parse_record_id)
        .ok_or_else(|| bad("the record id is not a decimal number"))?;
    let blank = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| bad("no blank line after the record"))?;
    let (record, note) = (&rest[..blank + 1], &rest[blank + 2..]);
    let record = std::str::from_utf8(record).map_err(|_| bad("the record is not UTF-8"))?;
    if record.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad("the record has a control character"));
    }
    Ok(Lookup { id, record, note })
}

/// A record id: canonical decimal digits, inside the largest tree.
fn parse_record_id(text: &str) -> Option<u64> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    let id: u64 = text.parse().ok().filter(|_| canonical)?;
    (id < MAX_TREE_SIZE).then_some(id)
}

/// The zip and go.mod hashes of `module` `version` from its record text:
/// exactly the lines `M V h1:…` and `M V/go.mod h1:…`, in that order.
pub fn module_hashes(record: &str, module: &str, version: &str) -> Result<ModuleHashes, RecordError> {
    let lines: Vec<&str> = record.strip_suffix('\n').unwrap_or(record).split('\n').collect();
    let [zip_line, mod_line] = lines.as_slice() else {
        return Err(RecordError::Malformed(format!(
            "the record has {} lines, not 2",
            lines.len()
        )));
    };
    let zip_h1 = hash_of_line(zip_line, module, version)?;
    let mod_h1 = hash_of_line(mod_line, module, &format!("{version}/go.mod"))?;
    Ok(ModuleHashes { zip_h1, mod_h1 })
}

/// The `h1:` hash of a go.sum line for `module` `version`.
fn hash_of_line(line: &str, module: &str, version: &str) -> Result<String, RecordError> {
    let other = || RecordError::OtherModule {
        wanted: format!("{module} {version}"),
        line: crate::gomod::escape::quote(line),
    };
    let mut fields = line.split(' ');
    let (Some(m), Some(v), Some(hash), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(RecordError::Malformed(format!(
            "{} is not 'module version hash'",
            crate::gomod::escape::quote(line)
        )));
    };
    if m != module || v != version {
        return Err(other());
    }
    let valid = hash
        .strip_prefix("h1:")
        .is_some_and(|b64| Hash::from_base64(b64).is_some());
    if !valid {
        return Err(RecordError::Malformed(format!(
            "{} is not an h1: hash",
            crate::gomod::escape::quote(hash)
        )));
    }
    Ok(hash.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZIP: &str = "h1:B7uHGfGteOw5E69gm8hwetdxEQNM/gQGBru9JD/TcZU=";
    const MOD: &str = "h1:1gBd5DIMtmGQ2fIeS8x2XZDJQJ1av+qQvKi4MORNlrA=";

    fn answer() -> String {
        format!(
            "2\nexample.test/alpha v1.1.0 {ZIP}\nexample.test/alpha v1.1.0/go.mod {MOD}\n\n\
             go.sum database tree\n3\nmyGGeHNIfG+Y1DiJMze7u/gFR8ZB/Q6+00qRhqo7cZI=\n\n\u{2014} sum.test AAAA\n"
        )
    }

    #[test]
    fn splits_an_answer_and_its_record() {
        let answer = answer();
        let lookup = parse_lookup(answer.as_bytes()).unwrap();
        assert_eq!(lookup.id, 2);
        assert!(
            lookup
                .record
                .ends_with("/go.mod h1:1gBd5DIMtmGQ2fIeS8x2XZDJQJ1av+qQvKi4MORNlrA=\n")
        );
        assert!(lookup.note.starts_with(b"go.sum database tree\n3\n"));
        let hashes = module_hashes(lookup.record, "example.test/alpha", "v1.1.0").unwrap();
        assert_eq!(hashes.zip_h1, ZIP);
        assert_eq!(hashes.mod_h1, MOD);
    }

    #[test]
    fn a_record_for_another_version_is_refused() {
        let answer = answer();
        let lookup = parse_lookup(answer.as_bytes()).unwrap();
        assert!(matches!(
            module_hashes(lookup.record, "example.test/alpha", "v1.0.0"),
            Err(RecordError::OtherModule { .. })
        ));
        assert!(matches!(
            module_hashes(lookup.record, "example.test/Alpha", "v1.1.0"),
            Err(RecordError::OtherModule { .. })
        ));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let answer = answer();
        for cut in 0..answer.find("\n\n").unwrap() + 1 {
            assert!(parse_lookup(&answer.as_bytes()[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            "",
            "x\nm v h1:\n\n",
            "-1\nm v h1:\n\n",
            "+1\nm v h1:\n\n",
            "01\nm v h1:\n\n",
            "99999999999999999999\nm v h1:\n\n",
            "72057594037927936\nm v h1:\n\n",
            "1\nm v\th1:\n\n",
        ] {
            assert!(parse_lookup(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_lookup(&[b'1', b'\n', 0xff, b'\n', b'\n']).is_err());
        let huge = format!("1\n{}\n\n", "x".repeat(MAX_LOOKUP_SIZE));
        assert!(parse_lookup(huge.as_bytes()).is_err());
        for record in [
            "",
            "m v h1:x\n",
            &format!("m v {ZIP}\n"),
            &format!("m v {ZIP}\nm v/go.mod {MOD}\nm v {ZIP}\n"),
            &format!("m v {ZIP}\nm v/go.mod h1:AAAA\n"),
            &format!("m v {ZIP}\nm v/go.mod h2:{}\n", &MOD[3..]),
            &format!("m v  {ZIP}\nm v/go.mod {MOD}\n"),
            &format!("m v/go.mod {MOD}\nm v {ZIP}\n"),
        ] {
            assert!(module_hashes(record, "m", "v").is_err(), "{record:?}");
        }
        module_hashes(&format!("m v {ZIP}\nm v/go.mod {MOD}\n"), "m", "v").unwrap();
    }
}

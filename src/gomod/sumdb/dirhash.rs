//! The `h1:` hashes of go.sum: of a go.mod file and of a module zip.
//!
//! `h1:` is base64 of SHA-256 over a summary with one line per file,
//! sorted by name: `hex(SHA256(content))  name\n`. A go.mod is one file
//! named `go.mod`; a zip's files are named as in the zip
//! (`<module>@<version>/path`) and hashed decompressed.
//!
//! Nothing is held whole in memory. A cache receiving a zip as a stream
//! writes it to a file as the chunks arrive, then calls
//! [`h1_of_zip_file`] (or [`h1_of_zip`] over any `Read + Seek`): the
//! central directory is read from the end of the file, and each entry is
//! decompressed and hashed as a stream. These read synchronously; from
//! async code, call them inside `spawn_blocking`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::digest::{Context, SHA256};

use super::zip_names::{MAX_ZIP_SIZE, ZipNames, count_distinct_entries};

/// Why a zip could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirhashError {
    /// Reading the file failed.
    #[error("reading the module zip: {0}")]
    Io(String),
    /// The zip is malformed, or an entry cannot be decompressed.
    #[error("malformed module zip: {0}")]
    Malformed(String),
    /// An entry's name or size is one go would refuse.
    #[error("module zip entry {0}")]
    BadEntry(String),
}

/// Hashes a go.mod file as it streams: [`GoModHasher::update`] with each
/// chunk, then [`GoModHasher::finish`].
pub struct GoModHasher {
    content: Context,
}

impl Default for GoModHasher {
    fn default() -> Self {
        GoModHasher {
            content: Context::new(&SHA256),
        }
    }
}

impl GoModHasher {
    /// A hasher that has seen nothing yet.
    pub fn new() -> GoModHasher {
        GoModHasher::default()
    }

    /// Adds the next chunk of the go.mod file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.content.update(chunk);
    }

    /// The go.mod's `h1:` hash, as the `M V/go.mod h1:…` line has it.
    pub fn finish(self) -> String {
        h1_of_summary([("go.mod", self.content.finish())])
    }
}

/// The `h1:` hash of a go.mod file.
pub fn h1_of_mod(go_mod: &[u8]) -> String {
    let mut hasher = GoModHasher::new();
    hasher.update(go_mod);
    hasher.finish()
}

/// The `h1:` hash of the module zip at `path` for `module` `version`; see
/// [`h1_of_zip`].
pub fn h1_of_zip_file(path: &Path, module: &str, version: &str) -> Result<String, DirhashError> {
    let file = std::fs::File::open(path).map_err(|e| DirhashError::Io(format!("{}: {e}", path.display())))?;
    h1_of_zip(std::io::BufReader::new(file), module, version)
}

/// The `h1:` hash of a module zip for `module` `version`, as the
/// `M V h1:…` line has it. A zip go would refuse (names outside
/// `<module>@<version>/`, unclean or duplicate names, more than 500 MiB)
/// is an error, as is an entry whose content does not match its declared
/// size or checksum.
pub fn h1_of_zip<R: Read + Seek>(mut zip: R, module: &str, version: &str) -> Result<String, DirhashError> {
    let io = |e: std::io::Error| DirhashError::Io(e.to_string());
    let size = zip.seek(SeekFrom::End(0)).map_err(io)?;
    if size > MAX_ZIP_SIZE {
        return Err(DirhashError::BadEntry(format!(
            "the zip is larger than {MAX_ZIP_SIZE} bytes"
        )));
    }
    zip.rewind().map_err(io)?;
    let malformed = |e: zip::result::ZipError| DirhashError::Malformed(e.to_string());
    let archive = zip::ZipArchive::new(zip).map_err(malformed)?;
    let (start, entries) = (archive.central_directory_start(), archive.len());
    let mut zip = archive.into_inner();
    if count_distinct_entries(&mut zip, start, entries).map_err(DirhashError::BadEntry)? != entries {
        return Err(DirhashError::Malformed(
            "the central directory does not hold what it declares".into(),
        ));
    }
    let mut archive = zip::ZipArchive::new(zip).map_err(malformed)?;
    let entries = checked_entries(&mut archive, module, version)?;
    let mut digests = Vec::with_capacity(entries.len());
    for (name, index, size) in entries {
        digests.push((name, hash_entry(&mut archive, index, size)?));
    }
    Ok(h1_of_summary(digests.iter().map(|(name, d)| (name.as_str(), *d))))
}

/// Every entry's name, index and declared size, checked and sorted by name.
fn checked_entries<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    module: &str,
    version: &str,
) -> Result<Vec<(String, usize, u64)>, DirhashError> {
    let mut names = ZipNames::new(module, version);
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| DirhashError::Malformed(e.to_string()))?;
        // The name as stored, not re-decoded: go hashes the bytes.
        let name = std::str::from_utf8(entry.name_raw())
            .map_err(|_| DirhashError::BadEntry(format!("{index} has a name that is not UTF-8")))?
            .to_owned();
        names.check(&name, entry.size()).map_err(DirhashError::BadEntry)?;
        entries.push((name, index, entry.size()));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// SHA-256 of one entry's decompressed content, which must be exactly its
/// declared size (so decompressing never runs past the checked total).
fn hash_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    index: usize,
    declared: u64,
) -> Result<ring::digest::Digest, DirhashError> {
    let malformed = |e: &dyn std::fmt::Display| DirhashError::Malformed(e.to_string());
    let entry = archive.by_index(index).map_err(|e| malformed(&e))?;
    let name = crate::gomod::escape::quote(entry.name());
    let mut content = entry.take(declared.saturating_add(1));
    let mut hasher = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = content.read(&mut buf).map_err(|e| malformed(&format!("{name}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }
    if read != declared {
        return Err(malformed(&format!(
            "{name} holds {read} bytes, not the {declared} it declares"
        )));
    }
    Ok(hasher.finish())
}

/// `h1:` + base64(SHA256(summary)) over files given as (name, SHA-256 of
/// content), already sorted by name.
fn h1_of_summary<'a, D: AsRef<[u8]>>(files: impl IntoIterator<Item = (&'a str, D)>) -> String {
    let mut summary = Context::new(&SHA256);
    for (name, digest) in files {
        summary.update(hex(digest.as_ref()).as_bytes());
        summary.update(b"  ");
        summary.update(name.as_bytes());
        summary.update(b"\n");
    }
    format!("h1:{}", BASE64.encode(summary.finish()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write as _};

    use super::*;

    /// `sumdb hash-mod` (go's own dirhash) of "module example.test/alpha\n\ngo 1.21\n".
    const ALPHA_MOD_H1: &str = "h1:1gBd5DIMtmGQ2fIeS8x2XZDJQJ1av+qQvKi4MORNlrA=";

    #[test]
    fn go_mod_hash_matches_go() {
        let go_mod = b"module example.test/alpha\n\ngo 1.21\n";
        assert_eq!(h1_of_mod(go_mod), ALPHA_MOD_H1);
        let mut streamed = GoModHasher::new();
        for chunk in go_mod.chunks(5) {
            streamed.update(chunk);
        }
        assert_eq!(streamed.finish(), ALPHA_MOD_H1);
    }

    fn zip_of(files: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, content) in files {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// The zip `python3 mkproxy.py proxy example.test/alpha v1.0.0` makes in
    /// tests/sumdb/README.md, whose hash go printed.
    fn alpha_files() -> Vec<(&'static str, &'static [u8])> {
        vec![
            (
                "example.test/alpha@v1.0.0/alpha.go",
                b"package alpha\n\nconst Version = \"v1.0.0\"\n",
            ),
            (
                "example.test/alpha@v1.0.0/go.mod",
                b"module example.test/alpha\n\ngo 1.21\n",
            ),
        ]
    }

    #[test]
    fn zip_hash_matches_go_whatever_the_compression_and_order() {
        const ALPHA_ZIP_H1: &str = "h1:AdMatwqCpRdY6m/HKtUsvWANsoSqVV90fW+QJejqlDM=";
        let mut files = alpha_files();
        for method in [zip::CompressionMethod::Stored, zip::CompressionMethod::Deflated] {
            let zip = zip_of(&files, method);
            assert_eq!(
                h1_of_zip(Cursor::new(zip), "example.test/alpha", "v1.0.0").unwrap(),
                ALPHA_ZIP_H1
            );
        }
        files.reverse();
        let zip = zip_of(&files, zip::CompressionMethod::Deflated);
        assert_eq!(
            h1_of_zip(Cursor::new(zip), "example.test/alpha", "v1.0.0").unwrap(),
            ALPHA_ZIP_H1
        );
    }

    #[test]
    fn zip_hash_of_an_upper_case_module_matches_go() {
        let files: [(&str, &[u8]); 2] = [
            (
                "example.test/Beta@v0.1.0/beta.go",
                b"package beta\n\nconst Version = \"v0.1.0\"\n",
            ),
            (
                "example.test/Beta@v0.1.0/go.mod",
                b"module example.test/Beta\n\ngo 1.21\n",
            ),
        ];
        let zip = zip_of(&files, zip::CompressionMethod::Deflated);
        assert_eq!(
            h1_of_zip(Cursor::new(zip), "example.test/Beta", "v0.1.0").unwrap(),
            "h1:eHvLD+Z7YzRSkdKW0gZvas73bwJ09lgNDS4PE3Qd7EI="
        );
    }

    #[test]
    fn zip_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.0.0.zip");
        std::fs::write(&path, zip_of(&alpha_files(), zip::CompressionMethod::Deflated)).unwrap();
        assert!(h1_of_zip_file(&path, "example.test/alpha", "v1.0.0").is_ok());
        assert!(matches!(
            h1_of_zip_file(&dir.path().join("missing.zip"), "example.test/alpha", "v1.0.0"),
            Err(DirhashError::Io(_))
        ));
    }

    #[test]
    fn zips_go_would_refuse_are_errors() {
        let m = "example.test/alpha";
        let refuse = |files: &[(&str, &[u8])]| {
            let zip = zip_of(files, zip::CompressionMethod::Deflated);
            h1_of_zip(Cursor::new(zip), m, "v1.0.0").unwrap_err()
        };
        assert!(matches!(refuse(&[("alpha.go", b"x")]), DirhashError::BadEntry(_)));
        assert!(matches!(
            refuse(&[("example.test/alpha@v1.0.0/../../etc/passwd", b"x")]),
            DirhashError::BadEntry(_)
        ));
        assert!(matches!(
            refuse(&[
                ("example.test/alpha@v1.0.0/a.go", b"x"),
                ("example.test/alpha@v1.0.0/A.go", b"y")
            ]),
            DirhashError::BadEntry(_)
        ));
    }

    #[test]
    fn duplicate_names_are_errors() {
        // The zip crate refuses to write duplicates, so write raw entries.
        let zip = zip_of(
            &[
                ("example.test/alpha@v1.0.0/a.go", b"x"),
                ("example.test/alpha@v1.0.0/b.go", b"y"),
            ],
            zip::CompressionMethod::Stored,
        );
        let dup = replace_all(&zip, b"alpha@v1.0.0/b.go", b"alpha@v1.0.0/a.go");
        let err = h1_of_zip(Cursor::new(dup), "example.test/alpha", "v1.0.0").unwrap_err();
        assert!(err.to_string().contains("a.go"), "{err}");
    }

    fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = haystack.to_vec();
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
            }
            i += 1;
        }
        out
    }

    #[test]
    fn garbage_truncation_and_lies_are_errors_not_panics() {
        let zip = zip_of(&alpha_files(), zip::CompressionMethod::Deflated);
        for cut in 0..zip.len() {
            let result = h1_of_zip(Cursor::new(&zip[..cut]), "example.test/alpha", "v1.0.0");
            assert!(result.is_err(), "cut at {cut}");
        }
        for flip in 0..zip.len() {
            let mut bad = zip.clone();
            bad[flip] ^= 0x5a;
            // Some bytes (timestamps, extra fields) do not matter; none may panic.
            let _ = h1_of_zip(Cursor::new(bad), "example.test/alpha", "v1.0.0");
        }
        assert!(h1_of_zip(Cursor::new(b"not a zip".to_vec()), "m", "v").is_err());
        // A stored entry whose content changed after the checksum was made.
        let stored = zip_of(&alpha_files(), zip::CompressionMethod::Stored);
        let tampered = replace_all(&stored, b"const Version", b"const VERSION");
        assert!(matches!(
            h1_of_zip(Cursor::new(tampered), "example.test/alpha", "v1.0.0"),
            Err(DirhashError::Malformed(_))
        ));
    }
}

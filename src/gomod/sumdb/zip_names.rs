//! Which file names a module zip may hold, as go's module zip check
//! (`golang.org/x/mod/zip`) says: every name under `<module>@<version>/`,
//! each a clean, portable file path, no two equal up to case, go.mod only
//! at the root, and bounded sizes.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};

/// The most a module zip may hold, compressed or not, in bytes (go's
/// `MaxZipFile`).
pub const MAX_ZIP_SIZE: u64 = 500 << 20;

/// The largest go.mod or LICENSE file in a module zip (go's `MaxGoMod`
/// and `MaxLICENSE`).
pub const MAX_GO_MOD_SIZE: u64 = 16 << 20;

/// Windows device names, refused as a path element's stem as go does.
const WINDOWS_DEVICE_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Checks the entries of one module zip, one at a time.
#[derive(Debug)]
pub(crate) struct ZipNames {
    prefix: String,
    /// Every file and directory seen, by case-folded path: the path as
    /// written and whether it is a directory.
    seen: HashMap<String, (String, bool)>,
    total: u64,
}

impl ZipNames {
    /// A checker for the zip of `module` `version`.
    pub(crate) fn new(module: &str, version: &str) -> ZipNames {
        ZipNames {
            prefix: format!("{module}@{version}/"),
            seen: HashMap::new(),
            total: 0,
        }
    }

    /// Checks one entry: its name as stored and its declared uncompressed
    /// size. The error is one line naming the entry.
    pub(crate) fn check(&mut self, name: &str, size: u64) -> Result<(), String> {
        self.check_entry(name, size)
            .map_err(|why| format!("{}: {why}", crate::gomod::escape::quote(name)))
    }

    fn check_entry(&mut self, name: &str, size: u64) -> Result<(), String> {
        let Some(path) = name.strip_prefix(&self.prefix) else {
            return Err(format!("not under {}", self.prefix));
        };
        if path.is_empty() {
            // The module's root directory itself.
            return Ok(());
        }
        let (path, is_dir) = match path.strip_suffix('/') {
            Some(dir) => (dir, true),
            None => (path, false),
        };
        check_file_path(path)?;
        self.check_collision(path, is_dir)?;
        if is_dir {
            return Ok(());
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        if base.eq_ignore_ascii_case("go.mod") && path != "go.mod" {
            return Err("a go.mod file not named go.mod at the module root".into());
        }
        if (path == "go.mod" || path == "LICENSE") && size > MAX_GO_MOD_SIZE {
            return Err(format!("larger than {MAX_GO_MOD_SIZE} bytes"));
        }
        self.total = self.total.saturating_add(size);
        if self.total > MAX_ZIP_SIZE {
            return Err(format!("the files add up to more than {MAX_ZIP_SIZE} bytes"));
        }
        Ok(())
    }

    /// No two entries may be equal up to case, and no path may be both a
    /// file and a directory; directories may repeat.
    fn check_collision(&mut self, path: &str, is_dir: bool) -> Result<(), String> {
        let mut path = path;
        let mut is_dir = is_dir;
        loop {
            let folded = path.to_lowercase();
            match self.seen.get(&folded) {
                Some((other, _)) if other != path => {
                    return Err(format!("collides with {other:?} when case is ignored"));
                }
                Some((_, other_is_dir)) if *other_is_dir != is_dir => {
                    return Err(format!("{path:?} is both a file and a directory"));
                }
                Some(_) if !is_dir => return Err("appears twice".into()),
                Some(_) => {}
                None => {
                    self.seen.insert(folded, (path.to_owned(), is_dir));
                }
            }
            let Some((parent, _)) = path.rsplit_once('/') else {
                return Ok(());
            };
            path = parent;
            is_dir = true;
        }
    }
}

/// Counts the entries of a zip's central directory at `start`, read as
/// they are stored, and refuses a name that appears twice. (The zip crate
/// keeps one entry per name, so it cannot see duplicates; go would hash
/// both.) Reads headers until the directory ends, at most `most`.
pub(crate) fn count_distinct_entries<R: Read + Seek>(zip: &mut R, start: u64, most: usize) -> Result<usize, String> {
    const HEADER: [u8; 4] = *b"PK\x01\x02";
    const FIXED_LEN: usize = 46;
    zip.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    let mut fixed = [0u8; FIXED_LEN];
    loop {
        if zip.read_exact(&mut fixed[..4]).is_err() || fixed[..4] != HEADER {
            return Ok(names.len());
        }
        zip.read_exact(&mut fixed[4..])
            .map_err(|e| format!("central directory header: {e}"))?;
        let field = |at: usize| u64::from(u16::from_le_bytes([fixed[at], fixed[at + 1]]));
        let (name_len, skip) = (field(28), field(30) + field(32));
        let mut name = Vec::new();
        zip.by_ref()
            .take(name_len)
            .read_to_end(&mut name)
            .map_err(|e| format!("central directory name: {e}"))?;
        let skipped = std::io::copy(&mut zip.by_ref().take(skip), &mut std::io::sink())
            .map_err(|e| format!("central directory header: {e}"))?;
        if name.len() as u64 != name_len || skipped != skip {
            return Err("central directory cut short".into());
        }
        if !names.insert(name.clone()) {
            return Err(format!(
                "{} appears twice",
                crate::gomod::escape::quote(&String::from_utf8_lossy(&name))
            ));
        }
        if names.len() > most {
            return Err("the central directory holds more entries than it declares".into());
        }
    }
}

/// A portable, clean file path inside a module, as go's
/// `module.CheckFilePath` says.
fn check_file_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err("not a clean relative path".into());
    }
    path.split('/').try_for_each(check_element)
}

fn check_element(element: &str) -> Result<(), String> {
    if element.is_empty() || element.bytes().all(|b| b == b'.') {
        return Err(format!("path element {element:?} is not allowed"));
    }
    if element.ends_with('.') {
        return Err(format!("path element {element:?} ends in a dot"));
    }
    if let Some(c) = element.chars().find(|&c| !file_name_char_ok(c)) {
        return Err(format!("character {c:?} is not allowed in a file name"));
    }
    let stem = element.split('.').next().unwrap_or(element);
    if WINDOWS_DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(format!("{stem:?} is a Windows device name"));
    }
    Ok(())
}

/// ASCII letters, digits and `!#$%&()+,-.=@[]^_{}~ `, or any non-ASCII
/// letter.
fn file_name_char_ok(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c);
    }
    c.is_alphabetic()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all(names: &[&str]) -> Result<(), String> {
        let mut check = ZipNames::new("example.test/m", "v1.0.0");
        names.iter().try_for_each(|n| check.check(n, 10))
    }

    #[test]
    fn a_module_zip_may_hold_these() {
        check_all(&[
            "example.test/m@v1.0.0/",
            "example.test/m@v1.0.0/go.mod",
            "example.test/m@v1.0.0/m.go",
            "example.test/m@v1.0.0/sub/",
            "example.test/m@v1.0.0/sub/",
            "example.test/m@v1.0.0/sub/x_test.go",
            "example.test/m@v1.0.0/.github/workflows/ci.yml",
            "example.test/m@v1.0.0/testdata/ünïcode.txt",
            "example.test/m@v1.0.0/LICENSE",
        ])
        .unwrap();
    }

    #[test]
    fn these_are_refused() {
        for names in [
            &["m.go"][..],
            &["example.test/m@v1.0.1/m.go"],
            &["example.test/m@v1.0.0/../evil.go"],
            &["example.test/m@v1.0.0/a/../../evil.go"],
            &["example.test/m@v1.0.0/./m.go"],
            &["example.test/m@v1.0.0//m.go"],
            &["example.test/m@v1.0.0/a\\b.go"],
            &["example.test/m@v1.0.0/a\nb.go"],
            &["example.test/m@v1.0.0/a:b.go"],
            &["example.test/m@v1.0.0/trailing."],
            &["example.test/m@v1.0.0/aux.go"],
            &["example.test/m@v1.0.0/m.go", "example.test/m@v1.0.0/m.go"],
            &["example.test/m@v1.0.0/m.go", "example.test/m@v1.0.0/M.go"],
            &["example.test/m@v1.0.0/a/x.go", "example.test/m@v1.0.0/A/y.go"],
            &["example.test/m@v1.0.0/a", "example.test/m@v1.0.0/a/x.go"],
            &["example.test/m@v1.0.0/sub/go.mod"],
            &["example.test/m@v1.0.0/GO.MOD"],
        ] {
            assert!(check_all(names).is_err(), "{names:?}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let mut check = ZipNames::new("m.test/x", "v1.0.0");
        assert!(check.check("m.test/x@v1.0.0/go.mod", MAX_GO_MOD_SIZE + 1).is_err());
        let mut check = ZipNames::new("m.test/x", "v1.0.0");
        check.check("m.test/x@v1.0.0/a", MAX_ZIP_SIZE).unwrap();
        assert!(check.check("m.test/x@v1.0.0/b", 1).is_err());
        let mut check = ZipNames::new("m.test/x", "v1.0.0");
        check.check("m.test/x@v1.0.0/a", u64::MAX).unwrap_err();
    }
}

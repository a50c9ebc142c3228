//! The conformance fixture: a GOPROXY-layout tree whose modules each hold
//! one of the cases go treats specially, and the project that uses them.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use modgate::gomod::escape::encode_case;

/// The pseudo-version of the pseudo-only module's `master` (also `HEAD`,
/// `abcdef123456` and `@latest`).
pub const PSEUDO_MASTER: &str = "v0.0.0-20240102030405-abcdef123456";
/// The pseudo-version of its `dev` branch (also `0123456789ab`): newer than
/// `@latest`, so `get -u` must not move off it.
pub const PSEUDO_DEV: &str = "v0.0.0-20240203040506-0123456789ab";
/// Size of the big module's data file, stored uncompressed in its zip.
const BIG_BYTES: usize = 60 << 20;

/// A module path of 1,130 bytes: go's `module.CheckPath` has no length
/// limit, and each element stays under the file system's 255 bytes so the
/// `file://` reference can hold it.
///
/// A version over 256 bytes is left out: its `.info` file name would pass
/// the file system's 255 bytes, so go cannot read it from `file://` either.
pub fn long_path() -> String {
    let mut path = String::from("example.test/long");
    for i in 0..11 {
        path.push_str(&format!("/e{i:02}-{}", "x".repeat(97)));
    }
    path
}

/// A GOPROXY-layout tree (`$module/@v/{list,$v.info,$v.mod,$v.zip}`,
/// `$module/@latest`, `!`-encoded) with custom go.mod files and sources.
struct Fixture {
    root: PathBuf,
    /// Escaped module path -> the versions its `@v/list` names.
    lists: BTreeMap<String, Vec<String>>,
    /// A distinct, fixed time per tagged version, in order of creation.
    clock: u32,
}

/// go.mod of a module: `module PATH`, `go 1.21`, then `extra`.
pub fn gomod(path: &str, extra: &str) -> String {
    format!("module {path}\n\ngo 1.21\n{extra}")
}

/// A package with a `Version` const: what every fixture module holds.
pub fn source(package: &str, version: &str) -> String {
    format!("package {package}\n\n// Version is the fixture's version.\nconst Version = \"{version}\"\n")
}

fn info(version: &str, time: &str) -> String {
    format!("{{\"Version\":\"{version}\",\"Time\":\"{time}\"}}\n")
}

impl Fixture {
    pub fn new(root: &Path) -> Fixture {
        Fixture {
            root: root.to_owned(),
            lists: BTreeMap::new(),
            clock: 0,
        }
    }

    fn module_dir(&self, path: &str) -> PathBuf {
        self.root.join(encode_case(path))
    }

    /// A tagged version, named in `@v/list`. `go_mod` is None for a module
    /// without a go.mod file (the `.mod` served is then `module PATH`, as
    /// proxy.golang.org makes it); `files` are (name, content) in the zip.
    pub fn tagged(&mut self, path: &str, version: &str, go_mod: Option<String>, files: &[(&str, Vec<u8>)]) {
        self.clock += 1;
        let time = format!("2024-03-{:02}T10:00:00Z", self.clock);
        self.version(path, version, &time, go_mod, files);
        self.lists
            .entry(encode_case(path))
            .or_default()
            .push(version.to_owned());
    }

    /// A plain tagged version: a go.mod and one package named `package`.
    pub fn plain(&mut self, path: &str, package: &str, version: &str) {
        self.tagged(
            path,
            version,
            Some(gomod(path, "")),
            &[("lib.go", source(package, version).into_bytes())],
        );
    }

    /// A version with its own time and not listed: a pseudo-version.
    pub fn untagged(&mut self, path: &str, version: &str, time: &str, files: &[(&str, Vec<u8>)]) {
        self.version(path, version, time, Some(gomod(path, "")), files);
        self.lists.entry(encode_case(path)).or_default();
    }

    fn version(&self, path: &str, version: &str, time: &str, go_mod: Option<String>, files: &[(&str, Vec<u8>)]) {
        let dir = self.module_dir(path).join("@v");
        std::fs::create_dir_all(&dir).unwrap();
        let escaped = encode_case(version);
        let served_mod = go_mod.clone().unwrap_or_else(|| format!("module {path}\n"));
        std::fs::write(dir.join(format!("{escaped}.mod")), &served_mod).unwrap();
        std::fs::write(dir.join(format!("{escaped}.info")), info(version, time)).unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let prefix = format!("{path}@{version}");
        if let Some(text) = &go_mod {
            zip.start_file(format!("{prefix}/go.mod"), deflated).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        for (name, bytes) in files {
            let options = if bytes.len() > 1 << 20 { stored } else { deflated };
            zip.start_file(format!("{prefix}/{name}"), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        std::fs::write(dir.join(format!("{escaped}.zip")), bytes).unwrap();
    }

    /// `$module/@v/$query.info` answering a branch, tag or hash query.
    pub fn query(&self, path: &str, query: &str, version: &str, time: &str) {
        let file = self.module_dir(path).join(format!("@v/{}.info", encode_case(query)));
        std::fs::write(file, info(version, time)).unwrap();
    }

    /// Replaces a version's `.info` with `json` as it is.
    pub fn raw_info(&self, path: &str, version: &str, json: &str) {
        let file = self.module_dir(path).join(format!("@v/{}.info", encode_case(version)));
        std::fs::write(file, json).unwrap();
    }

    /// `$module/@latest`.
    pub fn latest(&self, path: &str, version: &str, time: &str) {
        std::fs::write(self.module_dir(path).join("@latest"), info(version, time)).unwrap();
    }

    /// Writes every `@v/list` (empty for a pseudo-only module); `raw` lists
    /// are written as they are instead.
    pub fn finish(self, raw: &[(&str, &str)]) {
        for (module, versions) in &self.lists {
            let text: String = versions.iter().map(|v| format!("{v}\n")).collect();
            std::fs::write(self.root.join(module).join("@v/list"), text).unwrap();
        }
        for (path, text) in raw {
            std::fs::write(self.module_dir(path).join("@v/list"), text).unwrap();
        }
    }
}

/// Bytes that do not compress (xorshift), for the big module.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn src(package: &str, version: &str) -> Vec<u8> {
    source(package, version).into_bytes()
}

/// The tree every mode serves.
pub fn write_main(root: &Path) {
    let mut f = Fixture::new(root);
    // A major-version module beside its v1, with a pre-release @latest
    // must skip. v1.6.1's .info carries an Origin, which go prints as it
    // came: a proxy must pass .info through untouched.
    for v in ["v1.0.0", "v1.2.0", "v1.4.2", "v1.5.0", "v1.6.1", "v1.7.0-rc.1"] {
        f.plain("example.test/mv", "mv", v);
    }
    f.raw_info(
        "example.test/mv",
        "v1.6.1",
        "{\"Version\":\"v1.6.1\",\"Time\":\"2024-03-05T10:00:00Z\",\"Origin\":{\"VCS\":\"git\",\"URL\":\"https://example.test/mv\",\"Ref\":\"refs/tags/v1.6.1\",\"Hash\":\"0123456789abcdef0123456789abcdef01234567\"}}",
    );
    for v in ["v2.0.0", "v2.1.0"] {
        f.plain("example.test/mv/v2", "mv", v);
    }
    // gopkg.in: the major version is the `.vN` suffix.
    for v in ["v3.0.0", "v3.0.1"] {
        f.plain("gopkg.in/fixture.v3", "fixture", v);
    }
    // +incompatible: v2+ tags of a module with no /v2 and no go.mod. With no
    // go.mod in v1 either, @latest is the highest +incompatible version...
    for v in ["v1.0.0", "v2.0.0+incompatible", "v3.1.0+incompatible"] {
        f.tagged("example.test/legacy", v, None, &[("legacy.go", src("legacy", v))]);
    }
    // ... and with a go.mod in its v1, @latest stays on v1.
    f.plain("example.test/legacymod", "legacymod", "v1.1.0");
    let v = "v2.0.0+incompatible";
    f.tagged(
        "example.test/legacymod",
        v,
        None,
        &[("legacymod.go", src("legacymod", v))],
    );
    // Upper case in the path (`github.com/!upper/!mod` on the wire) and in
    // a pre-release (`v1.2.0-!r!c.1`).
    for v in ["v1.0.0", "v1.1.0", "v1.2.0-RC.1"] {
        f.plain("github.com/Upper/Mod", "mod", v);
    }
    // Retractions: the latest version retracts an earlier one and itself.
    for v in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        f.plain("example.test/retracted", "retracted", v);
    }
    let retract = "\nretract (\n\tv1.1.0 // Has a data race.\n\tv1.3.0 // Published too early.\n)\n";
    f.tagged(
        "example.test/retracted",
        "v1.3.0",
        Some(gomod("example.test/retracted", retract)),
        &[("lib.go", src("retracted", "v1.3.0"))],
    );
    // Deprecation: the comment on the module line of the latest go.mod.
    f.plain("example.test/deprecated", "deprecated", "v1.0.0");
    f.tagged(
        "example.test/deprecated",
        "v1.1.0",
        Some("// Deprecated: use example.test/mv/v2 instead.\nmodule example.test/deprecated\n\ngo 1.21\n".to_owned()),
        &[("lib.go", src("deprecated", "v1.1.0"))],
    );
    // Pseudo-versions only: an empty list; branch, HEAD (`!h!e!a!d.info`
    // on the wire) and hash queries and @latest answered by .info files.
    let pseudo = "example.test/pseudo";
    let (master_time, dev_time) = ("2024-01-02T03:04:05Z", "2024-02-03T04:05:06Z");
    f.untagged(
        pseudo,
        PSEUDO_MASTER,
        master_time,
        &[("lib.go", src("pseudo", PSEUDO_MASTER))],
    );
    f.untagged(pseudo, PSEUDO_DEV, dev_time, &[("lib.go", src("pseudo", PSEUDO_DEV))]);
    // `release+1`: a `+` on the wire, in a query go sends as it is.
    for q in ["master", "HEAD", "abcdef123456", "release+1"] {
        f.query(pseudo, q, PSEUDO_MASTER, master_time);
    }
    for q in ["dev", "0123456789ab"] {
        f.query(pseudo, q, PSEUDO_DEV, dev_time);
    }
    f.latest(pseudo, PSEUDO_MASTER, master_time);
    // A `+` in an import path (allowed in package paths, not in module
    // paths): package example.test/plus/c++.
    f.tagged(
        "example.test/plus",
        "v1.0.0",
        Some(gomod("example.test/plus", "")),
        &[("plus.go", src("plus", "v1.0.0")), ("c++/cpp.go", src("cpp", "v1.0.0"))],
    );
    // The other characters go allows in module paths.
    f.plain("example.test/odd_chars/a~b.c-d", "odd", "v1.0.0");
    // A list as some proxies write it: timestamps, a blank line, a
    // pseudo-version and junk (go ignores all three), no final newline.
    for v in ["v1.0.0", "v1.1.0", "v1.2.0-pre"] {
        f.plain("example.test/messylist", "messylist", v);
    }
    // A module path longer than 1024 bytes.
    let long = long_path();
    f.plain(&long, "long", "v1.0.0");
    // A zip of 60 MiB that does not compress.
    f.tagged(
        "example.test/big",
        "v1.0.0",
        Some(gomod("example.test/big", "")),
        &[("big.go", src("big", "v1.0.0")), ("data.bin", noise(BIG_BYTES))],
    );
    f.finish(&[(
        "example.test/messylist",
        "v1.1.0 2024-03-02T00:00:00Z\n\nv1.0.0\nv0.0.0-20240101000000-abcdefabcdef\nnot-a-version\nv1.2.0-pre",
    )]);
}

/// The second tree of `GOPROXY=<mode>,file://<fallback>`: what only it has.
pub fn write_fallback(root: &Path) {
    let mut f = Fixture::new(root);
    f.plain("example.test/fallback", "fallback", "v1.0.0");
    f.finish(&[]);
}

/// The project's go.mod: older versions than the latest, so `get -u` has
/// work, a retracted version, and the pseudo-only module on `dev`.
pub fn project_gomod() -> String {
    format!(
        "module example.test/app\n\ngo 1.21\n\nrequire (\n\
         \texample.test/deprecated v1.0.0\n\
         \texample.test/legacy v2.0.0+incompatible\n\
         \texample.test/mv v1.2.0\n\
         \texample.test/mv/v2 v2.0.0\n\
         \texample.test/plus v1.0.0\n\
         \texample.test/pseudo {PSEUDO_DEV}\n\
         \texample.test/retracted v1.1.0\n\
         \tgithub.com/Upper/Mod v1.0.0\n\
         \tgopkg.in/fixture.v3 v3.0.0\n\
         )\n"
    )
}

/// The project's main package, importing a package of every required
/// module.
pub const PROJECT_MAIN: &str = "package main

import (
\t\"example.test/deprecated\"
\t\"example.test/legacy\"
\t\"example.test/mv\"
\tmv2 \"example.test/mv/v2\"
\t\"example.test/plus\"
\tcpp \"example.test/plus/c++\"
\t\"example.test/pseudo\"
\t\"example.test/retracted\"
\tmod \"github.com/Upper/Mod\"
\t\"gopkg.in/fixture.v3\"
)

func main() {
\tprintln(deprecated.Version, legacy.Version, mv.Version, mv2.Version, plus.Version, cpp.Version)
\tprintln(pseudo.Version, retracted.Version, mod.Version, fixture.Version)
}
";

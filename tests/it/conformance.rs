//! Conformance (issue 15): one table of go commands, run on the same
//! fixture three ways, must give the same results.
//!
//! - **reference:** `GOPROXY=file://<fixture>`, go reading the tree itself;
//! - **endpoint:** `GOPROXY=http://<modgate>`, modgate mirroring a plain-HTTP
//!   module proxy over the fixture, its module cache off;
//! - **interception:** `HTTPS_PROXY=<modgate>` with
//!   `GOPROXY=https://proxy.golang.org` intercepted and mirrored from a TLS
//!   module proxy over the fixture, its module cache on (a fresh dir).
//!
//! Every mode verifies for real against the test checksum database
//! (`tests/sumdb`) over the fixture. The reference names the database's URL
//! in GOSUMDB; the two modgate modes give only its key, so go must reach it
//! through modgate (`$GOPROXY/sumdb/sum.test/...`).
//!
//! Each case runs with a fresh GOPATH, GOMODCACHE, GOCACHE and copy of the
//! project. Compared: exit status, stdout and stderr (normalized), the JSON
//! of `mod download -json`, and go.mod/go.sum afterwards.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use crate::gotool::*;
use crate::sumdb::{SumdbServer, start_sumdb};
use crate::support::*;

// ---------- the fixture ----------

/// The pseudo-version of the pseudo-only module's `master` (also `HEAD`,
/// `abcdef123456` and `@latest`).
const PSEUDO_MASTER: &str = "v0.0.0-20240102030405-abcdef123456";
/// The pseudo-version of its `dev` branch (also `0123456789ab`): newer than
/// `@latest`, so `get -u` must not move off it.
const PSEUDO_DEV: &str = "v0.0.0-20240203040506-0123456789ab";

/// A module path of 1,130 bytes: go's `module.CheckPath` has no length
/// limit, and each element stays under the file system's 255 bytes so the
/// `file://` reference can hold it.
fn long_path() -> String {
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
    /// A distinct, fixed time per version, in order of creation.
    clock: u32,
}

/// go.mod of a module: `module PATH` plus `extra` lines.
fn gomod(path: &str, extra: &str) -> String {
    format!("module {path}\n\ngo 1.21\n{extra}")
}

/// A package with a `Version` const: what every fixture module holds.
fn source(package: &str, version: &str) -> String {
    format!("package {package}\n\n// Version is the fixture's version.\nconst Version = \"{version}\"\n")
}

fn info(version: &str, time: &str) -> String {
    format!("{{\"Version\":\"{version}\",\"Time\":\"{time}\"}}\n")
}

impl Fixture {
    fn new(root: &Path) -> Fixture {
        Fixture {
            root: root.to_owned(),
            lists: BTreeMap::new(),
            clock: 0,
        }
    }

    fn module_dir(&self, path: &str) -> PathBuf {
        self.root.join(modgate::gomod::escape::encode_case(path))
    }

    /// A tagged version, named in `@v/list`. `go_mod` is None for a module
    /// without a go.mod file (the `.mod` served is then `module PATH`, as
    /// proxy.golang.org makes it); `files` are (name, content) in the zip.
    fn tagged(&mut self, path: &str, version: &str, go_mod: Option<String>, files: &[(&str, String)]) {
        self.clock += 1;
        let time = format!("2024-03-{:02}T10:00:00Z", self.clock);
        self.version(path, version, &time, go_mod, files);
        let key = modgate::gomod::escape::encode_case(path);
        self.lists.entry(key).or_default().push(version.to_owned());
    }

    /// A version with its own time, not listed (a pseudo-version).
    fn untagged(&mut self, path: &str, version: &str, time: &str, go_mod: Option<String>, files: &[(&str, String)]) {
        self.version(path, version, time, go_mod, files);
        let key = modgate::gomod::escape::encode_case(path);
        self.lists.entry(key).or_default();
    }

    fn version(&self, path: &str, version: &str, time: &str, go_mod: Option<String>, files: &[(&str, String)]) {
        let dir = self.module_dir(path).join("@v");
        std::fs::create_dir_all(&dir).unwrap();
        let escaped = modgate::gomod::escape::encode_case(version);
        let served_mod = go_mod.clone().unwrap_or_else(|| format!("module {path}\n"));
        std::fs::write(dir.join(format!("{escaped}.mod")), &served_mod).unwrap();
        std::fs::write(dir.join(format!("{escaped}.info")), info(version, time)).unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let prefix = format!("{path}@{version}");
        if let Some(text) = &go_mod {
            zip.start_file(format!("{prefix}/go.mod"), options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        for (name, text) in files {
            zip.start_file(format!("{prefix}/{name}"), options).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        std::fs::write(dir.join(format!("{escaped}.zip")), bytes).unwrap();
    }

    /// `$module/@v/$query.info` answering a branch, tag or hash query.
    fn query(&self, path: &str, query: &str, version: &str, time: &str) {
        let escaped = modgate::gomod::escape::encode_case(query);
        let file = self.module_dir(path).join("@v").join(format!("{escaped}.info"));
        std::fs::write(file, info(version, time)).unwrap();
    }

    /// `$module/@latest`.
    fn latest(&self, path: &str, version: &str, time: &str) {
        std::fs::write(self.module_dir(path).join("@latest"), info(version, time)).unwrap();
    }

    /// Writes every `@v/list` (empty for a pseudo-only module).
    fn finish(self) {
        for (module, versions) in self.lists {
            let text: String = versions.iter().map(|v| format!("{v}\n")).collect();
            std::fs::write(self.root.join(module).join("@v/list"), text).unwrap();
        }
    }
}

/// The fixture every mode serves.
fn write_conformance_fixture(root: &Path) {
    let mut f = Fixture::new(root);
    let plain = |path: &str, package: &str, version: &str| -> (Option<String>, Vec<(&'static str, String)>) {
        let _ = package;
        (Some(gomod(path, "")), vec![("lib.go", source(package, version))])
    };
    // A major-version module beside its v1, with a pre-release that
    // @latest must skip.
    for v in ["v1.0.0", "v1.2.0", "v1.4.2", "v1.5.0", "v1.6.1", "v1.7.0-rc.1"] {
        let (m, files) = plain("example.test/mv", "mv", v);
        f.tagged("example.test/mv", v, m, &files);
    }
    for v in ["v2.0.0", "v2.1.0"] {
        let (m, files) = plain("example.test/mv/v2", "mv", v);
        f.tagged("example.test/mv/v2", v, m, &files);
    }
    // gopkg.in: the major version is the `.vN` suffix.
    for v in ["v3.0.0", "v3.0.1"] {
        let (m, files) = plain("gopkg.in/fixture.v3", "fixture", v);
        f.tagged("gopkg.in/fixture.v3", v, m, &files);
    }
    // +incompatible: v2+ tags of modules with no /v2 and no go.mod. With no
    // go.mod in v1 either, @latest is the highest +incompatible version.
    for v in ["v1.0.0", "v2.0.0+incompatible", "v3.1.0+incompatible"] {
        f.tagged("example.test/legacy", v, None, &[("legacy.go", source("legacy", v))]);
    }
    // ... and with a go.mod in its v1, @latest stays on v1.
    let (m, files) = plain("example.test/legacymod", "legacymod", "v1.1.0");
    f.tagged("example.test/legacymod", "v1.1.0", m, &files);
    f.tagged(
        "example.test/legacymod",
        "v2.0.0+incompatible",
        None,
        &[("legacymod.go", source("legacymod", "v2.0.0+incompatible"))],
    );
    // Upper case in the path: `github.com/!upper/!mod` on the wire.
    for v in ["v1.0.0", "v1.1.0"] {
        let (m, files) = plain("github.com/Upper/Mod", "mod", v);
        f.tagged("github.com/Upper/Mod", v, m, &files);
    }
    // Retractions: the latest version retracts an earlier one and itself.
    for v in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        let (m, files) = plain("example.test/retracted", "retracted", v);
        f.tagged("example.test/retracted", v, m, &files);
    }
    f.tagged(
        "example.test/retracted",
        "v1.3.0",
        Some(gomod(
            "example.test/retracted",
            "\nretract (\n\tv1.1.0 // Has a data race.\n\tv1.3.0 // Published too early.\n)\n",
        )),
        &[("lib.go", source("retracted", "v1.3.0"))],
    );
    // Deprecation: the comment on the module line of the latest go.mod.
    let (m, files) = plain("example.test/deprecated", "deprecated", "v1.0.0");
    f.tagged("example.test/deprecated", "v1.0.0", m, &files);
    f.tagged(
        "example.test/deprecated",
        "v1.1.0",
        Some("// Deprecated: use example.test/mv/v2 instead.\nmodule example.test/deprecated\n\ngo 1.21\n".to_owned()),
        &[("lib.go", source("deprecated", "v1.1.0"))],
    );
    // Pseudo-versions only: an empty list, branch/HEAD/hash queries and
    // @latest answered by .info files.
    let pseudo = "example.test/pseudo";
    let (master_time, dev_time) = ("2024-01-02T03:04:05Z", "2024-02-03T04:05:06Z");
    f.untagged(
        pseudo,
        PSEUDO_MASTER,
        master_time,
        Some(gomod(pseudo, "")),
        &[("lib.go", source("pseudo", PSEUDO_MASTER))],
    );
    f.untagged(
        pseudo,
        PSEUDO_DEV,
        dev_time,
        Some(gomod(pseudo, "")),
        &[("lib.go", source("pseudo", PSEUDO_DEV))],
    );
    for q in ["master", "HEAD", "abcdef123456"] {
        f.query(pseudo, q, PSEUDO_MASTER, master_time);
    }
    for q in ["dev", "0123456789ab"] {
        f.query(pseudo, q, PSEUDO_DEV, dev_time);
    }
    f.latest(pseudo, PSEUDO_MASTER, master_time);
    // A `+` in an import path (not allowed in module paths, allowed in
    // package paths): package example.test/plus/c++.
    f.tagged(
        "example.test/plus",
        "v1.0.0",
        Some(gomod("example.test/plus", "")),
        &[
            ("plus.go", source("plus", "v1.0.0")),
            ("c++/cpp.go", source("cpp", "v1.0.0")),
        ],
    );
    // A module path longer than 1024 bytes.
    let long = long_path();
    f.tagged(
        &long,
        "v1.0.0",
        Some(gomod(&long, "")),
        &[("long.go", source("long", "v1.0.0"))],
    );
    f.finish();
}

// ---------- the project ----------

/// The project's go.mod: older versions than the latest, so `get -u` has
/// work, a retracted version, and the pseudo-only module on `dev`.
fn project_gomod() -> String {
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

const PROJECT_MAIN: &str = "package main

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

// ---------- the command table ----------

/// One step of a case.
#[derive(Clone, Copy)]
enum Step {
    /// `go ARGS`; stdout compared as normalized text.
    Go(&'static [&'static str]),
    /// `go ARGS` printing a stream of `mod download -json` objects: compared
    /// by Path, Version, Sum, GoModSum and Error.
    GoDownloadJson(&'static [&'static str]),
    /// Runs a program the case built, from the project dir.
    Exec(&'static str),
}

/// One row of the table: steps run in order in one fresh environment.
struct Case {
    name: &'static str,
    steps: Vec<Step>,
    /// Files of the project compared after the last step.
    files: &'static [&'static str],
    /// Start from a GOCACHE holding the standard library already (a copy),
    /// so `go build` does not compile the runtime in every mode.
    warm_build_cache: bool,
}

/// Module paths built at run time (the long path) are leaked once: the
/// table is 'static.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn args(v: Vec<String>) -> &'static [&'static str] {
    Box::leak(v.into_iter().map(leak).collect::<Vec<_>>().into_boxed_slice())
}

fn table() -> Vec<Case> {
    use Step::*;
    let long = long_path();
    vec![
        Case {
            name: "list -m -versions",
            steps: vec![
                Go(&["list", "-m", "-versions", "all"]),
                Go(&[
                    "list",
                    "-m",
                    "-versions",
                    "example.test/legacymod",
                    "example.test/pseudo",
                ]),
            ],
            files: &[],
            warm_build_cache: false,
        },
        Case {
            name: "list -m -retracted / -u",
            steps: vec![
                Go(&["list", "-m", "-retracted", "-versions", "example.test/retracted"]),
                Go(&["list", "-m", "-u", "all"]),
                Go(&[
                    "list",
                    "-m",
                    "-u",
                    "-json",
                    "example.test/retracted",
                    "example.test/deprecated",
                ]),
            ],
            files: &[],
            warm_build_cache: false,
        },
        Case {
            name: "queries: @latest, @v1, @<v1.5.0 and others",
            steps: vec![
                Go(&[
                    "list",
                    "-m",
                    "example.test/mv@latest",
                    "example.test/mv@v1",
                    "example.test/mv@<v1.5.0",
                    "example.test/mv@v1.4",
                    "example.test/mv@>=v1.5.0",
                    "example.test/mv@upgrade",
                    "example.test/mv@patch",
                    "example.test/mv@v1.7.0-rc.1",
                ]),
                Go(&[
                    "list",
                    "-m",
                    "example.test/mv/v2@latest",
                    "gopkg.in/fixture.v3@latest",
                    "github.com/Upper/Mod@latest",
                    "example.test/legacy@latest",
                    "example.test/legacymod@latest",
                    "example.test/retracted@latest",
                    "example.test/deprecated@latest",
                ]),
                Go(&[
                    "list",
                    "-m",
                    "-json",
                    "example.test/legacy@<v3",
                    "example.test/retracted@v1.1.0",
                ]),
            ],
            files: &[],
            warm_build_cache: false,
        },
        Case {
            name: "pseudo-version-only: branch, HEAD and hash queries",
            steps: vec![
                Go(&[
                    "list",
                    "-m",
                    "-json",
                    "example.test/pseudo@master",
                    "example.test/pseudo@HEAD",
                    "example.test/pseudo@abcdef123456",
                    "example.test/pseudo@dev",
                    "example.test/pseudo@0123456789ab",
                    "example.test/pseudo@latest",
                ]),
                Go(&["get", "example.test/pseudo@master"]),
            ],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "get -u",
            steps: vec![Go(&["get", "-u", "./..."])],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "mod download -json all",
            steps: vec![GoDownloadJson(&["mod", "download", "-json", "all"])],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "mod tidy",
            steps: vec![Go(&["mod", "tidy"]), Go(&["mod", "graph"])],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "mod verify",
            steps: vec![Go(&["mod", "download"]), Go(&["mod", "verify"])],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "build",
            steps: vec![
                Go(&["build", "-o", "app.bin", "."]),
                Go(&["version", "-m", "app.bin"]),
                Exec("./app.bin"),
            ],
            files: &["go.mod", "go.sum"],
            warm_build_cache: true,
        },
        Case {
            name: "a + in an import path",
            steps: vec![
                Go(&["mod", "why", "example.test/plus/c++"]),
                Go(&["get", "example.test/plus/c++@v1.0.0"]),
                Go(&["list", "-m", "example.test/plus/c++@latest"]),
            ],
            files: &["go.mod"],
            warm_build_cache: false,
        },
        Case {
            name: "a module path over 1024 bytes",
            steps: vec![
                GoDownloadJson(args(vec![
                    "mod".into(),
                    "download".into(),
                    "-json".into(),
                    format!("{long}@v1.0.0"),
                ])),
                Go(args(vec!["list".into(), "-m".into(), "-versions".into(), long.clone()])),
                Go(args(vec!["get".into(), format!("{long}@latest")])),
            ],
            files: &["go.mod", "go.sum"],
            warm_build_cache: false,
        },
        Case {
            name: "not found",
            steps: vec![
                Go(&["list", "-m", "example.test/mv@v9.9.9"]),
                GoDownloadJson(&["mod", "download", "-json", "example.test/nothere@v1.0.0"]),
                Go(&["get", "example.test/nothere@latest"]),
                Go(&["list", "-m", "example.test/pseudo@nosuchbranch"]),
            ],
            files: &["go.mod"],
            warm_build_cache: false,
        },
    ]
}

// ---------- running go ----------

/// What one step did, normalized.
#[derive(Debug, PartialEq, Eq)]
struct StepResult {
    exit: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The results of one case in one mode.
#[derive(Debug, PartialEq, Eq)]
struct CaseResult {
    steps: Vec<StepResult>,
    files: BTreeMap<String, String>,
}

/// How a mode reaches the fixture: the environment go gets, and the
/// strings to normalize in its output.
struct Mode {
    name: &'static str,
    env: Vec<(&'static str, String)>,
    /// The GOPROXY value go prints in URLs, shown as `$GOPROXY`.
    goproxy: String,
}

/// The standard library compiled once into a template GOCACHE (kept in
/// target/ across runs), so a `build` case copies it instead of compiling
/// the runtime again in each mode.
fn std_build_cache() -> &'static Path {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE.get_or_init(|| {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-conformance-gocache");
        let cache = target.join("gocache");
        if target.join("ready").exists() {
            return cache;
        }
        let _ = std::fs::remove_dir_all(&target);
        let app = target.join("hello");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("go.mod"), "module example.test/hello\n\ngo 1.21\n").unwrap();
        std::fs::write(
            app.join("main.go"),
            "package main\n\nfunc main() { println(\"hello\") }\n",
        )
        .unwrap();
        let out = std::process::Command::new("nice")
            .arg(go_binary())
            .args(["build", "-o", "hello.bin", "."])
            .current_dir(&app)
            .env_clear()
            .envs(base_env(&target))
            .env("GOCACHE", &cache)
            .env("GOPROXY", "off")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(target.join("ready"), "").unwrap();
        cache
    })
}

/// The settings every go run has, with `root` as its private home.
fn base_env(root: &Path) -> Vec<(&'static str, String)> {
    let p = |name: &str| root.join(name).display().to_string();
    vec![
        ("PATH", "/usr/bin:/bin".into()),
        ("HOME", root.display().to_string()),
        ("GOPATH", p("gopath")),
        ("GOMODCACHE", p("modcache")),
        ("GOENV", "off".into()),
        ("GOWORK", "off".into()),
        ("GOTOOLCHAIN", "local".into()),
        ("GOTELEMETRY", "off".into()),
        ("GOFLAGS", "-mod=mod -modcacherw".into()),
        ("CGO_ENABLED", "0".into()),
    ]
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One go run: bounded, at low priority (the machine is shared).
async fn run(program: &Path, args: &[&str], dir: &Path, env: &[(&'static str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("nice");
    cmd.arg(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program:?} {args:?} finishes within 2 minutes"))
        .expect("go runs")
}

async fn run_case(mode: &Mode, case: &Case) -> CaseResult {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("go.mod"), project_gomod()).unwrap();
    std::fs::write(app.join("main.go"), PROJECT_MAIN).unwrap();
    let gocache = root.join("gocache");
    if case.warm_build_cache {
        copy_tree(std_build_cache(), &gocache);
    }
    let mut env = base_env(root);
    env.push(("GOCACHE", gocache.display().to_string()));
    env.extend(mode.env.iter().cloned());
    let norm = Normalizer {
        work: root.display().to_string(),
        goproxy: mode.goproxy.clone(),
    };
    let mut steps = Vec::new();
    for step in &case.steps {
        let (out, json) = match step {
            Step::Go(a) => (run(go_binary(), a, &app, &env).await, false),
            Step::GoDownloadJson(a) => (run(go_binary(), a, &app, &env).await, true),
            Step::Exec(program) => (run(&app.join(program), &[], &app, &env).await, false),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        steps.push(StepResult {
            exit: out.status.code(),
            stdout: if json {
                norm.download_json(&stdout)
            } else {
                norm.text(&stdout)
            },
            stderr: norm.stderr(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    let files = case
        .files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(app.join(f)).unwrap_or_else(|_| "(no file)".into());
            (f.to_string(), norm.text(&text))
        })
        .collect();
    CaseResult { steps, files }
}

/// Makes one mode's output comparable with another's.
struct Normalizer {
    /// The case's private dir (GOPATH, GOMODCACHE, the project).
    work: String,
    goproxy: String,
}

impl Normalizer {
    fn text(&self, s: &str) -> String {
        s.replace(&self.work, "$WORK").replace(&self.goproxy, "$GOPROXY")
    }

    /// stderr, as a sorted list of lines: go downloads in parallel and
    /// prints `go: downloading` lines in the order they finish.
    ///
    /// The way a proxy says "not here" differs by transport and is not
    /// modgate's to choose: `file://` gives "no such file or directory",
    /// HTTP gives "404 Not Found" plus a `server response:` line. Both
    /// become "not found"; the server's own text is dropped.
    fn stderr(&self, s: &str) -> String {
        let text = self.not_found(&self.text(s));
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("server response:"))
            .collect();
        lines.sort();
        lines.join("\n")
    }

    fn not_found(&self, s: &str) -> String {
        s.replace(": no such file or directory", ": not found")
            .replace(": 404 Not Found", ": not found")
            .replace(": 410 Gone", ": not found")
    }

    /// A `mod download -json` stream: one line per module with Version,
    /// Sum, GoModSum and Error.
    fn download_json(&self, s: &str) -> String {
        let mut out = String::new();
        for value in serde_json::Deserializer::from_str(s).into_iter::<serde_json::Value>() {
            let v = match value {
                Ok(v) => v,
                Err(e) => {
                    let _ = writeln!(out, "(not JSON: {e})");
                    break;
                }
            };
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
            let error = field("Error");
            let error = self.not_found(&self.text(&error));
            let error: Vec<&str> = error
                .lines()
                .filter(|l| !l.trim_start().starts_with("server response:"))
                .collect();
            let _ = writeln!(
                out,
                "{}@{} Sum={} GoModSum={} Error={:?}",
                field("Path"),
                field("Version"),
                field("Sum"),
                field("GoModSum"),
                error.join("\n")
            );
        }
        out
    }
}

// ---------- the modes ----------

/// The fixture, the checksum database over it, and the two module proxies
/// modgate mirrors.
struct World {
    dir: tempfile::TempDir,
    sumdb: SumdbServer,
    pki: TestPki,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        write_conformance_fixture(&dir.path().join("fixture"));
        let sumdb = start_sumdb(&dir.path().join("fixture")).await;
        let pki = TestPki::new("Test Public Root CA");
        std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
        World { dir, sumdb, pki }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn fixture(&self) -> PathBuf {
        self.path("fixture")
    }

    fn sumdb_section(&self) -> String {
        format!(
            "[sumdb]\nkey = \"{}\"\nurl = \"http://{}\"\n",
            self.sumdb.key, self.sumdb.addr
        )
    }

    fn reference(&self) -> Mode {
        let goproxy = format!("file://{}", self.fixture().display());
        Mode {
            name: "reference (GOPROXY=file://)",
            env: vec![
                ("GOPROXY", goproxy.clone()),
                ("GOSUMDB", format!("{} http://{}", self.sumdb.key, self.sumdb.addr)),
            ],
            goproxy,
        }
    }
}

/// A plain-HTTP module proxy serving `root` (404 for what is not there).
async fn start_fixture_mirror(root: &Path) -> Origin {
    let root = Arc::new(root.to_owned());
    start_origin(Arc::new(move |req| {
        let root = root.clone();
        Box::pin(async move {
            let path = percent_encoding::percent_decode_str(req.uri().path())
                .decode_utf8_lossy()
                .trim_start_matches('/')
                .to_owned();
            let file = (!path.contains("..")).then(|| root.join(&path));
            match file.and_then(|f| std::fs::read(f).ok()) {
                Some(bytes) => Response::new(full(bytes)),
                None => {
                    let mut r = Response::new(full("not found\n"));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            }
        })
    }))
    .await
}

async fn start_modgate(world: &World, name: &str, config: &str) -> Proxy {
    let path = world.path(name);
    std::fs::write(&path, config).unwrap();
    start_proxy_with(modgate::config::Config::parse(config, path.to_str().unwrap()).unwrap()).await
}

/// modgate as GOPROXY, mirroring a plain-HTTP proxy, no module cache.
async fn endpoint(world: &World, mirror: &Origin) -> (Mode, Proxy) {
    let config = format!(
        "[cache]\ndir = \"\"\n{}\n[[rule]]\nname = \"fixture\"\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        world.sumdb_section(),
        mirror.addr
    );
    let proxy = start_modgate(world, "endpoint.toml", &config).await;
    let goproxy = format!("http://{}", proxy.addr);
    let mode = Mode {
        name: "endpoint (GOPROXY=http://modgate)",
        env: vec![("GOPROXY", goproxy.clone()), ("GOSUMDB", world.sumdb.key.to_string())],
        goproxy,
    };
    (mode, proxy)
}

/// modgate as HTTPS_PROXY intercepting proxy.golang.org, mirroring a TLS
/// module proxy, with the module cache in a fresh dir.
async fn interception(world: &World, mirror: &ModuleOrigin) -> (Mode, Proxy) {
    let config = format!(
        "[cache]\ndir = \"intercept-cache\"\n{}\n[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\"]\npublic_roots = \"public-root.pem\"\n\n[hosts]\n\"mirror.test\" = \"{}\"\n\n[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
        world.sumdb_section(),
        mirror.addr
    );
    std::fs::write(world.path("intercept.toml"), &config).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(modgate_bin())
            .args(args)
            .current_dir(world.dir.path())
            .output()
            .unwrap()
    };
    let init = cli(&["ca", "init", "--config", "intercept.toml"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let bundle = cli(&["ca", "bundle", "--config", "intercept.toml"]);
    assert!(bundle.status.success(), "{}", String::from_utf8_lossy(&bundle.stderr));
    std::fs::write(world.path("bundle.pem"), bundle.stdout).unwrap();
    let proxy = start_modgate(world, "intercept.toml", &config).await;
    let goproxy = "https://proxy.golang.org".to_owned();
    let mode = Mode {
        name: "interception (HTTPS_PROXY=modgate)",
        env: vec![
            ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
            ("SSL_CERT_FILE", world.path("bundle.pem").display().to_string()),
            ("GOPROXY", goproxy.clone()),
            ("GOSUMDB", world.sumdb.key.to_string()),
        ],
        goproxy,
    };
    (mode, proxy)
}

async fn run_table(mode: &Mode, table: &[Case]) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for case in table {
        out.push(run_case(mode, case).await);
    }
    out
}

// ---------- comparing ----------

/// A readable account of how `got` differs from `want`, or None.
fn describe(case: &Case, mode: &Mode, want: &CaseResult, got: &CaseResult) -> Option<String> {
    if want == got {
        return None;
    }
    let mut out = format!(
        "case '{}' in mode {} differs from the reference:\n",
        case.name, mode.name
    );
    for (i, (w, g)) in want.steps.iter().zip(&got.steps).enumerate() {
        if w == g {
            continue;
        }
        let command = match case.steps[i] {
            Step::Go(a) | Step::GoDownloadJson(a) => format!("go {}", a.join(" ")),
            Step::Exec(p) => p.to_owned(),
        };
        let _ = writeln!(out, "  step {}: {command}", i + 1);
        if w.exit != g.exit {
            let _ = writeln!(out, "    exit: want {:?}, got {:?}", w.exit, g.exit);
        }
        for (what, a, b) in [("stdout", &w.stdout, &g.stdout), ("stderr", &w.stderr, &g.stderr)] {
            if a != b {
                let _ = writeln!(out, "    {what}:\n{}", line_diff(a, b));
            }
        }
    }
    for (file, w) in &want.files {
        let g = &got.files[file];
        if w != g {
            let _ = writeln!(out, "  {file} afterwards:\n{}", line_diff(w, g));
        }
    }
    Some(out)
}

/// A line diff: `-` only in the reference, `+` only in the mode, ` ` both.
fn line_diff(want: &str, got: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    // Longest common subsequence, fine for outputs of a few hundred lines.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "      {}", a[i]);
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
        }
    }
    out
}

/// The table in all three modes: each mode's results equal the reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sees_the_same_through_every_door() {
    let started = Instant::now();
    let world = World::new().await;
    let http_mirror = start_fixture_mirror(&world.fixture()).await;
    let tls_mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let reference = world.reference();
    let (endpoint, endpoint_proxy) = endpoint(&world, &http_mirror).await;
    let (intercepted, intercept_proxy) = interception(&world, &tls_mirror).await;
    let table = table();
    let _ = std_build_cache();

    let (want, via_endpoint, via_interception) = tokio::join!(
        run_table(&reference, &table),
        run_table(&endpoint, &table),
        run_table(&intercepted, &table),
    );

    // The reference itself must do what the fixture was built for, or the
    // comparison proves nothing.
    check_reference(&table, &want);
    if let Some(dump) = std::env::var_os("CONFORMANCE_DUMP") {
        let mut text = String::new();
        for (case, w) in table.iter().zip(&want) {
            let _ = writeln!(text, "=== {}\n{:#?}", case.name, w);
        }
        for (mode, results) in [(&endpoint, &via_endpoint), (&intercepted, &via_interception)] {
            for (case, g) in table.iter().zip(results) {
                let _ = writeln!(text, "=== {} :: {}\n{:#?}", mode.name, case.name, g);
            }
        }
        std::fs::write(dump, text).unwrap();
    }

    let mut failures = Vec::new();
    for (mode, results) in [(&endpoint, &via_endpoint), (&intercepted, &via_interception)] {
        for ((case, w), g) in table.iter().zip(&want).zip(results) {
            failures.extend(describe(case, mode, w, g));
        }
    }
    eprintln!(
        "conformance: {} cases x 3 modes in {:?}",
        table.len(),
        started.elapsed()
    );
    endpoint_proxy.stop().await;
    intercept_proxy.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Positive signals that the reference run exercised what each case is
/// about (a table where go fails everywhere alike would pass otherwise).
fn check_reference(table: &[Case], want: &[CaseResult]) {
    let by_name: BTreeMap<&str, &CaseResult> = table.iter().map(|c| c.name).zip(want).collect();
    let show = |name: &str| format!("{name}: {:#?}", by_name[name]);
    let _ = show;
}

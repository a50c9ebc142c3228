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
//! in GOSUMDB; the modgate modes give only its key, so go can reach it
//! only through modgate (`$GOPROXY/sumdb/sum.test/...`).
//!
//! Each case runs with a fresh GOPATH, GOMODCACHE, GOCACHE and copy of the
//! project. Compared: exit status, stdout and stderr (normalized), the JSON
//! of `mod download -json` (Version, Sum, GoModSum, Error), and go.mod and
//! go.sum afterwards. The reference must also show what each step is for,
//! so a fixture go cannot use fails instead of comparing equal errors.
//!
//! To look closer: `CONFORMANCE_DUMP=FILE` writes every mode's normalized
//! results to FILE; `CONFORMANCE_LOG=1` prints modgate's access events.

mod fixture;
mod modes;

use std::fmt::Write as _;
use std::time::Instant;

use fixture::{PSEUDO_DEV, PSEUDO_MASTER, long_path};
use modes::{CaseResult, Mode, World, run_case};

use crate::support::*;

// ---------- the command table ----------

/// What a step runs, in the project dir.
enum Run {
    /// `go ARGS`; stdout compared as normalized text.
    Go(Vec<String>),
    /// `go ARGS` printing `mod download -json` objects, compared by Path,
    /// Version, Sum, GoModSum and Error.
    GoDownloadJson(Vec<String>),
    /// A program the case built.
    Exec(&'static str),
}

/// One step, and what the reference must show for it.
struct Step {
    run: Run,
    exit: i32,
    /// Text the reference's stdout or stderr must hold.
    shows: Vec<String>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn go(args: &[&str]) -> Step {
    Step {
        run: Run::Go(strings(args)),
        exit: 0,
        shows: Vec::new(),
    }
}

fn download_json(args: &[&str]) -> Step {
    Step {
        run: Run::GoDownloadJson(strings(args)),
        ..go(&[])
    }
}

fn exec(program: &'static str) -> Step {
    Step {
        run: Run::Exec(program),
        ..go(&[])
    }
}

impl Step {
    fn fails(mut self) -> Step {
        self.exit = 1;
        self
    }

    fn shows(mut self, texts: &[&str]) -> Step {
        self.shows.extend(strings(texts));
        self
    }

    fn command(&self) -> String {
        match &self.run {
            Run::Go(a) | Run::GoDownloadJson(a) => format!("go {}", a.join(" ")),
            Run::Exec(p) => p.to_string(),
        }
    }
}

/// One row of the table: steps run in order in one fresh environment.
struct Case {
    name: &'static str,
    steps: Vec<Step>,
    /// Project files compared after the last step.
    files: &'static [&'static str],
    /// (file, text) the reference's files must hold afterwards.
    file_shows: Vec<(&'static str, String)>,
    /// Start from a copy of a GOCACHE holding the compiled standard library,
    /// so `go build` does not compile the runtime in every mode.
    std_build_cache: bool,
    /// GOPROXY gets `,file://<fallback>` appended.
    fallback: bool,
    env: Vec<(&'static str, &'static str)>,
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case {
        name,
        steps,
        files: &[],
        file_shows: Vec::new(),
        std_build_cache: false,
        fallback: false,
        env: Vec::new(),
    }
}

impl Case {
    fn files(mut self, files: &'static [&'static str]) -> Case {
        self.files = files;
        self
    }

    fn file_shows(mut self, file: &'static str, texts: &[&str]) -> Case {
        self.file_shows.extend(texts.iter().map(|t| (file, t.to_string())));
        self
    }
}

const GO_FILES: &[&str] = &["go.mod", "go.sum"];

fn table() -> Vec<Case> {
    let long = long_path();
    vec![
        case(
            "list -m -versions",
            vec![
                go(&[
                    "list",
                    "-m",
                    "-versions",
                    "example.test/mv",
                    "example.test/mv/v2",
                    "gopkg.in/fixture.v3",
                    "example.test/legacy",
                    "github.com/Upper/Mod",
                    "example.test/retracted",
                    "example.test/pseudo",
                ])
                .shows(&[
                    "example.test/mv v1.0.0 v1.2.0 v1.4.2 v1.5.0 v1.6.1 v1.7.0-rc.1\n",
                    "example.test/mv/v2 v2.0.0 v2.1.0\n",
                    "gopkg.in/fixture.v3 v3.0.0 v3.0.1\n",
                    "example.test/legacy v1.0.0 v2.0.0+incompatible v3.1.0+incompatible\n",
                    "github.com/Upper/Mod v1.0.0 v1.1.0 v1.2.0-RC.1\n",
                    "example.test/retracted v1.0.0 v1.2.0\n",
                    "example.test/pseudo\n",
                ]),
                go(&["list", "-m", "-versions", "example.test/legacymod", "example.test/messylist"]).shows(&[
                    "example.test/legacymod v1.1.0 v2.0.0+incompatible\n",
                    "example.test/messylist v1.0.0 v1.1.0 v1.2.0-pre\n",
                ]),
            ],
        ),
        case(
            "list -m -retracted, -u: retractions and deprecations",
            vec![
                go(&["list", "-m", "-retracted", "-versions", "example.test/retracted"])
                    .shows(&["example.test/retracted v1.0.0 v1.1.0 v1.2.0 v1.3.0\n"]),
                go(&["list", "-m", "-retracted", "example.test/retracted@latest"])
                    .shows(&["example.test/retracted v1.3.0 (retracted)\n"]),
                go(&["list", "-m", "-u", "all"]).shows(&[
                    "example.test/retracted v1.1.0 (retracted) [v1.2.0]\n",
                    "example.test/deprecated v1.0.0 [v1.1.0] (deprecated)\n",
                    "example.test/legacy v2.0.0+incompatible [v3.1.0+incompatible]\n",
                ]),
                go(&["list", "-m", "-u", "-json", "example.test/retracted", "example.test/deprecated"])
                    .shows(&["Has a data race.", "\"Deprecated\": \"use example.test/mv/v2 instead.\""]),
            ],
        ),
        case(
            "queries: @latest, @v1, @<v1.5.0 and others",
            vec![
                go(&[
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
                ])
                .shows(&[
                    "example.test/mv v1.6.1\nexample.test/mv v1.6.1\nexample.test/mv v1.4.2\nexample.test/mv v1.4.2\n\
                     example.test/mv v1.5.0\nexample.test/mv v1.6.1\nexample.test/mv v1.2.0\nexample.test/mv v1.7.0-rc.1\n",
                ]),
                go(&[
                    "list",
                    "-m",
                    "example.test/mv/v2@latest",
                    "gopkg.in/fixture.v3@latest",
                    "github.com/Upper/Mod@latest",
                    "github.com/Upper/Mod@v1.2.0-RC.1",
                    "example.test/legacy@latest",
                    "example.test/legacymod@latest",
                    "example.test/retracted@latest",
                    "example.test/deprecated@latest",
                    "example.test/messylist@latest",
                ])
                .shows(&[
                    "example.test/mv/v2 v2.1.0\ngopkg.in/fixture.v3 v3.0.1\ngithub.com/Upper/Mod v1.1.0\n\
                     github.com/Upper/Mod v1.2.0-RC.1\nexample.test/legacy v3.1.0+incompatible\n\
                     example.test/legacymod v1.1.0\nexample.test/retracted v1.2.0\nexample.test/deprecated v1.1.0\n\
                     example.test/messylist v1.1.0\n",
                ]),
                go(&[
                    "list",
                    "-m",
                    "-json",
                    "example.test/mv@latest",
                    "example.test/legacy@<v3",
                    "example.test/retracted@v1.1.0",
                ])
                .shows(&["\"Version\": \"v2.0.0+incompatible\""]),
                // The .info's Origin, as the proxy served it.
                go(&["mod", "download", "-json", "example.test/mv@v1.6.1"]).shows(&["\"Ref\": \"refs/tags/v1.6.1\""]),
            ],
        ),
        case(
            "pseudo-version-only: branch, HEAD and hash queries",
            vec![
                go(&[
                    "list",
                    "-m",
                    "-json",
                    "example.test/pseudo@master",
                    "example.test/pseudo@HEAD",
                    "example.test/pseudo@abcdef123456",
                    "example.test/pseudo@dev",
                    "example.test/pseudo@0123456789ab",
                    "example.test/pseudo@latest",
                ])
                .shows(&[
                    &format!("\"Version\": \"{PSEUDO_MASTER}\",\n\t\"Query\": \"HEAD\""),
                    &format!("\"Version\": \"{PSEUDO_MASTER}\",\n\t\"Query\": \"abcdef123456\""),
                    &format!("\"Version\": \"{PSEUDO_DEV}\",\n\t\"Query\": \"0123456789ab\""),
                    &format!("\"Version\": \"{PSEUDO_MASTER}\",\n\t\"Query\": \"latest\""),
                ]),
                go(&["get", "example.test/pseudo@master"]),
            ],
        )
        .files(GO_FILES)
        .file_shows("go.mod", &[&format!("example.test/pseudo {PSEUDO_MASTER}\n")]),
        case("get -u", vec![go(&["get", "-u", "./..."]).shows(&["is deprecated"])])
            .files(GO_FILES)
            .file_shows(
                "go.mod",
                &[
                    "example.test/mv v1.6.1\n",
                    "example.test/legacy v3.1.0+incompatible\n",
                    "example.test/retracted v1.2.0\n",
                    "github.com/Upper/Mod v1.1.0\n",
                    &format!("example.test/pseudo {PSEUDO_DEV}\n"),
                ],
            ),
        case(
            "mod download -json all",
            vec![download_json(&["mod", "download", "-json", "all"]).shows(&[
                &format!("example.test/pseudo@{PSEUDO_DEV} Sum=h1:"),
                "github.com/Upper/Mod@v1.0.0 Sum=h1:",
                "example.test/legacy@v2.0.0+incompatible Sum=h1:",
            ])],
        )
        .files(GO_FILES),
        case("mod tidy", vec![go(&["mod", "tidy"]), go(&["mod", "graph"])])
            .files(GO_FILES)
            .file_shows("go.sum", &["gopkg.in/fixture.v3 v3.0.0 h1:"]),
        case(
            "mod verify",
            vec![go(&["mod", "download"]), go(&["mod", "verify"]).shows(&["all modules verified"])],
        )
        .files(GO_FILES),
        Case {
            std_build_cache: true,
            ..case(
                "build",
                vec![
                    go(&["build", "-o", "app.bin", "."]),
                    go(&["version", "-m", "app.bin"]).shows(&["dep\tgithub.com/Upper/Mod\tv1.0.0\th1:"]),
                    exec("./app.bin").shows(&[&format!("{PSEUDO_DEV} v1.1.0 v1.0.0 v3.0.0")]),
                ],
            )
            .files(GO_FILES)
        },
        // go refuses `example.test/plus/c++` as a module path itself, before
        // any request; as a package path it works, found in example.test/plus.
        case(
            "a + in an import path",
            vec![
                go(&["mod", "why", "example.test/plus/c++"]).shows(&["example.test/app\nexample.test/plus/c++\n"]),
                go(&["mod", "edit", "-droprequire=example.test/plus"]),
                go(&["get", "example.test/plus/c++@v1.0.0"]).shows(&["go: added example.test/plus v1.0.0"]),
            ],
        )
        .files(GO_FILES),
        case(
            "odd characters: + in a query, ~ _ . - in a path, +build metadata",
            vec![
                go(&["list", "-m", "-json", "example.test/pseudo@release+1"])
                    .shows(&[&format!("\"Version\": \"{PSEUDO_MASTER}\",\n\t\"Query\": \"release+1\"")]),
                go(&["get", "example.test/odd_chars/a~b.c-d@v1.0.0"])
                    .shows(&["go: added example.test/odd_chars/a~b.c-d v1.0.0"]),
                // Build metadata: go drops it and asks for v1.2.0.
                go(&["list", "-m", "example.test/mv@v1.2.0+meta"]).shows(&["example.test/mv v1.2.0\n"]),
            ],
        )
        .files(GO_FILES),
        case(
            "a module path over 1024 bytes",
            vec![
                download_json(&["mod", "download", "-json", &format!("{long}@v1.0.0")])
                    .shows(&[&format!("{long}@v1.0.0 Sum=h1:")]),
                go(&["list", "-m", "-versions", &long]).shows(&[&format!("{long} v1.0.0\n")]),
                go(&["get", &format!("{long}@latest")]),
            ],
        )
        .files(GO_FILES)
        .file_shows("go.mod", &[&format!("{long} v1.0.0")]),
        case(
            "a 60 MiB zip",
            vec![
                download_json(&["mod", "download", "-json", "example.test/big@v1.0.0"])
                    .shows(&["example.test/big@v1.0.0 Sum=h1:"]),
            ],
        ),
        Case {
            fallback: true,
            // The checksum database knows only the main tree.
            env: vec![("GONOSUMDB", "example.test/fallback")],
            ..case(
                "GOPROXY=<mode>,file://<fallback>: 404 falls through",
                vec![
                    go(&["get", "example.test/fallback@v1.0.0"]).shows(&["go: added example.test/fallback v1.0.0"]),
                    go(&["list", "-m", "-versions", "example.test/fallback"])
                        .shows(&["example.test/fallback v1.0.0\n"]),
                    go(&["list", "-m", "example.test/nowhere@latest"]).fails(),
                ],
            )
            .files(GO_FILES)
        },
        case(
            "not found",
            vec![
                go(&["list", "-m", "example.test/mv@v9.9.9"]).fails(),
                download_json(&["mod", "download", "-json", "example.test/nothere@v1.0.0"]).fails(),
                go(&["get", "example.test/nothere@latest"]).fails(),
                go(&["list", "-m", "example.test/pseudo@nosuchbranch"]).fails(),
            ],
        )
        .files(&["go.mod"]),
    ]
}

/// Panics unless the reference did what each step is there for.
fn check_reference(table: &[Case], want: &[CaseResult]) {
    let mut problems = Vec::new();
    for (case, result) in table.iter().zip(want) {
        for (step, got) in case.steps.iter().zip(&result.steps) {
            let output = format!("{}\n{}", got.stdout, got.stderr);
            if got.exit != Some(step.exit) {
                problems.push(format!(
                    "'{}': {} exits {:?}, not {}:\n{output}",
                    case.name,
                    step.command(),
                    got.exit,
                    step.exit
                ));
            }
            for text in step.shows.iter().filter(|t| !output.contains(t.as_str())) {
                problems.push(format!(
                    "'{}': {} does not show {text:?}:\n{output}",
                    case.name,
                    step.command()
                ));
            }
        }
        for (file, text) in &case.file_shows {
            let content = result.files.get(*file).map_or("(not compared)", String::as_str);
            if !content.contains(text.as_str()) {
                problems.push(format!("'{}': {file} does not hold {text:?}:\n{content}", case.name));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the reference (GOPROXY=file://) does not do what the table is for:\n{}",
        problems.join("\n")
    );
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
        let _ = writeln!(out, "  step {}: {}", i + 1, case.steps[i].command());
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
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", b[j]);
            j += 1;
        }
    }
    out
}

/// The table in all three modes: each modgate mode's results equal the
/// reference's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sees_the_same_through_every_door() {
    let started = Instant::now();
    if std::env::var_os("CONFORMANCE_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,h2=info,hyper=info,rustls=info",
            ))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let world = World::new().await;
    let table = table();
    tokio::task::spawn_blocking(modes::std_build_cache).await.unwrap();
    let [reference, endpoint, intercepted] = &world.modes[..] else {
        unreachable!("three modes")
    };
    let (want, via_endpoint, via_interception) = tokio::join!(
        run_table(reference, &table),
        run_table(endpoint, &table),
        run_table(intercepted, &table),
    );
    check_reference(&table, &want);

    // modgate really served the two modes.
    assert!(world.http_mirror.connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(world.tls_mirror.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(world.intercept_cache_files() > 0, "interception fills its module cache");

    let mut failures = Vec::new();
    for (mode, results) in [(endpoint, &via_endpoint), (intercepted, &via_interception)] {
        for ((case, w), g) in table.iter().zip(&want).zip(results) {
            failures.extend(describe(case, mode, w, g));
        }
    }
    if let Some(dump) = std::env::var_os("CONFORMANCE_DUMP") {
        let mut text = String::new();
        for (mode, results) in world.modes.iter().zip([&want, &via_endpoint, &via_interception]) {
            for (case, r) in table.iter().zip(results) {
                let _ = writeln!(text, "=== {} :: {}\n{r:#?}", mode.name, case.name);
            }
        }
        std::fs::write(dump, text).unwrap();
    }
    eprintln!(
        "conformance: {} cases x 3 modes, {} go runs per mode, in {:?}",
        table.len(),
        table.iter().map(|c| c.steps.len()).sum::<usize>(),
        started.elapsed()
    );
    world.stop().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn run_table(mode: &Mode, table: &[Case]) -> Vec<CaseResult> {
    let mut out = Vec::new();
    for case in table {
        out.push(run_case(mode, case).await);
    }
    out
}

// ---------- found by the table ----------

/// What the table's interception mode (module cache on) hit now and then:
/// go failed with `stream error: stream ID N; INTERNAL_ERROR; received from
/// peer` on a `.mod`, a list or the 60 MiB zip, and modgate's access event
/// said `error="the body failed after N bytes: the spool is shorter than
/// written"`. Here made likely: an upstream that sends a zip in small
/// pieces, so each client has read all there is whenever a piece arrives.
///
/// The cause, as read in src/modules/cached.rs and flight.rs: the pump
/// `write_all`s each piece to the spool through `tokio::fs::File`, whose
/// write returns once the bytes are handed to a blocking task, not once
/// they are in the file, and then publishes `written += n`. A client's
/// `SpoolBody` reads the spool through its own handle at the published
/// offset, reads 0 bytes, and fails the body. Only a cache miss is spooled:
/// with `[cache] dir = ""` the same upstream passes (`x-cache: bypass`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_miss_trickling_in_reaches_every_client_whole() {
    use http_body_util::BodyExt;
    const PIECES: usize = 2000;
    const PIECE: usize = 256;
    /// The zip of `module`@v1.0.0 served: one stored file of PIECES x PIECE
    /// bytes, so it arrives in PIECES pieces and then some.
    fn trickled_zip(module: &str) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file(format!("{module}@v1.0.0/data.bin"), stored).unwrap();
        let data: Vec<u8> = (0..PIECES * PIECE).map(|i| (i / PIECE % 251) as u8).collect();
        std::io::Write::write_all(&mut zip, &data).unwrap();
        zip.finish().unwrap().into_inner()
    }
    let upstream = start_origin(std::sync::Arc::new(|req: http::Request<hyper::body::Incoming>| {
        let module = req.uri().path()[1..]
            .split("/@v/")
            .next()
            .unwrap_or_default()
            .to_owned();
        Box::pin(async move {
            let zip = trickled_zip(&module);
            let (tx, body) = chan_body(1);
            let length = zip.len();
            tokio::spawn(async move {
                for piece in zip.chunks(PIECE) {
                    if tx.send(bytes::Bytes::copy_from_slice(piece)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            });
            let mut r = http::Response::new(body);
            r.headers_mut().insert("content-length", length.into());
            r
        })
    }))
    .await;
    let cache = tempfile::tempdir().unwrap();
    // No checksum database knows these zips; the spool is what is tested.
    let proxy = start_proxy(&format!(
        "[cache]\ndir = \"{}\"\n[sumdb]\nverify = false\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        cache.path().display(),
        upstream.addr
    ))
    .await;
    let fetches = (0..16).map(|i| async move {
        let path = format!("/example.test/trickle{i}/@v/v1.0.0.zip");
        let mut conn = ProxyConn::open(proxy.addr).await;
        let resp = conn
            .send(
                http::Request::get(&path)
                    .header("host", "modgate")
                    .body(full(""))
                    .unwrap(),
            )
            .await;
        let status = resp.status();
        let want = trickled_zip(&format!("example.test/trickle{i}"));
        match resp.into_body().collect().await.map(|b| b.to_bytes()) {
            Ok(body) if status == 200 && body == want => None,
            Ok(body) => Some(format!("{path}: {status}, {} bytes", body.len())),
            Err(e) => Some(format!("{path}: {status}, then the body failed: {e}")),
        }
    });
    let failed: Vec<String> = futures_util::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect();
    proxy.stop().await;
    assert!(
        failed.is_empty(),
        "{} of 16 clients got a body cut short (modgate: \"the spool is shorter than written\"):\n{}",
        failed.len(),
        failed.join("\n")
    );
}

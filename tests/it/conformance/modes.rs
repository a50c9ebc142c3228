//! The three ways go reaches the fixture, and running one case of the
//! table in one of them with everything private and fresh.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Response, StatusCode};

use super::fixture::{PROJECT_MAIN, project_gomod, write_fallback, write_main};
use super::{Case, Run};
use crate::gotool::{Behavior, ModuleOrigin, go_binary, start_module_origin};
use crate::sumdb::{SumdbServer, start_sumdb};
use crate::support::*;

/// How a mode reaches the fixture.
pub struct Mode {
    pub name: &'static str,
    /// The GOPROXY value; go prints it in URLs, shown as `$GOPROXY`.
    pub goproxy: String,
    /// GOSUMDB and, for interception, the proxy and its CA bundle.
    pub env: Vec<(&'static str, String)>,
    /// The fall-through tree, for cases that add `,file://<fallback>`.
    pub fallback: String,
}

/// The fixture trees, the checksum database over the main one, the two
/// module proxies modgate mirrors, and modgate twice.
pub struct World {
    dir: tempfile::TempDir,
    sumdb: SumdbServer,
    pub http_mirror: Origin,
    pub tls_mirror: ModuleOrigin,
    endpoint_proxy: Option<Proxy>,
    intercept_proxy: Option<Proxy>,
    pub modes: Vec<Mode>,
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        write_main(&path("fixture"));
        write_fallback(&path("fallback"));
        let sumdb = start_sumdb(&path("fixture")).await;
        let pki = TestPki::new("Test Public Root CA");
        std::fs::write(path("public-root.pem"), &pki.ca_pem).unwrap();
        let http_mirror = start_fixture_mirror(&path("fixture")).await;
        let tls_mirror = start_module_origin(&pki, &["mirror.test"], &path("fixture"), Behavior::Serve).await;
        let mut world = World {
            dir,
            sumdb,
            http_mirror,
            tls_mirror,
            endpoint_proxy: None,
            intercept_proxy: None,
            modes: Vec::new(),
        };
        let reference = world.reference();
        let endpoint = world.endpoint().await;
        let interception = world.interception().await;
        world.modes = vec![reference, endpoint, interception];
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file_url(&self, name: &str) -> String {
        format!("file://{}", self.path(name).display())
    }

    fn sumdb_section(&self) -> String {
        format!(
            "[sumdb]\nkey = \"{}\"\nurl = \"http://{}\"\n",
            self.sumdb.key, self.sumdb.addr
        )
    }

    /// go reading the tree itself, and the database at its own URL.
    fn reference(&self) -> Mode {
        Mode {
            name: "reference (GOPROXY=file://)",
            goproxy: self.file_url("fixture"),
            env: vec![("GOSUMDB", format!("{} http://{}", self.sumdb.key, self.sumdb.addr))],
            fallback: self.file_url("fallback"),
        }
    }

    async fn start_modgate(&self, name: &str, config: &str) -> Proxy {
        let path = self.path(name);
        std::fs::write(&path, config).unwrap();
        start_proxy_with(modgate::config::Config::parse(config, path.to_str().unwrap()).unwrap()).await
    }

    /// modgate as GOPROXY, mirroring the plain-HTTP proxy, no module cache.
    /// GOSUMDB names only the key: go reaches the database through modgate.
    async fn endpoint(&mut self) -> Mode {
        let config = format!(
            "[cache]\ndir = \"\"\n{}\n[[rule]]\nname = \"fixture\"\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
            self.sumdb_section(),
            self.http_mirror.addr
        );
        let proxy = self.start_modgate("endpoint.toml", &config).await;
        let mode = Mode {
            name: "endpoint (GOPROXY=http://modgate)",
            goproxy: format!("http://{}", proxy.addr),
            env: vec![("GOSUMDB", self.sumdb.key.to_string())],
            fallback: self.file_url("fallback"),
        };
        self.endpoint_proxy = Some(proxy);
        mode
    }

    /// modgate as HTTPS_PROXY intercepting proxy.golang.org, mirroring the
    /// TLS proxy, with its module cache on in a fresh dir. The CA and the
    /// client bundle come from the CLI, as a user makes them.
    async fn interception(&mut self) -> Mode {
        let config = format!(
            "[cache]\ndir = \"intercept-cache\"\n{}\n[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\"]\npublic_roots = \"public-root.pem\"\n\n[hosts]\n\"mirror.test\" = \"{}\"\n\n[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
            self.sumdb_section(),
            self.tls_mirror.addr
        );
        std::fs::write(self.path("intercept.toml"), &config).unwrap();
        let cli = |args: &[&str]| {
            let out = std::process::Command::new(modgate_bin())
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        cli(&["ca", "init", "--config", "intercept.toml"]);
        std::fs::write(
            self.path("bundle.pem"),
            cli(&["ca", "bundle", "--config", "intercept.toml"]),
        )
        .unwrap();
        let proxy = self.start_modgate("intercept.toml", &config).await;
        let mode = Mode {
            name: "interception (HTTPS_PROXY=modgate)",
            goproxy: "https://proxy.golang.org".into(),
            env: vec![
                ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
                ("SSL_CERT_FILE", self.path("bundle.pem").display().to_string()),
                ("GOSUMDB", self.sumdb.key.to_string()),
            ],
            fallback: self.file_url("fallback"),
        };
        self.intercept_proxy = Some(proxy);
        mode
    }

    /// Files modgate's module cache holds in interception mode.
    pub fn intercept_cache_files(&self) -> usize {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 })
                .sum()
        }
        count(&self.path("intercept-cache"))
    }

    pub async fn stop(mut self) {
        for proxy in [self.endpoint_proxy.take(), self.intercept_proxy.take()]
            .into_iter()
            .flatten()
        {
            proxy.stop().await;
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

// ---------- running a case ----------

/// What one step did, normalized.
#[derive(Debug, PartialEq, Eq)]
pub struct StepResult {
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The results of one case in one mode.
#[derive(Debug, PartialEq, Eq)]
pub struct CaseResult {
    pub steps: Vec<StepResult>,
    /// Project files after the last step, normalized.
    pub files: BTreeMap<String, String>,
}

/// The standard library compiled once into a template GOCACHE, kept in
/// target/ across runs: a `build` case starts from a copy of it instead of
/// compiling the runtime again in every mode.
pub fn std_build_cache() -> &'static Path {
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

/// One run: bounded, at low priority (the machine is shared).
async fn run(program: &Path, args: &[String], dir: &Path, env: &[(&'static str, String)]) -> std::process::Output {
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
        .expect("it runs")
}

/// Runs `case` in `mode`: a fresh GOPATH, GOMODCACHE, GOCACHE and copy of
/// the project.
pub async fn run_case(mode: &Mode, case: &Case) -> CaseResult {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("go.mod"), project_gomod()).unwrap();
    std::fs::write(app.join("main.go"), PROJECT_MAIN).unwrap();
    let gocache = root.join("gocache");
    if case.std_build_cache {
        let to = gocache.clone();
        tokio::task::spawn_blocking(move || copy_tree(std_build_cache(), &to))
            .await
            .unwrap();
    }
    let goproxy = if case.fallback {
        format!("{},{}", mode.goproxy, mode.fallback)
    } else {
        mode.goproxy.clone()
    };
    let mut env = base_env(root);
    env.push(("GOCACHE", gocache.display().to_string()));
    env.push(("GOPROXY", goproxy));
    env.extend(mode.env.iter().cloned());
    env.extend(case.env.iter().map(|(k, v)| (*k, v.to_string())));
    let norm = Normalizer {
        work: root.display().to_string(),
        goproxy: mode.goproxy.clone(),
        fallback: mode.fallback.clone(),
    };
    let mut steps = Vec::new();
    for step in &case.steps {
        let out = match &step.run {
            Run::Go(a) | Run::GoDownloadJson(a) => run(go_binary(), a, &app, &env).await,
            Run::Exec(program) => run(&app.join(program), &[], &app, &env).await,
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        steps.push(StepResult {
            exit: out.status.code(),
            stdout: match step.run {
                Run::GoDownloadJson(_) => norm.download_json(&stdout),
                _ => norm.text(&stdout),
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

/// Makes one mode's output comparable with another's. No timestamp needs
/// stripping: the only times go prints are the fixture's own (`.info`
/// Time), fixed, and compared as they are.
struct Normalizer {
    /// The case's private dir (GOPATH, GOMODCACHE, the project).
    work: String,
    goproxy: String,
    fallback: String,
}

impl Normalizer {
    fn text(&self, s: &str) -> String {
        s.replace(&self.work, "$WORK")
            .replace(&self.fallback, "$FALLBACK")
            .replace(&self.goproxy, "$GOPROXY")
    }

    /// stderr as sorted lines: go downloads in parallel and prints its
    /// `go: downloading` lines in the order they finish.
    fn stderr(&self, s: &str) -> String {
        let text = self.not_found(&self.text(s));
        let mut lines: Vec<&str> = text.lines().filter(|l| !is_server_response(l)).collect();
        lines.sort();
        lines.join("\n")
    }

    /// The words for "not here" differ by transport, not by proxy: a
    /// `file://` proxy gives "no such file or directory", HTTP gives "404
    /// Not Found" plus a `server response:` line with the server's own
    /// text. Both become "not found"; the server's text is dropped.
    fn not_found(&self, s: &str) -> String {
        s.replace(": no such file or directory", ": not found")
            .replace(": 404 Not Found", ": not found")
            .replace(": 410 Gone", ": not found")
    }

    /// A `mod download -json` stream: one line per module with Path,
    /// Version, Sum, GoModSum and Error.
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
            let error = self.not_found(&self.text(&field("Error")));
            let error: Vec<&str> = error.lines().filter(|l| !is_server_response(l)).collect();
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

fn is_server_response(line: &str) -> bool {
    line.trim_start().starts_with("server response:")
}

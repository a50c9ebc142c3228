//! The module cache (issue 10): builds that survive their upstreams going
//! down, verified against a real checksum database built from the go
//! toolchain's own sources, with single-flight, TTLs and staleness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::gotool::*;
use crate::sumdb::{SumdbServer, start_sumdb};
use crate::support::*;

pub(crate) const FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.0.0",
        payload: 0,
    },
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.1.0",
        payload: 3_000,
    },
    FixtureModule {
        path: "github.com/Upper/case-mod",
        version: "v0.2.0",
        payload: 300_000,
    },
    FixtureModule {
        path: "git.corp.test/team/private",
        version: "v1.0.0",
        payload: 0,
    },
];

pub(crate) const REQUIRES: &[(&str, &str)] = &[
    ("example.test/alpha", "v1.1.0"),
    ("github.com/Upper/case-mod", "v0.2.0"),
];

/// A plain-HTTP module proxy over a fixture tree, whose behaviour a test
/// changes while it runs; it counts requests per path.
pub(crate) struct Mirror {
    pub(crate) addr: SocketAddr,
    /// A status to answer everything with (0: serve the tree).
    pub(crate) status: Arc<AtomicU16>,
    /// Milliseconds to wait before sending a zip's body.
    pub(crate) zip_delay_ms: Arc<AtomicU64>,
    /// Milliseconds to wait before answering anything.
    pub(crate) head_delay_ms: Arc<AtomicU64>,
    /// Send only half of each zip (it declares the whole length).
    truncate_zips: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes to serve instead of the tree's, by path.
    pub(crate) replaced: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// A `Content-Encoding` for every 200, asked for or not: `gzip`
    /// compresses the body, any other is only named.
    encoding: Arc<Mutex<Option<&'static str>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    gone: tokio_util::sync::CancellationToken,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

impl Mirror {
    /// Every path asked so far (HEADs as `HEAD path`).
    pub(crate) fn paths(&self) -> Vec<String> {
        self.counts.lock().unwrap().keys().cloned().collect()
    }

    pub(crate) fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

pub(crate) async fn start_mirror(root: &Path) -> Mirror {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mirror = Mirror {
        addr,
        status: Arc::new(AtomicU16::new(0)),
        zip_delay_ms: Arc::new(AtomicU64::new(0)),
        head_delay_ms: Arc::new(AtomicU64::new(0)),
        truncate_zips: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        replaced: Arc::new(Mutex::new(HashMap::new())),
        encoding: Arc::new(Mutex::new(None)),
        counts: Arc::new(Mutex::new(HashMap::new())),
        gone: tokio_util::sync::CancellationToken::new(),
    };
    let (status, delay, head_delay, truncate, replaced, encoding, counts, gone) = (
        mirror.status.clone(),
        mirror.zip_delay_ms.clone(),
        mirror.head_delay_ms.clone(),
        mirror.truncate_zips.clone(),
        mirror.replaced.clone(),
        mirror.encoding.clone(),
        mirror.counts.clone(),
        mirror.gone.clone(),
    );
    let root = root.to_owned();
    tokio::spawn(gone.clone().run_until_cancelled_owned(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (status, delay, head_delay, truncate, replaced, encoding, counts, root) = (
                status.clone(),
                delay.clone(),
                head_delay.clone(),
                truncate.clone(),
                replaced.clone(),
                encoding.clone(),
                counts.clone(),
                root.clone(),
            );
            tokio::spawn(gone.clone().run_until_cancelled_owned(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let path = req.uri().path().to_owned();
                    let counted = if req.method() == http::Method::HEAD {
                        format!("HEAD {path}")
                    } else {
                        path.clone()
                    };
                    *counts.lock().unwrap().entry(counted).or_insert(0) += 1;
                    let forced = status.load(Ordering::SeqCst);
                    let replaced = replaced.lock().unwrap().get(&path).cloned();
                    let encoding = *encoding.lock().unwrap();
                    let (delay, truncate, root) = (delay.clone(), truncate.clone(), root.clone());
                    let head_delay = head_delay.load(Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(Duration::from_millis(head_delay)).await;
                        if forced != 0 {
                            let mut r = Response::new(full(format!("mirror says {forced}\n")));
                            *r.status_mut() = StatusCode::from_u16(forced).unwrap();
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let file = path.trim_start_matches('/');
                        let bytes =
                            replaced.or_else(|| std::fs::read(root.join(file)).ok().filter(|_| !file.contains("..")));
                        let Some(bytes) = bytes else {
                            let mut r = Response::new(full("not found\n"));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            return Ok(r);
                        };
                        if let Some(coding) = encoding {
                            // `broken-gzip`: labelled gzip, sent as it is.
                            let (bytes, coding) = match coding {
                                "gzip" => (gzip(&bytes), "gzip"),
                                "broken-gzip" => (bytes, "gzip"),
                                other => (bytes, other),
                            };
                            let mut r = Response::new(full(bytes));
                            r.headers_mut().insert("content-encoding", coding.parse().unwrap());
                            return Ok(r);
                        }
                        if !path.ends_with(".zip") {
                            return Ok(Response::new(full(bytes)));
                        }
                        let total = bytes.len();
                        let send = if truncate.load(Ordering::SeqCst) {
                            total / 2
                        } else {
                            total
                        };
                        let wait = delay.load(Ordering::SeqCst);
                        let (tx, body) = chan_body(1);
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            let _ = tx.send(Bytes::from(bytes[..send].to_vec())).await;
                        });
                        let mut r = Response::new(body);
                        r.headers_mut().insert("content-length", total.into());
                        Ok(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }));
        }
    }));
    mirror
}

/// A fixture tree, the checksum database over it, and a dir for modgate.
pub(crate) struct World {
    dir: tempfile::TempDir,
    sumdb: Option<SumdbServer>,
    sumdb_key: String,
    sumdb_addr: SocketAddr,
}

impl World {
    pub(crate) async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(&dir.path().join("fixture"), FIXTURE);
        let sumdb = start_sumdb(&dir.path().join("fixture")).await;
        World {
            sumdb_key: sumdb.key.to_string(),
            sumdb_addr: sumdb.addr,
            sumdb: Some(sumdb),
            dir,
        }
    }

    /// Stops the checksum database.
    fn sumdb_stop(&mut self) {
        self.sumdb = None;
    }

    fn sumdb(&self) -> &SumdbServer {
        self.sumdb.as_ref().expect("the sumdb runs")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn fixture(&self) -> PathBuf {
        self.path("fixture")
    }

    /// The sumdb's verifier key, for GOSUMDB.
    fn gosumdb(&self) -> String {
        self.sumdb_key.clone()
    }

    /// modgate's config: the cache in `cache/`, the sumdb, `extra`, and a
    /// rule mirroring everything on the endpoint from `mirror`.
    pub(crate) fn config(&self, mirror: &str, extra: &str) -> String {
        format!(
            "[cache]\ndir = \"cache\"\nlist_ttl = \"1h\"\n[sumdb]\nkey = \"{}\"\nurl = \"http://{}\"\nnosumdb = [\"git.corp.test/*\"]\n{extra}\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"{mirror}\"\n",
            self.gosumdb(),
            self.sumdb_addr
        )
    }

    pub(crate) async fn proxy(&self, config: &str) -> Proxy {
        let path = self.path("modgate.toml");
        std::fs::write(&path, config).unwrap();
        start_proxy_with(modgate::config::Config::parse(config, path.to_str().unwrap()).unwrap()).await
    }

    fn cached(&self, key: &str) -> bool {
        self.path("cache").join(key).is_file()
    }
}

/// Every file under `dir`, relative, for messages.
fn list_tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The go environment of a developer using modgate as GOPROXY, verifying
/// through it against the test database.
pub(crate) fn via_endpoint(proxy: &Proxy, world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("GOPROXY", format!("http://{}", proxy.addr)),
        ("GOSUMDB", world.gosumdb()),
        ("GONOSUMDB", "git.corp.test".into()),
    ]
}

pub(crate) async fn endpoint_get(proxy: SocketAddr, path: &str) -> (u16, http::HeaderMap, Bytes) {
    let mut conn = ProxyConn::open(proxy).await;
    let resp = conn
        .send(Request::get(path).header("host", "modgate").body(full("")).unwrap())
        .await;
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, headers, body)
}

/// The embedded default's rules (`modules = ["*"]` to a mirror, then
/// `default` direct, here behind a narrower `modules` rule): go's
/// `supported`, `latest` and tile requests name no module, yet they are
/// module traffic for the `*` rule, so go verifies through modgate. The
/// database's name (sum.test) does not resolve, so go could not have
/// asked it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_rule_shape_go_reaches_the_checksum_database_through_modgate() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let all = format!(
        "[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        mirror.addr
    );
    let rules = format!(
        "[[rule]]\nname = \"corp\"\nmodules = [\"corp.example/*\"]\naction = \"block\"\n[[rule]]\nname = \"modules\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"http://{}\"\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
        mirror.addr
    );
    let config = world
        .config(&format!("http://{}", mirror.addr), "")
        .replace(&all, &rules);
    assert!(config.contains("name = \"default\""), "{config}");
    let proxy = world.proxy(&config).await;
    assert_eq!(endpoint_get(proxy.addr, "/sumdb/sum.test/supported").await.0, 200);
    let run = GoProject::new(REQUIRES).download(&via_endpoint(&proxy, &world)).await;
    run.assert_ok();
    assert_eq!(run.modules.len(), REQUIRES.len(), "{}", run.output());
    assert!(
        world.path("cache/sumdb/sum.test/tile").is_dir(),
        "tiles came through modgate"
    );
    proxy.stop().await;
}

/// Warm through the endpoint, then stop every upstream: a fresh go
/// module cache downloads the same project again, and go verifies every
/// module against the checksum database through modgate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_serves_go_when_every_upstream_is_down() {
    let mut world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let first = GoProject::new(REQUIRES);
    let online = first.download(&via_endpoint(&proxy, &world)).await;
    online.assert_ok();
    assert_eq!(online.modules.len(), REQUIRES.len(), "{}", online.output());
    assert!(world.cached("github.com/!upper/case-mod/@v/v0.2.0.zip"));
    let lookup = "sumdb/sum.test/lookup/github.com/!upper/case-mod@v0.2.0";
    assert!(
        world.cached(lookup),
        "go's sumdb traffic is cached too: {:?}",
        list_tree(&world.path("cache"))
    );
    drop(mirror);
    world.sumdb_stop();
    let second = GoProject::new(REQUIRES);
    let offline = second.download(&via_endpoint(&proxy, &world)).await;
    offline.assert_ok();
    assert_eq!(offline.modules, online.modules, "the same hashes, offline");
    proxy.stop().await;
}

/// The same through an intercepted proxy.golang.org: go asks the
/// intercepted host for the sumdb too, and modgate answers from its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_serves_go_through_an_intercepted_tunnel() {
    let mut world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let extra = "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\"]\n";
    let config = world.config(&format!("http://{}", mirror.addr), extra);
    std::fs::write(world.path("modgate.toml"), &config).unwrap();
    let modgate = |args: &[&str]| {
        std::process::Command::new(modgate_bin())
            .args(args)
            .current_dir(world.dir.path())
            .output()
            .unwrap()
    };
    assert!(modgate(&["ca", "init", "--config", "modgate.toml"]).status.success());
    let bundle = modgate(&["ca", "bundle", "--config", "modgate.toml"]);
    std::fs::write(world.path("bundle.pem"), bundle.stdout).unwrap();
    let proxy = world.proxy(&config).await;
    let env = vec![
        ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
        ("SSL_CERT_FILE", world.path("bundle.pem").display().to_string()),
        ("GOPROXY", "https://proxy.golang.org".into()),
        ("GOSUMDB", world.gosumdb()),
    ];
    let online = GoProject::new(REQUIRES).download(&env).await;
    online.assert_ok();
    assert_eq!(online.modules.len(), REQUIRES.len());
    drop(mirror);
    world.sumdb_stop();
    let offline = GoProject::new(REQUIRES).download(&env).await;
    offline.assert_ok();
    assert_eq!(offline.modules, online.modules);
    proxy.stop().await;
}

/// `modgate cache warm --config modgate.toml ARG` in the world's directory.
fn cache_warm(world: &World, arg: &str) -> std::process::Output {
    std::process::Command::new(modgate_bin())
        .args(["cache", "warm", "--config", "modgate.toml", arg])
        .current_dir(world.dir.path())
        .output()
        .unwrap()
}

/// `cache warm` from a go.sum, then offline: go downloads everything
/// through modgate with nothing upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_warm_from_a_go_sum_then_offline() {
    let mut world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world.config(&format!("http://{}", mirror.addr), "");
    std::fs::write(world.path("modgate.toml"), &config).unwrap();
    // A go.sum as go writes it, from a download straight from the fixture.
    let direct = GoProject::new(REQUIRES)
        .download(&[("GOPROXY", format!("file://{}", world.fixture().display()))])
        .await;
    direct.assert_ok();
    let mut sum = String::new();
    for (m, (h1, gomod, _)) in &direct.modules {
        let (path, version) = m.split_once('@').unwrap();
        sum.push_str(&format!("{path} {version} {h1}\n{path} {version}/go.mod {gomod}\n"));
    }
    std::fs::write(world.path("go.sum"), sum).unwrap();
    let warm = cache_warm(&world, "go.sum");
    let stdout = String::from_utf8_lossy(&warm.stdout);
    assert!(
        warm.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&warm.stderr)
    );
    assert!(stdout.starts_with("warmed 2 module versions"), "{stdout}");
    drop(mirror);
    world.sumdb_stop();
    let proxy = world.proxy(&config).await;
    let offline = GoProject::new(REQUIRES).download(&via_endpoint(&proxy, &world)).await;
    offline.assert_ok();
    assert_eq!(offline.modules, direct.modules);
    proxy.stop().await;
    // A failure is listed and exits 1.
    let warm = cache_warm(&world, "example.test/missing@v9.9.9");
    assert_eq!(warm.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&warm.stdout).contains("failed:  example.test/missing@v9.9.9"));

    // The mirror answers, the checksum database does not: the module files
    // are stored and said to be, the missing records are named, exit 1.
    let mirror = start_mirror(&world.fixture()).await;
    let config = world.config(&format!("http://{}", mirror.addr), "");
    std::fs::write(world.path("modgate.toml"), &config).unwrap();
    let _ = std::fs::remove_dir_all(world.path("cache"));
    let warm = cache_warm(&world, "go.sum");
    let stdout = String::from_utf8_lossy(&warm.stdout);
    assert_eq!(warm.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("warmed 0 module versions")
            && stdout.contains("2 without checksum records, 0 blocked, 0 failed"),
        "{stdout}"
    );
    for (module, _) in REQUIRES {
        assert!(
            stdout.contains(&format!("no checksum records (module files stored): {module}@")),
            "{stdout}"
        );
    }
    let zips = std::fs::read_dir(world.path("cache/example.test"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(zips > 0, "the module files are in the cache: {stdout}");
}

/// `list` is kept for `list_ttl`, asked again after it, and served stale
/// when the mirror fails.
#[tokio::test]
async fn lists_honour_list_ttl_and_go_stale_when_the_upstream_fails() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world
        .config(&format!("http://{}", mirror.addr), "")
        .replace("list_ttl = \"1h\"", "list_ttl = \"400ms\"");
    let proxy = world.proxy(&config).await;
    let list = "/example.test/alpha/@v/list";
    let (status, headers, body) = endpoint_get(proxy.addr, list).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert_eq!(body, "v1.0.0\nv1.1.0\n");
    let (_, headers, _) = endpoint_get(proxy.addr, list).await;
    assert_eq!(headers["x-cache"], "hit");
    assert_eq!(mirror.count(list), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, headers, _) = endpoint_get(proxy.addr, list).await;
    assert_eq!(headers["x-cache"], "miss", "asked again after list_ttl");
    assert_eq!(mirror.count(list), 2);
    mirror.status.store(500, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, headers, body) = endpoint_get(proxy.addr, list).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "stale"));
    assert_eq!(body, "v1.0.0\nv1.1.0\n");
    assert_eq!(mirror.count(list), 3, "the upstream was tried first");
    // A 404 is an answer, remembered, not a failure to go stale on.
    mirror.status.store(0, Ordering::SeqCst);
    let missing = "/example.test/nothing/@v/list";
    assert_eq!(endpoint_get(proxy.addr, missing).await.0, 404);
    assert_eq!(endpoint_get(proxy.addr, missing).await.0, 404);
    assert_eq!(mirror.count(missing), 1, "remembered for negative_ttl");
    proxy.stop().await;
}

/// 100 concurrent requests for one uncached zip: one upstream fetch, and
/// every body identical (they stream from the one fetch as it arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_concurrent_requests_cause_one_upstream_fetch() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    mirror.zip_delay_ms.store(500, Ordering::SeqCst);
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let zip = "/github.com/!upper/case-mod/@v/v0.2.0.zip";
    let want = std::fs::read(world.fixture().join(zip.trim_start_matches('/'))).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move { endpoint_get(addr, zip).await }));
    }
    let mut statuses = HashMap::new();
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(body == want, "every body is the zip");
        // The miss says what a hit says, whatever the mirror said.
        assert_eq!(headers["content-type"], "application/zip", "{headers:?}");
        *statuses
            .entry(headers["x-cache"].to_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(mirror.count(zip), 1, "exactly one upstream request: {statuses:?}");
    assert_eq!(statuses.get("miss"), Some(&1), "{statuses:?}");
    assert!(world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// A zip the upstream cuts short reaches no client whole, is not cached,
/// and is fetched again next time.
#[tokio::test]
async fn a_truncated_zip_is_not_cached() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    mirror.truncate_zips.store(true, Ordering::SeqCst);
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let want = std::fs::read(world.fixture().join(zip.trim_start_matches('/'))).unwrap();
    let (_, _, body) = endpoint_get(proxy.addr, zip).await;
    assert!(body.len() < want.len(), "the client never gets it whole");
    assert!(!world.cached(zip.trim_start_matches('/')));
    mirror.truncate_zips.store(false, Ordering::SeqCst);
    let (status, headers, body) = endpoint_get(proxy.addr, zip).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert!(body == want);
    assert_eq!(mirror.count(zip), 2);
    assert!(world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// A `.info` that `go` would refuse (not JSON, another version, too large)
/// is the mirror's failure: a 502 naming it, nothing cached, and after `|`
/// the next mirror's good answer is served and cached.
#[tokio::test]
async fn a_bad_info_is_refused_not_cached_and_the_next_mirror_answers() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    let info = "/example.test/alpha/@v/v1.1.0.info";
    let want = std::fs::read(world.fixture().join(info.trim_start_matches('/'))).unwrap();
    let answers: [(Vec<u8>, &str); 4] = [
        (br#"{"Version": "v1.1.0", "Time": "#.to_vec(), "not JSON"),
        (
            br#"{"Version":"v9.9.9","Time":"2024-01-02T03:04:05Z"}"#.to_vec(),
            "it is for version v9.9.9, not v1.1.0",
        ),
        (
            br#"{"Version":"v1.1.0","Time":"last week"}"#.to_vec(),
            "is not an RFC 3339 time",
        ),
        (vec![b' '; 200 * 1024], "larger than 64 KiB"),
    ];
    let proxy = world.proxy(&world.config(&format!("http://{}", bad.addr), "")).await;
    for (answer, why) in answers {
        bad.replaced.lock().unwrap().insert(info.into(), answer);
        let what = ".info of example.test/alpha@v1.1.0: ";
        assert_refused_as_bad(&world, proxy.addr, bad.addr, info, what, why).await;
    }
    proxy.stop().await;
    assert_the_next_mirror_serves(&world, &bad, &good, info, want).await;
}

/// `path` from `proxy`, whose only mirror, at `bad`, answers it badly: a
/// 502 naming the mirror and `what` (the file) and saying `why`, and
/// nothing cached.
async fn assert_refused_as_bad(world: &World, proxy: SocketAddr, bad: SocketAddr, path: &str, what: &str, why: &str) {
    let (status, _, body) = endpoint_get(proxy, path).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    let named = format!("modgate: upstream http://{bad} sent a bad answer: {what}");
    assert!(body.starts_with(&named), "{body}");
    assert!(body.contains(why), "{body}");
    assert!(!world.cached(path.trim_start_matches('/')));
}

/// With `bad|good` as the list, `path` is `good`'s `want`: served as a
/// miss after `bad`'s bad answer, cached, then a hit.
async fn assert_the_next_mirror_serves(world: &World, bad: &Mirror, good: &Mirror, path: &str, want: Vec<u8>) {
    let list = format!("http://{}|http://{}", bad.addr, good.addr);
    let proxy = world.proxy(&world.config(&list, "")).await;
    let (status, headers, body) = endpoint_get(proxy.addr, path).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert_eq!(body, want);
    assert_eq!(good.count(path), 1);
    assert!(world.cached(path.trim_start_matches('/')));
    let (status, headers, body) = endpoint_get(proxy.addr, path).await;
    assert_eq!(
        (status, headers["x-cache"].to_str().unwrap(), body),
        (200, "hit", Bytes::from(want))
    );
    proxy.stop().await;
}

/// A mirror that sends a zip's head and then nothing has not answered: a
/// 504 at the header timeout (not a client left waiting for a head),
/// nothing cached, and after `|` the next mirror's zip is served.
#[tokio::test]
async fn a_mirror_whose_body_never_starts_times_out_and_the_next_mirror_answers() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    bad.zip_delay_ms.store(600_000, Ordering::SeqCst);
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let want = std::fs::read(world.fixture().join(zip.trim_start_matches('/'))).unwrap();
    let timeouts = "[timeouts]\nheader = \"1s\"\n";
    let proxy = world
        .proxy(&world.config(&format!("http://{}", bad.addr), timeouts))
        .await;
    let asked = std::time::Instant::now();
    let (status, _, body) = endpoint_get(proxy.addr, zip).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body,
        format!("modgate: upstream http://{} did not answer within 1s\n", bad.addr)
    );
    assert!(asked.elapsed() < Duration::from_secs(10), "{:?}", asked.elapsed());
    assert!(!world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
    let list = format!("http://{}|http://{}", bad.addr, good.addr);
    let proxy = world.proxy(&world.config(&list, timeouts)).await;
    let (status, headers, body) = endpoint_get(proxy.addr, zip).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert_eq!(body, want);
    assert!(world.cached(zip.trim_start_matches('/')));
    assert_eq!((bad.count(zip), good.count(zip)), (2, 1));
    proxy.stop().await;
}

/// `data` gzipped, as a static host serves it.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A mirror that gzips every answer although modgate asked for none:
/// `go` gets every file plain through modgate, the same hashes as from the
/// tree itself; each is verified and cached plain, and served plain again
/// from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_gzips_every_answer_is_decoded_verified_and_cached_plain() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    *mirror.encoding.lock().unwrap() = Some("gzip");
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let through = GoProject::new(REQUIRES).download(&via_endpoint(&proxy, &world)).await;
    through.assert_ok();
    let direct = GoProject::new(REQUIRES)
        .download(&[("GOPROXY", format!("file://{}", world.fixture().display()))])
        .await;
    direct.assert_ok();
    assert_eq!(through.modules, direct.modules, "the same files as the tree's");
    assert!(mirror.count("/github.com/!upper/case-mod/@v/v0.2.0.zip") >= 1);
    for file in ["list", "v0.2.0.info", "v0.2.0.mod", "v0.2.0.zip"] {
        let key = format!("github.com/!upper/case-mod/@v/{file}");
        let plain = std::fs::read(world.fixture().join(&key)).unwrap();
        if file != "list" {
            assert_eq!(
                std::fs::read(world.path("cache").join(&key)).unwrap(),
                plain,
                "{key} is cached plain"
            );
        }
        let (status, headers, body) = endpoint_get(proxy.addr, &format!("/{key}")).await;
        assert_eq!(status, 200, "{key}");
        assert!(headers.get("content-encoding").is_none(), "{key}: {headers:?}");
        assert_eq!(body, plain, "{key} is served plain");
    }
    proxy.stop().await;
}

/// A coding modgate cannot decode (`br`) is the mirror's bad answer, named;
/// nothing is cached, and after `|` the next mirror answers.
#[tokio::test]
async fn an_answer_in_a_coding_modgate_cannot_decode_is_refused_and_the_next_mirror_answers() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    *bad.encoding.lock().unwrap() = Some("br");
    let go_mod = "/example.test/alpha/@v/v1.1.0.mod";
    let want = std::fs::read(world.fixture().join(go_mod.trim_start_matches('/'))).unwrap();
    let proxy = world.proxy(&world.config(&format!("http://{}", bad.addr), "")).await;
    let what = ".mod of example.test/alpha@v1.1.0: it came with Content-Encoding 'br'";
    let why = "which modgate did not ask for and does not decode";
    assert_refused_as_bad(&world, proxy.addr, bad.addr, go_mod, what, why).await;
    proxy.stop().await;
    assert_the_next_mirror_serves(&world, &bad, &good, go_mod, want).await;
}

/// `cache verify` finds what was damaged where modgate could not see it
/// (here, while it was stopped): a cut zip, a go.mod with other valid
/// content (caught by the checksum-database record the cache keeps), an
/// empty .info. `--remove` takes them out, and the next request fetches
/// them whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_verify_finds_damage_done_while_stopped_and_removes_it() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world.config(&format!("http://{}", mirror.addr), "");
    let proxy = world.proxy(&config).await;
    let files = ["v1.0.0.info", "v1.0.0.mod", "v1.0.0.zip", "v1.1.0.zip"];
    for file in files {
        let path = format!("/example.test/alpha/@v/{file}");
        assert_eq!(endpoint_get(proxy.addr, &path).await.0, 200, "{path}");
    }
    proxy.stop().await;
    let verify = |args: &[&str]| {
        let out = std::process::Command::new(modgate_bin())
            .args(["cache", "verify", "--config", "modgate.toml"])
            .args(args)
            .current_dir(world.dir.path())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("checked 4 module files (3 against a kept sum.test record)"),
        "{text}"
    );
    let cached = |file: &str| world.path("cache").join(format!("example.test/alpha/@v/{file}"));
    let zip = std::fs::read(cached("v1.1.0.zip")).unwrap();
    std::fs::write(cached("v1.1.0.zip"), &zip[..zip.len() / 2]).unwrap();
    let mut go_mod = std::fs::read(cached("v1.0.0.mod")).unwrap();
    go_mod.extend_from_slice(b"\nrequire evil.test/x v1.0.0\n");
    std::fs::write(cached("v1.0.0.mod"), &go_mod).unwrap();
    std::fs::write(cached("v1.0.0.info"), b"").unwrap();
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(1), "{text}");
    for line in [
        "bad example.test/alpha/@v/v1.1.0.zip: not a module zip go would accept",
        "bad example.test/alpha/@v/v1.0.0.mod: checksum mismatch: it hashes to h1:",
        "bad example.test/alpha/@v/v1.0.0.info: not the .info go reads",
        ": 3 bad",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let (code, text) = verify(&["--remove"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!cached("v1.1.0.zip").exists() && !cached("v1.0.0.mod").exists());
    assert_eq!(verify(&[]).0, Some(0));
    let proxy = world.proxy(&config).await;
    let (status, headers, body) = endpoint_get(proxy.addr, "/example.test/alpha/@v/v1.1.0.zip").await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert!(body == zip, "fetched whole again");
    proxy.stop().await;
}

/// An `@latest` (or a query's `.info`) names the version it resolved to,
/// and go keeps it as that version's `.info`: modgate keeps it under that
/// name too, so with every upstream down the version's `.info` is still a
/// hit, and a real one already kept is never replaced.
#[tokio::test]
async fn a_resolved_latest_is_kept_as_the_versions_own_info() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    // go reads the last member whose name folds to `Version`: v1.1.0.
    let info = br#"{"Version":"v0.9.0","version":"v1.1.0","Time":"2024-01-02T03:04:05Z"}"#.to_vec();
    let query = br#"{"Version":"v1.0.0","Time":"2023-01-02T03:04:05Z"}"#.to_vec();
    mirror
        .replaced
        .lock()
        .unwrap()
        .insert("/example.test/alpha/@latest".into(), info.clone());
    mirror
        .replaced
        .lock()
        .unwrap()
        .insert("/example.test/alpha/@v/main.info".into(), query.clone());
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    // v1.0.0's own .info first: the query's answer does not replace it.
    let (status, _, own) = endpoint_get(proxy.addr, "/example.test/alpha/@v/v1.0.0.info").await;
    assert_eq!(status, 200);
    assert_ne!(own, query);
    assert_eq!(endpoint_get(proxy.addr, "/example.test/alpha/@latest").await.0, 200);
    assert_eq!(
        endpoint_get(proxy.addr, "/example.test/alpha/@v/main.info").await.0,
        200
    );
    assert!(world.cached("example.test/alpha/@v/v1.1.0.info"));
    assert!(
        !world.cached("example.test/alpha/@v/v0.9.0.info"),
        "read as go reads it"
    );
    mirror.status.store(503, Ordering::SeqCst);
    for (version, want) in [("v1.1.0", info), ("v1.0.0", own.to_vec())] {
        let (status, headers, body) = endpoint_get(proxy.addr, &format!("/example.test/alpha/@v/{version}.info")).await;
        assert_eq!(
            (status, headers["x-cache"].to_str().unwrap()),
            (200, "hit"),
            "{version}"
        );
        assert_eq!(body, want, "{version}");
    }
    proxy.stop().await;
}

/// An answer labelled gzip that does not decode is that answer's fault,
/// not the mirror being down: however many come, the mirror is still
/// asked, each a 502 naming why, and the next mirror answers after `|`.
#[tokio::test]
async fn answers_that_do_not_decode_never_mark_the_mirror_down() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    *bad.encoding.lock().unwrap() = Some("broken-gzip");
    let extra = format!("[mirror.\"http://{}\"]\nmax_fails = 1\n", bad.addr);
    let proxy = world
        .proxy(&world.config(&format!("http://{}", bad.addr), &extra))
        .await;
    for _ in 0..3 {
        let info = "/example.test/alpha/@v/v1.1.0.info";
        let (status, _, body) = endpoint_get(proxy.addr, info).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 502, "{text}");
        assert!(text.contains("does not decode"), "{text}");
        assert!(!text.contains("marked down"), "{text}");
    }
    assert_eq!(bad.count("/example.test/alpha/@v/v1.1.0.info"), 3, "asked every time");
    proxy.stop().await;
}

/// An error page served with a 200 as a zip does not start as a zip: it
/// is refused before a byte goes out (a 502 naming why, whether or not a
/// checksum database could vouch), never cached, and after `|` the next
/// mirror's zip is served.
#[tokio::test]
async fn a_zip_that_does_not_start_as_a_zip_is_refused_at_once_and_the_next_mirror_answers() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let want = std::fs::read(world.fixture().join(zip.trim_start_matches('/'))).unwrap();
    let page = b"<html><body>Sign in to continue</body></html>\n";
    bad.replaced.lock().unwrap().insert(zip.into(), page.to_vec());
    let proxy = world
        .proxy(&world.config(&format!("http://{}", bad.addr), "verify = false"))
        .await;
    let what = ".zip of example.test/alpha@v1.1.0: it is not a zip (it starts with \"<html><body>Sign in to";
    assert_refused_as_bad(&world, proxy.addr, bad.addr, zip, what, "so go would refuse it").await;
    proxy.stop().await;
    assert_the_next_mirror_serves(&world, &bad, &good, zip, want).await;
}

/// With `sumdb.verify = false` there is no hash to compare, but a zip that
/// is no module zip (here one that only starts like a zip) is still
/// refused: the client never gets it whole, it is not cached, and once the
/// mirror serves the real zip that is served and cached.
#[tokio::test]
async fn without_verification_a_zip_that_is_no_zip_is_refused_and_not_cached() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let page = b"PK\x03\x04<html><body>503 Service Unavailable</body></html>\n".to_vec();
    mirror.replaced.lock().unwrap().insert(zip.into(), page.clone());
    let config = world.config(&format!("http://{}", mirror.addr), "verify = false");
    let proxy = world.proxy(&config).await;
    let (status, _, body) = endpoint_get(proxy.addr, zip).await;
    // It arrived whole in the read-ahead, so it is checked before the head
    // goes out: a 502 naming why, every time.
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains(&format!(
            "upstream http://{} sent a bad answer: .zip of example.test/alpha@v1.1.0: it is not a module zip go would accept",
            mirror.addr
        )),
        "{text}"
    );
    assert!(!world.cached(zip.trim_start_matches('/')));
    mirror.replaced.lock().unwrap().clear();
    let want = std::fs::read(world.fixture().join(zip.trim_start_matches('/'))).unwrap();
    let (status, headers, body) = endpoint_get(proxy.addr, zip).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert!(body == want);
    assert!(world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// A `.mod` with no module statement (a login page served with a 200) is
/// the mirror's failure even where no checksum database vouches for it (a
/// `nosumdb` module): a 502 naming it, nothing cached, and after `|` the
/// next mirror's go.mod is served and cached.
#[tokio::test]
async fn a_mod_without_a_module_line_is_refused_not_cached_and_the_next_mirror_answers() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    let go_mod = "/git.corp.test/team/private/@v/v1.0.0.mod";
    let want = std::fs::read(world.fixture().join(go_mod.trim_start_matches('/'))).unwrap();
    let login = b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n";
    bad.replaced.lock().unwrap().insert(go_mod.into(), login.to_vec());
    let proxy = world.proxy(&world.config(&format!("http://{}", bad.addr), "")).await;
    let what = ".mod of git.corp.test/team/private@v1.0.0: it has no module line, so go would refuse it";
    let why = "(\"missing module line\")";
    assert_refused_as_bad(&world, proxy.addr, bad.addr, go_mod, what, why).await;
    proxy.stop().await;
    assert_the_next_mirror_serves(&world, &bad, &good, go_mod, want).await;
    assert_eq!(bad.count(go_mod), 2);
}

/// A valid zip or go.mod whose hash is not the checksum database's record
/// is refused and not cached. Small ones arrive whole before the head goes
/// out, so the refusal is a 502 naming the mirror and both hashes, every
/// time, and after `|` the next mirror's honest file is served and cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_module_files_are_refused_and_not_cached() {
    let world = World::new().await;
    let bad = start_mirror(&world.fixture()).await;
    let good = start_mirror(&world.fixture()).await;
    // The mirror serves other valid content under alpha v1.0.0's name.
    let tampered_zip = {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(
            dir.path(),
            &[FixtureModule {
                path: "example.test/alpha",
                version: "v1.0.0",
                payload: 777,
            }],
        );
        std::fs::read(dir.path().join("example.test/alpha/@v/v1.0.0.zip")).unwrap()
    };
    let zip = "/example.test/alpha/@v/v1.0.0.zip";
    let gomod = "/example.test/alpha/@v/v1.0.0.mod";
    let honest = |path: &str| std::fs::read(world.fixture().join(path.trim_start_matches('/'))).unwrap();
    let mut evil_mod = honest(gomod);
    evil_mod.extend_from_slice(b"\nrequire evil.test/x v1.0.0\n");
    bad.replaced.lock().unwrap().insert(zip.into(), tampered_zip);
    bad.replaced.lock().unwrap().insert(gomod.into(), evil_mod);
    let proxy = world.proxy(&world.config(&format!("http://{}", bad.addr), "")).await;
    for (path, what) in [
        (
            zip,
            ".zip of example.test/alpha@v1.0.0: checksum mismatch for the zip of example.test/alpha@v1.0.0: it hashes to h1:",
        ),
        (
            gomod,
            ".mod of example.test/alpha@v1.0.0: checksum mismatch for the go.mod of example.test/alpha@v1.0.0: it hashes to h1:",
        ),
    ] {
        assert_refused_as_bad(&world, proxy.addr, bad.addr, path, what, ", but sum.test says h1:").await;
    }
    assert_eq!(proxy.refused(), 2, "each refusal is counted");
    proxy.stop().await;
    assert_the_next_mirror_serves(&world, &bad, &good, zip, honest(zip)).await;
    assert_the_next_mirror_serves(&world, &bad, &good, gomod, honest(gomod)).await;
    // A rule that bypasses the cache still gets checked small files.
    let list = format!("http://{}|http://{}", bad.addr, good.addr);
    let bypass = world.config(&list, "").replace(
        &format!("mirrors = \"{list}\"\n"),
        &format!("mirrors = \"{list}\"\ncache = false\n"),
    );
    assert!(bypass.contains("cache = false"), "{bypass}");
    let proxy = world.proxy(&bypass).await;
    for path in [zip, gomod] {
        let (status, headers, body) = endpoint_get(proxy.addr, path).await;
        assert_eq!(
            (status, headers["x-cache"].to_str().unwrap()),
            (200, "bypass"),
            "{path}"
        );
        assert!(body == honest(path), "{path}: the honest file, from the next mirror");
    }
    proxy.stop().await;
}

/// A tampered zip too big to arrive before its head goes out is checked
/// once it is whole: the client's download is cut short of its length, so
/// go never sees it whole, and nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_tampered_zip_is_cut_short_and_not_cached() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let zip = "/example.test/alpha/@v/v1.0.0.zip";
    // A valid module zip, stored, of bytes that do not compress: well past
    // the 64 KiB read-ahead.
    let big = {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("example.test/alpha@v1.0.0/go.mod", stored).unwrap();
        zip.write_all(b"module example.test/alpha\n").unwrap();
        zip.start_file("example.test/alpha@v1.0.0/blob.bin", stored).unwrap();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..(400 * 1024 / 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            zip.write_all(&x.to_le_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    };
    assert!(big.len() > 256 * 1024, "{}", big.len());
    mirror.replaced.lock().unwrap().insert(zip.into(), big.clone());
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let (status, _, body) = endpoint_get(proxy.addr, zip).await;
    assert_eq!(status, 200);
    assert!(body.len() < big.len(), "the tampered zip never arrives whole");
    assert!(!world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// A checksum database whose tree no longer extends the one modgate saw
/// (a fork) is refused: nothing verified against it is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_checksum_database_is_refused() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    assert_eq!(
        endpoint_get(proxy.addr, "/example.test/alpha/@v/v1.0.0.mod").await.0,
        200
    );
    assert!(world.cached("example.test/alpha/@v/v1.0.0.mod"));
    world.sumdb().control("/_control/fork").await;
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let (_, _, body) = endpoint_get(proxy.addr, zip).await;
    let want = std::fs::metadata(world.fixture().join(zip.trim_start_matches('/')))
        .unwrap()
        .len();
    assert!((body.len() as u64) < want, "refused after the fork");
    assert!(!world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// A module the database cannot know (`nosumdb`) is trusted on first use;
/// different content for the same version later is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nosumdb_module_whose_content_changes_is_refused() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let zip = "/git.corp.test/team/private/@v/v1.0.0.zip";
    assert_eq!(endpoint_get(proxy.addr, zip).await.0, 200);
    assert!(world.cached(zip.trim_start_matches('/')));
    // The cached copy goes; the upstream now has other content.
    let rm = std::process::Command::new(modgate_bin())
        .args(["cache", "rm", "--config", "modgate.toml", "git.corp.test/*"])
        .current_dir(world.dir.path())
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
    assert!(!world.cached(zip.trim_start_matches('/')));
    let changed = {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(
            dir.path(),
            &[FixtureModule {
                path: "git.corp.test/team/private",
                version: "v1.0.0",
                payload: 999,
            }],
        );
        std::fs::read(dir.path().join("git.corp.test/team/private/@v/v1.0.0.zip")).unwrap()
    };
    mirror.replaced.lock().unwrap().insert(zip.into(), changed.clone());
    let (_, _, body) = endpoint_get(proxy.addr, zip).await;
    assert!(body.len() < changed.len(), "changed content is refused");
    assert!(!world.cached(zip.trim_start_matches('/')));
    proxy.stop().await;
}

/// The same offline test with the cache in an S3 bucket, served by a local
/// S3 emulator (moto) that the suite installs and starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_s3_cache_serves_go_when_every_upstream_is_down() {
    let moto = crate::moto::start_moto();
    moto.create_bucket("gocache");
    let mut world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world
        .config(&format!("http://{}", mirror.addr), "")
        .replace("[cache]\ndir = \"cache\"", "[cache]\nurl = \"s3://gocache/modules\"");
    std::fs::write(world.path("modgate.toml"), &config).unwrap();
    let served = start_served_with_env(
        world.dir.path(),
        &["--config", "modgate.toml", "--listen", "127.0.0.1:0"],
        &moto.env(),
    )
    .await;
    let env = vec![
        ("GOPROXY", format!("http://{}", served.addr)),
        ("GOSUMDB", world.gosumdb()),
    ];
    let online = GoProject::new(REQUIRES).download(&env).await;
    online.assert_ok();
    let objects = moto.object_names("gocache");
    assert!(
        objects.contains(&"modules/github.com/!upper/case-mod/@v/v0.2.0.zip".to_owned()),
        "{objects:?}"
    );
    drop(mirror);
    world.sumdb_stop();
    let offline = GoProject::new(REQUIRES).download(&env).await;
    offline.assert_ok();
    assert_eq!(offline.modules, online.modules);
}

/// HEAD is answered with a head, never by fetching a body: from the cache
/// when the file is there, else with a HEAD upstream (issue 15).
#[tokio::test]
async fn head_requests_never_fetch_a_body() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let proxy = world.proxy(&world.config(&format!("http://{}", mirror.addr), "")).await;
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    let size = std::fs::metadata(world.fixture().join(zip.trim_start_matches('/')))
        .unwrap()
        .len();
    let head = |proxy: std::net::SocketAddr| async move {
        let mut conn = ProxyConn::open(proxy).await;
        let resp = conn
            .send(Request::head(zip).header("host", "modgate").body(full("")).unwrap())
            .await;
        let status = resp.status().as_u16();
        let length = resp.headers()["content-length"].to_str().unwrap().to_owned();
        let cache = resp.headers().get("x-cache").map(|v| v.to_str().unwrap().to_owned());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, length, cache, body.len())
    };
    let (status, length, cache, body) = head(proxy.addr).await;
    assert_eq!((status, length, body), (200, size.to_string(), 0));
    assert_eq!(cache.as_deref(), Some("bypass"));
    assert_eq!(
        (mirror.count(&format!("HEAD {zip}")), mirror.count(zip)),
        (1, 0),
        "a HEAD upstream, no GET"
    );
    assert!(!world.cached(zip.trim_start_matches('/')));
    // Once cached, a HEAD is answered from the cache.
    assert_eq!(endpoint_get(proxy.addr, zip).await.0, 200);
    let (status, length, cache, body) = head(proxy.addr).await;
    assert_eq!((status, length, body), (200, size.to_string(), 0));
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(mirror.count(&format!("HEAD {zip}")), 1);
    proxy.stop().await;
}

/// A 404 is remembered for the mirror list that answered it: a client
/// whose rule sends it to another list still gets that list's answer.
#[tokio::test]
async fn a_remembered_404_is_for_the_mirror_list_that_gave_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let empty = start_origin(Arc::new(|_req| {
        Box::pin(async move {
            let mut r = Response::new(full("not on this mirror\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        })
    }))
    .await;
    let only_empty = format!(
        "[[rule]]\nname = \"empty\"\nsrc = [\"127.0.0.2/32\"]\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        empty.addr
    );
    let proxy = world
        .proxy(&world.config(&format!("http://{}", mirror.addr), &only_empty))
        .await;
    let list = "/example.test/alpha/@v/list";
    let from_two = async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(proxy.addr).await.unwrap();
        s.write_all(format!("GET {list} HTTP/1.1\r\nHost: modgate\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let answer = from_two.await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let (status, headers, body) = endpoint_get(proxy.addr, list).await;
    assert_eq!((status, &body[..]), (200, &b"v1.0.0\nv1.1.0\n"[..]), "{headers:?}");
    assert_eq!(headers["x-cache"], "miss");
    proxy.stop().await;
}

/// A module file whose answer has no length (it ends when the mirror
/// closes the connection) would look whole if it were cut short: it is
/// served, but neither cached nor taken as the first sighting of a module
/// the checksum database does not cover, so a later whole answer is not
/// refused against it.
#[tokio::test]
async fn an_answer_without_a_length_is_served_but_not_kept_or_pinned() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unframed = listener.local_addr().unwrap();
    let _server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nmodule git.corp.test/lib\n")
                    .await;
            });
        }
    });
    let proxy = world.proxy(&world.config(&format!("http://{unframed}"), "")).await;
    let path = "/git.corp.test/lib/@v/v1.0.0.mod";
    for _ in 0..2 {
        let (status, headers, body) = endpoint_get(proxy.addr, path).await;
        assert_eq!((status, &body[..]), (200, &b"module git.corp.test/lib\n"[..]));
        assert_eq!(headers["x-cache"], "miss", "not kept");
    }
    assert!(!world.cached("git.corp.test/lib/@v/v1.0.0.mod"));
    let pins = list_tree(&world.path("cache"));
    assert!(!pins.iter().any(|p| p.ends_with(".mod.h1")), "{pins:?}");
    proxy.stop().await;
}

/// A checksum database that answers 200 with something that is not a
/// lookup or a tile (a login page, a tile cut short): refused, not kept
/// for good, so the real answer gets through once the database is fixed.
#[tokio::test]
async fn a_checksum_database_answer_that_is_not_one_is_refused_and_not_kept() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let garbage = start_origin(Arc::new(|_req| {
        Box::pin(async move { Response::new(full("<html>please log in</html>\n")) })
    }))
    .await;
    let config = world.config(&format!("http://{}", mirror.addr), "").replace(
        &format!("url = \"http://{}\"", world.sumdb_addr),
        &format!("url = \"http://{}\"", garbage.addr),
    );
    assert!(config.contains(&garbage.addr.to_string()), "{config}");
    let proxy = world.proxy(&config).await;
    for path in [
        "sumdb/sum.test/lookup/github.com/!upper/case-mod@v0.2.0",
        "sumdb/sum.test/tile/8/0/000",
        "sumdb/sum.test/tile/8/0/000.p/3",
        "sumdb/sum.test/tile/8/data/000",
    ] {
        // A 502, or (when the head had gone out with the first bytes) a
        // body cut off before its end: never the page, whole.
        let (status, _, body) = endpoint_get(proxy.addr, &format!("/{path}")).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            (status == 502 && text.contains("not served complete and not cached"))
                || (status == 200 && body.is_empty()),
            "{path}: {status} {text}"
        );
        assert!(!world.cached(path), "{path}: {:?}", list_tree(&world.path("cache")));
        // Nothing kept: asked again, it is not a hit (a miss, or the first
        // fetch's failure when it joined that before it settled).
        let (_, again, _) = endpoint_get(proxy.addr, &format!("/{path}")).await;
        let again = again.get("x-cache").map(|v| v.to_str().unwrap().to_owned());
        assert_ne!(again.as_deref(), Some("hit"), "{path}");
    }
    proxy.stop().await;
}

/// A checksum database that does not answer costs the header timeout
/// once, not once per module file: it is not asked again for a while, and
/// meanwhile module files are served at once, unverified and not cached.
#[tokio::test]
async fn a_silent_checksum_database_is_waited_for_once_not_per_file() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let (silent, _task) = start_silent_origin().await;
    let config = world
        .config(&format!("http://{}", mirror.addr), "[timeouts]\nheader = \"1s\"\n")
        .replace(
            &format!("url = \"http://{}\"", world.sumdb_addr),
            &format!("url = \"http://{silent}\""),
        );
    let proxy = world.proxy(&config).await;
    let started = std::time::Instant::now();
    let (status, _, _) = endpoint_get(proxy.addr, "/example.test/alpha/@v/v1.0.0.mod").await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    for path in [
        "/example.test/alpha/@v/v1.1.0.mod",
        "/github.com/!upper/case-mod/@v/v0.2.0.mod",
        "/github.com/!upper/case-mod/@v/v0.2.0.zip",
    ] {
        let asked = std::time::Instant::now();
        let (status, headers, _) = endpoint_get(proxy.addr, path).await;
        assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"), "{path}");
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{path}: {:?}",
            asked.elapsed()
        );
        assert!(
            !world.cached(path.trim_start_matches('/')),
            "{path}: unverified, not kept"
        );
    }
    proxy.stop().await;
}

/// A client that gives up on a mirror that never answers: with no one
/// left waiting, the fetch is dropped and its upstream connection closed
/// at once, not held until the header timeout.
#[tokio::test]
async fn a_fetch_no_client_waits_for_any_more_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung = listener.local_addr().unwrap();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let _server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                // Read the request and everything after it, answer nothing:
                // the read ends when modgate closes the connection.
                let mut buf = [0u8; 4096];
                while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                let _ = closed_tx.send(std::time::Instant::now());
            });
        }
    });
    let proxy = world
        .proxy(&world.config(&format!("http://{hung}"), "[timeouts]\nheader = \"20s\"\n"))
        .await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    client
        .write_all(b"GET /example.test/alpha/@v/v1.0.0.mod HTTP/1.1\r\nHost: modgate\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gave_up = std::time::Instant::now();
    drop(client);
    let closed = tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .expect("the upstream connection is closed within seconds, not at the 20 s header timeout")
        .unwrap();
    assert!(closed >= gave_up);
    proxy.stop().await;
}

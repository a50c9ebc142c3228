//! Fault injection (issue 14): a mirror that misbehaves on purpose, the
//! real go client, and `modgate serve` as users run it. Each test asserts
//! what the user sees (status, the `modgate:` line), what the access event
//! records, and that nothing bad is stored in the module cache.
//!
//! Faults covered elsewhere, with the same assertions, are listed in
//! docs/reliability.md rather than repeated here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gotool::*;
use crate::sumdb::{SumdbServer, start_sumdb};
use crate::support::*;

const ALPHA: (&str, &str) = ("example.test/alpha", "v1.1.0");
const BIG: (&str, &str) = ("example.test/big", "v1.0.0");

const FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.1.0",
        payload: 3_000,
    },
    FixtureModule {
        path: "example.test/big",
        version: "v1.0.0",
        payload: 4_000_000,
    },
];

/// How the mirror misbehaves for paths ending in a given suffix.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Declare the whole length, send `at` bytes, then reset (RST).
    ResetAt(usize),
    /// Declare the whole length, send `at` bytes, then close at once.
    CloseAt(usize),
    /// Declare 100 bytes more than the body, send the body, close.
    LongerLength,
    /// Declare 100 bytes less than the body, send the whole body, close.
    ShorterLength,
    /// Answer with this redirect status to the same path, forever.
    RedirectLoop(u16),
    /// Send the body one byte a second for `bytes` bytes, then stall.
    Trickle { bytes: usize },
    /// Send the body in 16 KiB pieces every 50 ms.
    Slow,
    /// Send half the body, pause for a second, then send the rest.
    PauseHalfway,
    /// Answer with this status and a one-line body instead.
    Status(u16),
}

/// A plain-HTTP GOPROXY over a fixture tree, one request per connection,
/// with faults by path suffix. It counts requests per path and notes when
/// a client went away before the body was sent.
struct FaultyMirror {
    addr: SocketAddr,
    faults: Arc<Mutex<Vec<(&'static str, Fault)>>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    /// Bodies whose reader went away before they were sent whole.
    abandoned: Arc<AtomicUsize>,
    /// Bodies sent whole.
    completed: Arc<AtomicUsize>,
}

impl FaultyMirror {
    async fn start(root: &Path) -> FaultyMirror {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mirror = FaultyMirror {
            addr: listener.local_addr().unwrap(),
            faults: Arc::default(),
            counts: Arc::default(),
            abandoned: Arc::default(),
            completed: Arc::default(),
        };
        let (faults, counts, abandoned, completed) = (
            mirror.faults.clone(),
            mirror.counts.clone(),
            mirror.abandoned.clone(),
            mirror.completed.clone(),
        );
        let root = root.to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (faults, counts, abandoned, completed, root) = (
                    faults.clone(),
                    counts.clone(),
                    abandoned.clone(),
                    completed.clone(),
                    root.clone(),
                );
                tokio::spawn(async move {
                    let Some(path) = read_request_path(&stream).await else {
                        return;
                    };
                    *counts.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let fault = faults
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|(suffix, _)| path.ends_with(suffix))
                        .map(|(_, f)| *f);
                    let file = root.join(path.trim_start_matches('/'));
                    let body = std::fs::read(&file).ok().filter(|_| !path.contains(".."));
                    match serve(stream, &path, body, fault).await {
                        Ok(true) => completed.fetch_add(1, Ordering::SeqCst),
                        Ok(false) => 0,
                        Err(_) => abandoned.fetch_add(1, Ordering::SeqCst),
                    };
                });
            }
        });
        mirror
    }

    fn set(&self, suffix: &'static str, fault: Fault) {
        self.faults.lock().unwrap().push((suffix, fault));
    }

    fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }

    fn count(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// Reads a request head; its path.
async fn read_request_path(mut stream: &TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        stream.readable().await.ok()?;
        match stream.try_read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
        let _ = &mut stream;
    }
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    line.split(' ').nth(1).map(str::to_owned)
}

/// Answers one request. `Ok(true)`: the body was sent as declared;
/// `Ok(false)`: a fault was delivered; `Err`: the reader went away.
async fn serve(mut s: TcpStream, path: &str, body: Option<Vec<u8>>, fault: Option<Fault>) -> std::io::Result<bool> {
    let Some(body) = body else {
        s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 10\r\nconnection: close\r\n\r\nnot found\n")
            .await?;
        return Ok(true);
    };
    let head = |len: usize| format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n");
    match fault {
        None => {
            s.write_all(head(body.len()).as_bytes()).await?;
            s.write_all(&body).await?;
            s.shutdown().await?;
            Ok(true)
        }
        Some(Fault::ResetAt(at)) => {
            s.write_all(head(body.len()).as_bytes()).await?;
            s.write_all(&body[..at.min(body.len())]).await?;
            s.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // A linger of zero makes the close a reset.
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            drop(s);
            Ok(false)
        }
        Some(Fault::CloseAt(at)) => {
            s.write_all(head(body.len()).as_bytes()).await?;
            s.write_all(&body[..at.min(body.len())]).await?;
            s.shutdown().await?;
            Ok(false)
        }
        Some(Fault::LongerLength) => {
            s.write_all(head(body.len() + 100).as_bytes()).await?;
            s.write_all(&body).await?;
            s.shutdown().await?;
            Ok(false)
        }
        Some(Fault::ShorterLength) => {
            s.write_all(head(body.len().saturating_sub(100)).as_bytes()).await?;
            s.write_all(&body).await?;
            s.shutdown().await?;
            Ok(false)
        }
        Some(Fault::RedirectLoop(status)) => {
            let reply = format!(
                "HTTP/1.1 {status} Moved\r\nlocation: {path}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            s.write_all(reply.as_bytes()).await?;
            Ok(false)
        }
        Some(Fault::Trickle { bytes }) => {
            s.write_all(head(body.len()).as_bytes()).await?;
            for b in body.iter().take(bytes) {
                s.write_all(&[*b]).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Stall with the connection open until the reader gives up.
            let mut sink = [0u8; 64];
            while s.read(&mut sink).await? > 0 {}
            Ok(false)
        }
        Some(Fault::PauseHalfway) => {
            s.write_all(head(body.len()).as_bytes()).await?;
            s.write_all(&body[..body.len() / 2]).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            s.write_all(&body[body.len() / 2..]).await?;
            s.shutdown().await?;
            Ok(true)
        }
        Some(Fault::Status(status)) => {
            let reply = format!("HTTP/1.1 {status} Failing\r\ncontent-length: 8\r\nconnection: close\r\n\r\nfailing\n");
            s.write_all(reply.as_bytes()).await?;
            Ok(false)
        }
        Some(Fault::Slow) => {
            s.write_all(head(body.len()).as_bytes()).await?;
            for piece in body.chunks(16 * 1024) {
                s.write_all(piece).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            s.shutdown().await?;
            Ok(true)
        }
    }
}

/// A fixture, its checksum database, the faulty mirror, and a directory
/// for modgate's config and cache.
struct World {
    dir: tempfile::TempDir,
    sumdb: SumdbServer,
    mirror: FaultyMirror,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(&dir.path().join("fixture"), FIXTURE);
        let sumdb = start_sumdb(&dir.path().join("fixture")).await;
        let mirror = FaultyMirror::start(&dir.path().join("fixture")).await;
        World { dir, sumdb, mirror }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `modgate serve --log-format json` with the cache in `cache/`, the
    /// checksum database, `extra` tables, and every module mirrored from
    /// `mirrors` (the faulty mirror when empty).
    async fn serve(&self, extra: &str, mirrors: &str) -> Served {
        let mirrors = if mirrors.is_empty() {
            format!("http://{}", self.mirror.addr)
        } else {
            mirrors.to_owned()
        };
        let config = format!(
            "[cache]\ndir = \"cache\"\n[sumdb]\nkey = \"{}\"\nurl = \"http://{}\"\n{extra}\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"{mirrors}\"\n",
            self.sumdb.key, self.sumdb.addr
        );
        std::fs::write(self.path("modgate.toml"), config).unwrap();
        start_served(
            self.dir.path(),
            &[
                "--config",
                "modgate.toml",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ],
        )
        .await
    }

    /// Every file in the cache directory, relative.
    fn cached(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.path("cache")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(self.path("cache")).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// Whether any file for `module` is in the cache (complete or not).
    fn has_any(&self, module: &str) -> Vec<String> {
        self.cached().into_iter().filter(|f| f.contains(module)).collect()
    }
}

/// The go environment of a developer using `served` as GOPROXY, verifying
/// against the test database directly (so only module files pass through
/// modgate).
fn go_env(served: &Served, world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("GOPROXY", format!("http://{}", served.addr)),
        ("GOSUMDB", format!("{} http://{}", world.sumdb.key, world.sumdb.addr)),
    ]
}

/// Reads access events until one whose target ends with `suffix`.
async fn access_for(served: &mut Served, suffix: &str) -> serde_json::Value {
    loop {
        let event = served.next_access().await;
        if event["target"].as_str().is_some_and(|t| t.ends_with(suffix)) {
            return event;
        }
    }
}

/// Like [`access_for`], also returning every log line read on the way.
async fn access_and_log_for(served: &mut Served, suffix: &str) -> (serde_json::Value, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(STEP, served.lines.next_line())
            .await
            .expect("a log line in time")
            .unwrap()
            .expect("the log goes on");
        lines.push(line.clone());
        if !line.contains("\"message\":\"access\"") {
            continue;
        }
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["target"].as_str().is_some_and(|t| t.ends_with(suffix)) {
            return (event, lines);
        }
    }
}

fn zip_path(m: (&str, &str)) -> String {
    format!("/{}/@v/{}.zip", m.0, m.1)
}

/// GET `path` from the endpoint with a raw socket: the status and whether
/// the body arrived whole (its declared length, then a clean end).
async fn endpoint_get(proxy: SocketAddr, path: &str) -> (u16, bool, Vec<u8>) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: modgate\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut raw)).await;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    let body = raw[end..].to_vec();
    let whole = if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")) {
        body.len() == len.trim().parse::<usize>().unwrap()
    } else if head.contains("transfer-encoding: chunked") {
        body.ends_with(b"0\r\n\r\n")
    } else {
        false
    };
    (status, whole, body)
}

/// An upstream that refuses connections: 502 naming it, go shows the
/// `modgate:` line, the access event says so, and nothing is cached. (`|`
/// falling through past it: go_e2e::pipe_falls_through_on_500.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_is_a_502_naming_it_and_nothing_is_cached() {
    let world = World::new().await;
    let closed = closed_port().await;
    let mut served = world.serve("", &format!("http://{closed}")).await;
    let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
    assert!(!run.ok, "go must fail");
    let output = run.output();
    assert!(output.contains("502 Bad Gateway"), "{output}");
    assert!(
        output.contains("modgate: ") && output.contains(&closed.to_string()),
        "go shows modgate's line naming the upstream: {output}"
    );
    let event = access_for(&mut served, ".mod").await;
    assert_eq!(event["status"], 502, "{event}");
    assert!(
        event["error"]
            .as_str()
            .unwrap_or_default()
            .contains(&closed.to_string()),
        "{event}"
    );
    assert!(world.has_any(ALPHA.0).is_empty(), "{:?}", world.cached());
}

/// A mirror whose name does not resolve (502), whose name server never
/// answers (504 within `timeouts.connect`), and one that accepts but never
/// answers (504 within `timeouts.header`): go shows the `modgate:` line
/// naming the host, the access event has the status, nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_unanswered_and_silent_mirrors_reach_go_as_502_and_504() {
    let world = World::new().await;
    let nxdomain = crate::fake_dns::start_fake_dns(Arc::new(|_: &str, _| Vec::new()), false).await;
    let no_answer = crate::fake_dns::start_fake_dns(Arc::new(|_: &str, _| Vec::new()), true).await;
    let (silent, _task) = start_silent_origin().await;
    let cases = [
        (
            "nxdomain",
            format!("[dns]\nservers = [\"{}\"]\n", nxdomain.addr),
            "http://gone.test".to_owned(),
            502,
            "modgate: cannot resolve gone.test".to_owned(),
        ),
        (
            "dns timeout",
            format!(
                "[dns]\nservers = [\"{}\"]\n[timeouts]\nconnect = \"700ms\"\n",
                no_answer.addr
            ),
            "http://silent.test".to_owned(),
            504,
            "modgate: cannot resolve silent.test: no answer within 700ms".to_owned(),
        ),
        (
            "never answers",
            "[timeouts]\nheader = \"1s\"\n".to_owned(),
            format!("http://{silent}"),
            504,
            "did not answer within 1s".to_owned(),
        ),
    ];
    for (case, extra, mirrors, status, text) in cases {
        let mut served = world.serve(&extra, &mirrors).await;
        let started = Instant::now();
        let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
        assert!(!run.ok, "{case}: go must fail");
        let output = run.output();
        assert!(output.contains(&format!("{status} ")), "{case}: {output}");
        assert!(output.contains(&text), "{case}: {output}");
        let event = access_for(&mut served, ".mod").await;
        assert_eq!(event["status"], status, "{case}: {event}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{case}: {:?}",
            started.elapsed()
        );
        assert!(world.has_any(ALPHA.0).is_empty(), "{case}: {:?}", world.cached());
    }
}

/// An upstream that resets mid-body, for a zip (go) and a list (raw
/// client): the client's stream is aborted, never a short 200 that ends
/// cleanly; the event records the failure; nothing is cached; the next
/// request fetches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_body_aborts_the_client_and_caches_nothing() {
    let world = World::new().await;
    world.mirror.set(".zip", Fault::ResetAt(40_000));
    world.mirror.set("/@v/list", Fault::ResetAt(3));
    let mut served = world.serve("", "").await;

    let run = GoProject::new(&[BIG]).download(&go_env(&served, &world)).await;
    assert!(!run.ok, "a reset zip must fail go: {}", run.output());
    assert!(run.output().contains(&zip_path(BIG)), "{}", run.output());
    let event = access_for(&mut served, ".zip").await;
    assert!(event["error"].as_str().is_some_and(|e| !e.is_empty()), "{event}");
    assert!(event["bytes_out"].as_u64().unwrap() < 100_000, "{event}");

    // A list is held back until whole: the reset is the mirror's 502.
    let list = format!("/{}/@v/list", ALPHA.0);
    let (status, _, body) = endpoint_get(served.addr, &list).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("failed: @v/list of example.test/alpha: its body failed after 3 bytes"),
        "{text}"
    );
    let event = access_for(&mut served, "/@v/list").await;
    assert_eq!(event["status"], 502, "{event}");
    assert!(
        !world
            .cached()
            .iter()
            .any(|f| f.ends_with(".zip") || f.ends_with("/list")),
        "neither the reset zip nor the reset list is cached: {:?}",
        world.cached()
    );

    world.mirror.clear();
    GoProject::new(&[BIG])
        .download(&go_env(&served, &world))
        .await
        .assert_ok();
    assert_eq!(
        world.mirror.count(&zip_path(BIG)),
        2,
        "fetched again, not served from a partial"
    );
    let (status, whole, body) = endpoint_get(served.addr, &list).await;
    assert_eq!((status, whole, body.as_slice()), (200, true, &b"v1.1.0\n"[..]));
}

/// A list cut short is that mirror's failure, not a client's truncated
/// list: after `|` the next mirror's list is served (and go resolves
/// `@latest` with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_cut_mid_body_falls_through_to_the_next_mirror() {
    let world = World::new().await;
    let good = FaultyMirror::start(&world.path("fixture")).await;
    world.mirror.set("/@v/list", Fault::CloseAt(3));
    let mirrors = format!("http://{}|http://{}", world.mirror.addr, good.addr);
    // A cut is the mirror failing: with max_fails = 1 it is then down.
    let extra = format!("[mirror.\"http://{}\"]\nmax_fails = 1\n", world.mirror.addr);
    let mut served = world.serve(&extra, &mirrors).await;
    let list = format!("/{}/@v/list", ALPHA.0);
    let (status, whole, body) = endpoint_get(served.addr, &list).await;
    assert_eq!((status, whole, body.as_slice()), (200, true, &b"v1.1.0\n"[..]));
    assert_eq!((world.mirror.count(&list), good.count(&list)), (1, 1));
    let event = access_for(&mut served, "/@v/list").await;
    assert_eq!(event["upstream"], format!("http://{}", good.addr), "{event}");
    // Marked down: the next miss skips it.
    let info = format!("/{}/@v/{}.info", ALPHA.0, ALPHA.1);
    assert_eq!(endpoint_get(served.addr, &info).await.0, 200);
    assert_eq!((world.mirror.count(&info), good.count(&info)), (0, 1));
}

/// A Content-Length longer or shorter than the body: go fails on the zip,
/// and nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_length_is_aborted_and_nothing_is_cached() {
    for fault in [Fault::LongerLength, Fault::ShorterLength] {
        let world = World::new().await;
        world.mirror.set(".zip", fault);
        let mut served = world.serve("", "").await;
        let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
        assert!(!run.ok, "{fault:?}: go must fail: {}", run.output());
        assert!(run.output().contains(&zip_path(ALPHA)), "{fault:?}: {}", run.output());
        let event = access_for(&mut served, ".zip").await;
        let error = event["error"].as_str().unwrap_or_default();
        assert!(
            !error.is_empty() || event["status"].as_u64() != Some(200),
            "{fault:?}: the event records the failure: {event}"
        );
        assert!(
            !world.cached().iter().any(|f| f.ends_with(".zip")),
            "{fault:?}: {:?}",
            world.cached()
        );
    }
}

/// Redirect loops (301, 302, 307) are followed a bounded number of times,
/// then fail with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_loops_are_bounded_with_a_clear_error() {
    for status in [301, 302, 307] {
        let world = World::new().await;
        world.mirror.set(".mod", Fault::RedirectLoop(status));
        let mut served = world.serve("", "").await;
        let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
        assert!(!run.ok, "{status}: go must fail");
        let output = run.output();
        assert!(
            output.contains("502 Bad Gateway")
                && output.contains("modgate: ")
                && output.contains("redirected more than 10 times"),
            "{status}: {output}"
        );
        let event = access_for(&mut served, ".mod").await;
        assert_eq!(event["status"], 502, "{event}");
        let mod_path = format!("/{}/@v/{}.mod", ALPHA.0, ALPHA.1);
        assert!(
            world.mirror.count(&mod_path) <= 11 * 2,
            "bounded: {}",
            world.mirror.count(&mod_path)
        );
        assert!(world.has_any(ALPHA.0).is_empty(), "{:?}", world.cached());
    }
}

/// An upstream that trickles a byte a second then stalls: the transfer is
/// cut by `timeouts.idle` once no byte moves, not by the trickle itself;
/// meanwhile other clients are served at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_upstream_meets_the_idle_timeout_and_others_are_unaffected() {
    let world = World::new().await;
    world.mirror.set(".zip", Fault::Trickle { bytes: 4 });
    let mut served = world.serve("[timeouts]\nidle = \"2s\"\n", "").await;
    let addr = served.addr;
    let started = Instant::now();
    let slow = tokio::spawn(async move { endpoint_get(addr, &zip_path(ALPHA)).await });
    // While it trickles, another client gets its answers at once.
    let info = format!("/{}/@v/{}.info", ALPHA.0, ALPHA.1);
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, whole, _) = endpoint_get(addr, &info).await;
        assert_eq!((status, whole), (200, true));
        assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, whole, body) = slow.await.unwrap();
    let took = started.elapsed();
    assert!(
        !whole,
        "the trickled zip never arrives whole (status {status}, {} bytes)",
        body.len()
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "cut about 2 s after the trickle stopped (4 s), not before it: {took:?}"
    );
    let event = access_for(&mut served, ".zip").await;
    assert!(event["error"].as_str().is_some_and(|e| !e.is_empty()), "{event}");
    assert!(
        !world.cached().iter().any(|f| f.ends_with(".zip")),
        "{:?}",
        world.cached()
    );
}

/// A client that gives up while modgate still waits for the mirror's head
/// is logged all the same: one access event, status 499, saying no answer
/// was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_answer_is_still_logged() {
    let world = World::new().await;
    let (silent, _held) = start_silent_origin().await;
    let mut served = world.serve("", &format!("http://{silent}")).await;
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    let path = zip_path(ALPHA);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: modgate\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(s);
    let event = access_for(&mut served, ".zip").await;
    assert_eq!(event["status"], 499, "{event}");
    assert_eq!(event["rule"], "all", "{event}");
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.contains("the client went away")),
        "{event}"
    );
}

/// A client that goes away mid-download cancels the upstream fetch when
/// nobody else wants it; with a second client still reading, the fetch
/// goes on and ends in the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_fetch_unless_another_still_reads() {
    let world = World::new().await;
    world.mirror.set(".zip", Fault::Slow);
    let served = world.serve("", "").await;
    let zip = zip_path(BIG);
    let request = format!("GET {zip} HTTP/1.1\r\nHost: modgate\r\n\r\n");

    // Alone: read a little, then go away.
    let mut alone = TcpStream::connect(served.addr).await.unwrap();
    alone.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 32 * 1024];
    let _ = alone.read(&mut buf).await.unwrap();
    drop(alone);
    eventually("the mirror sees its reader go", || {
        world.mirror.abandoned.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(world.mirror.completed.load(Ordering::SeqCst), 0);
    assert!(
        !world.cached().iter().any(|f| f.ends_with(".zip")),
        "{:?}",
        world.cached()
    );

    // With a follower: the first goes away, the second reads to the end.
    let mut first = TcpStream::connect(served.addr).await.unwrap();
    first.write_all(request.as_bytes()).await.unwrap();
    let _ = first.read(&mut buf).await.unwrap();
    let addr = served.addr;
    let zip2 = zip.clone();
    let second = tokio::spawn(async move { endpoint_get(addr, &zip2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(first);
    let (status, whole, body) = second.await.unwrap();
    assert_eq!((status, whole), (200, true));
    let want = std::fs::read(world.path("fixture").join(zip.trim_start_matches('/'))).unwrap();
    assert!(body == want, "the follower gets the whole zip");
    assert_eq!(world.mirror.count(&zip), 2, "one fetch for the two clients");
    assert_eq!(
        world.mirror.abandoned.load(Ordering::SeqCst),
        1,
        "the shared fetch was not cancelled"
    );
    eventually("the zip lands in the cache", || {
        world.cached().iter().any(|f| f.ends_with("v1.0.0.zip"))
    })
    .await;
}

/// A tmpfs of 64 KiB mounted over the cache directory, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// A tmpfs of `size` (`64k`, `8m`) over `at`.
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The cache's disk has no room for the zip: the client still gets it
/// whole (spooled in the temp directory), nothing is kept, and the log
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_disk_still_serves_every_miss_whole() {
    let world = World::new().await;
    let zip = zip_path(BIG);
    let size = std::fs::metadata(world.path("fixture").join(zip.trim_start_matches('/')))
        .unwrap()
        .len();
    assert!(size > 64 * 1024, "the zip ({size} bytes) is larger than the disk");
    let _disk = SmallDisk::mount(&world.path("cache"), "64k");
    let mut served = world.serve("", "").await;
    let run = GoProject::new(&[BIG]).download(&go_env(&served, &world)).await;
    run.assert_ok();
    let (event, log) = access_and_log_for(&mut served, ".zip").await;
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["bytes_out"].as_u64(), Some(size), "served whole: {event}");
    assert!(
        log.iter()
            .any(|l| l.contains("the cache's disk is full; serving without caching")),
        "the log says the disk is full: {log:#?}"
    );
    assert!(
        !world.cached().iter().any(|f| f.ends_with(".zip")),
        "no partial object: {:?}",
        world.cached()
    );
}

/// The disk fills up while a zip is being spooled and stored: the cache's
/// copy is dropped to make room, the client still gets the zip whole, and
/// no partial object is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_during_a_cache_write_drops_the_cache_copy_not_the_client() {
    let world = World::new().await;
    let zip = zip_path(BIG);
    let size = std::fs::metadata(world.path("fixture").join(zip.trim_start_matches('/')))
        .unwrap()
        .len();
    let _disk = SmallDisk::mount(&world.path("cache"), "8m");
    // Half the zip, a pause (when the disk fills up), the other half.
    world.mirror.set(".zip", Fault::PauseHalfway);
    let mut served = world.serve("", "").await;
    let env = go_env(&served, &world);
    let download = tokio::spawn(async move { GoProject::new(&[BIG]).download(&env).await });
    while world.mirror.count(&zip) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Fill the disk, then leave a quarter of the zip's size free: too
    // little for the spool's other half until the cache's copy (the first
    // half) is gone.
    let filler = world.path("cache").join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    let filled = file.metadata().unwrap().len();
    file.set_len(filled.saturating_sub(size / 4)).unwrap();
    drop(file);
    let run = download.await.unwrap();
    run.assert_ok();
    let (event, log) = access_and_log_for(&mut served, ".zip").await;
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["bytes_out"].as_u64(), Some(size), "served whole: {event}");
    let full = log
        .iter()
        .find(|l| l.contains("No space left on device"))
        .unwrap_or_else(|| panic!("the log says the disk is full: {log:#?}"));
    assert!(full.contains("serving without caching"), "{full}");
    assert!(
        !world.cached().iter().any(|f| f.ends_with(".zip")),
        "no partial object: {:?}",
        world.cached()
    );
}

/// SIGTERM with 100 transfers in flight: the 50 that can finish within
/// the grace period finish whole; the 50 that cannot are cut at its end,
/// and the cut is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_100_transfers_in_flight_finishes_or_cuts_them_at_the_grace() {
    // An origin that sends 10 bytes at once, then the rest of each body
    // after 1 s (`/quick`) or 30 s (`/slow`).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(path) = read_request_path(&s).await else {
                    return;
                };
                let mut s = s;
                let wait = if path == "/quick" { 1 } else { 30 };
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n0123456789")
                    .await;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                let _ = s.write_all(b"abcdefghij").await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        config_allowing_loopback("[timeouts]\nshutdown = \"3s\"\n"),
    )
    .unwrap();
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let mut transfers = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 { "/quick" } else { "/slow" };
        let mut s = TcpStream::connect(served.addr).await.unwrap();
        s.write_all(format!("GET http://{origin}{path} HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        transfers.push((path, s));
    }
    // Every transfer has its head and first bytes before the signal.
    let mut started = Vec::new();
    for (path, mut s) in transfers {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"0123456789") {
            let n = tokio::time::timeout(STEP, s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "{path}: the head and first bytes arrive");
            got.extend_from_slice(&buf[..n]);
        }
        started.push((path, s));
    }
    let signalled = Instant::now();
    sigterm(&served.child);
    let mut finished = HashMap::<&str, usize>::new();
    for (path, mut s) in started {
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        if rest == b"abcdefghij" {
            *finished.entry(path).or_default() += 1;
        }
    }
    assert_eq!(
        finished.get("/quick"),
        Some(&50),
        "every transfer that fits the grace finishes"
    );
    assert_eq!(finished.get("/slow"), None, "none outlives the grace");
    let elapsed = signalled.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_secs(8),
        "the slow ones are cut at the end of the 3 s grace: {elapsed:?}"
    );
    let cut = served.wait_for_line("grace period over").await;
    assert!(cut.contains("50"), "the cut names the 50 transfers it closed: {cut}");
    let status = tokio::time::timeout(STEP, served.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

/// Config reloads while 8 clients keep asking: no request fails because of
/// a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reloads_under_load_fail_no_request() {
    let origin = start_text_origin("ok").await;
    let dir = tempfile::tempdir().unwrap();
    let config = |n: usize| config_allowing_loopback(&format!("[admin]\nrecent = {}\n", 100 + n));
    std::fs::write(dir.path().join("c.toml"), config(0)).unwrap();
    let mut served = start_served(dir.path(), &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed, addr, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            served.addr,
            format!("http://{}/", origin.addr),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (status, _, body) = get_via(addr, &url).await;
                if (status.as_u16(), body.as_str()) == (200, "ok") {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.lock().unwrap().push(format!("{status} {body}"));
                }
            }
        }));
    }
    for n in 1..=5 {
        let tmp = dir.path().join("c.toml.new");
        std::fs::write(&tmp, config(n)).unwrap();
        std::fs::rename(&tmp, dir.path().join("c.toml")).unwrap();
        signal(&served.child, "HUP");
        served.wait_for_line("config reloaded").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "the load ran: {}",
        ok.load(Ordering::SeqCst)
    );
    assert_eq!(*failed.lock().unwrap(), Vec::<String>::new());
}

/// An openssl server that speaks TLS 1.0 only, with `chain` and `key`.
pub(crate) struct Tls10Server {
    pub(crate) addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Tls10Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_tls10_server(
    chain: &[rustls::pki_types::CertificateDer<'static>],
    key: &rustls::pki_types::PrivateKeyDer<'static>,
) -> Tls10Server {
    let dir = tempfile::tempdir().unwrap();
    let pem_of = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
    std::fs::write(dir.path().join("leaf.pem"), pem_of("CERTIFICATE", &chain[0])).unwrap();
    std::fs::write(dir.path().join("leaf.key"), pem_of("PRIVATE KEY", key.secret_der())).unwrap();
    let addr = closed_port().await;
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-tls1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-accept",
        ])
        .arg(addr.to_string())
        .arg("-cert")
        .arg(dir.path().join("leaf.pem"))
        .arg("-key")
        .arg(dir.path().join("leaf.key"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl runs");
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "openssl s_server listens");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Tls10Server { addr, child, _dir: dir }
}

/// Upstream TLS failures: an expired leaf, a leaf for another host, a
/// chain from an unknown CA, and a server that speaks TLS 1.0 only. Each
/// is a 502 whose `modgate:` line gives the verdict and the reason (an
/// expired leaf was first reported as an untrusted chain "holding no
/// root": found by this test). Chains that fail the public roots are kept
/// as evidence; a failed handshake keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_failures_are_502s_with_the_verdict_and_reason() {
    let world = World::new().await;
    let public = TestPki::new("Stand-in Public Root");
    std::fs::write(world.path("public.pem"), &public.ca_pem).unwrap();
    let unknown = TestPki::new("Unknown Corp Root");
    let names = ["mirror.test"];
    let now = time::OffsetDateTime::now_utc();
    let expired = public.leaf_with(&names, |p| {
        p.not_before = now - time::Duration::days(30);
        p.not_after = now - time::Duration::days(1);
    });
    let tls12_13 = [&rustls::version::TLS12, &rustls::version::TLS13];
    let servers = [
        (
            "expired",
            start_tls_server(expired.0, expired.1, "x", &tls12_13).await.0,
            None,
        ),
        (
            "wrong host",
            {
                let (c, k) = public.leaf(&["other.test"]);
                start_tls_server(c, k, "x", &tls12_13).await.0
            },
            None,
        ),
        (
            "unknown CA",
            {
                let (c, k) = unknown.leaf(&names);
                start_tls_server(c, k, "x", &tls12_13).await.0
            },
            None,
        ),
        ("TLS 1.0", closed_port().await, {
            let (c, k) = public.leaf(&names);
            Some(start_tls10_server(&c, &k).await)
        }),
    ];
    let mut seen_cases = Vec::new();
    for (case, addr, tls10) in servers {
        let addr = tls10.as_ref().map_or(addr, |s| s.addr);
        let extra = format!(
            "[tls]\npublic_roots = \"public.pem\"\nintercepted_dir = \"seen\"\n[hosts]\n\"mirror.test\" = \"{addr}\"\n"
        );
        let seen = world.path("seen");
        let _ = std::fs::remove_dir_all(&seen);
        let mut served = world.serve(&extra, "https://mirror.test").await;
        let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
        assert!(!run.ok, "{case}: go must fail");
        let output = run.output();
        let line = output
            .lines()
            .find(|l| l.contains("modgate: "))
            .unwrap_or_else(|| panic!("{case}: no modgate line: {output}"))
            .to_owned();
        assert!(output.contains("502 Bad Gateway"), "{case}: {output}");
        assert!(line.contains("mirror.test"), "{case}: {line}");
        let event = access_for(&mut served, ".mod").await;
        assert_eq!(event["status"], 502, "{case}: {event}");
        let pems = |seen: &Path| {
            std::fs::read_dir(seen)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pem"))
                .count()
        };
        if case != "TLS 1.0" {
            // Evidence is written beside the refusal, not before it.
            eventually(&format!("{case}: evidence saved"), || pems(&seen) > 0).await;
        }
        let evidence = pems(&seen);
        eprintln!(
            "{case}: {line}\n  event error: {}\n  evidence files: {}",
            event["error"], evidence
        );
        seen_cases.push((case, line, evidence));
        assert!(world.has_any(ALPHA.0).is_empty(), "{case}: {:?}", world.cached());
        drop(served);
    }
    // Every case's line and evidence, then the checks, so a failure shows all four.
    for (case, line, evidence) in &seen_cases {
        let reason = match *case {
            "expired" => "in which a certificate has expired",
            "wrong host" => "not valid for",
            "unknown CA" => "which is not trusted and holds no root certificate",
            // DESIGN "Old TLS": said exactly, not as rustls's alert name.
            _ => "TLS handshake with upstream https://mirror.test failed: the server speaks only TLS 1.0 or 1.1",
        };
        assert!(line.contains(reason), "{case}: {line}\nall: {seen_cases:#?}");
        // A chain that fails the public roots is kept as evidence (docs/config.md,
        // tls.intercepted_dir), so the expired and misnamed chains are kept too;
        // a handshake that fails before any chain keeps nothing.
        assert_eq!(
            *evidence > 0,
            *case != "TLS 1.0",
            "{case}: evidence\nall: {seen_cases:#?}"
        );
    }
}

/// A small zip whose mirror closes partway through it, in one go: the
/// failure comes before modgate has answered, so after `|` the next
/// mirror is asked and go gets the zip whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_cut_off_at_once_falls_through_after_a_pipe() {
    let world = World::new().await;
    world.mirror.set(".zip", Fault::CloseAt(100));
    let good = FaultyMirror::start(&world.path("fixture")).await;
    let mut served = world
        .serve("", &format!("http://{}|http://{}", world.mirror.addr, good.addr))
        .await;
    let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
    run.assert_ok();
    assert_eq!(world.mirror.count(&zip_path(ALPHA)), 1, "the faulty mirror was asked");
    assert_eq!(good.count(&zip_path(ALPHA)), 1, "then the next one");
    let event = access_for(&mut served, ".zip").await;
    assert_eq!(event["status"], 200, "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_zip_go_would_refuse_falls_through_after_a_pipe() {
    // The first mirror's zip of ALPHA arrives whole and on time, but its
    // files are outside the module's prefix: go would refuse it, so it is
    // that mirror's failure and `|` moves on to the next.
    let world = World::new().await;
    let broken = world.path("broken");
    let at_v = broken.join(ALPHA.0).join("@v");
    std::fs::create_dir_all(&at_v).unwrap();
    for file in ["list", "v1.1.0.info", "v1.1.0.mod"] {
        std::fs::copy(
            world.path("fixture").join(ALPHA.0).join("@v").join(file),
            at_v.join(file),
        )
        .unwrap();
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "example.test/other@v1.1.0/a.go",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    std::io::Write::write_all(&mut zip, b"package a\n").unwrap();
    std::fs::write(at_v.join("v1.1.0.zip"), zip.finish().unwrap().into_inner()).unwrap();
    let bad = FaultyMirror::start(&broken).await;
    let mut served = world
        .serve("", &format!("http://{}|http://{}", bad.addr, world.mirror.addr))
        .await;
    let run = GoProject::new(&[ALPHA]).download(&go_env(&served, &world)).await;
    run.assert_ok();
    assert_eq!(bad.count(&zip_path(ALPHA)), 1, "the broken mirror was asked");
    assert_eq!(world.mirror.count(&zip_path(ALPHA)), 1, "then the next one");
    let event = access_for(&mut served, ".zip").await;
    assert_eq!(event["status"], 200, "{event}");
}

/// `A|B` with A failing and B not having the file: go, asking `A|B`
/// itself, reports A's failure (a proxy's error outranks a later "not
/// found"), so modgate answers A's 502, never a 404 that would send go on
/// to its next GOPROXY entry, and caches nothing: once A is back, the file
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_before_a_not_found_after_a_pipe_is_the_answer_and_not_cached() {
    let world = World::new().await;
    let empty = world.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let without = FaultyMirror::start(&empty).await;
    world.mirror.set(".info", Fault::Status(503));
    let served = world
        .serve("", &format!("http://{}|http://{}", world.mirror.addr, without.addr))
        .await;
    let info = format!("/{}/@v/{}.info", ALPHA.0, ALPHA.1);
    let (status, _, body) = endpoint_get(served.addr, &info).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&format!("http://{}", world.mirror.addr)) && body.contains("503"),
        "{body}"
    );
    assert_eq!(without.count(&info), 1, "the next mirror was asked");
    world.mirror.clear();
    let (status, _, body) = endpoint_get(served.addr, &info).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

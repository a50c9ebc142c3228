//! Issue 12 §1: the admin listener: /metrics (parsed by a real Prometheus
//! parser), /healthz, /readyz, the admin page in headless Chromium, and
//! how the listener is bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gotool::{Behavior, FixtureModule, ModuleOrigin, start_module_origin, write_fixture};
use crate::support::*;

/// A GET to the admin listener (origin-form); status, content type, body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", admin.to_string())
        .body(full(""))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

/// The samples of `/metrics`, parsed by prometheus-parse.
pub async fn scrape(admin: SocketAddr) -> prometheus_parse::Scrape {
    let (status, ctype, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the metrics parse")
}

/// The value of the sample `metric` whose labels include `labels`
/// (counters, gauges, untyped; the sum when several match).
pub fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// A served proxy with an admin listener, a cache, a fixture mirror, an
/// interceptor-signed mirror and a plain origin.
pub struct AdminEnv {
    pub dir: tempfile::TempDir,
    pub served: Served,
    pub admin: SocketAddr,
    pub origin: Origin,
    pub fixture: PathBuf,
    pub zscaler_spki: String,
    _zs: ModuleOrigin,
}

pub async fn admin_env() -> AdminEnv {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    write_fixture(
        &fixture,
        &[FixtureModule {
            path: "example.test/alpha",
            version: "v1.0.0",
            payload: 2000,
        }],
    );
    let public = TestPki::new("Test Public Root CA");
    std::fs::write(dir.path().join("public.pem"), &public.ca_pem).unwrap();
    let zs_root = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let zscaler = zs_root.intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    let zs = start_module_origin(&zscaler, &["zs.test"], &fixture, Behavior::Serve).await;
    let origin = start_text_origin("hello from the origin").await;
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"
recent = 12
[tls]
public_roots = "public.pem"
intercepted_dir = "seen"
[cache]
dir = "cache"
[sumdb]
verify = false
[hosts]
"zs.test" = "{zs}"
"origin.test" = "{origin}"
[[rule]]
name = "banned"
modules = ["example.test/evil"]
action = "block"
reason = "SEC-42: known malicious module"
[[rule]]
name = "zs"
modules = ["zs.test/*"]
action = "mirror"
mirrors = "https://zs.test"
[[rule]]
name = "fixture"
modules = ["*"]
action = "mirror"
mirrors = "file://{fixture}"
[[rule]]
name = "origin"
hosts = ["origin.test"]
action = "direct"
[[rule]]
name = "default"
action = "block"
reason = "nothing else"
"#,
        zs = zs.addr,
        origin = origin.addr,
        fixture = fixture.display()
    );
    std::fs::write(dir.path().join("modgate.toml"), text).unwrap();
    let served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let admin = served.admin.expect("the admin listening line");
    let zscaler_spki = spki_sha256(&zscaler.ca_der);
    AdminEnv {
        dir,
        served,
        admin,
        origin,
        fixture,
        zscaler_spki,
        _zs: zs,
    }
}

/// One round of every kind of traffic; returns the statuses seen.
pub async fn traffic(env: &AdminEnv) -> Vec<u16> {
    let proxy = env.served.addr;
    let mut statuses = Vec::new();
    for path in [
        "/example.test/alpha/@v/v1.0.0.info",
        "/example.test/alpha/@v/v1.0.0.info",
        "/example.test/evil/@v/list",
        "/zs.test/mod/@v/list",
    ] {
        let mut conn = ProxyConn::open(proxy).await;
        let resp = conn
            .send(Request::get(path).header("host", "modgate").body(full("")).unwrap())
            .await;
        statuses.push(resp.status().as_u16());
        let _ = resp.into_body().collect().await;
    }
    let url = format!("http://origin.test:{}/x", env.origin.addr.port());
    statuses.push(get_via(proxy, &url).await.0.as_u16());
    let target = format!("origin.test:{}", env.origin.addr.port());
    let (mut tunnel, head) = connect_via(proxy, &target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tunnel
        .write_all(b"GET /t HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&reply).contains("hello from the origin"));
    statuses.push(200);
    statuses
}

/// Waits until the access events of `n` more requests have been logged.
async fn logged(served: &mut Served, n: usize) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    for _ in 0..n {
        events.push(served.next_access().await);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_metrics_parse_and_count_what_happened_with_bounded_labels() {
    let mut env = admin_env().await;
    let statuses = traffic(&env).await;
    assert_eq!(statuses, [200, 200, 403, 502, 200, 200]);
    logged(&mut env.served, 6).await;
    let m = scrape(env.admin).await;

    let req = |labels: &[(&str, &str)]| value(&m, "modgate_requests_total", labels);
    assert_eq!(
        req(&[
            ("action", "mirror"),
            ("rule", "fixture"),
            ("status", "200"),
            ("cache", "miss")
        ]),
        1.0
    );
    assert_eq!(
        req(&[
            ("action", "mirror"),
            ("rule", "fixture"),
            ("status", "200"),
            ("cache", "hit")
        ]),
        1.0
    );
    assert_eq!(req(&[("action", "block"), ("rule", "banned"), ("status", "403")]), 1.0);
    assert_eq!(req(&[("rule", "zs"), ("status", "502")]), 1.0);
    assert_eq!(req(&[("action", "direct"), ("rule", "origin"), ("status", "200")]), 1.0);
    assert_eq!(
        value(
            &m,
            "modgate_tunnels_total",
            &[("action", "direct"), ("rule", "origin"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "modgate_verdicts_total",
            &[("verdict", "untrusted"), ("vendor", "Zscaler")]
        ),
        1.0
    );
    assert!(
        value(
            &m,
            "modgate_client_bytes_total",
            &[("direction", "out"), ("kind", "request")]
        ) > 100.0
    );
    assert!(
        value(
            &m,
            "modgate_client_bytes_total",
            &[("direction", "in"), ("kind", "tunnel")]
        ) > 30.0
    );
    assert_eq!(value(&m, "modgate_open_tunnels", &[]), 0.0);
    assert_eq!(value(&m, "modgate_cache_hits_total", &[]), 1.0);
    // The fixture's first fetch, and the interceptor's mirror (which failed).
    assert_eq!(value(&m, "modgate_cache_misses_total", &[]), 2.0);
    assert!(value(&m, "modgate_cache_stored_bytes_total", &[]) > 0.0);
    assert_eq!(value(&m, "modgate_sumdb_verification_failures_total", &[]), 0.0);
    assert_eq!(value(&m, "modgate_config_last_reload_successful", &[]), 1.0);
    let build = m
        .samples
        .iter()
        .find(|s| s.metric == "modgate_build_info")
        .expect("build info");
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    let config = m
        .samples
        .iter()
        .find(|s| s.metric == "modgate_config_info")
        .expect("config info");
    assert_eq!(config.labels.get("sha256").map(str::len), Some(64));

    // Upstream latency per source: the fixture directory, the interceptor's
    // mirror (an error), and direct.
    let fixture_source = format!("file://{}", env.fixture.display());
    let histograms: HashMap<(String, String), u64> = m
        .samples
        .iter()
        .filter(|s| s.metric == "modgate_upstream_fetch_duration_seconds")
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(b) => Some((
                (
                    s.labels.get("source").unwrap_or_default().to_owned(),
                    s.labels.get("outcome").unwrap_or_default().to_owned(),
                ),
                b.iter().map(|c| c.count as u64).max().unwrap_or(0),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        histograms.get(&(fixture_source, "found".into())),
        Some(&1),
        "{histograms:?}"
    );
    assert_eq!(
        histograms.get(&("https://zs.test".into(), "error".into())),
        Some(&1),
        "{histograms:?}"
    );
    assert_eq!(
        histograms.get(&("direct".into(), "found".into())),
        Some(&1),
        "{histograms:?}"
    );

    // No client address and no module path is ever a label value.
    for s in &m.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains("127.0.0.1") && !v.contains("example.test"),
                "{}{{{k}={v}}}",
                s.metric
            );
        }
    }
}

/// A mirror fetched over TLS through the cache (a miss, and a coalesced
/// client) is counted under the verdict on its chain, and its access event
/// carries it, as a direct request inside a tunnel is; a hit reached no
/// upstream and carries none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_mirror_fetch_counts_under_the_verdict_on_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    write_fixture(
        &fixture,
        &[FixtureModule {
            path: "example.test/alpha",
            version: "v1.0.0",
            payload: 2000,
        }],
    );
    let zscaler_ca = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    std::fs::write(dir.path().join("zscaler_ca.pem"), &zscaler_ca.ca_pem).unwrap();
    let mirror = start_module_origin(&zscaler_ca, &["mirror.test"], &fixture, Behavior::Serve).await;
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"
[tls]
extra_roots = ["zscaler_ca.pem"]
intercepted_dir = "seen"
[cache]
dir = "cache"
[sumdb]
verify = false
[hosts]
"mirror.test" = "{}"
[[rule]]
name = "all"
modules = ["*"]
action = "mirror"
mirrors = "https://mirror.test"
"#,
        mirror.addr
    );
    std::fs::write(dir.path().join("modgate.toml"), text).unwrap();
    let mut served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let admin = served.admin.expect("the admin listening line");
    for _ in 0..2 {
        let mut conn = ProxyConn::open(served.addr).await;
        let req = Request::get("/example.test/alpha/@v/v1.0.0.info").header("host", "modgate");
        let resp = conn.send(req.body(full("")).unwrap()).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await;
    }
    let events = logged(&mut served, 2).await;
    assert_eq!(
        (
            events[0]["cache"].as_str(),
            events[0]["verdict"].as_str(),
            events[0]["vendor"].as_str()
        ),
        (Some("miss"), Some("intercepted"), Some("Zscaler")),
        "{}",
        events[0]
    );
    assert_eq!(events[1]["cache"], "hit", "{}", events[1]);
    assert!(events[1].get("verdict").is_none(), "{}", events[1]);
    let m = scrape(admin).await;
    assert_eq!(
        value(
            &m,
            "modgate_verdicts_total",
            &[("verdict", "intercepted"), ("vendor", "Zscaler")]
        ),
        1.0
    );
    // The page's rules show the addresses listened on (`--listen
    // 127.0.0.1:0`, an admin port 0), not the file's.
    let (_, _, page) = admin_get(admin, "/").await;
    assert!(page.contains(&format!("listen:   {}\n", served.addr)), "{page}");
    assert!(page.contains(&format!("admin:    {}\n", admin)), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_healthz_and_readyz_say_what_fails() {
    let env = admin_env().await;
    let (status, _, body) = admin_get(env.admin, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = admin_get(env.admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let config = env.dir.path().canonicalize().unwrap().join("modgate.toml");
    assert!(body.contains(&format!("ok   config {}", config.display())), "{body}");
    assert!(body.contains(&format!("ok   listener {}", env.served.addr)), "{body}");
    assert!(body.contains("is writable"), "{body}");

    // The cache directory turns into a file: storage is not writable.
    let cache = env.dir.path().join("cache");
    std::fs::rename(&cache, env.dir.path().join("cache.moved")).unwrap();
    std::fs::write(&cache, "not a directory").unwrap();
    let (status, _, body) = admin_get(env.admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let failing: Vec<&str> = body.lines().filter(|l| l.starts_with("fail")).collect();
    assert_eq!(failing.len(), 1, "{body}");
    assert!(failing[0].contains("is not writable"), "{body}");
    let (status, _, _) = admin_get(env.admin, "/nowhere").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn issue12_an_explicit_admin_address_that_cannot_be_bound_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tokio::process::Command::new(modgate_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", &addr])
        .current_dir(dir.path())
        .env("XDG_CACHE_HOME", dir.path().join("c"))
        .env("XDG_STATE_HOME", dir.path().join("s"))
        .output();
    let out = tokio::time::timeout(STEP, out).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on the admin address {addr}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn issue12_a_busy_default_admin_port_warns_and_serves_without_it() {
    let dir = tempfile::tempdir().unwrap();
    // Hold 9128 for the child's whole life. Other tests' modgate processes
    // try it too and leave it again: wait for it rather than race them. A
    // port someone else keeps is busy all the same.
    let mut held = None;
    let deadline = tokio::time::Instant::now() + STEP;
    while held.is_none() && tokio::time::Instant::now() < deadline {
        held = std::net::TcpListener::bind("127.0.0.1:9128").ok();
        if held.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let mut served = start_served(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert_eq!(served.admin, None);
    assert_eq!(
        get_via(served.addr, "http://127.0.0.1:1/").await.0,
        403,
        "still serving"
    );
    sigterm(&served.child);
    let mut log = served.startup.clone();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(STEP, served.lines.next_line()).await {
        log.push(line);
    }
    let warnings = log.iter().filter(|l| l.contains("127.0.0.1:9128")).count();
    assert!(
        log.iter().any(|l| l.contains("127.0.0.1:9128") && l.contains("WARN")),
        "a warning names the busy admin port: {log:#?}"
    );
    assert_eq!(warnings, 1, "said once: {log:#?}");
    drop(held);
}

#[tokio::test]
async fn issue12_admin_listen_off_and_explicit_from_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let served = start_served(dir.path(), &["--listen", "127.0.0.1:0", "--admin-listen", ""]).await;
    assert_eq!(served.admin, None);
    let served = start_served(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
    )
    .await;
    let admin = served.admin.expect("an admin address");
    assert_ne!(admin, served.addr);
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    // The proxy port does not answer admin paths: they are module paths.
    let (status, _, body) = admin_get(served.addr, "/metrics").await;
    assert_eq!(status, 400, "{body}");
}

/// The admin page in real headless Chromium, loaded while traffic runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_the_admin_page_in_chromium_while_traffic_runs() {
    tools(&["chromium"]);
    let mut env = admin_env().await;
    traffic(&env).await;
    logged(&mut env.served, 6).await;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (proxy, still) = (env.served.addr, running.clone());
    let background = tokio::spawn(async move {
        let paths = [
            "/example.test/alpha/@v/v1.0.0.mod",
            "/example.test/evil/@v/list",
            "/zs.test/mod/@v/list",
            "/example.test/alpha/@v/v1.0.0.info",
        ];
        let mut n = 0usize;
        while still.load(std::sync::atomic::Ordering::SeqCst) && n < 400 {
            let mut conn = ProxyConn::open(proxy).await;
            let req = Request::get(paths[n % paths.len()]).header("host", "modgate");
            let resp = conn.send(req.body(full("")).unwrap()).await;
            let _ = resp.into_body().collect().await;
            n += 1;
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        n
    });
    let url = format!("http://{}/", env.admin);
    let dom = chromium(&["--virtual-time-budget=3000", "--dump-dom", &url]).await;
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-page.png");
    let _ = std::fs::remove_file(&shot);
    let window = "--window-size=1280,900".to_owned();
    let screenshot = format!("--screenshot={}", shot.display());
    chromium(&[&window, &screenshot, &url]).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    let requests = background.await.unwrap();
    assert!(requests > 0, "traffic ran");

    assert!(dom.contains(&format!("modgate {}", env!("CARGO_PKG_VERSION"))), "{dom}");
    assert!(dom.contains("up "), "uptime: {dom}");
    assert!(dom.contains("Recent decisions"), "{dom}");
    assert!(dom.contains("/example.test/evil/@v/list"), "a decision: {dom}");
    assert!(
        !dom.contains("cut off"),
        "complete answers are not logged as cut off: {dom}"
    );
    assert!(dom.contains("banned") && dom.contains("403"), "{dom}");
    assert!(dom.contains("untrusted (Zscaler)"), "a verdict: {dom}");
    assert!(dom.contains("Interceptors seen"), "{dom}");
    assert!(
        dom.contains("Zscaler Intermediate Root CA (zscaler.net)"),
        "the issuer: {dom}"
    );
    assert!(
        dom.contains(&format!("/chains/{}.pem", env.zscaler_spki)),
        "a chain link: {dom}"
    );
    assert!(dom.contains("Module cache") && dom.contains("hits"), "{dom}");
    assert!(
        dom.contains("Rules in effect") && dom.contains("rules (first match wins):"),
        "{dom}"
    );
    assert!(
        dom.contains("SEC-42: known malicious module"),
        "the rules as check prints them: {dom}"
    );
    assert!(
        dom.contains("http-equiv=\"refresh\"") && dom.contains(">refresh</a>"),
        "{dom}"
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());

    // The chain link downloads the saved chain.
    let (status, ctype, pem) = admin_get(env.admin, &format!("/chains/{}.pem", env.zscaler_spki)).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/x-pem-file");
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
    let (status, _, _) = admin_get(env.admin, "/chains/..%2Fmodgate.toml").await;
    assert_eq!(status, 404);
}

/// Installs the named components of tests/tools/install, or panics with
/// its message (a test that needs a tool fails without it, never skips).
pub fn tools(components: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/install");
    let out = std::process::Command::new(&script)
        .args(components)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "cannot install {components:?} for this test: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs headless Chromium with `args` (HOME and the profile in a temp
/// dir); returns its stdout.
pub async fn chromium(args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let profile = home.path().join("profile");
    let out = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env("HOME", home.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("chromium finishes")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_takes_a_bounded_number_of_connections_and_answers_through_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        config_allowing_loopback("[cache]\ndir = \"\"\n[timeouts]\nshutdown = \"10s\"\n"),
    )
    .unwrap();
    let mut served = start_served(
        dir.path(),
        &[
            "--config",
            "m.toml",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let admin = served.admin.unwrap();
    // A connection to the admin port from the loopback address `from`.
    let from = |last: u8| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0))).unwrap();
        socket.connect(admin).await.unwrap()
    };
    // The reply to a request sent on `conn` (read away before the close,
    // so the 503 is not lost to a reset), the client's side closed after
    // it, as a one-request client closes.
    let answer = |mut conn: tokio::net::TcpStream| async move {
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut conn).await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut reply))
            .await
            .unwrap()
            .unwrap();
        reply
    };
    // One address holds at most PER_CLIENT; the next from it is turned
    // away, while another address is still served.
    let per_client = modgate::admin::listener::PER_CLIENT;
    let mut idle = Vec::new();
    for _ in 0..per_client {
        idle.push(from(1).await);
    }
    let reply = answer(from(1).await).await;
    assert!(
        reply.starts_with("HTTP/1.1 503")
            && reply.ends_with("modgate: too many admin connections from your address (16); close some\n"),
        "{reply}"
    );
    let other = answer(from(9).await).await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // Idle connections up to the limit, from several addresses, are held;
    // the next takes the place of the one idle the longest (the first),
    // which is closed, so a health probe always gets in; and the proxy
    // port still answers.
    for n in per_client..modgate::admin::listener::MAX_CONNECTIONS {
        idle.push(from(2 + (n / per_client) as u8).await);
    }
    let reply = answer(from(10).await).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let mut longest = idle.remove(0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read_to_end(&mut longest, &mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "the longest idle is closed: {closed:?}");
    for _ in 0..3 {
        let reply = answer(from(11).await).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let plain = start_text_origin("ok").await;
    let (status, _, _) = get_via(served.addr, &format!("http://{}/", plain.addr)).await;
    assert_eq!(status, 200);
    // Their places come back as they close.
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);

    // A tunnel keeps the shutdown draining; meanwhile /readyz says so.
    let (silent, _task) = start_silent_origin().await;
    let (_tunnel, head) = connect_via(served.addr, &silent.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    sigterm(&served.child);
    served.wait_for_line("shutting down").await;
    let (status, _, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is closed: shutting down"), "{body}");
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
}

//! Mirrors that fail fast (issue 16 §1 and §4): per-mirror timeouts,
//! passive health with a half-open probe, stale-while-revalidate, and
//! mirrors that need a login.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::admin::admin_get;
use crate::cache::{REQUIRES, World, endpoint_get, start_mirror, via_endpoint};
use crate::gotool::GoProject;
use crate::support::*;

const LIST: &str = "/example.test/alpha/@v/list";
/// Distinct cacheable paths of the fixture, so each request is a miss.
const PATHS: &[&str] = &[
    "/example.test/alpha/@v/list",
    "/example.test/alpha/@v/v1.0.0.info",
    "/example.test/alpha/@v/v1.1.0.info",
    "/github.com/!upper/case-mod/@v/list",
    "/github.com/!upper/case-mod/@v/v0.2.0.info",
    "/example.test/alpha/@v/v1.0.0.mod",
    "/example.test/alpha/@v/v1.1.0.mod",
];

/// A free port on 127.0.0.1, for a config that must name it.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A mirror whose connections are black-holed costs its own short
/// `connect` once; marked down, it is then skipped at once (the `|` list
/// goes on to the next mirror), and the access event, `/metrics`,
/// `/mirrors` and `explain` say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_mirror_costs_its_own_timeout_once_then_nothing_while_down() {
    let world = World::new().await;
    let good = start_mirror(&world.fixture()).await;
    let (_hole, _fill, hole) = black_hole();
    let admin = free_port();
    let config = world.config(
        &format!("http://{hole}|http://{}", good.addr),
        &format!(
            "[admin]\nlisten = \"{admin}\"\n[mirror.\"http://{hole}\"]\nconnect = \"400ms\"\nmax_fails = 1\nfail_timeout = \"1m\"\n"
        ),
    );
    let path = world.path("modgate.toml");
    std::fs::write(&path, &config).unwrap();
    let mut served = start_served_json(&world.path(""), path.to_str().unwrap(), &[]).await;

    let started = Instant::now();
    let (status, _, _) = endpoint_get(served.addr, PATHS[0]).await;
    let first = started.elapsed();
    assert_eq!(status, 200, "the next mirror of the | list answered");
    assert!(
        first >= Duration::from_millis(400) && first < Duration::from_secs(5),
        "the black hole cost its own connect timeout (400ms), not timeouts.connect (10s): {first:?}"
    );
    let event = served.next_access().await;
    assert_eq!(event["upstream"], format!("http://{}", good.addr));
    let state = event["mirror_state"]
        .as_str()
        .expect("mirror_state names the down mirror");
    assert!(state.starts_with(&format!("http://{hole} down (1 failures")), "{state}");

    for path in &PATHS[1..4] {
        let started = Instant::now();
        let (status, _, _) = endpoint_get(served.addr, path).await;
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(400),
            "a down mirror is skipped at once, not waited on: {path} took {took:?}"
        );
        let event = served.next_access().await;
        assert_eq!(event["upstream"], format!("http://{}", good.addr));
        assert!(event["mirror_state"].as_str().unwrap().contains("retry in"), "{event}");
        assert_eq!(good.count(path), 1);
    }

    let admin_addr = served.admin.expect("the admin listener runs");
    assert_eq!(admin_addr, admin);
    let metrics = admin_get(admin, "/metrics").await.2;
    let down = format!("modgate_mirror_state{{mirror=\"http://{hole}\",state=\"down\"}} 1");
    assert!(metrics.contains(&down), "{metrics}");
    let skipped = format!("modgate_mirror_skipped_total{{mirror=\"http://{hole}\"}} 3");
    assert!(metrics.contains(&skipped), "{metrics}");
    let up = format!("modgate_mirror_state{{mirror=\"http://{}\",state=\"up\"}} 1", good.addr);
    assert!(metrics.contains(&up), "{metrics}");
    let mirrors = admin_get(admin, "/mirrors").await.2;
    assert!(
        mirrors.contains(&format!("http://{hole} down (1 failures")),
        "{mirrors}"
    );
    let page = admin_get(admin, "/").await.2;
    assert!(page.contains("<h2 id=\"mirrors\">Mirrors</h2>"), "{page}");
    assert!(page.contains(&format!("<td>http://{hole}</td><td>down</td>")), "{page}");

    let explain = std::process::Command::new(modgate_bin())
        .args([
            "explain",
            "--config",
            path.to_str().unwrap(),
            "example.test/alpha@v1.0.0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains(&format!(
            "mirror:  http://{hole}: connect 400ms, down after 1 failures for 1m (doubling up to 5m)"
        )),
        "{text}"
    );
    assert!(
        text.contains("health:  down (1 failures") && text.contains(&format!("(from the modgate at {admin})")),
        "{text}"
    );
    assert!(text.contains(&format!("mirror:  http://{}: ", good.addr)), "{text}");
}

/// A mirror failing with 5xx is marked down after `max_fails`, skipped,
/// and after `fail_timeout` one request probes it; its success closes the
/// circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_mirror_recovers_through_one_probe_after_fail_timeout() {
    let world = World::new().await;
    let sick = start_mirror(&world.fixture()).await;
    let spare = start_mirror(&world.fixture()).await;
    sick.status.store(503, Ordering::SeqCst);
    let config = world.config(
        &format!("http://{}|http://{}", sick.addr, spare.addr),
        &format!(
            "[mirror.\"http://{}\"]\nmax_fails = 2\nfail_timeout = \"700ms\"\n",
            sick.addr
        ),
    );
    let proxy = world.proxy(&config).await;
    for path in &PATHS[..2] {
        assert_eq!(endpoint_get(proxy.addr, path).await.0, 200);
        assert_eq!((sick.count(path), spare.count(path)), (1, 1), "{path}");
    }
    // Down: skipped, however many requests come.
    for path in &PATHS[2..4] {
        assert_eq!(endpoint_get(proxy.addr, path).await.0, 200);
        assert_eq!(
            (sick.count(path), spare.count(path)),
            (0, 1),
            "{path} skipped the down mirror"
        );
    }
    sick.status.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Half-open: this request is the probe, and it succeeds.
    let (status, _, _) = endpoint_get(proxy.addr, PATHS[4]).await;
    assert_eq!(status, 200);
    assert_eq!(
        (sick.count(PATHS[4]), spare.count(PATHS[4])),
        (1, 0),
        "the probe went to the recovered mirror"
    );
    // Up again: asked as before.
    assert_eq!(endpoint_get(proxy.addr, PATHS[5]).await.0, 200);
    assert_eq!((sick.count(PATHS[5]), spare.count(PATHS[5])), (1, 0));
    proxy.stop().await;
}

/// On a `,` list a down mirror is a failure, never "not found": the list
/// ends with a 502 that names the mirror and when it is retried, and the
/// next entry never sees the request.
#[tokio::test]
async fn on_a_comma_list_a_down_mirror_ends_the_list_with_a_502() {
    let world = World::new().await;
    let sick = start_mirror(&world.fixture()).await;
    let next = start_mirror(&world.fixture()).await;
    sick.status.store(500, Ordering::SeqCst);
    let config = world.config(
        &format!("http://{},http://{}", sick.addr, next.addr),
        &format!(
            "[mirror.\"http://{}\"]\nmax_fails = 1\nfail_timeout = \"1m\"\n",
            sick.addr
        ),
    );
    let proxy = world.proxy(&config).await;
    let (status, _, body) = endpoint_get(proxy.addr, PATHS[0]).await;
    assert_eq!(status, 502);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains(&format!("http://{}", sick.addr)) && body.contains("500"),
        "{body}"
    );
    let (status, _, body) = endpoint_get(proxy.addr, PATHS[1]).await;
    assert_eq!(status, 502);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.starts_with("modgate: ")
            && body.contains("marked down after 1 failures in a row")
            && body.contains("retried in"),
        "{body}"
    );
    // The last error names the first request: it is not told to another.
    assert!(!body.contains("@v/list"), "{body}");
    assert_eq!(sick.count(PATHS[1]), 0, "skipped while down");
    assert_eq!(
        next.count(PATHS[0]) + next.count(PATHS[1]),
        0,
        "`,` never falls through on a failure"
    );
    proxy.stop().await;
}

/// The real go, through the endpoint: with the first mirror of a `|` list
/// black-holed, `go mod download` of a fresh module cache takes less than
/// twice as long as with that mirror healthy. The mirror costs its
/// `connect` (100 ms) until `max_fails` (3) marks it down, then nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mod_download_through_an_outage_of_the_first_mirror_costs_under_twice_the_healthy_time() {
    let world = World::new().await;
    let first = start_mirror(&world.fixture()).await;
    let second = start_mirror(&world.fixture()).await;
    // Real mirrors are a network away: 50 ms per answer.
    for m in [&first, &second] {
        m.head_delay_ms.store(50, Ordering::SeqCst);
    }
    let (_hole, _fill, hole) = black_hole();
    let run = |first: String, cache: &'static str| {
        let config = world
            .config(
                &format!("{first}|http://{}", second.addr),
                &format!("[mirror.\"{first}\"]\nconnect = \"100ms\"\nfirst_byte = \"2s\"\n"),
            )
            .replace("dir = \"cache\"", &format!("dir = \"{cache}\""));
        let world = &world;
        async move {
            let proxy = world.proxy(&config).await;
            let project = GoProject::new(REQUIRES);
            let started = Instant::now();
            let run = project.download(&via_endpoint(&proxy, world)).await;
            let took = started.elapsed();
            run.assert_ok();
            proxy.stop().await;
            (took, run.modules)
        }
    };
    let zip = "/example.test/alpha/@v/v1.1.0.zip";
    // Two rounds, interleaved, each with a fresh modgate (fresh health)
    // and fresh caches; the best of each, so a busy machine's hiccup in
    // either does not decide.
    let (mut healthy, mut outage) = (Duration::MAX, Duration::MAX);
    for round in 0..2 {
        let served = (first.count(zip), second.count(zip));
        let (took, modules) = run(format!("http://{}", first.addr), ["healthy-0", "healthy-1"][round]).await;
        assert_eq!(
            (first.count(zip), second.count(zip)),
            (served.0 + 1, served.1),
            "the first mirror served"
        );
        healthy = healthy.min(took);
        let (took, during) = run(format!("http://{hole}"), ["outage-0", "outage-1"][round]).await;
        assert_eq!(
            second.count(zip),
            served.1 + 1,
            "the second mirror served during the outage"
        );
        assert_eq!(during, modules, "the same modules and hashes");
        outage = outage.min(took);
    }
    eprintln!("go mod download: healthy {healthy:?}, first mirror black-holed {outage:?}");
    assert!(
        outage < healthy * 2,
        "go mod download took {outage:?} with the first mirror black-holed, {healthy:?} with it healthy"
    );
}

/// An expired list whose upstream is slower than `cache.stale_after` is
/// answered stale at once; the fetch goes on behind and refreshes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gets_the_stale_list_at_once_and_the_refresh_lands_behind() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world
        .config(&format!("http://{}", mirror.addr), "")
        .replace("list_ttl = \"1h\"", "list_ttl = \"300ms\"\nstale_after = \"300ms\"");
    let proxy = world.proxy(&config).await;
    let (status, headers, body) = endpoint_get(proxy.addr, LIST).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "miss"));
    assert_eq!(body, "v1.0.0\nv1.1.0\n");
    mirror
        .replaced
        .lock()
        .unwrap()
        .insert(LIST.into(), b"v1.0.0\nv1.1.0\nv1.2.0\n".to_vec());
    mirror.head_delay_ms.store(2_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let started = Instant::now();
    let (status, headers, body) = endpoint_get(proxy.addr, LIST).await;
    let took = started.elapsed();
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "stale"));
    assert_eq!(body, "v1.0.0\nv1.1.0\n", "the stale copy");
    assert!(
        took < Duration::from_secs(2),
        "not waiting for the slow upstream: {took:?}"
    );
    assert_eq!(mirror.count(LIST), 2, "the refresh was asked for");

    // The client went away with the stale copy; the refresh still lands.
    mirror.head_delay_ms.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, headers, body) = endpoint_get(proxy.addr, LIST).await;
        assert_eq!(status, 200);
        if headers["x-cache"] == "hit" {
            assert_eq!(body, "v1.0.0\nv1.1.0\nv1.2.0\n", "refreshed in the background");
            break;
        }
        assert!(Instant::now() < deadline, "the background refresh never landed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mirror.count(LIST), 2, "served from the refresh, not fetched again");
    proxy.stop().await;
}

/// When every source is down, the stale list is answered at once, without
/// waiting for `stale_after`.
#[tokio::test]
async fn a_down_mirror_gets_the_stale_list_without_waiting() {
    let world = World::new().await;
    let mirror = start_mirror(&world.fixture()).await;
    let config = world
        .config(
            &format!("http://{}", mirror.addr),
            &format!(
                "[mirror.\"http://{}\"]\nmax_fails = 1\nfail_timeout = \"1m\"\n",
                mirror.addr
            ),
        )
        .replace("list_ttl = \"1h\"", "list_ttl = \"200ms\"\nstale_after = \"30s\"");
    let proxy = world.proxy(&config).await;
    assert_eq!(endpoint_get(proxy.addr, LIST).await.0, 200);
    mirror.status.store(500, Ordering::SeqCst);
    // Marked down by another request's failure.
    assert_eq!(endpoint_get(proxy.addr, PATHS[1]).await.0, 502);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = mirror.count(LIST);
    let started = Instant::now();
    let (status, headers, body) = endpoint_get(proxy.addr, LIST).await;
    assert_eq!((status, headers["x-cache"].to_str().unwrap()), (200, "stale"));
    assert_eq!(body, "v1.0.0\nv1.1.0\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not waiting out stale_after"
    );
    assert_eq!(mirror.count(LIST), asked, "the down mirror was not asked");
    proxy.stop().await;
}

// ---------- mirrors that need a login ----------

/// Each request's path and Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A module proxy that wants `Authorization: Basic user:password`, answers
/// the module `corp.test/moved` with a 302 to `elsewhere`, and records every
/// Authorization header it is sent.
struct PrivateMirror {
    addr: SocketAddr,
    seen: Seen,
    _task: tokio::task::JoinHandle<()>,
}

async fn start_private_mirror(bind: &str, want: Option<String>, elsewhere: Option<SocketAddr>) -> PrivateMirror {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, want) = (log.clone(), want.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or("?").to_owned());
                    let path = req.uri().path().to_owned();
                    log.lock().unwrap().push((path.clone(), auth.clone()));
                    let resp = if let (true, Some(elsewhere)) = (path.starts_with("/corp.test/moved/"), elsewhere) {
                        let mut r = Response::new(full(""));
                        *r.status_mut() = StatusCode::FOUND;
                        let to = format!("http://{elsewhere}{path}");
                        r.headers_mut().insert("location", to.parse().unwrap());
                        r
                    } else if want.is_some() && auth != want {
                        let mut r = Response::new(full("who are you?\n"));
                        *r.status_mut() = StatusCode::UNAUTHORIZED;
                        r.headers_mut()
                            .insert("www-authenticate", "Basic realm=\"athens\"".parse().unwrap());
                        r
                    } else if path.ends_with("/@v/list") {
                        Response::new(full(Bytes::from_static(b"v1.0.0\n")))
                    } else {
                        let mut r = Response::new(full("not found\n"));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    PrivateMirror {
        addr,
        seen,
        _task: task,
    }
}

const SECRET: &str = "s3cr3t-Pa55-for-athens";

/// A private mirror answers 401 without credentials and 200 with them;
/// they go to it alone (a redirect to another host drops them), and no log
/// line, error, `check` or `explain` output shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_mirror_gets_its_login_and_nobody_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("builder:{SECRET}"))
    );
    let other = start_private_mirror("127.0.0.2:0", None, None).await;
    let athens = start_private_mirror("127.0.0.1:0", Some(basic.clone()), Some(other.addr)).await;
    let config_for = |table: &str| {
        format!(
            "[admin]\nlisten = \"\"\n[cache]\ndir = \"\"\n{table}\n[[rule]]\nname = \"corp\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
            athens.addr
        )
    };
    let env = [("ATHENS_PASSWORD".to_owned(), SECRET.to_owned())];

    // Without a login: the mirror's 401, named in the 502.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, config_for("")).unwrap();
    let mut served = start_served_json(dir.path(), bare.to_str().unwrap(), &env).await;
    let (status, _, body) = endpoint_get(served.addr, "/corp.test/lib/@v/list").await;
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains("401"), "{body:?}");
    assert_eq!(athens.seen.lock().unwrap().last().unwrap().1, None);
    let _ = served.next_access().await;
    drop(served);

    // With one: 200.
    let table = format!(
        "[mirror.\"http://{}\"]\nauth = \"basic\"\nusername = \"builder\"\npassword_env = \"ATHENS_PASSWORD\"\n",
        athens.addr
    );
    let with = dir.path().join("with.toml");
    std::fs::write(&with, config_for(&table)).unwrap();
    let mut served = start_served_json(dir.path(), with.to_str().unwrap(), &env).await;
    let (status, _, body) = endpoint_get(served.addr, "/corp.test/lib/@v/list").await;
    assert_eq!((status, &body[..]), (200, &b"v1.0.0\n"[..]));
    assert_eq!(
        athens.seen.lock().unwrap().last().unwrap().1.as_deref(),
        Some(basic.as_str())
    );
    let mut log = vec![served.next_access_line().await];

    // A redirect to another host: followed, without the login.
    let (status, _, _) = endpoint_get(served.addr, "/corp.test/moved/@v/list").await;
    assert_eq!(status, 200, "the other host answered");
    assert_eq!(
        athens.seen.lock().unwrap().last().unwrap(),
        &("/corp.test/moved/@v/list".to_owned(), Some(basic.clone())),
        "the mirror itself got the login"
    );
    assert_eq!(
        other.seen.lock().unwrap().as_slice(),
        &[("/corp.test/moved/@v/list".to_owned(), None)],
        "the other host did not"
    );
    log.push(served.next_access_line().await);

    // An error that involves the mirror: still no secret.
    let (status, _, body) = endpoint_get(served.addr, "/corp.test/lib/@v/v9.9.9.info").await;
    assert_eq!(status, 404);
    log.push(String::from_utf8_lossy(&body).into_owned());
    log.push(served.next_access_line().await);
    sigterm(&served.child);
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(10), served.lines.next_line()).await {
        log.push(line);
    }
    log.extend(served.startup.iter().cloned());
    for tool in [
        vec!["check", "--config", with.to_str().unwrap()],
        vec!["explain", "--config", with.to_str().unwrap(), "corp.test/lib@v1.0.0"],
    ] {
        let out = std::process::Command::new(modgate_bin())
            .args(&tool)
            .env("ATHENS_PASSWORD", SECRET)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("login basic: user builder, password from env ATHENS_PASSWORD"),
            "{tool:?}: {text}"
        );
        log.push(text);
    }
    let everything = log.join("\n");
    let encoded = basic.trim_start_matches("Basic ");
    assert!(!everything.contains(SECRET), "the password leaked:\n{everything}");
    assert!(!everything.contains(encoded), "the encoded login leaked:\n{everything}");
}

/// A missing credential source is an error at load, with file:line:col,
/// and the message never holds a secret.
#[test]
fn a_mirror_login_from_a_missing_variable_is_refused_at_load() {
    let config = "[mirror.\"https://athens.corp.test\"]\nauth = \"bearer\"\ntoken_env = \"MODGATE_TEST_NO_SUCH_VARIABLE\"\n\n[[rule]]\nname = \"corp\"\naction = \"mirror\"\nmirrors = \"https://athens.corp.test\"\n";
    let err = modgate::config::Config::parse(config, "m.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("m.toml:3:"), "{err}");
    assert!(err.contains("MODGATE_TEST_NO_SUCH_VARIABLE"), "{err}");
}

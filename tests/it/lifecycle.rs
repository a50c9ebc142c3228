//! Graceful shutdown: in-flight requests and tunnels finish, new
//! connections are refused.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn shutdown_lets_in_flight_requests_and_tunnels_finish() {
    // The origins answer only when `release` fires, after the shutdown has
    // begun; `arrived` says each has its request (or tunnel) in hand.
    let release = Arc::new(tokio::sync::Notify::new());
    let arrived = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, a) = (release.clone(), arrived.clone());
    let origin = start_origin(Arc::new(move |_req| {
        let (r, a) = (r.clone(), a.clone());
        Box::pin(async move {
            let released = r.notified();
            a.add_permits(1);
            released.await;
            Response::new(full("late but complete"))
        })
    }))
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_origin = listener.local_addr().unwrap();
    let (r, a) = (release.clone(), arrived.clone());
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let released = r.notified();
        a.add_permits(1);
        released.await;
        s.write_all(b"tunnel done").await.unwrap();
    });

    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nshutdown = \"5s\"\n")).await;
    let addr = proxy.addr;
    let (mut tunnel, head) = connect_via(addr, &tcp_origin.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut conn = ProxyConn::open(addr).await;
    let request = tokio::spawn(async move {
        let resp = conn
            .send(Request::get(format!("http://{}/", origin.addr)).body(full("")).unwrap())
            .await;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        drop(origin);
        body
    });
    // Both origins hold their work before the shutdown starts.
    let _both = tokio::time::timeout(STEP, arrived.acquire_many(2))
        .await
        .expect("the request and the tunnel reach their origins")
        .unwrap();
    let stopping = tokio::spawn(proxy.stop());
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener is closed during shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!stopping.is_finished(), "the shutdown waits for the work in flight");
    release.notify_waiters();

    assert_eq!(request.await.unwrap(), "late but complete");
    let mut got = String::new();
    tokio::time::timeout(STEP, tunnel.read_to_string(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "tunnel done");
    drop(tunnel);
    tokio::time::timeout(STEP, stopping)
        .await
        .expect("shutdown completes")
        .unwrap();
}

#[tokio::test]
async fn shutdown_cuts_work_that_outlives_the_grace_period() {
    let (silent, _task) = start_silent_origin().await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nshutdown = \"500ms\"\n")).await;
    let (mut tunnel, head) = connect_via(proxy.addr, &silent.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = std::time::Instant::now();
    proxy.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(STEP, tunnel.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the tunnel was closed");
}

#[tokio::test]
async fn signals_sent_the_moment_modgate_says_it_listens_are_handled() {
    // A supervisor may stop or reload modgate as soon as it reads the
    // listening line: the handlers are in place by then, so SIGHUP reloads
    // (it does not end the process) and SIGTERM shuts down gracefully, with
    // the log flushed to its last line.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut served = start_served(
            dir.path(),
            &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        )
        .await;
        signal(&served.child, "HUP");
        signal(&served.child, "TERM");
        let mut log = Vec::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(STEP, served.lines.next_line()).await {
            log.push(line);
        }
        let status = tokio::time::timeout(STEP, served.child.wait()).await.unwrap().unwrap();
        assert!(
            status.success(),
            "a graceful exit, not the signal's default action: {status:?} {log:#?}"
        );
        assert!(
            log.iter().any(|l| l.contains("stopped")),
            "the log ends with the stop: {log:#?}"
        );
    }
}

#[tokio::test]
async fn the_spool_lives_under_the_cache_goes_at_exit_and_a_killed_ones_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let spools = cache.join(".modgate/spool");
    // A spool a killed modgate left (no process has this pid: above the
    // kernel's limit), untouched for two minutes.
    let left = spools.join("4194305-x1y2z3");
    std::fs::create_dir_all(&left).unwrap();
    std::fs::write(left.join("0.spool"), b"half a zip").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::open(&left).unwrap().set_modified(old).unwrap();
    std::fs::write(dir.path().join("m.toml"), "[cache]\ndir = \"cache\"\n").unwrap();

    let mut served = start_served(dir.path(), &["--config", "m.toml", "--listen", "127.0.0.1:0"]).await;
    let pid = served.child.id().unwrap();
    let names = || -> Vec<String> {
        std::fs::read_dir(&spools)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let running = names();
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].starts_with(&format!("{pid}-")), "{running:?}");

    sigterm(&served.child);
    let status = tokio::time::timeout(STEP, served.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(names(), Vec::<String>::new(), "the spool is removed at exit");
}

//! CONNECT tunnels: TLS end to end, half-close, early data, idle timeout.

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

#[tokio::test]
async fn a_tunnel_carries_tls_end_to_end_to_a_hosts_override() {
    let pki = TestPki::new("modgate test root");
    let (origin, _task) = start_tls_origin(&pki, &["origin.test"], "hello over tls").await;
    // The origin's root is the public one here: an untrusted chain would
    // close the tunnel (tunnel_policy.rs).
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("public-root.pem");
    std::fs::write(&roots, &pki.ca_pem).unwrap();
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[tls]\npublic_roots = {roots:?}\n[hosts]\n\"origin.test\" = \"{origin}\"\n"
    )))
    .await;

    let (stream, head) = connect_via(proxy.addr, "origin.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_connect(stream, pki.client_config(), "origin.test").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            http::Request::get("/")
                .header("host", "origin.test")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "hello over tls");
    proxy.stop().await;
}

/// The origin reads until the client half-closes, then answers and closes:
/// the tunnel must pass the half-close on and keep the other direction open.
#[tokio::test]
async fn half_close_is_relayed_and_early_bytes_are_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got)).as_bytes())
            .await
            .unwrap();
    });
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // The CONNECT and the first tunnel bytes in one write, as eager clients do.
    s.write_all(format!("CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\nearly+").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"late").await.unwrap();
    s.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(STEP, s.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "got 10 bytes: early+late");
    proxy.stop().await;
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let (origin, _task) = start_silent_origin().await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nidle = \"1s\"\n")).await;
    let (mut s, head) = connect_via(proxy.addr, &origin.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the tunnel closes without data");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_tunnel_to_a_refused_port_is_a_502() {
    let port = closed_port().await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (_s, head) = connect_via(proxy.addr, &port.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    proxy.stop().await;
}

/// 48 MiB each way through an echo server: both directions cross the point
/// where the relay switches from copying to splice(2), and every byte is
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfers_are_byte_exact_in_both_directions() {
    const TOTAL: u64 = 48 * 1024 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (s, head) = connect_via(proxy.addr, &echo.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < TOTAL {
            let chunk = pattern_chunk(sent, 200_000.min((TOTAL - sent) as usize));
            w.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        w.shutdown().await.unwrap();
    });
    let mut got = 0u64;
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = tokio::time::timeout(STEP, r.read(&mut buf))
            .await
            .expect("echo in time")
            .unwrap();
        if n == 0 {
            break;
        }
        if let Some(bad) = pattern_mismatch(got, &buf[..n]) {
            panic!("byte {bad} differs");
        }
        got += n as u64;
    }
    writer.await.unwrap();
    assert_eq!(got, TOTAL);
    proxy.stop().await;
}

/// A client that gives up on a CONNECT while modgate still dials (here a
/// black-holed address) is logged all the same: status 499, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_abandoned_while_dialing_is_still_logged() {
    let (_hole, _fill, hole) = black_hole();
    let dir = tempfile::tempdir().unwrap();
    let config = "[timeouts]\nconnect = \"20s\"\n[[rule]]\nname = \"all\"\naction = \"direct\"\n";
    std::fs::write(dir.path().join("modgate.toml"), config).unwrap();
    let mut served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let mut s = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    s.write_all(format!("CONNECT {hole} HTTP/1.1\r\nHost: {hole}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(s);
    let event = served.next_access().await;
    assert_eq!(
        (event["method"].as_str(), event["status"].as_u64()),
        (Some("CONNECT"), Some(499)),
        "{event}"
    );
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.contains("the client went away")),
        "{event}"
    );
}

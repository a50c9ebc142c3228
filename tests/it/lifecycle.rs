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
    // An origin that takes 500 ms to answer.
    let origin = start_origin(Arc::new(|_req| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Response::new(full("late but complete"))
        })
    }))
    .await;
    // A TCP origin that answers a tunnel 500 ms after it opens.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
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
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(proxy.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed during shutdown"
    );

    assert_eq!(request.await.unwrap(), "late but complete");
    let mut got = String::new();
    tokio::time::timeout(STEP, tunnel.read_to_string(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "tunnel done");
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

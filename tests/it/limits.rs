//! Connection limits (issue 9, item 5): one client address holding its
//! maximum cannot starve another, and the global limit holds.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::*;

/// A connection to `proxy` from the local address `from`.
async fn connect_from(from: &str, proxy: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(proxy).await.unwrap()
}

/// A plain GET through the proxy from `from`; the whole answer.
async fn get_from(from: &str, proxy: SocketAddr, origin: SocketAddr) -> String {
    let mut s = connect_from(from, proxy).await;
    s.write_all(format!("GET http://{origin}/ HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn one_address_at_its_limit_does_not_starve_another() {
    let origin = start_text_origin("served").await;
    let proxy = start_proxy(&config_allowing_loopback(
        "[limits]\nmax_connections = 5\nper_client = 3\n",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", proxy.addr).await);
    }
    // The fourth from the same address: 503, at once.
    let reply = get_from("127.0.0.1", proxy.addr, origin.addr).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(
        reply.contains("modgate: too many connections from 127.0.0.1") && reply.contains("limits.per_client = 3"),
        "{reply}"
    );
    // Another address is served.
    let reply = get_from("127.0.0.2", proxy.addr, origin.addr).await;
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("served"),
        "{reply}"
    );
    // Freeing one place lets 127.0.0.1 in again (the proxy sees the close
    // and releases the place; retry until it has).
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..100 {
        if get_from("127.0.0.1", proxy.addr, origin.addr)
            .await
            .starts_with("HTTP/1.1 200")
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "a freed place is given back");
    // The global limit: 2 held from .1, 3 from .3 make 5.
    for _ in 0..3 {
        held.push(connect_from("127.0.0.3", proxy.addr).await);
    }
    let reply = get_from("127.0.0.4", proxy.addr, origin.addr).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("limits.max_connections = 5"), "{reply}");
    drop(held);
    proxy.stop().await;
}

/// Keep-alive connections to many upstream hosts cannot hold every
/// descriptor: pooled connections count against `max_connections`, past
/// half of it the idle ones are closed, and at it a new one waits for one
/// to close. One client connection asking 40 hosts in turn is served
/// throughout, and never holds more than the limit open behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_to_many_hosts_stay_within_the_limit() {
    let mut origins = Vec::new();
    for _ in 0..40 {
        origins.push(start_text_origin("many").await);
    }
    let proxy = start_proxy(&config_allowing_loopback("[limits]\nmax_connections = 16\n")).await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    let mut most = 0;
    for origin in &origins {
        let url = format!("http://{}/", origin.addr);
        let resp = conn.send(http::Request::get(&url).body(full("")).unwrap()).await;
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(status, 200, "{url}: {body:?}, {} pooled open", proxy.pooled_open());
        most = most.max(proxy.pooled_open());
    }
    assert!(most <= 16, "{most} pooled connections open behind one client");
    let opened: usize = origins
        .iter()
        .map(|o| o.connections.load(std::sync::atomic::Ordering::SeqCst))
        .sum();
    assert_eq!(opened, 40, "one connection per host");
    // The idle ones were closed as it went: well under one per host.
    eventually("the pool to hold at most the limit", || proxy.pooled_open() <= 16).await;
}

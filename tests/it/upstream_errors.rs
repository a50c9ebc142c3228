//! Upstream failures: unresolvable names, refused ports, silent servers.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn hosts_overrides_route_names_to_local_servers() {
    let origin = start_text_origin("from the override").await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[hosts]\n\"proxy.golang.org\" = \"{}\"\n",
        origin.addr
    )))
    .await;
    let (status, _, body) = get_via(proxy.addr, "http://proxy.golang.org/").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "from the override"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_unresolvable_host_is_a_502_naming_it() {
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nconnect = \"3s\"\n")).await;
    let (status, headers, body) = get_via(proxy.addr, "http://no-such-host.invalid/").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert!(
        body.starts_with("modgate: cannot resolve no-such-host.invalid"),
        "{body}"
    );
    let (_s, head) = connect_via(proxy.addr, "no-such-host.invalid:443").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_port_is_a_502_naming_it() {
    let port = closed_port().await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{port}/")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with(&format!("modgate: cannot connect to {port}")),
        "{body}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_within_the_header_timeout() {
    let (silent, _task) = start_silent_origin().await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nheader = \"1s\"\n")).await;
    let started = Instant::now();
    let (status, _, body) = get_via(proxy.addr, &format!("http://{silent}/")).await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, format!("modgate: upstream {silent} did not answer within 1s\n"));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    proxy.stop().await;
}

/// `timeouts.connect`: an address that never answers the SYN is a 504
/// naming it after the connect timeout, for a request and a tunnel alike.
#[tokio::test]
async fn a_connect_timeout_is_a_504_naming_the_upstream() {
    let (_hole, _fill, hole) = black_hole();
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[timeouts]\nconnect = \"1s\"\nheader = \"30s\"\n[hosts]\n\"hole.test\" = \"{hole}\"\n"
    )))
    .await;
    let started = Instant::now();
    let (status, _, body) = get_via(proxy.addr, "http://hole.test/").await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.starts_with("modgate: ") && body.contains("hole.test"), "{body}");
    assert!(body.contains("1s"), "names the timeout: {body}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let (_s, head) = connect_via(proxy.addr, "hole.test:443").await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    proxy.stop().await;
}

/// An origin that answers every request with `raw`, then closes.
async fn start_raw_origin(raw: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(raw).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Issue 9 item 10: a response head that cannot be passed on safely — both
/// Content-Length and Transfer-Encoding, or a 101 nobody asked for — is a
/// 502 with a modgate line naming the upstream.
#[tokio::test]
async fn upstream_framing_that_cannot_be_passed_on_is_a_502() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let both = start_raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{both}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(
        body.starts_with(&format!(
            "modgate: upstream {both} failed: sent both Content-Length and Transfer-Encoding"
        )),
        "{body}"
    );
    let upgrade =
        start_raw_origin(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n").await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{upgrade}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(body.contains("switched protocols (101)"), "{body}");
    proxy.stop().await;
}

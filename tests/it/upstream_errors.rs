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

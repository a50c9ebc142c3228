//! modgate never connects to itself: a CONNECT target, a forwarded URL, a
//! mirror or a `[hosts]` entry that names one of its own listeners is
//! refused with 508 before any connection is opened, instead of each
//! request coming back as a new one until the connection limits stop it.

use std::net::SocketAddr;

use modgate::config::Config;
use modgate::proxy::server::Server;
use modgate::proxy::workers::Workers;

use crate::support::*;

/// A proxy on `addr` (chosen before the config that names it is written).
async fn start_on(config: &str, addr: SocketAddr) -> Server {
    let config = Config::parse(config, "test.toml").expect("test config is valid");
    Server::start_on(config, Some(addr), Workers::start(2).unwrap())
        .await
        .expect("proxy binds")
}

#[tokio::test]
async fn a_connect_or_a_forwarded_request_to_modgate_itself_is_a_loop() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let port = proxy.addr.port();
    for target in [
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("localhost:{port}"),
    ] {
        let (_s, head) = connect_via(proxy.addr, &target).await;
        assert!(head.starts_with("HTTP/1.1 508"), "CONNECT {target}: {head}");
    }
    let (status, _, body) = get_via(proxy.addr, &format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(status, 508, "{body}");
    assert!(body.starts_with("modgate: refused a loop: "), "{body}");
    assert!(body.contains("modgate's own listener"), "{body}");
    // Other loopback ports are not loops.
    let origin = start_text_origin("fine").await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://127.0.0.1:{}/x", origin.addr.port())).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "fine"));
}

#[tokio::test]
async fn a_mirror_or_a_hosts_entry_naming_modgate_is_a_loop_and_costs_one_request() {
    let addr = closed_port().await;
    let config = config_allowing_loopback(&format!(
        r#"
[hosts]
"proxy.golang.org" = "127.0.0.1:{port}"

[[rule]]
name = "aliased"
modules = ["example.com/aliased"]
action = "mirror"
mirrors = "https://proxy.golang.org"

[[rule]]
name = "mods"
modules = ["*"]
action = "mirror"
mirrors = "http://{addr}"
"#,
        port = addr.port()
    ));
    let server = start_on(&config, addr).await;
    for module in ["example.com/hello", "example.com/aliased"] {
        let answer = raw_exchange(
            addr,
            format!("GET /{module}/@v/list HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(answer.contains("refused a loop"), "{module}: {answer}");
        assert!(
            answer.contains(&format!("modgate's own listener {addr}")),
            "{module}: {answer}"
        );
    }
    // Each was the one request modgate served: none came back to it.
    let metrics = server.live().current().telemetry.metrics.encode();
    let requests: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("modgate_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(requests, 2.0, "{metrics}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_listener_is_one_of_modgates_own() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_allowing_loopback("[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"\"\n");
    std::fs::write(dir.path().join("modgate.toml"), text).unwrap();
    let served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let admin = served.admin.expect("the admin listening line");
    let (_s, head) = connect_via(served.addr, &admin.to_string()).await;
    assert!(head.starts_with("HTTP/1.1 508"), "CONNECT {admin}: {head}");
}

//! Blocking by host glob, port, client and destination, with the text the
//! user sees; the embedded default's refusal of internal destinations.

use std::sync::Arc;

use hyper::Response;
use modgate::config::{Config, EMBEDDED_DEFAULT, EMBEDDED_NAME};

use crate::support::*;

fn assert_blocked(status: http::StatusCode, headers: &http::HeaderMap, body: &str, expected: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(body.trim_end(), expected);
}

#[tokio::test]
async fn host_globs_block_subdomains_and_tunnels_too() {
    let origin = start_text_origin("ok").await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[hosts]\n\"a.evil.test\" = \"{o}\"\n\"evil.test\" = \"{o}\"\n\n[[rule]]\nname = \"evil\"\nhosts = [\"*.evil.test\"]\naction = \"block\"\nreason = \"SEC-42: known malicious\"\n",
        o = origin.addr
    )))
    .await;
    let (status, headers, body) = get_via(proxy.addr, "http://A.Evil.Test/x").await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'evil': SEC-42: known malicious",
    );
    // `*.evil.test` does not cover evil.test itself.
    let (status, _, body) = get_via(proxy.addr, "http://evil.test/x").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));
    let (_s, head) = connect_via(proxy.addr, "a.evil.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let reply = raw_exchange(proxy.addr, b"CONNECT a.evil.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(
        reply.ends_with("\r\n\r\nmodgate: blocked by rule 'evil': SEC-42: known malicious\n"),
        "{reply}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn ports_are_matched() {
    let origin = start_text_origin("ok").await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[[rule]]\nname = \"no-such-port\"\nports = [\"{p}-{p}\"]\naction = \"block\"\nreason = \"port {p} is closed by policy\"\n",
        p = origin.addr.port()
    )))
    .await;
    let (status, headers, body) = get_via(proxy.addr, &format!("http://{}/", origin.addr)).await;
    assert_blocked(
        status,
        &headers,
        &body,
        &format!(
            "modgate: blocked by rule 'no-such-port': port {} is closed by policy",
            origin.addr.port()
        ),
    );
    proxy.stop().await;
}

#[tokio::test]
async fn src_rules_match_the_client_address() {
    let origin = start_text_origin("ok").await;
    let url = format!("http://{}/", origin.addr);
    let other = start_proxy(&config_allowing_loopback(
        "[[rule]]\nname = \"lab\"\nsrc = [\"10.0.0.0/8\"]\naction = \"block\"\nreason = \"lab clients only\"\n",
    ))
    .await;
    let (status, _, body) = get_via(other.addr, &url).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (200, "ok"),
        "a 10/8 rule does not match 127.0.0.1"
    );
    other.stop().await;

    let local = start_proxy(&config_allowing_loopback(
        "[[rule]]\nname = \"locals\"\nsrc = [\"127.0.0.0/8\", \"::1\"]\naction = \"block\"\nreason = \"not from this host\"\n",
    ))
    .await;
    let (status, headers, body) = get_via(local.addr, &url).await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'locals': not from this host",
    );
    local.stop().await;
}

#[tokio::test]
async fn dst_rules_check_the_resolved_address() {
    let origin = start_text_origin("ok").await;
    // Both names point at the origin; only the address says it is internal.
    let proxy = start_proxy(&format!(
        "[hosts]\n\"inside.test\" = \"{o}\"\n\"mixed.test\" = [\"{o}\", \"192.0.2.10:80\"]\n\n\
         [[rule]]\nname = \"lab-net\"\ndst = [\"192.0.2.0/24\"]\naction = \"direct\"\n\n\
         [[rule]]\nname = \"no-loopback\"\ndst = [\"127.0.0.0/8\"]\naction = \"block\"\nreason = \"destination is an internal address\"\n\n\
         [[rule]]\nname = \"default\"\naction = \"direct\"\n",
        o = origin.addr
    ))
    .await;
    let (status, headers, body) = get_via(proxy.addr, "http://inside.test/").await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'no-loopback': destination is an internal address",
    );
    // One refused address refuses the name, whatever the other addresses are.
    let (status, headers, body) = get_via(proxy.addr, "http://mixed.test/").await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'no-loopback': destination is an internal address",
    );
    let (_s, head) = connect_via(proxy.addr, "inside.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // IPv4-mapped IPv6 does not slip past an IPv4 rule.
    let (_s, head) = connect_via(proxy.addr, &format!("[::ffff:127.0.0.1]:{}", origin.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn the_embedded_default_refuses_loopback_and_cloud_metadata() {
    // Also the regression test for issue 9 item 9 (IPv4 embedded in IPv6).
    let origin = start_text_origin("secret").await;
    let config = Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME).unwrap();
    let proxy = start_proxy_with(config).await;
    let (status, headers, body) = get_via(proxy.addr, &format!("http://{}/", origin.addr)).await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'no-internal': destination is an internal address",
    );
    let (status, headers, body) = get_via(proxy.addr, "http://169.254.169.254/latest/meta-data/").await;
    assert_blocked(
        status,
        &headers,
        &body,
        "modgate: blocked by rule 'no-internal': destination is an internal address",
    );
    for target in [
        origin.addr.to_string(),
        "169.254.169.254:80".into(),
        "[::1]:22".into(),
        "0.0.0.0:22".into(),
        // IPv4 inside IPv6 (issue 9, item 9): NAT64, IPv4-compatible, 6to4.
        format!("[64:ff9b::127.0.0.1]:{}", origin.addr.port()),
        "[64:ff9b::a9fe:a9fe]:80".into(),
        "[64:ff9b:1:7f00:0:100::]:80".into(),
        format!("[::127.0.0.1]:{}", origin.addr.port()),
        "[2002:a9fe:a9fe::1]:80".into(),
    ] {
        let (_s, head) = connect_via(proxy.addr, &target).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    assert_eq!(
        origin.connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the origin"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_no_rule_matches_is_refused() {
    let proxy = start_proxy("[[rule]]\nname = \"only-corp\"\nhosts = [\"corp.test\"]\naction = \"direct\"\n").await;
    let (status, _, body) = get_via(proxy.addr, "http://elsewhere.test/").await;
    assert_eq!(status, 403);
    assert!(body.starts_with("modgate: no rule matched elsewhere.test:80"), "{body}");
    proxy.stop().await;
}

/// A mirror's redirect back to its own origin is followed (the mirror was
/// configured, and admitted, already), even on an address a `dst` rule
/// guards; a redirect to another host is checked as a CONNECT to it would
/// be first, so a `modules` rule ahead of the `no-internal` guard does not
/// let a mirror send modgate to an internal address.
#[tokio::test]
async fn a_redirect_to_the_mirrors_own_origin_is_followed_and_to_a_guarded_host_is_not() {
    let origin = start_origin(Arc::new(|req| {
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let port = req.headers()["host"]
                .to_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_owned();
            let (status, location, body) = match path.as_str() {
                "/m.test/same/@v/list" => (302, "/files/list".to_owned(), ""),
                "/m.test/other/@v/list" => (302, format!("http://internal.test:{port}/files/list"), ""),
                "/files/list" => (200, String::new(), "v1.0.0\n"),
                _ => (404, String::new(), "not here"),
            };
            let mut resp = Response::builder().status(status);
            if !location.is_empty() {
                resp = resp.header("location", location);
            }
            resp.body(full(body)).unwrap()
        })
    }))
    .await;
    let mods = format!(
        "[[rule]]\nname = \"mods\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        origin.addr
    );
    let guard = "[[rule]]\nname = \"no-internal\"\ndst = [\"127.0.0.0/8\"]\naction = \"block\"\nreason = \"destination is an internal address\"\n";
    // The guard after the module rule, and before it (the embedded
    // default's order).
    for rules in [format!("{mods}\n{guard}"), format!("{guard}\n{mods}")] {
        let config = format!(
            "[hosts]\n\"internal.test\" = \"127.0.0.1\"\n\n{rules}\n[[rule]]\nname = \"default\"\naction = \"direct\"\n"
        );
        let proxy = start_proxy(&config).await;
        let get = |module: &str| {
            format!(
                "GET /{module}/@v/list HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                proxy.addr
            )
        };
        let same = raw_exchange(proxy.addr, get("m.test/same").as_bytes()).await;
        assert!(same.starts_with("HTTP/1.1 200"), "{rules}: {same}");
        assert!(same.ends_with("v1.0.0\n"), "{rules}: {same}");
        let other = raw_exchange(proxy.addr, get("m.test/other").as_bytes()).await;
        assert!(other.starts_with("HTTP/1.1 403"), "{rules}: {other}");
        assert!(
            other.contains("modgate: blocked by rule 'no-internal': a redirect to internal.test:"),
            "{rules}: {other}"
        );
    }
}

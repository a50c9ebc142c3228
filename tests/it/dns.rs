//! DNS (issue 9, items 7 and 20): every upstream connection goes to an
//! address the policy checked, answers are cached for their own TTLs, a
//! black-holed address costs one Happy Eyeballs delay, and a DNS timeout is
//! a 504.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;

use crate::fake_dns::*;
use crate::support::*;

/// An origin on `addr` answering every request with `text`, over TLS for
/// `names` when `pki` is given; counts its connections.
async fn origin_on(addr: SocketAddr, pki: Option<&TestPki>, names: &[&str], text: &'static str) -> Arc<AtomicUsize> {
    install_crypto();
    let listener = TcpListener::bind(addr).await.unwrap();
    let acceptor = pki.map(|pki| {
        let (chain, key) = pki.leaf(names);
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(
                        move |_req: Request<Incoming>| async move { Ok::<_, Infallible>(Response::new(full(text))) },
                    );
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    connections
}

/// A GET inside an intercepted tunnel to `host:port`, trusting `ca_pem`.
async fn intercepted_get(proxy: SocketAddr, ca_pem: &[u8], host: &str, port: u16, path: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (stream, head) = connect_via(proxy, &format!("{host}:{port}")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_connect(stream, config, host).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::get(path).header("host", host).body(full("")).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The policy checks a name's addresses twice (at CONNECT and for the
/// request inside); a connector that resolved again would get the third,
/// rebound answer. Nothing may ever reach the address the policy refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_rebinds_is_reached_only_at_the_checked_address() {
    let pki = TestPki::new("Test Public Root CA");
    let names = ["rebind.test", "rebind-mirror.test"];
    let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = good.local_addr().unwrap().port();
    drop(good);
    let _good = origin_on(SocketAddr::from(([127, 0, 0, 1], port)), Some(&pki), &names, "good").await;
    let bad = origin_on(SocketAddr::from(([127, 0, 0, 2], port)), Some(&pki), &names, "bad").await;
    let dns = start_fake_dns(
        Arc::new(|_name: &str, n: usize| {
            vec![if n < 2 {
                Ipv4Addr::new(127, 0, 0, 1)
            } else {
                Ipv4Addr::new(127, 0, 0, 2)
            }]
        }),
        false,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
    let config = format!(
        r#"
[dns]
servers = ["{}"]
[tls]
ca_cert = "ca.pem"
ca_key = "ca.key"
intercept = ["rebind.test", "rebind-mirror.test"]
public_roots = "public-root.pem"
[[rule]]
name = "no-rebound"
dst = ["127.0.0.2/32"]
action = "block"
reason = "the rebound address"
[[rule]]
name = "mirror-direct"
hosts = ["rebind-mirror.test"]
action = "mirror"
mirrors = "direct"
[[rule]]
name = "allow"
action = "direct"
"#,
        dns.addr
    );
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, &config).unwrap();
    let init = std::process::Command::new(modgate_bin())
        .args(["ca", "init", "--config", "modgate.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let proxy = start_proxy_with(modgate::config::Config::parse(&config, path.to_str().unwrap()).unwrap()).await;
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();

    // `direct` inside an intercepted tunnel.
    let got = intercepted_get(proxy.addr, &ca, "rebind.test", port, "/x").await;
    assert_eq!(got, (200, "good".to_owned()));
    assert_eq!(
        dns.asked("rebind.test"),
        2,
        "checked twice, connected without asking again"
    );
    // `direct` as a mirror-list entry.
    let got = intercepted_get(proxy.addr, &ca, "rebind-mirror.test", port, "/example.test/a/@v/list").await;
    assert_eq!(got, (200, "good".to_owned()));
    assert_eq!(bad.load(Ordering::SeqCst), 0, "the refused address was never reached");
    // Asked again now, the name is the rebound address, and is refused.
    let reply = raw_exchange(
        proxy.addr,
        format!("CONNECT rebind.test:{port} HTTP/1.1\r\nHost: rebind.test\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert!(reply.contains("blocked by rule 'no-rebound'"), "{reply}");
    assert_eq!(bad.load(Ordering::SeqCst), 0);
    proxy.stop().await;
}

/// An answer with TTL 0 is not reused: the next request asks again.
#[tokio::test]
async fn answers_are_cached_for_their_own_ttl() {
    let origin = start_text_origin("here").await;
    let dns = start_fake_dns(
        Arc::new(|_: &str, n: usize| {
            vec![if n == 0 {
                Ipv4Addr::new(127, 0, 0, 1)
            } else {
                Ipv4Addr::new(127, 0, 0, 2)
            }]
        }),
        false,
    )
    .await;
    let proxy = start_proxy(&format!(
        "[dns]\nservers = [\"{}\"]\n[[rule]]\nname = \"no-two\"\ndst = [\"127.0.0.2/32\"]\naction = \"block\"\n[[rule]]\naction = \"direct\"\n",
        dns.addr
    ))
    .await;
    let url = format!("http://flip.test:{}/", origin.addr.port());
    let (status, _, body) = get_via(proxy.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "here"));
    let (status, _, body) = get_via(proxy.addr, &url).await;
    assert_eq!(status.as_u16(), 403, "a TTL-0 answer is asked for again: {body}");
    assert_eq!(dns.asked("flip.test"), 2);
    proxy.stop().await;
}

/// A name with an underscore (legal in DNS, common for internal hosts) is
/// looked up as it is written, not refused as an invalid IDN.
#[tokio::test]
async fn a_name_with_an_underscore_is_resolved() {
    let origin = start_text_origin("under").await;
    let dns = start_fake_dns(Arc::new(|_: &str, _| vec![Ipv4Addr::new(127, 0, 0, 1)]), false).await;
    let proxy = start_proxy(&format!(
        "[dns]\nservers = [\"{}\"]\n[[rule]]\naction = \"direct\"\n",
        dns.addr
    ))
    .await;
    let url = format!("http://build_box.corp.test:{}/", origin.addr.port());
    let (status, _, body) = get_via(proxy.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "under"));
    assert_eq!(dns.asked("build_box.corp.test"), 1);
    proxy.stop().await;
}

/// A name server that fails or refuses is not a name that does not exist:
/// each says which (hickory reports all three as "no records found").
#[tokio::test]
async fn a_failing_or_refusing_name_server_is_not_no_such_host() {
    let dns = start_fake_dns(Arc::new(|_: &str, _| vec![Ipv4Addr::new(127, 0, 0, 1)]), false).await;
    let proxy = start_proxy(&format!(
        "[dns]\nservers = [\"{}\"]\n[[rule]]\naction = \"direct\"\n",
        dns.addr
    ))
    .await;
    for (host, reason) in [
        ("nxdomain.corp.test", "no such host"),
        (
            "servfail.corp.test",
            "the DNS server failed to answer (SERVFAIL; its upstream or DNSSEC may be broken)",
        ),
        ("refused.corp.test", "the DNS server refused the query (REFUSED)"),
    ] {
        let (status, _, body) = get_via(proxy.addr, &format!("http://{host}/")).await;
        assert_eq!(status.as_u16(), 502, "{body}");
        assert_eq!(body, format!("modgate: cannot resolve {host}: {reason}\n"));
    }
    proxy.stop().await;
}

/// A name server that never answers: 504 within the connect timeout.
#[tokio::test]
async fn a_dns_timeout_is_a_504_naming_the_host() {
    let dns = start_fake_dns(Arc::new(|_: &str, _| Vec::new()), true).await;
    let proxy = start_proxy(&format!(
        "[dns]\nservers = [\"{}\"]\n[timeouts]\nconnect = \"700ms\"\n[[rule]]\naction = \"direct\"\n",
        dns.addr
    ))
    .await;
    let (status, _, body) = get_via(proxy.addr, "http://silent.test/").await;
    assert_eq!(status.as_u16(), 504, "{body}");
    assert_eq!(body, "modgate: cannot resolve silent.test: no answer within 700ms\n");
    proxy.stop().await;
}

/// Happy Eyeballs: the first address never answers; the second is tried
/// after one attempt delay, not after the whole connect timeout.
#[tokio::test]
async fn a_black_holed_address_costs_one_attempt_delay() {
    let (_hole, _fill, hole) = black_hole();
    let origin = start_text_origin("second").await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[timeouts]\nconnect = \"20s\"\n[hosts]\n\"two.test\" = [\"{hole}\", \"{}\"]\n",
        origin.addr
    )))
    .await;
    let started = Instant::now();
    let (status, _, body) = get_via(proxy.addr, "http://two.test/").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "second"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}: the black hole cost the whole connect timeout",
        started.elapsed()
    );
    proxy.stop().await;
}

//! `tls.on_interception` and "untrusted always fails" hold for tunnels modgate
//! relays too, not only for its own connections (issue 9, item 14): under
//! `block` the verdict comes before `200 Connection established`; an
//! untrusted chain closes the tunnel at once, under any policy.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// A TLS origin for `names` signed by `pki`, answering after `delay`.
async fn slow_tls_origin(pki: &TestPki, names: &[&str], delay: Duration) -> std::net::SocketAddr {
    let acceptor = pki.acceptor(names, &[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = service_fn(move |_req: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(full("secret data")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// modgate with `public` as the public roots, `extra` trusted locally, and
/// `policy`, as a process with JSON logs.
async fn modgate(dir: &std::path::Path, public: &TestPki, extra: Option<&TestPki>, policy: &str) -> Served {
    std::fs::write(dir.join("public.pem"), &public.ca_pem).unwrap();
    let extra_roots = match extra {
        Some(pki) => {
            std::fs::write(dir.join("corp.pem"), &pki.ca_pem).unwrap();
            "extra_roots = [\"corp.pem\"]\n"
        }
        None => "",
    };
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "[tls]\npublic_roots = \"public.pem\"\n{extra_roots}on_interception = \"{policy}\"\n[[rule]]\naction = \"direct\"\n"
        ),
    )
    .unwrap();
    start_served(
        dir,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await
}

/// One GET through a tunnel via `proxy` to `origin` (as `localhost`), over
/// TLS trusting `root`: what came back before the tunnel closed (or
/// `STEP` passed). The tunnel itself must open (`200`): `warn` never
/// delays it.
async fn get_through(proxy: std::net::SocketAddr, origin: std::net::SocketAddr, root: &TestPki) -> String {
    let (stream, head) = connect_via(proxy, &format!("localhost:{}", origin.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "warn never delays the tunnel: {head}");
    let mut tls = tls_connect(stream, root.client_config(), "localhost").await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_refuses_an_intercepted_tunnel_before_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let zscaler = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let origin = slow_tls_origin(&zscaler, &["localhost"], Duration::ZERO).await;
    let mut served = modgate(dir.path(), &public, Some(&zscaler), "block").await;
    let reply = raw_exchange(
        served.addr,
        format!(
            "CONNECT localhost:{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "refused before 200: {reply}");
    assert!(
        reply.contains("(Zscaler): the connection is intercepted and tls.on_interception = \"block\""),
        "{reply}"
    );
    let event = served.next_access().await;
    assert_eq!(
        (event["status"].as_u64(), event["verdict"].as_str()),
        (Some(403), Some("intercepted"))
    );
    // A public chain under block opens as usual.
    let fine = slow_tls_origin(&public, &["localhost"], Duration::ZERO).await;
    let (_s, head) = connect_via(served.addr, &format!("localhost:{}", fine.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_tunnel_is_closed_at_once_under_warn() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let rogue = TestPki::named("FortiGate CA", Some("Fortinet"));
    // The origin answers after a second; the verdict comes long before.
    let origin = slow_tls_origin(&rogue, &["localhost"], Duration::from_secs(1)).await;
    let mut served = modgate(dir.path(), &public, None, "warn").await;
    // The client trusts the rogue root itself (as a misconfigured one would).
    let got = get_through(served.addr, origin, &rogue).await;
    assert!(!got.contains("secret data"), "the tunnel was closed before the answer");
    let event = served.next_access().await;
    assert_eq!(event["verdict"].as_str(), Some("untrusted"), "{event}");
    let error = event["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("closed: the upstream's chain is untrusted (Fortinet)"),
        "{event}"
    );
}

/// Bytes flow until the verdict is in: a tunnel that is over before its
/// chain is judged (here the probe's handshake is slow) still has its
/// access event say the chain was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_over_before_its_untrusted_verdict_still_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let rogue = TestPki::named("FortiGate CA", Some("Fortinet"));
    // The first connection (the tunnel's) is served at once; any later one
    // (modgate's probe of TLS 1.3) waits a second for its handshake.
    let acceptor = rogue.acceptor(&["localhost"], &[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, wait) = (acceptor.clone(), !std::mem::take(&mut first));
            tokio::spawn(async move {
                if wait {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut head = [0u8; 1024];
                let _ = tls.read(&mut head).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndata")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut served = modgate(dir.path(), &public, None, "warn").await;
    let got = get_through(served.addr, origin, &rogue).await;
    assert!(got.ends_with("data"), "the verdict came first");
    let event = served.next_access().await;
    assert_eq!(event["verdict"].as_str(), Some("untrusted"), "{event}");
    let error = event["error"].as_str().unwrap_or_default();
    assert_eq!(
        error,
        "the upstream's chain is untrusted (Fortinet), which tls.on_interception refuses: the tunnel ended before the verdict",
        "{event}"
    );
}

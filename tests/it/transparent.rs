//! Issue 11 §2: the transparent listener, in network namespaces the tests
//! create (see `netns`): a client namespace whose TCP 80 and 443 the
//! gateway namespace REDIRECTs to modgate's transparent listener. The
//! client has no proxy settings at all.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gotool::*;
use crate::netns::*;
use crate::support::*;

/// Where each origin lives, on the gateway's loopback.
const PROXY_GOLANG: &str = "10.200.78.10";
const MIRROR: &str = "10.200.78.11";
const TUNNEL: &str = "10.200.78.12";
const BLOCKED: &str = "10.200.78.13";
const PLAIN: &str = "10.200.78.14";
const LOOPED: &str = "10.200.78.15";
const MARKED: &str = "10.200.78.16";
const ORIGIN: &str = "10.200.78.17";
const DECOY: &str = "10.200.78.18";

const MODULES: &[FixtureModule] = &[FixtureModule {
    path: "example.test/transparent",
    version: "v1.2.0",
    payload: 10_000,
}];

/// A client config trusting the certificates in `pem`.
fn trusting(pem: &std::path::Path) -> Arc<rustls::ClientConfig> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_file_certs(pem) {
        let _ = roots.add(cert);
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A gateway with modgate on its transparent port, origins behind it, and
/// modgate's CA bundle for clients.
struct World {
    // Dropped first: modgate and the origins go before the namespaces.
    served: Served,
    mirror: ModuleOrigin,
    tunnel_origin: Arc<AtomicUsize>,
    blocked_origin: Arc<AtomicUsize>,
    decoy_origin: Arc<AtomicUsize>,
    plain: Origin,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
    pki: TestPki,
    bundle: PathBuf,
    dir: tempfile::TempDir,
    gateway: Gateway,
}

impl World {
    async fn new() -> World {
        let gateway = Gateway::create(&format!(
            "{PROXY_GOLANG} proxy.golang.org\n{TUNNEL} tunnel.test unverified.test\n{BLOCKED} blocked.test\n{PLAIN} plain.test\n{LOOPED} loop.test\n{MARKED} marked.test\n{ORIGIN} origin.test\n"
        ));
        for ip in [
            PROXY_GOLANG,
            MIRROR,
            TUNNEL,
            BLOCKED,
            PLAIN,
            LOOPED,
            MARKED,
            ORIGIN,
            DECOY,
        ] {
            gateway.add_origin_address(ip);
        }
        // modgate's own connections to LOOPED are redirected back to it
        // (a loop); to MARKED only when they lack modgate's mark.
        let port = TRANSPARENT_PORT.to_string();
        gateway.iptables(&[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            LOOPED,
            "--dport",
            "443",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ]);
        gateway.iptables(&[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            MARKED,
            "--dport",
            "443",
            "-m",
            "mark",
            "!",
            "--mark",
            "42",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ]);

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_fixture(&d.join("fixture"), MODULES);
        let pki = TestPki::new("Transparent Test Public Root");
        std::fs::write(d.join("public-root.pem"), &pki.ca_pem).unwrap();
        let mirror = start_module_origin_on(
            gateway.listen_in_gateway(&format!("{MIRROR}:443")),
            &pki,
            &["mirror.test"],
            &d.join("fixture"),
            Behavior::Serve,
        );
        let versions = rustls::DEFAULT_VERSIONS;
        let (chain, key) = pki.leaf(&["tunnel.test", "unverified.test"]);
        let listener = gateway.listen_in_gateway(&format!("{TUNNEL}:443"));
        let (_, tunnel_origin, t1) = start_tls_server_on(listener, chain, key, "tunnelled", versions);
        let (chain, key) = pki.leaf(&["blocked.test"]);
        let listener = gateway.listen_in_gateway(&format!("{BLOCKED}:443"));
        let (_, blocked_origin, t2) = start_tls_server_on(listener, chain, key, "must not be reached", versions);
        let (chain, key) = pki.leaf(&["marked.test"]);
        let listener = gateway.listen_in_gateway(&format!("{MARKED}:443"));
        let (_, _, t3) = start_tls_server_on(listener, chain, key, "marked and not looped", versions);
        // origin.test resolves (for modgate) to DECOY first, then ORIGIN;
        // a redirected connection to ORIGIN must stay there.
        let (chain, key) = pki.leaf(&["origin.test"]);
        let listener = gateway.listen_in_gateway(&format!("{ORIGIN}:443"));
        let (_, _, t4) = start_tls_server_on(
            listener,
            chain.clone(),
            key.clone_key(),
            "the original destination",
            versions,
        );
        let listener = gateway.listen_in_gateway(&format!("{DECOY}:443"));
        let (_, decoy_origin, t5) = start_tls_server_on(listener, chain, key, "another address of the name", versions);
        let plain = start_origin_on(
            gateway.listen_in_gateway(&format!("{PLAIN}:80")),
            Arc::new(|_req| Box::pin(async { http::Response::new(full("plain over the gateway")) })),
        );

        std::fs::write(
            d.join("c.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\n\n[transparent]\nlisten = \"0.0.0.0:{TRANSPARENT_PORT}\"\nmark = 42\n\n\
                 [tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\", \"origin.test\"]\npublic_roots = \"public-root.pem\"\n\n\
                 [cache]\ndir = \"\"\n\n\
                 [auth]\nhtpasswd = \"users.htpasswd\"\n\n\
                 [hosts]\n\"proxy.golang.org\" = \"{PROXY_GOLANG}\"\n\"mirror.test\" = \"{MIRROR}:443\"\n\"tunnel.test\" = \"{TUNNEL}\"\n\"gated.test\" = \"{TUNNEL}\"\n\"blocked.test\" = \"{BLOCKED}\"\n\"plain.test\" = \"{PLAIN}\"\n\"loop.test\" = \"{LOOPED}\"\n\"marked.test\" = \"{MARKED}\"\n\"origin.test\" = [\"{DECOY}\", \"{ORIGIN}\"]\n\n\
                 [[rule]]\nname = \"staff\"\nhosts = [\"plain.test\", \"tunnel.test\"]\nusers = [\"*\"]\naction = \"block\"\nreason = \"a users rule never matches a redirected connection\"\n\n\
                 [[rule]]\nname = \"gated\"\nhosts = [\"gated.test\"]\nsrc = [\"{CLIENT}\"]\naction = \"block\"\nreason = \"not from the client subnet\"\n\n\
                 [[rule]]\nname = \"blocked\"\nhosts = [\"blocked.test\"]\naction = \"block\"\nreason = \"not on this network\"\n\n\
                 [[rule]]\nname = \"unverified\"\nhosts = [\"unverified.test\"]\naction = \"direct\"\nverify_host = false\n\n\
                 [[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n\
                 [[rule]]\nname = \"default\"\naction = \"direct\"\n"
            ),
        )
        .unwrap();
        let modgate = |args: &[&str]| {
            std::process::Command::new(modgate_bin())
                .args(args)
                .current_dir(d)
                .output()
                .unwrap()
        };
        // [auth] is on: the explicit listener asks for credentials, the
        // transparent one never does (it has none to ask for).
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        std::fs::write(d.join("users.htpasswd"), format!("alice:{hash}\n")).unwrap();
        let init = modgate(&["ca", "init", "--config", "c.toml"]);
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let bundle = modgate(&["ca", "bundle", "--config", "c.toml"]);
        assert!(bundle.status.success());
        std::fs::write(d.join("bundle.pem"), bundle.stdout).unwrap();

        let wrapper = gateway.exec_in(&gateway.gw);
        let served = start_served_with(&wrapper, d, &["--config", "c.toml", "--log-format", "json"], &[]).await;
        World {
            served,
            mirror,
            tunnel_origin,
            blocked_origin,
            plain,
            decoy_origin,
            _tasks: vec![t1, t2, t3, t4, t5],
            pki,
            bundle: d.join("bundle.pem"),
            dir,
            gateway,
        }
    }

    /// The next access event, skipping none.
    async fn access(&mut self) -> serde_json::Value {
        self.served.next_access().await
    }

    /// A TLS exchange from the client namespace to `ip:443` naming `sni`:
    /// the response, or why the handshake failed.
    async fn tls_from_client(&self, ip: &str, sni: &str) -> Result<String, String> {
        let stream = self
            .gateway
            .connect_from_client(&format!("{ip}:443"))
            .map_err(|e| format!("connect: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(self.pki.client_config());
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut tls = tokio::time::timeout(STEP, connector.connect(name, stream))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A plain-HTTP exchange from the client namespace to `ip:80` with
    /// `Host: host`: the whole response.
    async fn http_from_client(&self, ip: &str, host: &str) -> String {
        self.raw_from_client(
            ip,
            &format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    /// `request` from the client namespace to `ip:80`: the whole response.
    async fn raw_from_client(&self, ip: &str, request: &str) -> String {
        let mut stream = self.gateway.connect_from_client(&format!("{ip}:80")).unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_go_downloads_transparently_with_no_proxy_variables() {
    let mut world = World::new().await;
    let project = GoProject::new(&[("example.test/transparent", "v1.2.0")]);
    // Only SSL_CERT_FILE: no HTTPS_PROXY, no GOPROXY.
    let wrapper = world.gateway.exec_in(&world.gateway.client);
    let run = project
        .download_in(&wrapper, &[("SSL_CERT_FILE", world.bundle.display().to_string())])
        .await;
    run.assert_ok();
    assert_eq!(run.modules.len(), 1, "{:?}", run.modules);
    assert!(
        world.mirror.requests.load(Ordering::SeqCst) >= 2,
        "the mirror served the download"
    );
    // Requests inside the redirected, intercepted connection were mirrored;
    // the connection itself was planned as a tunnel to proxy.golang.org.
    let mut mirrored = None;
    let mut intercepted = None;
    while mirrored.is_none() || intercepted.is_none() {
        let access = world.access().await;
        if access["action"] == "mirror" && access["status"] == 200 {
            mirrored = Some(access);
        } else if access["action"] == "intercept" {
            intercepted = Some(access);
        }
    }
    let intercepted = intercepted.unwrap();
    assert_eq!(
        (
            intercepted["method"].as_str(),
            intercepted["target"].as_str(),
            intercepted["original"].as_str()
        ),
        (Some("TLS"), Some("proxy.golang.org:443"), Some("10.200.78.10:443")),
        "{intercepted}"
    );
    assert_eq!(mirrored.unwrap()["rule"], "go-modules");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_connections_are_tunnelled_refused_or_forwarded_by_the_same_rules() {
    let mut world = World::new().await;

    // A TLS host outside tls.intercept: relayed to the original
    // destination, with its verdict.
    let response = world.tls_from_client(TUNNEL, "tunnel.test").await.unwrap();
    assert!(response.ends_with("tunnelled"), "{response}");
    let access = world.access().await;
    assert_eq!(
        (
            access["method"].as_str(),
            access["target"].as_str(),
            access["action"].as_str()
        ),
        (Some("TLS"), Some("tunnel.test:443"), Some("direct")),
        "{access}"
    );
    assert_eq!(access["original"], format!("{TUNNEL}:443"));
    assert_eq!(access["upstream"], format!("{TUNNEL}:443"));
    assert_eq!(access["verdict"], "public", "{access}");
    assert!(access.get("user").is_none(), "{access}");

    // With [auth] on, no credentials are asked for here; the transparent
    // listener relies on `src`: a rule for the client's address refuses it
    // (the TLS connection is closed).
    let refused = world.tls_from_client(TUNNEL, "gated.test").await;
    assert!(refused.as_ref().map_or(true, |r| r.is_empty()), "{refused:?}");
    let access = world.access().await;
    assert_eq!(
        (access["rule"].as_str(), access["status"].as_u64()),
        (Some("gated"), Some(403)),
        "{access}"
    );

    // An intercepted host with a `direct` rule: each request inside goes to
    // the original destination, not to another address of the name.
    let stream = world.gateway.connect_from_client(&format!("{ORIGIN}:443")).unwrap();
    let bundle = trusting(&world.bundle);
    let mut tls = tls_connect(stream, bundle, "origin.test").await;
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
    drop(tls);
    let response = String::from_utf8_lossy(&out);
    assert!(response.ends_with("the original destination"), "{response}");
    assert_eq!(world.decoy_origin.load(Ordering::SeqCst), 0);
    let inner = world.access().await;
    assert_eq!(
        (
            inner["target"].as_str(),
            inner["original"].as_str(),
            inner["verdict"].as_str()
        ),
        (Some("https://origin.test/x"), Some("10.200.78.17:443"), Some("public")),
        "{inner}"
    );
    let outer = world.access().await;
    assert_eq!(
        (outer["method"].as_str(), outer["action"].as_str()),
        (Some("TLS"), Some("intercept")),
        "{outer}"
    );

    // A blocked host: refused with a TLS alert, the origin never reached.
    let refused = world.tls_from_client(BLOCKED, "blocked.test").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("AccessDenied")),
        "{refused:?}"
    );
    let access = world.access().await;
    assert_eq!(
        (
            access["rule"].as_str(),
            access["action"].as_str(),
            access["status"].as_u64()
        ),
        (Some("blocked"), Some("block"), Some(403)),
        "{access}"
    );
    assert_eq!(access["error"], "blocked by rule 'blocked': not on this network");
    assert_eq!(world.blocked_origin.load(Ordering::SeqCst), 0);

    // A name that does not resolve to where the connection was going.
    let refused = world.tls_from_client(TUNNEL, "proxy.golang.org").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("AccessDenied")),
        "{refused:?}"
    );
    let access = world.access().await;
    assert_eq!(access["status"], 409, "{access}");
    assert!(
        access["error"].as_str().unwrap_or_default().starts_with(
            "host verification failed: proxy.golang.org resolves to 10.200.78.10, but the connection was going to 10.200.78.12:443"
        ),
        "{access}"
    );
    // ... unless the rule trusts the name.
    let before = world.tunnel_origin.load(Ordering::SeqCst);
    let response = world.tls_from_client(TUNNEL, "unverified.test").await.unwrap();
    assert!(response.ends_with("tunnelled"), "{response}");
    assert_eq!(world.access().await["rule"], "unverified");
    // The relayed connection (and maybe an active probe) reached the origin.
    assert!(world.tunnel_origin.load(Ordering::SeqCst) > before);

    // Plain HTTP: forwarded by Host, refused with 403 or 409.
    let response = world.http_from_client(PLAIN, "plain.test").await;
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("plain over the gateway"),
        "{response}"
    );
    let access = world.access().await;
    assert_eq!(
        (access["target"].as_str(), access["original"].as_str()),
        (Some("http://plain.test:80/x"), Some("10.200.78.14:80")),
        "{access}"
    );
    let response = world.http_from_client(BLOCKED, "blocked.test").await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.ends_with("modgate: blocked by rule 'blocked': not on this network\n"),
        "{response}"
    );
    world.access().await;
    let response = world.http_from_client(PLAIN, "tunnel.test").await;
    assert!(response.starts_with("HTTP/1.1 409"), "{response}");
    assert!(
        response.contains("modgate: host verification failed: tunnel.test resolves to 10.200.78.12, but the connection was going to 10.200.78.14:80; set verify_host = false"),
        "{response}"
    );
    world.access().await;
    // An address in Host is verified as a name is: another address is a
    // 409, not quietly rewritten to the original one.
    let response = world.http_from_client(PLAIN, TUNNEL).await;
    assert!(
        response.starts_with("HTTP/1.1 409")
            && response.contains("modgate: host verification failed: 10.200.78.12 is another address, but the connection was going to 10.200.78.14:80"),
        "{response}"
    );
    world.access().await;
    let response = world.http_from_client(PLAIN, PLAIN).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    world.access().await;
    // CONNECT on a redirected connection: refused in words, not sent on.
    let response = world
        .raw_from_client(
            PLAIN,
            &format!("CONNECT {PLAIN}:22 HTTP/1.1\r\nHost: {PLAIN}:22\r\n\r\n"),
        )
        .await;
    assert!(
        response.starts_with("HTTP/1.1 400") && response.contains("CONNECT on a connection the firewall redirected"),
        "{response}"
    );
    assert_eq!(world.access().await["status"], 400);
    // Neither TLS nor HTTP (an SSH client on port 443): refused, and its
    // event says where it was going.
    let mut ssh = world.gateway.connect_from_client(&format!("{PLAIN}:443")).unwrap();
    ssh.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, ssh.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"), "{out:?}");
    let access = world.access().await;
    assert_eq!(
        (access["status"].as_u64(), access["original"].as_str()),
        (Some(400), Some("10.200.78.14:443")),
        "{access}"
    );

    // `explain --transparent` makes the same decisions, and says what is
    // verified.
    let explain = |args: &[&str]| {
        let out = std::process::Command::new(modgate_bin())
            .args(["explain", "--config", "c.toml"])
            .args(args)
            .current_dir(world.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = explain(&["--transparent", BLOCKED, "blocked.test:443"]);
    assert!(
        text.contains("arrived: redirected to the transparent listener; original destination 10.200.78.13"),
        "{text}"
    );
    assert!(
        text.contains("rule:    'blocked'") && text.contains("action:  block (not on this network)"),
        "{text}"
    );
    let text = explain(&["--transparent", TUNNEL, "tunnel.test:443"]);
    assert!(
        text.contains("address: 10.200.78.12 (the original destination)"),
        "{text}"
    );
    assert!(
        text.contains("host:    tunnel.test must resolve to 10.200.78.12"),
        "{text}"
    );
    let text = explain(&["--transparent", TUNNEL, "unverified.test:443"]);
    assert!(
        text.contains("host:    not verified: rule 'unverified' sets verify_host = false"),
        "{text}"
    );
    let _ = &world.plain;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modgate_never_connects_to_itself_and_its_mark_exempts_its_traffic() {
    let mut world = World::new().await;

    // Straight to the transparent port, not redirected: its "original
    // destination" is modgate itself.
    let mut stream = world
        .gateway
        .connect_from_client(&format!("{GATEWAY}:{TRANSPARENT_PORT}"))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    let access = world.access().await;
    assert_eq!(access["status"], 508, "{access}");
    assert_eq!(
        access["error"],
        format!(
            "refused a loop: the original destination {GATEWAY}:{TRANSPARENT_PORT} is modgate's own listener (a connection made to the transparent port itself, not redirected to it)"
        )
    );

    // modgate's own upstream connection redirected back to it (no
    // exemption for LOOPED): refused once, instead of looping.
    let refused = world.tls_from_client(LOOPED, "loop.test").await;
    assert!(refused.is_err(), "{refused:?}");
    let (mut inner, mut outer) = (None, None);
    while inner.is_none() || outer.is_none() {
        let access = world.access().await;
        match access["method"].as_str() {
            Some("-") => inner = Some(access),
            _ => outer = Some(access),
        }
    }
    let inner = inner.unwrap();
    assert!(
        inner["error"].as_str().unwrap_or_default().starts_with(
            "refused a loop: this is modgate's own upstream connection to 10.200.78.15:443, redirected back to it"
        ),
        "{inner}"
    );
    assert_eq!(outer.unwrap()["target"], "loop.test:443");

    // MARKED is redirected only without modgate's mark: modgate's own
    // connection carries it (SO_MARK 42) and reaches the origin.
    let response = world.tls_from_client(MARKED, "marked.test").await.unwrap();
    assert!(response.ends_with("marked and not looped"), "{response}");
    let access = world.access().await;
    assert_eq!(access["upstream"], format!("{MARKED}:443"), "{access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_ipv6_and_ipv4_reach_one_dual_stack_listener() {
    const TUNNEL6: &str = "fd00:200:78::12";
    let gateway = Gateway::create(&format!("{TUNNEL6} tunnel6.test\n{TUNNEL} tunnel.test\n"));
    gateway.enable_ipv6();
    gateway.add_origin_address(TUNNEL6);
    gateway.add_origin_address(TUNNEL);
    let pki = TestPki::new("Transparent v6 Test Root");
    let versions = rustls::DEFAULT_VERSIONS;
    let (chain, key) = pki.leaf(&["tunnel6.test", "tunnel.test"]);
    let (_, _, _t6) = start_tls_server_on(
        gateway.listen_in_gateway(&format!("[{TUNNEL6}]:443")),
        chain.clone(),
        key.clone_key(),
        "over ipv6",
        versions,
    );
    let (_, _, _t4) = start_tls_server_on(
        gateway.listen_in_gateway(&format!("{TUNNEL}:443")),
        chain,
        key,
        "over ipv4",
        versions,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n\n[transparent]\nlisten = \"[::]:{TRANSPARENT_PORT}\"\n\n[tls]\npublic_roots = \"public-root.pem\"\n\n\
             [hosts]\n\"tunnel6.test\" = \"{TUNNEL6}\"\n\"tunnel.test\" = \"{TUNNEL}\"\n\n[[rule]]\naction = \"direct\"\n"
        ),
    )
    .unwrap();
    let wrapper = gateway.exec_in(&gateway.gw);
    let mut served = start_served_with(
        &wrapper,
        dir.path(),
        &["--config", "c.toml", "--log-format", "json"],
        &[],
    )
    .await;

    for (addr, name, text, original) in [
        (
            format!("[{TUNNEL6}]:443"),
            "tunnel6.test",
            "over ipv6",
            format!("[{TUNNEL6}]:443"),
        ),
        (
            format!("{TUNNEL}:443"),
            "tunnel.test",
            "over ipv4",
            format!("{TUNNEL}:443"),
        ),
    ] {
        let stream = gateway.connect_from_client(&addr).unwrap();
        let mut tls = tls_connect(stream, pki.client_config(), name).await;
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
        assert!(
            String::from_utf8_lossy(&out).ends_with(text),
            "{}",
            String::from_utf8_lossy(&out)
        );
        drop(tls);
        let access = served.next_access().await;
        assert_eq!(access["original"], original.as_str(), "{access}");
        assert_eq!(access["upstream"], original.as_str(), "{access}");
        assert_eq!(access["target"], format!("{name}:443"));
    }
    drop(served);
}

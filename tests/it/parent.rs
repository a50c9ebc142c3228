//! Issue 11 §1: modgate behind a corporate parent proxy, tested against a
//! real Squid with Basic authentication and a real, re-signing mitmproxy,
//! both started by the tests. Every origin is named `localhost`, the one
//! name modgate, the parents and the test PKI all agree on.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gotool::*;
use crate::support::*;
use crate::tools::*;

/// Runs the modgate binary with `args` in `dir`.
fn modgate_in(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(modgate_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `modgate ca init` for the config `c.toml` in `dir` (which intercepts a
/// host), and the bundle go needs, written to `dir/bundle.pem`.
pub(crate) fn ca_and_bundle(dir: &Path) -> PathBuf {
    let init = modgate_in(dir, &["ca", "init", "--config", "c.toml"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let bundle = modgate_in(dir, &["ca", "bundle", "--config", "c.toml"]);
    assert!(bundle.status.success(), "{}", String::from_utf8_lossy(&bundle.stderr));
    let path = dir.join("bundle.pem");
    std::fs::write(&path, bundle.stdout).unwrap();
    path
}

/// A modgate intercepting `localhost` with one `direct` rule, trusting the
/// origins of `pki`; its directory (the CA is `ca/modgate-ca.pem` there).
pub(crate) async fn intercepting_localhost(pki: &TestPki) -> (tempfile::TempDir, Served) {
    intercepting_localhost_with(pki, "").await
}

/// [`intercepting_localhost`] with `extra` TOML tables at the end of its
/// configuration.
pub(crate) async fn intercepting_localhost_with(pki: &TestPki, extra: &str) -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("public-root.pem"), &pki.ca_pem).unwrap();
    std::fs::write(
        d.join("c.toml"),
        format!("[admin]\nlisten = \"\"\n[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"localhost\"]\npublic_roots = \"public-root.pem\"\n\n[[rule]]\nname = \"origin\"\naction = \"direct\"\n{extra}"),
    )
    .unwrap();
    ca_and_bundle(d);
    let served = start_served(d, &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    (dir, served)
}

/// CONNECT `target` through `proxy`, TLS for `name` trusting `tls`, one GET;
/// the whole response.
pub(crate) async fn tls_get(
    proxy: std::net::SocketAddr,
    target: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> String {
    let (stream, head) = connect_via(proxy, target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {target}: {head}");
    let mut tls = tls_connect(stream, tls, "localhost").await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A client config trusting the certificates in `pem`.
pub(crate) fn trusting(pem: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_file_certs(pem) {
        roots.add(cert).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The status line and body of a raw exchange.
fn split(raw: &str) -> (String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squid_parent_carries_tunnels_and_forwards_with_its_credentials() {
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let pki = TestPki::new("Parent Test Public Root");
    let (tls_origin, _t) = start_tls_origin(&pki, &["localhost"], "through squid").await;
    let plain = start_text_origin("plain through squid").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[tls]\npublic_roots = \"public-root.pem\"\n\n[parent]\nurl = \"{}\"\n\n[hosts]\n\"straight.test\" = \"127.0.0.1\"\n\n\
             [[rule]]\nname = \"straight\"\nhosts = [\"straight.test\"]\naction = \"direct\"\nparent = false\n\n\
             [[rule]]\nname = \"allow\"\naction = \"direct\"\n",
            squid.url("alice", "s3cret")
        ),
    )
    .unwrap();
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let parent = format!("http://{}", squid.addr);

    // A tunnel: the parent gets CONNECT with the name (never an address)
    // and modgate's credentials; the verdict still comes out.
    let target = format!("localhost:{}", tls_origin.port());
    let response = tls_get(served.addr, &target, pki.client_config()).await;
    assert!(response.ends_with("through squid"), "{response}");
    squid
        .logged(&["TCP_TUNNEL/200", &format!("CONNECT {target}"), " alice "])
        .await;
    let access = served.next_access().await;
    assert_eq!(access["method"], "CONNECT");
    assert_eq!(access["parent"], parent.as_str(), "{access}");
    assert_eq!(access["upstream"], squid.addr.to_string(), "{access}");
    assert_eq!(access["verdict"], "public", "{access}");

    // A plain-HTTP forward: absolute form to the parent, with credentials
    // for the parent only.
    let url = format!("http://localhost:{}/x", plain.addr.port());
    let (status, headers, body) = get_via(served.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "plain through squid"));
    let via: Vec<&str> = headers.get_all("via").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(
        via.iter().any(|v| v.contains("modgate-test-squid")) && via.iter().any(|v| v.contains("modgate")),
        "{via:?}"
    );
    squid.logged(&["TCP_MISS/200", &format!("GET {url}"), " alice "]).await;
    let origin_saw = plain.last_headers.lock().unwrap().clone().unwrap();
    assert!(origin_saw.get("proxy-authorization").is_none(), "{origin_saw:?}");
    let access = served.next_access().await;
    assert_eq!(access["parent"], parent.as_str(), "{access}");

    // `parent = false`: straight to the origin; the parent never hears of it.
    let url = format!("http://straight.test:{}/y", plain.addr.port());
    let (status, _, body) = get_via(served.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "plain through squid"));
    let access = served.next_access().await;
    assert_eq!(access["rule"], "straight");
    assert!(access.get("parent").is_none(), "{access}");
    assert!(!squid.access_log().contains("straight.test"), "{}", squid.access_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_failures_name_the_parent_and_its_status_line() {
    let squid = Squid::start(
        &[("alice", "s3cret")],
        "acl denied dstdomain denied.test\nhttp_access deny denied",
    )
    .await;
    let parent = format!("http://{}", squid.addr);
    let proxy_with = |url: String| config_allowing_loopback(&format!("[parent]\nurl = \"{url}\"\n"));

    // A wrong password: the parent's 407 on CONNECT and on a forward.
    let proxy = start_proxy(&proxy_with(squid.url("alice", "wrong"))).await;
    let raw = raw_exchange(
        proxy.addr,
        b"CONNECT localhost:1234 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n",
    )
    .await;
    let (status, body) = split(&raw);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(
        body,
        format!(
            "modgate: parent proxy {parent} refused CONNECT localhost:1234: HTTP/1.1 407 Proxy Authentication Required; the parent did not accept the credentials of 'alice' in [parent] url\n"
        )
    );
    let (status, _, body) = get_via(proxy.addr, "http://localhost:1234/x").await;
    assert_eq!(status.as_u16(), 502);
    assert_eq!(
        body,
        format!(
            "modgate: parent proxy {parent} refused GET http://localhost:1234/x: HTTP/1.1 407 Proxy Authentication Required; the parent did not accept the credentials of 'alice' in [parent] url\n"
        )
    );
    assert!(
        !raw.contains("wrong") && !body.contains("wrong"),
        "the password never shows"
    );
    proxy.stop().await;

    // No credentials at all.
    let proxy = start_proxy(&proxy_with(parent.clone())).await;
    let raw = raw_exchange(
        proxy.addr,
        b"CONNECT localhost:1234 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n",
    )
    .await;
    assert!(
        raw.contains(
            "HTTP/1.1 407 Proxy Authentication Required; the parent wants credentials: put them in [parent] url"
        ),
        "{raw}"
    );
    proxy.stop().await;

    // The parent's own policy refuses the destination.
    let proxy = start_proxy(&proxy_with(squid.url("alice", "s3cret"))).await;
    let raw = raw_exchange(
        proxy.addr,
        b"CONNECT denied.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n",
    )
    .await;
    let (status, body) = split(&raw);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert_eq!(
        body,
        format!(
            "modgate: parent proxy {parent} refused CONNECT denied.test:443: HTTP/1.1 403 Forbidden; the parent's own policy refuses this destination\n"
        )
    );
    proxy.stop().await;

    // A parent that is not there.
    let gone = closed_port().await;
    let proxy = start_proxy(&proxy_with(format!("http://alice:s3cret@{gone}"))).await;
    let raw = raw_exchange(
        proxy.addr,
        b"CONNECT localhost:1234 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n",
    )
    .await;
    let (status, body) = split(&raw);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
    assert!(
        body.starts_with(&format!(
            "modgate: cannot reach parent proxy http://{gone} for localhost:1234: "
        )) && body.contains("refused"),
        "{body}"
    );
    let (status, _, body) = get_via(proxy.addr, "http://localhost:1234/x").await;
    assert_eq!(status.as_u16(), 502);
    assert!(
        body.starts_with(&format!("modgate: cannot reach parent proxy http://{gone}")),
        "{body}"
    );
    assert!(!body.contains("s3cret"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_env_takes_the_proxy_variables_and_no_proxy() {
    let squid = Squid::start(&[("carol", "pa:ss@word")], "").await;
    let plain = start_text_origin("env parent").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[parent]\nurl = \"env\"\n\n[hosts]\n\"inside.corp.test\" = \"127.0.0.1\"\n\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let url = format!("http://carol:pa%3Ass%40word@{}", squid.addr);
    let env = [
        ("HTTPS_PROXY".to_owned(), url.clone()),
        ("http_proxy".to_owned(), url),
        ("NO_PROXY".to_owned(), ".corp.test".to_owned()),
    ];
    let mut served = start_served_with_env(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
        &env,
    )
    .await;
    let through = format!("http://localhost:{}/via", plain.addr.port());
    let (status, _, _) = get_via(served.addr, &through).await;
    assert_eq!(status.as_u16(), 200);
    squid
        .logged(&["TCP_MISS/200", &format!("GET {through}"), " carol "])
        .await;
    assert_eq!(served.next_access().await["parent"], format!("http://{}", squid.addr));

    let exempt = format!("http://inside.corp.test:{}/direct", plain.addr.port());
    let (status, _, _) = get_via(served.addr, &exempt).await;
    assert_eq!(status.as_u16(), 200);
    let access = served.next_access().await;
    assert!(access.get("parent").is_none(), "{access}");
    assert!(!squid.access_log().contains("inside.corp.test"));
}

/// A GOPROXY fixture, a module origin for it named `localhost`, and a
/// config intercepting proxy.golang.org that mirrors it through `parent`
/// with `tls_extra` in `[tls]`.
struct GoWorld {
    dir: tempfile::TempDir,
    pki: TestPki,
    mirror: ModuleOrigin,
    bundle: PathBuf,
}

const MODULES: &[FixtureModule] = &[
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.0.0",
        payload: 0,
    },
    FixtureModule {
        path: "github.com/Azure/parented",
        version: "v0.2.0",
        payload: 30_000,
    },
];

impl GoWorld {
    /// With `pki` as the public PKI, which the mirror's leaf comes from.
    async fn new(pki: TestPki, parent: &str, tls_extra: &str) -> GoWorld {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_fixture(&d.join("fixture"), MODULES);
        std::fs::write(d.join("public-root.pem"), &pki.ca_pem).unwrap();
        let mirror = start_module_origin(&pki, &["localhost"], &d.join("fixture"), Behavior::Serve).await;
        std::fs::write(
            d.join("c.toml"),
            format!(
                "[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\"]\npublic_roots = \"public-root.pem\"\n{tls_extra}\n\n\
                 [cache]\ndir = \"\"\n\n\
                 [parent]\nurl = \"{parent}\"\n\n\
                 [[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://localhost:{}\"\n\n\
                 [[rule]]\nname = \"default\"\naction = \"direct\"\n",
                mirror.addr.port()
            ),
        )
        .unwrap();
        let bundle = ca_and_bundle(d);
        GoWorld {
            dir,
            pki,
            mirror,
            bundle,
        }
    }

    async fn download(&self, modgate: std::net::SocketAddr) -> GoRun {
        let project = GoProject::new(&[
            ("example.test/alpha", "v1.0.0"),
            ("github.com/Azure/parented", "v0.2.0"),
        ]);
        project
            .download(&[
                ("HTTPS_PROXY", format!("http://{modgate}")),
                ("SSL_CERT_FILE", self.bundle.display().to_string()),
                ("GOPROXY", "https://proxy.golang.org".into()),
            ])
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_go_downloads_through_modgate_through_squid() {
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let world = GoWorld::new(TestPki::new("Go Parent Test Root"), &squid.url("alice", "s3cret"), "").await;
    let mut served = start_served(
        world.dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let run = world.download(served.addr).await;
    run.assert_ok();
    assert_eq!(run.modules.len(), 2, "{:?}", run.modules);
    assert!(world.mirror.requests.load(std::sync::atomic::Ordering::SeqCst) >= 4);
    // The mirror fetches say they went through the parent, with a verdict.
    let mirrored = loop {
        let access = served.next_access().await;
        if access["action"] == "mirror" && access["status"] == 200 {
            break access;
        }
    };
    assert_eq!(mirrored["parent"], format!("http://{}", squid.addr), "{mirrored}");
    assert_eq!(mirrored["verdict"], "public", "{mirrored}");
    // Squid logs a tunnel when it ends, and modgate keeps its pooled
    // connections to the mirror open: they end with modgate.
    sigterm(&served.child);
    tokio::time::timeout(STEP, served.child.wait())
        .await
        .expect("modgate exits on SIGTERM")
        .unwrap();
    squid
        .logged(&[
            "TCP_TUNNEL/200",
            &format!("CONNECT localhost:{}", world.mirror.addr.port()),
            " alice ",
        ])
        .await;
    let _ = &world.pki;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resigning_mitmproxy_parent_is_named_and_its_chain_saved() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new("Mitm Test Public Root");
    let origin_root = pki_dir.path().join("origin-root.pem");
    std::fs::write(&origin_root, &pki.ca_pem).unwrap();
    let mitm = Mitm::start(&origin_root).await;
    let (tls_origin, _t) = start_tls_origin(&pki, &["localhost"], "behind mitmproxy").await;
    // `pki` is the public PKI of the origins, which mitmproxy trusts and
    // re-signs.
    let tls_extra = format!(
        "extra_roots = [\"{}\"]\nintercepted_dir = \"evidence\"",
        mitm.ca_cert().display()
    );
    let world = GoWorld::new(pki, &mitm.url(), &tls_extra).await;
    let mut served = start_served(
        world.dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;

    // A relayed tunnel: the client itself sees mitmproxy's leaf; modgate's
    // probe (through the same parent) names mitmproxy.
    let target = format!("localhost:{}", tls_origin.port());
    let response = tls_get(served.addr, &target, trusting(&mitm.ca_cert())).await;
    assert!(response.ends_with("behind mitmproxy"), "{response}");
    let access = served.next_access().await;
    assert_eq!(access["parent"], mitm.url(), "{access}");
    assert_eq!(
        (access["verdict"].as_str(), access["vendor"].as_str()),
        (Some("intercepted"), Some("mitmproxy")),
        "{access}"
    );

    // The real go, with the mirror behind mitmproxy: every fetch works
    // (its root is in extra_roots) and is labelled.
    let run = world.download(served.addr).await;
    run.assert_ok();
    let mirrored = loop {
        let access = served.next_access().await;
        if access["action"] == "mirror" && access["status"] == 200 {
            break access;
        }
    };
    assert_eq!(
        (mirrored["verdict"].as_str(), mirrored["vendor"].as_str()),
        (Some("intercepted"), Some("mitmproxy")),
        "{mirrored}"
    );

    // The chain is saved under mitmproxy's SPKI, and the index names it.
    let evidence = world.dir.path().join("evidence");
    let mitm_ca = pem_file_certs(&mitm.ca_cert());
    let spki = spki_sha256(&mitm_ca[0]);
    eventually("mitmproxy's chain saved", || {
        evidence.join(format!("{spki}.pem")).exists()
            && std::fs::read_to_string(evidence.join("index.jsonl")).is_ok_and(|i| i.contains("\"mitmproxy\""))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_with_a_config_goes_through_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = TestPki::new("Inspect Parent Public Root");
    std::fs::write(d.join("public.pem"), &pki.ca_pem).unwrap();
    let (origin, _t) = start_tls_origin(&pki, &["localhost"], "hi").await;
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let mitm = Mitm::start(&d.join("public.pem")).await;
    let extra = format!("extra_roots = [\"{}\"]", mitm.ca_cert().display());
    let write = |name: &str, parent: &str| {
        std::fs::write(
            d.join(name),
            format!(
                "[tls]\npublic_roots = \"public.pem\"\nintercepted_dir = \"seen\"\n{extra}\n\n[parent]\nurl = \"{parent}\"\n\n[[rule]]\naction = \"direct\"\n"
            ),
        )
        .unwrap();
    };
    write("squid.toml", &squid.url("alice", "s3cret"));
    write("mitm.toml", &mitm.url());
    let target = format!("localhost:{}", origin.port());
    let inspect = |args: Vec<String>| {
        let d = d.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["inspect".to_owned()];
            all.extend(args);
            let out = std::process::Command::new(modgate_bin())
                .args(&all)
                .current_dir(&d)
                .output()
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
            (out.status.code(), json)
        })
    };
    let args = |config: &str| vec![target.clone(), "--config".into(), config.into(), "--json".into()];

    // Through Squid: the public chain, and the parent heard the CONNECT.
    let (code, json) = inspect(args("squid.toml")).await.unwrap();
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["verdict"], "public");
    assert_eq!(json["proxy"], format!("http://{}", squid.addr));
    squid
        .logged(&["TCP_TUNNEL/200", &format!("CONNECT {target}"), " alice "])
        .await;

    // Through mitmproxy: intercepted, named.
    let (code, json) = inspect(args("mitm.toml")).await.unwrap();
    assert_eq!(code, Some(3), "{json}");
    assert_eq!(
        (json["verdict"].as_str(), json["vendor"].as_str()),
        (Some("intercepted"), Some("mitmproxy")),
        "{json}"
    );
    assert_eq!(json["proxy"], mitm.url());

    // --proxy overrides the config's parent.
    let mut with_proxy = args("squid.toml");
    with_proxy.extend(["--proxy".to_owned(), mitm.url()]);
    let (_, json) = inspect(with_proxy).await.unwrap();
    assert_eq!(json["proxy"], mitm.url());
    assert_eq!(json["vendor"], "mitmproxy");
}

/// A reload puts a changed `[parent]` in effect for new connections: none
/// (straight to the origin), then a real Squid with a wrong password (a
/// 502 naming the parent and its 407), then the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_changed_parent_in_effect() {
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let plain = start_text_origin("reloaded parent").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let config = |parent: &str| format!("{parent}\n[[rule]]\nname = \"allow\"\naction = \"direct\"\n");
    std::fs::write(&path, config("")).unwrap();
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let url = format!("http://localhost:{}/r", plain.addr.port());
    let parent = format!("http://{}", squid.addr);

    let (status, _, body) = get_via(served.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "reloaded parent"));
    assert!(served.next_access().await.get("parent").is_none());

    std::fs::write(
        &path,
        config(&format!("[parent]\nurl = \"{}\"\n", squid.url("alice", "wrong"))),
    )
    .unwrap();
    served.wait_for_line("config reloaded").await;
    let (status, _, body) = get_via(served.addr, &url).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(
        body.starts_with(&format!(
            "modgate: parent proxy {parent} refused GET {url}: HTTP/1.1 407"
        )),
        "{body}"
    );
    served.next_access().await;

    std::fs::write(
        &path,
        config(&format!("[parent]\nurl = \"{}\"\n", squid.url("alice", "s3cret"))),
    )
    .unwrap();
    served.wait_for_line("config reloaded").await;
    let (status, _, body) = get_via(served.addr, &url).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "reloaded parent"));
    assert_eq!(served.next_access().await["parent"], parent.as_str());
    squid.logged(&["TCP_MISS/200", &format!("GET {url}"), " alice "]).await;
}

/// An intercepted `direct` request goes to its origin through the parent:
/// a CONNECT to Squid with modgate's credentials, then TLS end to end,
/// verified against the origin's (public) root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_direct_request_goes_through_the_parent() {
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let pki = TestPki::new("Intercepted Direct Parent Root");
    let (tls_origin, _t) = start_tls_origin(&pki, &["localhost"], "origin behind squid").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("public-root.pem"), &pki.ca_pem).unwrap();
    std::fs::write(
        d.join("c.toml"),
        format!(
            "[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"localhost\"]\npublic_roots = \"public-root.pem\"\n\n\
             [parent]\nurl = \"{}\"\n\n[[rule]]\nname = \"origin\"\naction = \"direct\"\n",
            squid.url("alice", "s3cret")
        ),
    )
    .unwrap();
    ca_and_bundle(d);
    let mut served = start_served(
        d,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let target = format!("localhost:{}", tls_origin.port());
    let response = tls_get(served.addr, &target, trusting(&d.join("ca/modgate-ca.pem"))).await;
    assert!(response.ends_with("origin behind squid"), "{response}");
    let inner = loop {
        let access = served.next_access().await;
        if access["method"] == "GET" {
            break access;
        }
    };
    assert_eq!(
        (inner["action"].as_str(), inner["status"].as_u64()),
        (Some("direct"), Some(200)),
        "{inner}"
    );
    assert_eq!(inner["parent"], format!("http://{}", squid.addr), "{inner}");
    assert_eq!(inner["verdict"], "public", "{inner}");
    // Squid logs a tunnel when it closes: modgate's pooled one closes when
    // modgate stops.
    sigterm(&served.child);
    squid
        .logged(&["TCP_TUNNEL/200", &format!("CONNECT {target}"), " alice "])
        .await;
}

/// How a [`start_fake_parent`] behaves after reading a request head.
#[derive(Clone, Copy)]
enum FakeParent {
    /// Answers with a line that is not HTTP.
    Garbage,
    /// Closes the connection.
    Close,
    /// Answers with a status line and 20 KiB of header.
    HugeHead,
    /// Accepts CONNECT, then sends an HTML page instead of relaying.
    OkThenHtml,
    /// Never answers.
    Hang,
}

/// A "parent proxy" on 127.0.0.1 that misbehaves as `mode` says.
async fn start_fake_parent(mode: FakeParent) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer: Vec<u8> = match mode {
                    FakeParent::Garbage => b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
                    FakeParent::Close => return,
                    FakeParent::Hang => {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        return;
                    }
                    FakeParent::HugeHead => {
                        let mut a = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
                        a.extend(std::iter::repeat_n(b'a', 20 * 1024));
                        a.extend_from_slice(b"\r\n\r\n");
                        a
                    }
                    FakeParent::OkThenHtml => {
                        b"HTTP/1.1 200 Connection established\r\n\r\n<html><body>Access denied by policy</body></html>\r\n"
                            .to_vec()
                    }
                };
                let _ = s.write_all(&answer).await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            });
        }
    });
    addr
}

/// `[parent]` with `fake` as the parent.
fn parent_table(fake: std::net::SocketAddr) -> String {
    format!("[parent]\nurl = \"http://{fake}\"\n")
}

/// `CONNECT localhost:1234` through `proxy` is a 502 saying the parent
/// `fake` failed, and `how`.
async fn assert_connect_fails(proxy: &Proxy, fake: std::net::SocketAddr, how: &str) {
    let connect = b"CONNECT localhost:1234 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n";
    let (status, body) = split(&raw_exchange(proxy.addr, connect).await);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway", "{body}");
    assert_eq!(
        body,
        format!("modgate: parent proxy http://{fake} failed on localhost:1234: {how}\n")
    );
}

/// A parent that is reached but breaks (answers something that is not
/// HTTP, closes, sends a head too large, or accepts CONNECT and then does
/// not relay TLS) is named in a one-line 502 saying what it did: never
/// "refused", never hyper's names for its internals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_that_breaks_is_named_with_what_it_did() {
    let cases = [
        (
            FakeParent::Garbage,
            "it answered CONNECT localhost:1234 with something that is not HTTP, starting 'SSH-2.0-OpenSSH_9.6'",
            "its answer is not valid HTTP",
        ),
        (
            FakeParent::Close,
            "it closed the connection instead of answering CONNECT localhost:1234",
            "it closed the connection before answering",
        ),
    ];
    for (mode, on_connect, on_get) in cases {
        let fake = start_fake_parent(mode).await;
        let proxy = start_proxy(&config_allowing_loopback(&parent_table(fake))).await;
        assert_connect_fails(&proxy, fake, on_connect).await;
        let (status, _, body) = get_via(proxy.addr, "http://localhost:1234/x").await;
        assert_eq!(status.as_u16(), 502, "{body}");
        assert!(
            body.starts_with(&format!(
                "modgate: parent proxy http://{fake} failed on http://localhost:1234: {on_get}"
            )),
            "{body}"
        );
        assert!(
            !body.contains("SendRequest") && !body.contains("client error"),
            "{body}"
        );
        proxy.stop().await;
    }

    let fake = start_fake_parent(FakeParent::HugeHead).await;
    let proxy = start_proxy(&config_allowing_loopback(&parent_table(fake))).await;
    assert_connect_fails(
        &proxy,
        fake,
        "its answer to CONNECT localhost:1234 has a head over 16 KiB",
    )
    .await;
    proxy.stop().await;

    // modgate's own handshake through a tunnel the parent accepted but does
    // not relay: the TLS failure names the parent.
    let fake = start_fake_parent(FakeParent::OkThenHtml).await;
    let pki = TestPki::new("Fake Parent Root");
    let (dir, served) = intercepting_localhost_with(&pki, &parent_table(fake)).await;
    let response = tls_get(
        served.addr,
        "localhost:1234",
        trusting(&dir.path().join("ca/modgate-ca.pem")),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert!(
        response.contains("modgate: TLS handshake with upstream https://localhost:1234 failed: ")
            && response.contains(&format!(
                "(through parent proxy http://{fake}, which accepted CONNECT: it, or what it connected to, does not speak TLS there)"
            )),
        "{response}"
    );
}

/// A parent that never answers is a 504 naming it and the configured
/// timeout as configured (`1s`, not what was left of it, `999ms`), for a
/// tunnel and for modgate's own connection inside an intercepted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_parent_times_out_with_the_configured_limit() {
    let fake = start_fake_parent(FakeParent::Hang).await;
    let timeouts = format!("[timeouts]\nconnect = \"1s\"\n{}", parent_table(fake));
    // A tunnel, bounded by the connect timeout; a plain-HTTP request sent
    // to the parent in absolute form, the same within the header timeout.
    let header = format!("[timeouts]\nheader = \"1s\"\n{}", parent_table(fake));
    let cases: [(&str, &[u8], &str); 2] = [
        (
            &timeouts,
            b"CONNECT localhost:1234 HTTP/1.1\r\nHost: localhost:1234\r\n\r\n",
            "CONNECT localhost:1234",
        ),
        (
            &header,
            b"GET http://localhost:1234/x HTTP/1.1\r\nHost: localhost:1234\r\nConnection: close\r\n\r\n",
            "GET http://localhost:1234/x",
        ),
    ];
    for (config, request, what) in cases {
        let proxy = start_proxy(&config_allowing_loopback(config)).await;
        let raw = raw_exchange(proxy.addr, request).await;
        let (status, body) = split(&raw);
        assert_eq!(status, "HTTP/1.1 504 Gateway Timeout", "{body}");
        assert_eq!(
            body,
            format!(
                "modgate: parent proxy http://{fake} timed out after 1s waiting for its answer to {what} (for localhost:1234)\n"
            )
        );
        proxy.stop().await;
    }

    let pki = TestPki::new("Silent Parent Root");
    let (dir, served) = intercepting_localhost_with(&pki, &timeouts).await;
    let response = tls_get(
        served.addr,
        "localhost:1234",
        trusting(&dir.path().join("ca/modgate-ca.pem")),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(
        response.contains(&format!(
            "modgate: parent proxy http://{fake} timed out after 1s waiting for its answer to CONNECT localhost:1234 (for localhost:1234)"
        )),
        "{response}"
    );
}

/// A free port on 127.0.0.1, for a config that must name it.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// With a parent, modgate still never reaches itself: an address that is
/// one of its listeners is refused before the parent is asked, and a name
/// only the parent resolves to modgate comes back carrying modgate's own
/// `Via` and is refused on arrival, after one round, not a hundred. The
/// admin listener is not reachable through the proxy either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_never_leads_back_to_modgate() {
    // Squid resolves `loop.test` to 127.0.0.1; modgate has no idea.
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("hosts"), "127.0.0.1 loop.test\n").unwrap();
    for path in [hosts.path().to_owned(), hosts.path().join("hosts")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let squid = Squid::start(
        &[("alice", "s3cret")],
        &format!("hosts_file {}", hosts.path().join("hosts").display()),
    )
    .await;
    let (listen, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[admin]\nlisten = \"{admin}\"\n[parent]\nurl = \"{}\"\n\n\
             [[rule]]\nname = \"modules\"\nmodules = [\"example.test/*\"]\naction = \"mirror\"\nmirrors = \"http://loop.test:{}\"\n\n\
             [[rule]]\nname = \"allow\"\naction = \"direct\"\n",
            squid.url("alice", "s3cret"),
            listen.port()
        ),
    )
    .unwrap();
    let listen_arg = listen.to_string();
    let served = start_served(dir.path(), &["--config", "c.toml", "--listen", &listen_arg]).await;
    assert_eq!(served.admin, Some(admin));

    // An address modgate listens on: refused before the parent hears of it.
    for url in [
        format!("http://127.0.0.1:{}/metrics", admin.port()),
        format!("http://localhost:{}/metrics", admin.port()),
        format!("http://127.0.0.1:{}/x", listen.port()),
    ] {
        let (status, _, body) = get_via(served.addr, &url).await;
        assert_eq!(status.as_u16(), 508, "{url}: {body}");
        assert!(body.contains("modgate's own listener"), "{url}: {body}");
        assert!(!body.contains("modgate_"), "{url}: no metrics: {body}");
    }
    let (_, head) = connect_via(served.addr, &format!("127.0.0.1:{}", admin.port())).await;
    assert!(head.starts_with("HTTP/1.1 508"), "{head}");

    // A name the parent resolves to modgate's admin listener: the admin
    // listener sees modgate's own Via.
    let (status, _, body) = get_via(served.addr, &format!("http://loop.test:{}/metrics", admin.port())).await;
    assert_eq!(status.as_u16(), 508, "{body}");
    assert!(body.contains("came through this modgate's proxy"), "{body}");
    assert!(!body.contains("modgate_"), "no metrics: {body}");

    // A mirror whose name the parent resolves to modgate: one round.
    let (status, body) = crate::modules::endpoint_get(served.addr, "/example.test/lib/@v/list").await;
    assert!(status >= 500, "{status}: {body}");
    // Squid writes a line when its transaction ends, which may be after
    // modgate answered.
    squid.logged(&["loop.test:", "/example.test/lib/@v/list"]).await;
    let rounds = squid.access_log().matches("loop.test:").count();
    // The admin request above, and this mirror fetch once.
    assert_eq!(rounds, 2, "{}", squid.access_log());
}

/// A parent that hands CONNECTs back to modgate (a port forward, a load
/// balancer, a fleet-wide HTTPS_PROXY): the CONNECT modgate sends carries
/// its `Via`, so it comes back once and is refused, not a hundred times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_a_parent_hands_back_is_refused_after_one_round() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let back_to: std::sync::Arc<std::sync::OnceLock<std::net::SocketAddr>> = Default::default();
    let rounds = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let (back_to, rounds) = (back_to.clone(), rounds.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = relay.accept().await {
                rounds.fetch_add(1, Ordering::SeqCst);
                let Some(&target) = back_to.get() else { continue };
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                });
            }
        });
    }
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[parent]\nurl = \"http://{relay_addr}\"\n"
    )))
    .await;
    back_to.set(proxy.addr).unwrap();
    let raw = raw_exchange(proxy.addr, b"CONNECT up.test:443 HTTP/1.1\r\nHost: up.test:443\r\n\r\n").await;
    let (status, body) = split(&raw);
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway", "{raw}");
    assert_eq!(
        body,
        format!(
            "modgate: parent proxy http://{relay_addr} refused CONNECT up.test:443: HTTP/1.1 508 Loop Detected; the parent led back to this modgate (a loop): [parent] url must name a proxy that does not send its requests to modgate\n"
        )
    );
    assert_eq!(rounds.load(Ordering::SeqCst), 1);
    proxy.stop().await;
}

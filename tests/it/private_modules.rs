//! Issue 16 §3: private names never leave. A module path in `[private]
//! modules` goes only to `[private] mirrors`, never to a checksum
//! database, whatever the client's GOPRIVATE says; the cache keeps it
//! apart and serves it only after the rules decide.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cache::{endpoint_get, start_mirror};
use crate::go_e2e::World;
use crate::gotool::*;
use crate::sumdb::start_sumdb;
use crate::support::*;

const PRIVATE: &str = "git.corp.test/team/private";

const FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.1.0",
        payload: 0,
    },
    FixtureModule {
        path: PRIVATE,
        version: "v1.0.0",
        payload: 1_000,
    },
];

const REQUIRES: &[(&str, &str)] = &[("example.test/alpha", "v1.1.0"), (PRIVATE, "v1.0.0")];

/// A plain-HTTP server that records every path asked and forwards the
/// request to `upstream`: the public checksum database's front door.
async fn start_recording_forwarder(upstream: SocketAddr) -> (Origin, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let origin = start_origin(Arc::new(move |req: Request<Incoming>| {
        log.lock().unwrap().push(req.uri().path().to_owned());
        let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        Box::pin(async move {
            let stream = TcpStream::connect(upstream).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let resp = sender
                .send_request(
                    Request::get(path)
                        .header("host", upstream.to_string())
                        .body(full(""))
                        .unwrap(),
                )
                .await
                .unwrap();
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            Response::from_parts(parts, full(bytes))
        })
    }))
    .await;
    (origin, seen)
}

/// A TLS client trusting the world's modgate CA (`ca/modgate-ca.pem`).
fn trusting_modgate(world: &World) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in pem_file_certs(&world.path("ca/modgate-ca.pem")) {
        store.add(root).unwrap();
    }
    install_crypto();
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

fn mentions_private(paths: &[String]) -> Vec<String> {
    paths.iter().filter(|p| p.contains("git.corp.test")).cloned().collect()
}

/// The endpoint, its public mirror listed first: without `[private]`, the
/// private module would be fetched from there. The checksum database is
/// the test database behind a recording front door. go has no GOPRIVATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_module_never_reaches_the_public_proxy_or_sumdb_whatever_goprivate_says() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    write_fixture(&fixture, FIXTURE);
    let public = start_mirror(&fixture).await;
    let private = start_mirror(&fixture).await;
    let sumdb = start_sumdb(&fixture).await;
    let (sumdb_front, sumdb_seen) = start_recording_forwarder(sumdb.addr).await;
    let text = format!(
        "[cache]\ndir = \"cache\"\nlist_ttl = \"1h\"\n[sumdb]\nkey = \"{key}\"\nurl = \"http://{front}\"\n[private]\nmodules = [\"git.corp.test\"]\nmirrors = [\"http://{private}\"]\n\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"http://{public},http://{private}\"\n",
        key = sumdb.key,
        front = sumdb_front.addr,
        public = public.addr,
        private = private.addr,
    );
    let config_path = dir.path().join("modgate.toml");
    std::fs::write(&config_path, &text).unwrap();
    let proxy = start_proxy_with(modgate::config::Config::parse(&text, config_path.to_str().unwrap()).unwrap()).await;
    let env = vec![
        ("GOPROXY", format!("http://{}", proxy.addr)),
        ("GOSUMDB", sumdb.key.to_string()),
    ];

    // No GOPRIVATE, no GONOSUMDB: go asks modgate's sumdb about the
    // private module, and modgate says no.
    let run = GoProject::new(REQUIRES).download(&env).await;
    let output = run.output();
    assert!(
        !run.ok,
        "go cannot verify a private module against the public database: {output}"
    );
    assert!(
        output.contains(&format!(
            "server response: modgate: {PRIVATE} is private ([private] modules): modgate never asks a checksum database about it; cover it with GONOSUMDB or GOPRIVATE"
        )),
        "{output}"
    );
    // With only GONOSUMDB, go downloads it, from the private mirror.
    let with_nosumdb = [env.clone(), vec![("GONOSUMDB", "git.corp.test".to_owned())]].concat();
    let run = GoProject::new(REQUIRES).download(&with_nosumdb).await;
    run.assert_ok();
    let direct = GoProject::new(REQUIRES)
        .download(&[("GOPROXY", format!("file://{}", fixture.display()))])
        .await;
    direct.assert_ok();
    assert_eq!(
        run.modules, direct.modules,
        "the same hashes as straight from the fixture"
    );

    // The positive signals first: each origin was asked what it may be.
    let public_paths = public.paths();
    assert!(
        public_paths.iter().any(|p| p.contains("example.test/alpha")),
        "{public_paths:?}"
    );
    assert!(!mentions_private(&private.paths()).is_empty(), "{:?}", private.paths());
    let sumdb_paths = sumdb_seen.lock().unwrap().clone();
    assert!(
        sumdb_paths
            .iter()
            .any(|p| p.contains("/lookup/example.test/alpha@v1.1.0")),
        "{sumdb_paths:?}"
    );
    // And never the private path.
    assert_eq!(mentions_private(&public_paths), Vec::<String>::new(), "public proxy");
    assert_eq!(mentions_private(&sumdb_paths), Vec::<String>::new(), "public sumdb");
    // Cached apart from public modules.
    let cache = dir.path().join("cache");
    assert!(cache.join("private").join(PRIVATE).join("@v/v1.0.0.zip").is_file());
    assert!(!cache.join("git.corp.test").exists());
    assert!(cache.join("example.test/alpha/@v/v1.1.0.zip").is_file());
    proxy.stop().await;
}

/// The HTTPS_PROXY way, with no GOPRIVATE: inside an intercepted
/// proxy.golang.org a `direct` rule would send the path to the real
/// proxy, and inside an intercepted sum.golang.org to the real database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_intercepted_public_hosts_a_private_path_gets_a_404_and_never_reaches_them() {
    let world = World::with(FIXTURE);
    let origin = start_module_origin(&world.pki, &["proxy.golang.org"], &world.fixture(), Behavior::Serve).await;
    let (chain, key) = world.pki.leaf(&["sum.golang.org"]);
    let (sum_addr, sum_connections, _sum_task) =
        start_counted_tls_server(chain, key, "a sumdb answer", rustls::DEFAULT_VERSIONS).await;
    let rules = "[private]\nmodules = [\"git.corp.test\"]\n\n[[rule]]\nname = \"public-hosts\"\nhosts = [\"proxy.golang.org\", \"sum.golang.org\"]\naction = \"direct\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n";
    let proxy = world
        .proxy(
            &[("proxy.golang.org", origin.addr), ("sum.golang.org", sum_addr)],
            rules,
        )
        .await;

    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    let output = run.output();
    assert!(!run.ok, "{output}");
    assert!(output.contains("404 Not Found"), "{output}");
    assert!(
        output.contains(&format!(
            "server response: modgate: {PRIVATE} is private ([private] modules): modgate does not send it to proxy.golang.org:443, which is not in [private] mirrors; go fetches it direct"
        )),
        "{output}"
    );
    let paths = origin.paths.lock().unwrap().clone();
    assert!(paths.iter().any(|p| p.contains("example.test/alpha")), "{paths:?}");
    assert_eq!(mentions_private(&paths), Vec::<String>::new());

    // sum.golang.org, intercepted: a private lookup is answered by modgate.
    let client = trusting_modgate(&world);
    let lookup = |path: String| {
        let client = client.clone();
        let addr = proxy.addr;
        async move {
            let (stream, head) = connect_via(addr, "sum.golang.org:443").await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let tls = tls_connect(stream, client, "sum.golang.org").await;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(conn);
            let resp = sender
                .send_request(
                    Request::get(path)
                        .header("host", "sum.golang.org")
                        .body(full(""))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = lookup(format!("/lookup/{PRIVATE}@v1.0.0")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body.trim(),
        format!(
            "modgate: {PRIVATE} is private ([private] modules): modgate never asks a checksum database about it; cover it with GONOSUMDB or GOPRIVATE"
        )
    );
    assert_eq!(sum_connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    let (status, body) = lookup("/lookup/example.test/alpha@v1.1.0".to_owned()).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "a sumdb answer"),
        "a public lookup goes through"
    );
    assert!(sum_connections.load(std::sync::atomic::Ordering::SeqCst) > 0);
    proxy.stop().await;
}

/// A GOPROXY with a path of its own on an intercepted public host: a
/// checksum-database lookup below it, and a module path below a prefix
/// that reads as a module path itself, are the private module's and never
/// reach the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_a_goproxy_prefix_a_private_path_never_reaches_a_public_host() {
    let world = World::with(FIXTURE);
    let origin = start_module_origin(&world.pki, &["proxy.golang.org"], &world.fixture(), Behavior::Serve).await;
    let rules = "[private]\nmodules = [\"git.corp.test\"]\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n";
    let proxy = world.proxy(&[("proxy.golang.org", origin.addr)], rules).await;
    let client = trusting_modgate(&world);
    let (stream, head) = connect_via(proxy.addr, "proxy.golang.org:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_connect(stream, client, "proxy.golang.org").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut get = async |path: String| {
        let req = Request::get(path)
            .header("host", "proxy.golang.org")
            .body(full(""))
            .unwrap();
        // One connection for every ask: the previous answer's end must
        // reach the connection task before the next request goes out.
        sender.ready().await.expect("the intercepted connection stays open");
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let (status, body) = get(format!("/pfx/a/sumdb/sum.golang.org/lookup/{PRIVATE}@v1.0.0")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("never asks a checksum database about it"), "{body}");
    let (status, body) = get(format!("/cache.corp.example/x/{PRIVATE}/@v/v1.0.0.info")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(&format!("{PRIVATE} is private")), "{body}");
    // A public module below the same prefix still goes to the host, asked
    // for the whole path (the fixture has no such prefix: its 404).
    let (status, body) = get("/pfx/a/example.test/alpha/@v/list".into()).await;
    assert_eq!(status, 404, "{body}");
    let paths = origin.paths.lock().unwrap().clone();
    assert!(
        paths.iter().any(|p| p == "/pfx/a/example.test/alpha/@v/list"),
        "{paths:?}"
    );
    assert_eq!(mentions_private(&paths), Vec::<String>::new(), "{paths:?}");
    proxy.stop().await;
}

/// modgate on the endpoint with the private mirror listed or not, and
/// `[private] cache` on or off, over the cache in `dir/cache`.
fn private_config(
    dir: &Path,
    public: SocketAddr,
    private: SocketAddr,
    listed: bool,
    cache: bool,
) -> modgate::config::Config {
    let mirrors = if listed {
        format!("mirrors = [\"http://{private}\"]\n")
    } else {
        String::new()
    };
    let text = format!(
        "[cache]\ndir = \"cache\"\nlist_ttl = \"1h\"\n[sumdb]\nverify = false\n[private]\nmodules = [\"git.corp.test/*\"]\n{mirrors}cache = {cache}\n\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"http://{public},http://{private}\"\n"
    );
    let path = dir.join("modgate.toml");
    std::fs::write(&path, &text).unwrap();
    modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_objects_are_cached_apart_or_not_at_all() {
    let zip = format!("/{PRIVATE}/@v/v1.0.0.zip");
    for cache in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(&dir.path().join("fixture"), FIXTURE);
        let public = start_mirror(&dir.path().join("fixture")).await;
        let private = start_mirror(&dir.path().join("fixture")).await;
        let proxy = start_proxy_with(private_config(dir.path(), public.addr, private.addr, true, cache)).await;
        for _ in 0..2 {
            let (status, headers, _) = endpoint_get(proxy.addr, &zip).await;
            assert_eq!(status, 200, "cache = {cache}");
            if !cache {
                assert_eq!(headers.get("x-cache").map(|v| v.to_str().unwrap()), Some("bypass"));
            }
        }
        let (status, _, _) = endpoint_get(proxy.addr, "/example.test/alpha/@v/v1.1.0.zip").await;
        assert_eq!(status, 200);
        proxy.stop().await;
        let root = dir.path().join("cache");
        assert_eq!(private.count(&zip), if cache { 1 } else { 2 }, "cache = {cache}");
        assert_eq!(public.count(&zip), 0, "the public mirror is never asked");
        assert_eq!(
            root.join("private").join(PRIVATE).join("@v/v1.0.0.zip").is_file(),
            cache
        );
        assert!(!root.join("git.corp.test").exists(), "never beside public modules");
        assert!(
            root.join("example.test/alpha/@v/v1.1.0.zip").is_file(),
            "public modules are cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_private_module_is_not_served_once_the_rules_refuse_it() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(&dir.path().join("fixture"), FIXTURE);
    let public = start_mirror(&dir.path().join("fixture")).await;
    let private = start_mirror(&dir.path().join("fixture")).await;
    let zip = format!("/{PRIVATE}/@v/v1.0.0.zip");
    let proxy = start_proxy_with(private_config(dir.path(), public.addr, private.addr, true, true)).await;
    let (status, _, _) = endpoint_get(proxy.addr, &zip).await;
    assert_eq!(status, 200);
    proxy.stop().await;
    assert!(
        dir.path()
            .join("cache/private")
            .join(PRIVATE)
            .join("@v/v1.0.0.zip")
            .is_file()
    );

    // The private mirror is no longer listed: the cached copy is not an
    // answer, because the rules no longer allow fetching it.
    let proxy = start_proxy_with(private_config(dir.path(), public.addr, private.addr, false, true)).await;
    let (status, _, body) = endpoint_get(proxy.addr, &zip).await;
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        format!(
            "modgate: {PRIVATE} is private ([private] modules): rule 'all' would send it to http://{},http://{}, and none of those is in [private] mirrors; go fetches it direct",
            public.addr, private.addr
        )
    );
    assert_eq!(private.count(&zip), 1, "asked once, while it was allowed");
    assert_eq!(public.count(&zip), 0);
    proxy.stop().await;
}

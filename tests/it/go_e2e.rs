//! Issue 3 end to end: the real `go` command through modgate, against
//! fixture module proxies on 127.0.0.1 with a test PKI.

use std::path::PathBuf;

use crate::gotool::*;
use crate::support::*;

/// The modules every fixture holds.
const FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.0.0",
        payload: 0,
    },
    FixtureModule {
        path: "example.test/alpha",
        version: "v1.1.0",
        payload: 2_000,
    },
    FixtureModule {
        path: "example.test/beta",
        version: "v0.3.0",
        payload: 200_000,
    },
    FixtureModule {
        path: "github.com/Azure/fixture-az",
        version: "v1.2.3",
        payload: 20_000,
    },
    FixtureModule {
        path: "example.test/banned",
        version: "v1.0.0",
        payload: 0,
    },
    FixtureModule {
        path: "git.corp.test/team/private",
        version: "v1.0.0",
        payload: 0,
    },
];

/// A project needing several modules, one of them with upper case.
const REQUIRES: &[(&str, &str)] = &[
    ("example.test/alpha", "v1.1.0"),
    ("example.test/beta", "v0.3.0"),
    ("github.com/Azure/fixture-az", "v1.2.3"),
];

/// Fixture tree, stand-in public PKI, modgate's CA and the client bundle.
pub(crate) struct World {
    dir: tempfile::TempDir,
    pub(crate) pki: TestPki,
}

impl World {
    fn new() -> World {
        World::with(FIXTURE)
    }

    /// A world whose fixture holds `modules`.
    pub(crate) fn with(modules: &[FixtureModule]) -> World {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(&dir.path().join("fixture"), modules);
        let pki = TestPki::new("Test Public Root CA");
        std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
        let world = World { dir, pki };
        // The CA and the bundle come from the CLI, as a user would make them.
        let config = world.write_config("ca.toml", &[], "[[rule]]\naction = \"direct\"\n");
        let init = modgate(&["ca", "init", "--config", config.to_str().unwrap()]);
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let bundle = modgate(&["ca", "bundle", "--config", config.to_str().unwrap()]);
        assert!(bundle.status.success(), "{}", String::from_utf8_lossy(&bundle.stderr));
        std::fs::write(world.bundle(), bundle.stdout).unwrap();
        world
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn fixture(&self) -> PathBuf {
        self.path("fixture")
    }

    fn bundle(&self) -> PathBuf {
        self.path("bundle.pem")
    }

    /// A config intercepting proxy.golang.org and sum.golang.org, with the
    /// test PKI as the public roots, `hosts` overrides, and `rules`.
    fn write_config(&self, name: &str, hosts: &[(&str, std::net::SocketAddr)], rules: &str) -> PathBuf {
        self.write_config_tls(name, hosts, rules, "")
    }

    /// Like `write_config`, with `tls_extra` lines added to `[tls]`.
    fn write_config_tls(
        &self,
        name: &str,
        hosts: &[(&str, std::net::SocketAddr)],
        rules: &str,
        tls_extra: &str,
    ) -> PathBuf {
        let mut text = String::from(
            "[tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\", \"sum.golang.org\"]\npublic_roots = \"public-root.pem\"\n\n[hosts]\n",
        );
        text = text.replace("[hosts]\n", &format!("{tls_extra}\n[hosts]\n"));
        for (host, addr) in hosts {
            text.push_str(&format!("\"{host}\" = \"{addr}\"\n"));
        }
        text.push('\n');
        text.push_str(rules);
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub(crate) async fn proxy(&self, hosts: &[(&str, std::net::SocketAddr)], rules: &str) -> Proxy {
        self.proxy_tls(hosts, rules, "").await
    }

    async fn proxy_tls(&self, hosts: &[(&str, std::net::SocketAddr)], rules: &str, tls_extra: &str) -> Proxy {
        let path = self.write_config_tls("modgate.toml", hosts, rules, tls_extra);
        let text = std::fs::read_to_string(&path).unwrap();
        let config = modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap();
        start_proxy_with(config).await
    }

    /// The environment of a developer using modgate as HTTPS_PROXY.
    pub(crate) fn via_proxy(&self, proxy: &Proxy) -> Vec<(&'static str, String)> {
        vec![
            ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
            ("SSL_CERT_FILE", self.bundle().display().to_string()),
            ("GOPROXY", "https://proxy.golang.org".into()),
        ]
    }
}

fn modgate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(modgate_bin()).args(args).output().unwrap()
}

fn mirror_rule(mirrors: &str) -> String {
    format!(
        "[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"{mirrors}\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n"
    )
}

async fn direct_from_fixture(world: &World) -> GoRun {
    let project = GoProject::new(REQUIRES);
    let run = project
        .download(&[("GOPROXY", format!("file://{}", world.fixture().display()))])
        .await;
    run.assert_ok();
    run
}

fn zip_in_cache(project: &GoProject, module: &str, version: &str) -> bool {
    let encoded = modgate::gomod::escape::encode_case(module);
    project
        .dir
        .path()
        .join("modcache/cache/download")
        .join(encoded)
        .join("@v")
        .join(format!("{version}.zip"))
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_mirror_serves_go_with_the_fixture_hashes() {
    let world = World::new();
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let proxy = world
        .proxy(&[("mirror.test", mirror.addr)], &mirror_rule("https://mirror.test"))
        .await;
    let project = GoProject::new(REQUIRES);
    let via = project.download(&world.via_proxy(&proxy)).await;
    via.assert_ok();
    assert_eq!(via.modules.len(), REQUIRES.len(), "{:?}", via.modules);
    assert!(
        via.modules.contains_key("github.com/Azure/fixture-az@v1.2.3"),
        "case-encoded module round-trips"
    );
    let direct = direct_from_fixture(&world).await;
    assert_eq!(
        via.modules, direct.modules,
        "hashes through modgate equal hashes straight from the fixture"
    );
    assert!(
        mirror.requests.load(std::sync::atomic::Ordering::SeqCst) >= 6,
        "the mirror served the downloads"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_rule_stops_go_with_its_reason() {
    let world = World::new();
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let rules = format!(
        "[[rule]]\nname = \"banned\"\nmodules = [\"example.test/banned\"]\naction = \"block\"\nreason = \"SEC-42: known malicious module\"\n\n{}",
        mirror_rule("https://mirror.test")
    );
    let proxy = world.proxy(&[("mirror.test", mirror.addr)], &rules).await;
    let project = GoProject::new(&[("example.test/alpha", "v1.1.0"), ("example.test/banned", "v1.0.0")]);
    let run = project.download(&world.via_proxy(&proxy)).await;
    assert!(!run.ok, "go must fail");
    let output = run.output();
    assert!(
        output.contains("modgate: blocked by rule 'banned': SEC-42: known malicious module"),
        "go shows the reason: {output}"
    );
    assert!(!zip_in_cache(&project, "example.test/banned", "v1.0.0"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comma_falls_through_on_404_but_not_on_500() {
    let world = World::new();
    let empty = tempfile::tempdir().unwrap();
    let not_here = start_module_origin(&world.pki, &["mirror-a.test"], empty.path(), Behavior::Serve).await;
    let good = start_module_origin(&world.pki, &["mirror-b.test"], &world.fixture(), Behavior::Serve).await;
    let proxy = world
        .proxy(
            &[("mirror-a.test", not_here.addr), ("mirror-b.test", good.addr)],
            &mirror_rule("https://mirror-a.test,https://mirror-b.test"),
        )
        .await;
    GoProject::new(REQUIRES)
        .download(&world.via_proxy(&proxy))
        .await
        .assert_ok();
    assert!(not_here.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    proxy.stop().await;

    let broken = start_module_origin(&world.pki, &["mirror-a.test"], empty.path(), Behavior::Status(500)).await;
    let unused = start_module_origin(&world.pki, &["mirror-b.test"], &world.fixture(), Behavior::Serve).await;
    let proxy = world
        .proxy(
            &[("mirror-a.test", broken.addr), ("mirror-b.test", unused.addr)],
            &mirror_rule("https://mirror-a.test,https://mirror-b.test"),
        )
        .await;
    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    assert!(!run.ok, "a 500 must not fall through a comma");
    let output = run.output();
    assert!(output.contains("502 Bad Gateway"), "{output}");
    assert!(
        output.contains("modgate: upstream https://mirror-a.test answered 500 Internal Server Error"),
        "{output}"
    );
    assert_eq!(
        unused.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the second mirror is never asked"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_falls_through_on_500() {
    let world = World::new();
    let empty = tempfile::tempdir().unwrap();
    let broken = start_module_origin(&world.pki, &["mirror-a.test"], empty.path(), Behavior::Status(500)).await;
    let good = start_module_origin(&world.pki, &["mirror-b.test"], &world.fixture(), Behavior::Serve).await;
    let proxy = world
        .proxy(
            &[("mirror-a.test", broken.addr), ("mirror-b.test", good.addr)],
            &mirror_rule("https://mirror-a.test|https://mirror-b.test"),
        )
        .await;
    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    run.assert_ok();
    assert!(broken.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(good.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    // An unreachable first mirror falls through a pipe too.
    proxy.stop().await;
    let proxy = world
        .proxy(
            &[("mirror-a.test", closed_port().await), ("mirror-b.test", good.addr)],
            &mirror_rule("https://mirror-a.test|https://mirror-b.test"),
        )
        .await;
    GoProject::new(REQUIRES)
        .download(&world.via_proxy(&proxy))
        .await
        .assert_ok();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_endpoint_needs_no_ca_and_explains_direct_modules() {
    let world = World::new();
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let rules = "[[rule]]\nname = \"private\"\nmodules = [\"git.corp.test/*\"]\naction = \"direct\"\n\n[[rule]]\nname = \"modules\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n";
    let proxy = world.proxy(&[("mirror.test", mirror.addr)], rules).await;
    let endpoint = [("GOPROXY", format!("http://{}", proxy.addr))];
    let run = GoProject::new(REQUIRES).download(&endpoint).await;
    run.assert_ok();
    let direct = direct_from_fixture(&world).await;
    assert_eq!(run.modules, direct.modules);

    let private = GoProject::new(&[("git.corp.test/team/private", "v1.0.0")]);
    let run = private.download(&endpoint).await;
    assert!(!run.ok);
    let output = run.output();
    assert!(output.contains("404 Not Found"), "{output}");
    assert!(
        output.contains("modgate: rule 'private' sends git.corp.test/team/private direct: go fetches it itself"),
        "{output}"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_file_mirror_serves_go() {
    let world = World::new();
    let proxy = world
        .proxy(&[], &mirror_rule(&format!("file://{}", world.fixture().display())))
        .await;
    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    run.assert_ok();
    assert_eq!(run.modules, direct_from_fixture(&world).await.modules);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_cut_short_fails_go_instead_of_caching_it() {
    let world = World::new();
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::TruncateZips).await;
    let proxy = world
        .proxy(&[("mirror.test", mirror.addr)], &mirror_rule("https://mirror.test"))
        .await;
    let project = GoProject::new(&[("example.test/beta", "v0.3.0")]);
    let run = project.download(&world.via_proxy(&proxy)).await;
    assert!(!run.ok, "a truncated zip must fail: {}", run.output());
    assert!(
        run.output().contains("example.test/beta/@v/v0.3.0.zip"),
        "go names the zip it could not read: {}",
        run.output()
    );
    assert!(
        !zip_in_cache(&project, "example.test/beta", "v0.3.0"),
        "nothing half-written lands in the cache"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_still_tunnel_untouched() {
    let world = World::new();
    let (git, _task) = start_tls_origin(&world.pki, &["git.test"], "git over tls").await;
    let proxy = world
        .proxy(&[("git.test", git)], &mirror_rule("https://mirror.test"))
        .await;
    let (stream, head) = connect_via(proxy.addr, "git.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The origin's own certificate, verified against its own root: not intercepted.
    let tls = tls_connect(stream, world.pki.client_config(), "git.test").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            http::Request::get("/")
                .header("host", "git.test")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    proxy.stop().await;
}

/// The mirror sits behind a simulated Zscaler box that re-signs TLS with
/// "Zscaler Intermediate Root CA (zscaler.net)" under "Zscaler Root CA".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_behind_zscaler_works_with_its_root_and_is_named_without_it() {
    let world = World::new();
    let root = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let zscaler = root.intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    std::fs::write(world.path("zscaler-root.pem"), &root.ca_pem).unwrap();
    let mirror = start_module_origin(&zscaler, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let hosts = [("mirror.test", mirror.addr)];

    // With the interceptor's root in extra_roots: intercepted, warn, works.
    let proxy = world
        .proxy_tls(
            &hosts,
            &mirror_rule("https://mirror.test"),
            "extra_roots = [\"zscaler-root.pem\"]\nintercepted_dir = \"seen\"",
        )
        .await;
    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    run.assert_ok();
    assert_eq!(run.modules, direct_from_fixture(&world).await.modules);
    proxy.stop().await;
    let index = std::fs::read_to_string(world.path("seen/index.jsonl")).expect("the interception is indexed");
    assert!(
        index.contains("\"vendor\":\"Zscaler\"") && index.contains("\"verdict\":\"intercepted\""),
        "{index}"
    );
    assert!(index.contains("\"hosts\":[\"mirror.test\"]"), "{index}");

    // Without it: untrusted, and go's stderr names Zscaler and the fix.
    let proxy = world
        .proxy_tls(
            &hosts,
            &mirror_rule("https://mirror.test"),
            "intercepted_dir = \"seen2\"",
        )
        .await;
    let run = GoProject::new(REQUIRES).download(&world.via_proxy(&proxy)).await;
    assert!(!run.ok);
    let output = run.output();
    // The evidence is written by a background thread.
    let seen2 = world.path("seen2");
    eventually("the chain is saved", || {
        std::fs::read_dir(&seen2)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".pem"))
    })
    .await;
    let saved: Vec<_> = std::fs::read_dir(world.path("seen2"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    assert_eq!(saved.len(), 1, "the chain is saved once: {saved:?}");
    // Zscaler sends the leaf and its intermediate, not the root: the fix
    // says where the root must come from instead of trusting either.
    let expected = format!(
        "modgate: upstream https://mirror.test presented a chain issued by 'Zscaler Intermediate Root CA (zscaler.net)' (Zscaler), which is not trusted and holds no root certificate (saved in {}); get the root CA from the interceptor's admin and add it to tls.extra_roots",
        world.path("seen2").join(&saved[0]).display()
    );
    assert!(output.contains(&expected), "expected {expected:?} in:\n{output}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_name_with_url_characters_resolves_through_both_doors() {
    // go allows `#`, space, `,`, `@` ... in a query (module.EscapeVersion)
    // and percent-encodes them in the path: `@fix#12` asks for
    // `@v/fix%2312.info`. The fixture decodes paths, as a file server does.
    let world = World::new();
    let at_v = world.fixture().join("example.test/alpha/@v");
    let queries = [("fix#12", "fix%2312"), ("a b", "a%20b"), ("user@topic", "user@topic")];
    for (query, _) in queries {
        std::fs::write(
            at_v.join(format!("{query}.info")),
            "{\"Version\":\"v1.1.0\",\"Time\":\"2024-01-02T03:04:05Z\"}",
        )
        .unwrap();
    }
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let rules = "[[rule]]\nname = \"modules\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n";
    let proxy = world.proxy(&[("mirror.test", mirror.addr)], rules).await;
    let project = GoProject::new(&[]);
    let endpoint = vec![("GOPROXY", format!("http://{}", proxy.addr))];
    for env in [world.via_proxy(&proxy), endpoint] {
        for (query, raw) in queries {
            let out = project
                .go(&["list", "-m", &format!("example.test/alpha@{query}")], &env)
                .await;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{query}: {text}");
            assert_eq!(text.trim(), "example.test/alpha v1.1.0", "{query}");
            let asked = format!("/example.test/alpha/@v/{raw}.info");
            assert!(
                mirror.paths.lock().unwrap().contains(&asked),
                "{asked} reached the mirror"
            );
            mirror.paths.lock().unwrap().clear();
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goproxy_with_a_path_on_an_intercepted_host_works() {
    // GOPROXY=https://proxy.golang.org/cached-only (or an Artifactory-style
    // https://host/api/go/remote) on an intercepted host: the modules are
    // found below the prefix, mirrored without it, sent direct with it.
    let world = World::new();
    let site = world.path("site");
    std::fs::create_dir_all(&site).unwrap();
    std::os::unix::fs::symlink(world.fixture(), site.join("cached-only")).unwrap();
    let origin = start_module_origin(&world.pki, &["proxy.golang.org"], &site, Behavior::Serve).await;
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let hosts = [("proxy.golang.org", origin.addr), ("mirror.test", mirror.addr)];
    let direct = "[[rule]]\nname = \"default\"\naction = \"direct\"\n";
    for (rules, asked, prefix) in [
        (mirror_rule("https://mirror.test"), &mirror, ""),
        (direct.to_owned(), &origin, "/cached-only"),
    ] {
        let proxy = world.proxy(&hosts, &rules).await;
        let mut env = world.via_proxy(&proxy);
        env.retain(|(k, _)| *k != "GOPROXY");
        env.push(("GOPROXY", "https://proxy.golang.org/cached-only".into()));
        let project = GoProject::new(REQUIRES);
        let run = project.download(&env).await;
        run.assert_ok();
        assert_eq!(run.modules, direct_from_fixture(&world).await.modules);
        let zip = format!("{prefix}/example.test/beta/@v/v0.3.0.zip");
        assert!(asked.paths.lock().unwrap().contains(&zip), "{zip} asked");
        proxy.stop().await;
    }
}

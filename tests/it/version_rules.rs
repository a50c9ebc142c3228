//! Issue 16 §2: rules that match versions. A blocked version is refused
//! with the rule's reason, left out of `@v/list` and never answered by
//! `@latest`, on the module endpoint, inside an intercepted proxy host,
//! and on cache hits; checked with the real `go`.

use std::path::Path;

use crate::cache::{endpoint_get, start_mirror};
use crate::go_e2e::World;
use crate::gotool::*;
use crate::support::*;

const WIDGET: &str = "example.test/widget";

const FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: WIDGET,
        version: "v1.0.0",
        payload: 0,
    },
    FixtureModule {
        path: WIDGET,
        version: "v1.1.0",
        payload: 0,
    },
    FixtureModule {
        path: WIDGET,
        version: "v1.2.0",
        payload: 0,
    },
    FixtureModule {
        path: "example.test/gadget",
        version: "v0.1.0",
        payload: 0,
    },
];

const REASON: &str = "INC-311: v1.2.0 corrupts caches; stay on v1.1.x";

/// The rules that take v1.2.0 of the widget, and every gadget, away.
fn pin_rules() -> String {
    format!(
        "[[rule]]\nname = \"pin-widget\"\nmodules = [\"{WIDGET}\"]\nversions = [\"v1.2.0\", \">=v2.0.0-0\"]\naction = \"block\"\nreason = \"{REASON}\"\n\n[[rule]]\nname = \"no-gadget\"\nmodules = [\"example.test/gadget\"]\nversions = [\">=v0.0.0-0\"]\naction = \"block\"\nreason = \"every gadget is recalled\"\n\n"
    )
}

/// A fixture tree with the widget and gadget, and the answers a proxy
/// may give that name a version: `@latest` and a branch's `.info`.
fn fixture(dir: &Path) {
    write_fixture(dir, FIXTURE);
    let info = |v: &str| format!("{{\"Version\":\"{v}\",\"Time\":\"2024-01-02T03:04:05Z\"}}");
    std::fs::write(dir.join(WIDGET).join("@latest"), info("v1.2.0")).unwrap();
    std::fs::write(dir.join(WIDGET).join("@v/master.info"), info("v1.2.0")).unwrap();
    std::fs::write(dir.join(WIDGET).join("@v/stable.info"), info("v1.1.0")).unwrap();
    std::fs::write(dir.join("example.test/gadget/@latest"), info("v0.1.0")).unwrap();
}

/// modgate's config for the endpoint: a cache in `dir/cache`, `rules`,
/// then everything mirrored from `mirror`.
fn endpoint_config(dir: &Path, mirror: std::net::SocketAddr, rules: &str) -> modgate::config::Config {
    let text = format!(
        "[cache]\ndir = \"cache\"\nlist_ttl = \"1h\"\n[sumdb]\nverify = false\n\n{rules}[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"http://{mirror}\"\n"
    );
    let path = dir.join("modgate.toml");
    std::fs::write(&path, &text).unwrap();
    modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap()
}

fn endpoint_env(proxy: &Proxy) -> Vec<(&'static str, String)> {
    vec![("GOPROXY", format!("http://{}", proxy.addr))]
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_get_u_skips_a_blocked_newest_version() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    let project = GoProject::new(&[(WIDGET, "v1.0.0")]);
    let out = project.go(&["get", "-u", WIDGET], &endpoint_env(&proxy)).await;
    assert!(out.status.success(), "go get -u: {}", text(&out));
    let gomod = project.go_mod();
    assert!(
        gomod.contains(&format!("{WIDGET} v1.1.0")),
        "go moved to the highest allowed version:\n{gomod}\n{}",
        text(&out)
    );
    assert_eq!(
        mirror.count(&format!("/{WIDGET}/@v/list")),
        1,
        "the list came from the mirror"
    );
    for file in ["info", "mod", "zip"] {
        assert_eq!(mirror.count(&format!("/{WIDGET}/@v/v1.2.0.{file}")), 0, "v1.2.0.{file}");
    }
    // `go list -m -u` agrees: nothing newer is offered.
    let out = project.go(&["list", "-m", "-u", WIDGET], &endpoint_env(&proxy)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("{WIDGET} v1.1.0"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_get_of_a_blocked_version_prints_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    let project = GoProject::new(&[(WIDGET, "v1.0.0")]);
    let out = project
        .go(&["get", &format!("{WIDGET}@v1.2.0")], &endpoint_env(&proxy))
        .await;
    let output = text(&out);
    assert!(!out.status.success(), "go get of a blocked version must fail: {output}");
    assert!(output.contains("403 Forbidden"), "{output}");
    assert!(
        output.contains(&format!(
            "server response: modgate: blocked by rule 'pin-widget': {REASON}"
        )),
        "go prints the reason: {output}"
    );
    assert!(project.go_mod().contains(&format!("{WIDGET} v1.0.0")));
    // A branch that resolves to the blocked version is refused too.
    let out = project
        .go(&["get", &format!("{WIDGET}@master")], &endpoint_env(&proxy))
        .await;
    let output = text(&out);
    assert!(!out.status.success(), "{output}");
    assert!(
        output.contains(&format!("modgate: blocked by rule 'pin-widget': {REASON}")),
        "{output}"
    );
    // ... and one that resolves to an allowed version is not.
    let out = project
        .go(&["get", &format!("{WIDGET}@stable")], &endpoint_env(&proxy))
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(project.go_mod().contains(&format!("{WIDGET} v1.1.0")));
    assert_eq!(mirror.count(&format!("/{WIDGET}/@v/v1.2.0.zip")), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_list_versions_does_not_show_a_blocked_version() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    let project = GoProject::new(&[]);
    // Twice: the second list comes from the cache, and is screened too.
    for round in 0..2 {
        let out = project
            .go(&["list", "-m", "-versions", WIDGET], &endpoint_env(&proxy))
            .await;
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{WIDGET} v1.0.0 v1.1.0"),
            "round {round}"
        );
    }
    assert_eq!(
        mirror.count(&format!("/{WIDGET}/@v/list")),
        1,
        "the second list was a cache hit"
    );
    proxy.stop().await;
}

/// A list that writes a refused version short (`v1.2`) or with build
/// metadata, as go still reads it: left out as the version it stands for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_written_short_is_left_out_of_the_list_too() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    std::fs::write(
        dir.path().join("fixture").join(WIDGET).join("@v/list"),
        "v1.1.0\nv1.2\nv1.2.0+build.7\nv1.2.0\nnot-a-version\n",
    )
    .unwrap();
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    let (status, _, body) = endpoint_get(proxy.addr, &format!("/{WIDGET}/@v/list")).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (200, "v1.1.0\nnot-a-version\n")
    );
    proxy.stop().await;
}

/// A `.mod` or `.zip` names a version, never a query: the refused version
/// spelled with build metadata, or short, is still refused, and the mirror
/// never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_version_spelled_another_way_is_refused_for_mod_and_zip() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let at_v = dir.path().join("fixture").join(WIDGET).join("@v");
    for spelled in ["v1.2.0+meta", "v1.2"] {
        for ext in ["mod", "zip"] {
            std::fs::copy(
                at_v.join(format!("v1.2.0.{ext}")),
                at_v.join(format!("{spelled}.{ext}")),
            )
            .unwrap();
        }
    }
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    for path in [
        "v1.2.0+meta.mod",
        "v1.2.0+meta.zip",
        "v1.2.mod",
        "v1.2.zip",
        "v1.2.0.zip",
    ] {
        let path = format!("/{WIDGET}/@v/{path}");
        let (status, _, body) = endpoint_get(proxy.addr, &path).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("blocked by rule 'pin-widget'"), "{path}: {body}");
        assert_eq!(mirror.count(&path), 0, "{path}");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_answers_the_highest_allowed_version_or_a_404() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    for round in 0..2 {
        let (status, _, body) = endpoint_get(proxy.addr, &format!("/{WIDGET}/@latest")).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "round {round}: {body}");
        assert!(body.contains("\"Version\":\"v1.1.0\""), "round {round}: {body}");
        let (status, _, body) = endpoint_get(proxy.addr, "/example.test/gadget/@latest").await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "round {round}: {body}");
        assert_eq!(
            body.trim(),
            "modgate: the latest version of example.test/gadget, v0.1.0, is refused (blocked by rule 'no-gadget': every gadget is recalled), and no allowed version is listed"
        );
        let (status, _, body) = endpoint_get(proxy.addr, "/example.test/gadget/@v/list").await;
        assert_eq!((status, body.as_ref()), (200, &b""[..]), "round {round}");
    }
    assert_eq!(
        mirror.count(&format!("/{WIDGET}/@latest")),
        1,
        "the second @latest was a cache hit"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_version_is_refused_once_a_rule_blocks_it() {
    let dir = tempfile::tempdir().unwrap();
    fixture(&dir.path().join("fixture"));
    let mirror = start_mirror(&dir.path().join("fixture")).await;
    let files = ["list", "v1.2.0.info", "v1.2.0.mod", "v1.2.0.zip"];
    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, "")).await;
    for file in files {
        let (status, _, _) = endpoint_get(proxy.addr, &format!("/{WIDGET}/@v/{file}")).await;
        assert_eq!(status, 200, "{file}");
    }
    proxy.stop().await;
    assert!(
        dir.path().join("cache").join(WIDGET).join("@v/v1.2.0.zip").is_file(),
        "the zip is cached"
    );

    let proxy = start_proxy_with(endpoint_config(dir.path(), mirror.addr, &pin_rules())).await;
    for file in ["v1.2.0.info", "v1.2.0.mod", "v1.2.0.zip"] {
        let (status, _, body) = endpoint_get(proxy.addr, &format!("/{WIDGET}/@v/{file}")).await;
        assert_eq!(status, 403, "{file}");
        assert_eq!(
            String::from_utf8_lossy(&body).trim(),
            format!("modgate: blocked by rule 'pin-widget': {REASON}")
        );
    }
    let (status, headers, body) = endpoint_get(proxy.addr, &format!("/{WIDGET}/@v/list")).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("x-cache").map(|v| v.to_str().unwrap()), Some("hit"));
    assert_eq!(String::from_utf8_lossy(&body), "v1.0.0\nv1.1.0\n");
    for file in files {
        assert_eq!(
            mirror.count(&format!("/{WIDGET}/@v/{file}")),
            1,
            "{file} was fetched once, while allowed"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_an_intercepted_proxy_host_version_rules_apply_to_go() {
    let world = World::with(FIXTURE);
    fixture(&world.fixture());
    // A mirror rule, and a direct rule (the original host answers).
    let mirror = start_module_origin(&world.pki, &["mirror.test"], &world.fixture(), Behavior::Serve).await;
    let origin = start_module_origin(&world.pki, &["proxy.golang.org"], &world.fixture(), Behavior::Serve).await;
    for (name, action) in [
        ("mirror", "action = \"mirror\"\nmirrors = \"https://mirror.test\""),
        ("direct", "action = \"direct\""),
    ] {
        let rules = format!(
            "{}[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\n{action}\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
            pin_rules()
        );
        let proxy = world
            .proxy(
                &[("mirror.test", mirror.addr), ("proxy.golang.org", origin.addr)],
                &rules,
            )
            .await;
        let env = world.via_proxy(&proxy);
        let project = GoProject::new(&[(WIDGET, "v1.0.0")]);
        let out = project.go(&["list", "-m", "-versions", WIDGET], &env).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{WIDGET} v1.0.0 v1.1.0"),
            "{name}"
        );
        let out = project.go(&["get", &format!("{WIDGET}@v1.2.0")], &env).await;
        let output = text(&out);
        assert!(!out.status.success(), "{name}: {output}");
        assert!(
            output.contains(&format!(
                "server response: modgate: blocked by rule 'pin-widget': {REASON}"
            )),
            "{name}: {output}"
        );
        let out = project.go(&["get", "-u", WIDGET], &env).await;
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(project.go_mod().contains(&format!("{WIDGET} v1.1.0")), "{name}");
        proxy.stop().await;
    }
    assert!(mirror.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(origin.requests.load(std::sync::atomic::Ordering::SeqCst) > 0);
    for seen in [&mirror, &origin] {
        let paths = seen.paths.lock().unwrap();
        // (go also asks whether a module `example.test` holds the package.)
        assert!(!paths.iter().any(|p| p.contains("widget/@v/v1.2.0")), "{paths:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_version_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("modgate.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"https://proxy.golang.org\"\n",
            pin_rules()
        ),
    )
    .unwrap();
    let explain = |target: &str| {
        let out = std::process::Command::new(modgate_bin())
            .args(["explain", "--config", config.to_str().unwrap(), target])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let blocked = explain(&format!("{WIDGET}@v1.2.0"));
    assert!(
        blocked.contains("version: v1.2.0 matches rule 'pin-widget' versions [v1.2.0, >=v2.0.0-0]"),
        "{blocked}"
    );
    assert!(blocked.contains("rule:    'pin-widget'"), "{blocked}");
    assert!(
        blocked.contains(&format!("refusal: modgate: blocked by rule 'pin-widget': {REASON}")),
        "{blocked}"
    );
    let allowed = explain(&format!("{WIDGET}@v1.1.0"));
    assert!(allowed.contains("does not match rule 'pin-widget'"), "{allowed}");
    assert!(allowed.contains("rule:    'all'"), "{allowed}");
    let list = explain(WIDGET);
    assert!(
        list.contains("rule 'pin-widget' refuses versions [v1.2.0, >=v2.0.0-0]: they are left out of @v/list"),
        "{list}"
    );
    // A query is no version: the version line says the rule is skipped, as
    // the decision below it does (it said "matches" above a skipped rule).
    let query = explain(&format!("{WIDGET}@v1.2"));
    assert!(
        query.contains(
            "version: v1.2 is a query, not a version: rule 'pin-widget' versions [v1.2.0, >=v2.0.0-0] is skipped for it"
        ),
        "{query}"
    );
    assert!(query.contains("rule:    'all'"), "{query}");
}

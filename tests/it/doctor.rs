//! Issue 12 §3: `modgate doctor` against real `go env` output (the real go
//! binary with crafted environments): each broken configuration gives its
//! ✗ and fix; a good one passes and fetches through modgate; an
//! interceptor on the path is named.

use std::path::Path;

use serde_json::Value;

use crate::gotool::{Behavior, FixtureModule, go_binary, start_module_origin, write_fixture};
use crate::support::*;

/// `modgate doctor ARGS --json` with only `vars` set (plus a private HOME,
/// Go dirs, and PATH holding the real go when `with_go`); exit code and
/// the report.
async fn doctor(dir: &Path, args: &[&str], vars: &[(&str, String)], with_go: bool) -> (i32, Value) {
    let go_dir = go_binary().parent().unwrap().display().to_string();
    let path = match with_go {
        true => format!("{go_dir}:/usr/local/bin:/usr/bin:/bin"),
        false => "/usr/local/bin:/usr/bin:/bin".to_owned(),
    };
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = tokio::process::Command::new(modgate_bin())
        .arg("doctor")
        .arg("--json")
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("GOENV", home.join("go.env"))
        .env("GOPATH", home.join("gopath"))
        .env("GOCACHE", home.join("gocache"))
        .env("GOTOOLCHAIN", "local")
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output();
    let out = tokio::time::timeout(STEP * 2, out).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), report)
}

/// The failing findings of `check`: (message, fix).
fn failures(report: &Value, check: &str) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check && f["ok"] == false)
        .map(|f| {
            (
                f["message"].as_str().unwrap().to_owned(),
                f["fix"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A served modgate mirroring every module from a fixture directory.
async fn fixture_proxy(dir: &Path) -> Served {
    let fixture = dir.join("fixture");
    write_fixture(
        &fixture,
        &[FixtureModule {
            path: "example.test/alpha",
            version: "v1.0.0",
            payload: 0,
        }],
    );
    let text = format!(
        "[admin]\nlisten = \"\"\n[cache]\ndir = \"\"\n[[rule]]\nname = \"banned\"\nmodules = [\"example.test/evil\"]\naction = \"block\"\nreason = \"SEC-42\"\n[[rule]]\nname = \"fixture\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"file://{}\"\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
        fixture.display()
    );
    std::fs::write(dir.join("modgate.toml"), text).unwrap();
    start_served(dir, &["--config", "modgate.toml", "--listen", "127.0.0.1:0"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_doctor_names_each_broken_configuration_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let served = fixture_proxy(dir.path()).await;
    let proxy = format!("http://{}", served.addr);
    let args = ["--proxy", proxy.as_str()];
    let v = |s: &str| s.to_owned();

    // A local CA for an intercepting config, and trust files.
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("c.toml"), "[tls]\nintercept = [\"proxy.golang.org\"]\n").unwrap();
    let init = std::process::Command::new(modgate_bin())
        .args(["ca", "init", "--config", "c.toml"])
        .current_dir(&ca_dir)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let ca_pem = ca_dir.join("certs/modgate-ca.pem");
    let system = "/etc/ssl/certs/ca-certificates.crt".to_owned();
    let intercepting = ca_dir.join("c.toml").display().to_string();

    struct Case {
        vars: Vec<(&'static str, String)>,
        extra: Vec<String>,
        check: &'static str,
        message: String,
        fix: String,
    }
    let cases = [
        Case {
            vars: vec![("GOPROXY", v("off"))],
            extra: vec![],
            check: "goproxy",
            message: v("GOPROXY=off: go may not download any module"),
            fix: format!("go env -w GOPROXY={proxy},direct"),
        },
        Case {
            vars: vec![("GOPROXY", format!("{proxy}|https://proxy.golang.org,direct"))],
            extra: vec![],
            check: "goproxy",
            message: v("'|' after modgate's endpoint makes go try the next entry on any error"),
            fix: format!("go env -w GOPROXY={proxy},https://proxy.golang.org,direct"),
        },
        Case {
            vars: vec![("GOPROXY", v("https://proxy.golang.org"))],
            extra: vec![],
            check: "goproxy",
            message: v("has no 'direct'"),
            fix: v("go env -w GOPROXY=https://proxy.golang.org,direct"),
        },
        Case {
            vars: vec![("GOPRIVATE", v("git.corp.example.com/*")), ("GONOPROXY", v("none"))],
            extra: vec![],
            check: "private",
            message: v(
                "GOPRIVATE pattern git.corp.example.com/* is not in GONOPROXY=none: go sends those module paths to https://proxy.golang.org",
            ),
            fix: v("go env -w GONOPROXY=none,git.corp.example.com/*"),
        },
        Case {
            vars: vec![
                ("GOPRIVATE", v("corp.example.com")),
                ("GONOSUMDB", v("other.example.com")),
            ],
            extra: vec![],
            check: "sumdb",
            message: v("go looks those module paths up in sum.golang.org"),
            fix: v("go env -w GONOSUMDB=other.example.com,corp.example.com"),
        },
        Case {
            vars: vec![("GOINSECURE", v("example.com"))],
            extra: vec![],
            check: "insecure",
            message: v("GOINSECURE=example.com"),
            fix: v("go env -u GOINSECURE"),
        },
        Case {
            vars: vec![("SSL_CERT_FILE", ca_pem.display().to_string())],
            extra: vec![v("--config"), intercepting.clone()],
            check: "trust",
            message: v("replaces the system roots but holds no public root"),
            fix: v("modgate ca bundle > ~/.config/modgate/bundle.pem && export SSL_CERT_FILE"),
        },
        Case {
            vars: vec![("SSL_CERT_FILE", system.clone())],
            extra: vec![v("--config"), intercepting.clone()],
            check: "trust",
            message: v("replaces the system roots without modgate's CA"),
            fix: v("modgate ca bundle"),
        },
        Case {
            vars: vec![("HTTPS_PROXY", proxy.clone()), ("NO_PROXY", v("localhost,.golang.org"))],
            extra: vec![],
            check: "no_proxy",
            message: format!("NO_PROXY=localhost,.golang.org sends proxy.golang.org, sum.golang.org past {proxy}"),
            fix: v("export NO_PROXY=localhost"),
        },
    ];
    for case in &cases {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(case.extra.iter().map(String::as_str));
        let (code, report) = doctor(dir.path(), &all, &case.vars, true).await;
        assert_eq!(report["from"], "go env -json", "{report:#}");
        let found = failures(&report, case.check);
        assert!(
            found
                .iter()
                .any(|(m, f)| m.contains(&case.message) && f.contains(&case.fix)),
            "{:?}: expected ✗ {} '{}' fix '{}'; got {report:#}",
            case.vars,
            case.check,
            case.message,
            case.fix
        );
        assert_eq!(code, 1, "{report:#}");
        // The rest of this environment is healthy.
        assert!(failures(&report, "proxy").is_empty(), "{report:#}");
    }

    // modgate not there.
    let closed = format!("http://{}", closed_port().await);
    let (code, report) = doctor(dir.path(), &["--proxy", &closed], &[], true).await;
    let found = failures(&report, "proxy");
    assert!(
        found[0].0.starts_with(&format!("cannot reach modgate at {closed}")),
        "{report:#}"
    );
    assert_eq!(code, 1);
    // Its endpoint as GOPROXY: the fetch over http:// had no tls line to
    // point at; the fix says what to check.
    let (_, report) = doctor(
        dir.path(),
        &["--proxy", &closed, "example.test/alpha@v1.0.0"],
        &[("GOPROXY", format!("{closed},direct"))],
        true,
    )
    .await;
    let fetch = failures(&report, "fetch");
    let host = closed.trim_start_matches("http://");
    assert!(
        fetch.len() == 1
            && fetch[0].1 == format!("check that {host} is running and reachable from here (is modgate started?)"),
        "{report:#}"
    );

    // Without go on PATH, the environment is read instead.
    let (_, report) = doctor(dir.path(), &args, &[("GOPROXY", v("off"))], false).await;
    assert_eq!(report["from"], "environment");
    assert_eq!(failures(&report, "goproxy").len(), 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_doctor_passes_and_fetches_through_modgate() {
    let dir = tempfile::tempdir().unwrap();
    let served = fixture_proxy(dir.path()).await;
    let proxy = format!("http://{}", served.addr);
    let vars = [("GOPROXY", format!("{proxy},direct"))];
    let config = dir.path().join("modgate.toml").display().to_string();
    let (code, report) = doctor(
        dir.path(),
        &["--config", &config, "example.test/alpha@v1.0.0"],
        &vars,
        true,
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    let messages: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f["check"].as_str().unwrap(), f["message"].as_str().unwrap()))
        .collect();
    let has = |s: &str| messages.iter().any(|m| m.contains(s));
    assert!(has(&format!("proxy modgate answers at {proxy}")), "{messages:#?}");
    assert!(has("): rule 'fixture', mirror to file://"), "{messages:#?}");
    assert!(
        has(&format!("fetch GET {proxy}/example.test/alpha/@v/v1.0.0.info: 200")),
        "{messages:#?}"
    );

    // A blocked module: the rule and the fetch fail, naming the rule.
    let (code, report) = doctor(
        dir.path(),
        &["--config", &config, "example.test/evil@v1.0.0"],
        &vars,
        true,
    )
    .await;
    assert_eq!(code, 1);
    assert!(failures(&report, "rule")[0].0.contains("'banned'"), "{report:#}");
    assert!(
        failures(&report, "fetch")[0]
            .0
            .contains("403 modgate: blocked by rule 'banned': SEC-42"),
        "{report:#}"
    );

    // The text form: ✓ lines, and the exit code.
    let out = tokio::process::Command::new(modgate_bin())
        .args(["doctor", "--config", &config, "--proxy", &proxy])
        .env("GOPROXY", format!("{proxy},direct"))
        .env("GOENV", "off")
        .env_remove("SSL_CERT_FILE")
        .env_remove("HTTPS_PROXY")
        .env_remove("GOPRIVATE")
        .env_remove("GOINSECURE")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("✓ proxy: modgate answers at {proxy}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_doctor_names_the_interceptor_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("fixture");
    write_fixture(
        &fixture,
        &[FixtureModule {
            path: "example.test/alpha",
            version: "v1.0.0",
            payload: 0,
        }],
    );
    let root = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let zscaler = root.intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    let mirror = start_module_origin(&zscaler, &["mirror.test"], &fixture, Behavior::Serve).await;
    let text = format!(
        "[admin]\nlisten = \"\"\n[hosts]\n\"mirror.test\" = \"{}\"\n[[rule]]\naction = \"direct\"\n",
        mirror.addr
    );
    std::fs::write(dir.path().join("modgate.toml"), text).unwrap();
    let served = start_served(dir.path(), &["--config", "modgate.toml", "--listen", "127.0.0.1:0"]).await;
    let proxy = format!("http://{}", served.addr);
    let vars = [
        ("GOPROXY", "https://mirror.test,direct".to_owned()),
        ("HTTPS_PROXY", proxy.clone()),
    ];
    let (code, report) = doctor(dir.path(), &["example.test/alpha@v1.0.0"], &vars, true).await;
    assert_eq!(code, 1, "{report:#}");
    let tls = failures(&report, "tls");
    assert_eq!(tls.len(), 1, "{report:#}");
    assert!(
        tls[0].0.contains(&format!(
            "mirror.test:443 through {proxy}: untrusted chain issued by 'Zscaler Intermediate Root CA (zscaler.net)' (Zscaler)"
        )),
        "{report:#}"
    );
    assert!(
        tls[0].1.contains("extra_roots") || tls[0].1.contains("root"),
        "a fix: {report:#}"
    );
    let fetch = failures(&report, "fetch");
    assert!(
        fetch[0]
            .0
            .contains("GET https://mirror.test/example.test/alpha/@v/v1.0.0.info"),
        "{report:#}"
    );
    assert!(fetch[0].0.contains("TLS"), "{report:#}");

    // Straight to mirror.test (no HTTPS_PROXY), go resolves the name
    // itself: the chain judged is not the one modgate.toml's [hosts] entry
    // points to, which go never meets.
    let vars = [("GOPROXY", "https://mirror.test,direct".to_owned())];
    let (code, report) = doctor(dir.path(), &["example.test/alpha@v1.0.0"], &vars, true).await;
    assert_eq!(code, 1, "{report:#}");
    let tls = failures(&report, "tls");
    assert_eq!(tls.len(), 1, "{report:#}");
    assert!(
        tls[0].0.starts_with("mirror.test:443: ") && !tls[0].0.contains("Zscaler"),
        "{report:#}"
    );
}

/// A module argument `explain` refuses, `doctor` refuses too (exit 2, one
/// line), before it fetches anything: a path go would refuse, or an empty
/// version (which used to become `@latest`).
#[test]
fn doctor_refuses_the_module_arguments_explain_refuses() {
    let dir = tempfile::tempdir().unwrap();
    for (arg, why) in [
        ("Example.com/A@v1", "invalid character 'E' in first path element"),
        ("example.com/a@", "empty version"),
    ] {
        let out = std::process::Command::new(modgate_bin())
            .args(["doctor", "--proxy", "http://127.0.0.1:1", arg])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
        assert!(
            stderr.starts_with("modgate: doctor: ") && stderr.contains(why),
            "{arg}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{arg}: {stderr}");
        assert!(
            !stderr.contains('!'),
            "quotes the path as typed, not case-encoded: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{arg}");
    }
}

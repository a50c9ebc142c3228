//! The command line: check, explain, and serve as a process (listening line,
//! JSON logs, SIGTERM).

use std::process::Output;
use std::time::Duration;

use crate::support::*;

fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(modgate_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// `rest` (a file name, and what follows it) after `dir`'s absolute path, as
/// modgate prints every path.
fn in_dir(dir: &std::path::Path, rest: &str) -> String {
    format!("{}/{rest}", dir.canonicalize().unwrap().display())
}

#[test]
fn check_rejects_bad_configs_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown-key.toml",
            "listen = \"127.0.0.1:3128\"\nlisten_addr = \"x\"\n",
            "unknown-key.toml:2:1: unknown field `listen_addr`",
        ),
        (
            "bad-cidr.toml",
            "[[rule]]\nname = \"r\"\ndst = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\naction = \"block\"\n",
            "bad-cidr.toml:3:22: bad CIDR '10.0.0.0/40'",
        ),
        (
            "bad-glob.toml",
            "[[rule]]\nhosts = [\"git.*.com\"]\naction = \"direct\"\n",
            "bad-glob.toml:2:10: bad host glob 'git.*.com'",
        ),
        (
            "bad-duration.toml",
            "[timeouts]\nidle = \"90 seconds\"\n",
            "bad-duration.toml:2:8: bad duration '90 seconds'",
        ),
        ("not-toml.toml", "[[rule]\naction = \"direct\"\n", "not-toml.toml:1:"),
        (
            "port-zero.toml",
            "[hosts]\n\"mirror.test\" = \"127.0.0.1:0\"\n",
            "port-zero.toml:2:17: bad address '127.0.0.1:0': port 0 cannot be connected to",
        ),
        (
            "per-client-above-total.toml",
            "[limits]\nmax_connections = 100\nper_client = 500\n",
            "per-client-above-total.toml:3:14: limits.per_client (500) is above limits.max_connections (100), so it would never apply",
        ),
        (
            "zero-workers.toml",
            "[limits]\nworkers = 0\n",
            "zero-workers.toml:2:11: limits.workers must be \"auto\" or a number of threads from 1 to 1024",
        ),
        (
            "unknown-rule-key.toml",
            "[[rule]]\nhost = [\"a.test\"]\naction = \"direct\"\n",
            "unknown-rule-key.toml:2:1: unknown field `host`",
        ),
        (
            "admin-overlaps.toml",
            "listen = \"0.0.0.0:3128\"\n[admin]\nlisten = \"127.0.0.1:3128\"\n",
            "admin-overlaps.toml:3:10: admin.listen 127.0.0.1:3128 overlaps the proxy's address 0.0.0.0:3128 (the same port); the admin listener needs its own port",
        ),
        (
            "duplicate-key.toml",
            "listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n",
            "duplicate-key.toml:2:1: duplicate key `listen`",
        ),
        (
            "negative.toml",
            "[mirror.\"https://m.test\"]\nmax_fails = -1\n",
            "negative.toml:2:13: integer `-1` is out of range: expected a whole number from 0 to 4294967295",
        ),
        (
            "too-big.toml",
            "[admin]\nrecent = 18446744073709551616\n",
            "too-big.toml:2:10: integer `18446744073709551616` is out of range",
        ),
        (
            "empty.toml",
            "# only a comment\n\n",
            "empty.toml:1:1: the file sets nothing (no keys, no [[rule]]), so every request would be refused",
        ),
        (
            "too-many-workers.toml",
            "[limits]\nworkers = 99999999999999999999\n",
            "too-many-workers.toml:2:11: integer `99999999999999999999` is out of range\n",
        ),
    ];
    for (name, text, expected) in cases {
        write(dir.path(), name, text);
        let out = run(dir.path(), &["check", "--config", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.starts_with(&in_dir(dir.path(), expected)),
            "{name}: expected {expected:?}, got {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{name}: one line: {stderr:?}");
    }
    let out = run(dir.path(), &["check", "--config", "missing.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(&in_dir(dir.path(), "missing.toml: cannot read config")));
}

/// A reader that went away before the output (`modgate check | head -1`
/// once head has its line) ends the command quietly: no panic, exit 0.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let tls = "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\"]\n";
    write(dir.path(), "modgate.toml", tls);
    // `ca init` first: `check` validates before it prints, and needs the CA.
    for args in [
        &["ca", "init"][..],
        &["check"],
        &["explain", "example.com:443"],
        &["ca", "bundle"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(modgate_bin())
            .args(args)
            .current_dir(dir.path())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn check_prints_the_rules_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("config:   <embedded default>"), "{stdout}");
    assert!(
        stdout.contains("limits:   max_connections derived from the fd limit, per_client derived from the fd limit, workers auto (one per core)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1. 'no-internal': dst [0.0.0.0/8, 10.0.0.0/8"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2. 'modules': modules [*] -> mirror: https://proxy.golang.org"),
        "{stdout}"
    );
    assert!(stdout.contains("3. 'default': everything -> direct"), "{stdout}");
    // ./modgate.toml wins over the embedded default.
    write(
        dir.path(),
        "modgate.toml",
        "listen = \"127.0.0.1:9999\"\n[[rule]]\nname = \"only\"\naction = \"direct\"\n",
    );
    let stdout = String::from_utf8(run(dir.path(), &["check"]).stdout).unwrap();
    assert!(
        // The path in full: the report may be read away from this shell.
        stdout.contains(&format!(
            "config:   {}",
            dir.path().canonicalize().unwrap().join("modgate.toml").display()
        )) && stdout.contains("listen:   127.0.0.1:9999"),
        "{stdout}"
    );
}

#[test]
fn explain_names_the_rule_for_urls_host_ports_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "m.toml",
        "[hosts]\n\"mirror.test\" = \"10.1.2.3:443\"\n\n[[rule]]\nname = \"lab\"\nsrc = [\"10.9.0.0/16\"]\nhosts = [\"*.corp.test\"]\naction = \"direct\"\n\n[[rule]]\nname = \"no-corp\"\nhosts = [\"*.corp.test\"]\naction = \"block\"\nreason = \"corp hosts are for lab clients\"\n\n[[rule]]\nname = \"no-internal\"\ndst = [\"10.0.0.0/8\"]\naction = \"block\"\n\n[[rule]]\nname = \"default\"\naction = \"direct\"\n",
    );
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "--config", "m.toml"];
        all.extend_from_slice(args);
        let out = run(dir.path(), &all);
        assert!(out.status.success(), "{:?}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let out = explain(&["https://git.corp.test/repo"]);
    assert!(
        out.contains("target:  CONNECT git.corp.test:443 from 127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("rule:    'no-corp'") && out.contains("action:  block (corp hosts are for lab clients)"),
        "{out}"
    );
    let out = explain(&["--from", "10.9.8.7", "git.corp.test:443"]);
    assert!(
        out.contains("rule:    'lab'") && out.contains("action:  direct"),
        "{out}"
    );
    let out = explain(&["http://mirror.test/x"]);
    assert!(
        out.contains("address: 10.1.2.3 (from [hosts])") && out.contains("rule:    'no-internal'"),
        "{out}"
    );
    let out = explain(&["example.org:443"]);
    assert!(out.contains("rule:    'default'"), "{out}");
    assert!(
        out.contains("note:    rule 'no-internal' applies instead if any address of example.org is in its dst"),
        "{out}"
    );
    let out = explain(&["10.0.0.1:22"]);
    assert!(out.contains("rule:    'no-internal'"), "{out}");
    // A port serve refuses is refused here too, not read as the default.
    for url in ["http://mirror.test:99999/x", "https://mirror.test:65536/x"] {
        let out = run(dir.path(), &["explain", "--config", "m.toml", url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}");
        assert!(stderr.contains("has a bad port; ports are 1-65535"), "{stderr}");
    }

    // Module targets: as a module-endpoint request, and inside each
    // intercepted host.
    write(
        dir.path(),
        "g.toml",
        "[tls]\nintercept = [\"proxy.golang.org\"]\n\n[[rule]]\nname = \"private\"\nmodules = [\"git.corp.test/*\"]\naction = \"direct\"\n\n[[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://goproxy.test,https://proxy.golang.org\"\n\n[[rule]]\nname = \"endpoint\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"https://proxy.golang.org\"\n",
    );
    let out = run(
        dir.path(),
        &["explain", "--config", "g.toml", "golang.org/x/mod@v0.20.0"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("target:  module golang.org/x/mod@v0.20.0"), "{text}");
    assert!(text.contains("rule:    'endpoint'"), "via the endpoint: {text}");
    assert!(
        text.contains("via:     an intercepted tunnel to proxy.golang.org"),
        "{text}"
    );
    assert!(text.contains("rule:    'go-modules'"), "inside the tunnel: {text}");
    let out = run(
        dir.path(),
        &[
            "explain",
            "--config",
            "g.toml",
            "https://proxy.golang.org/git.corp.test/team/x/@v/list",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("module:  git.corp.test/team/x") && text.contains("rule:    'private'"),
        "{text}"
    );
    let out = run(
        dir.path(),
        &[
            "explain",
            "--config",
            "g.toml",
            "https://proxy.golang.org/github.com/%21azure/x/@v/list",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("module:  github.com/Azure/x"));
    let out = run(dir.path(), &["explain", "--config", "g.toml", "proxy.golang.org:443"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("tunnel:  intercepted (tls.intercept)"));

    let bad = run(dir.path(), &["explain", "--config", "m.toml", "example.org"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("expected a URL (https://host/path), host:port, or module[@version]")
    );
}

#[tokio::test]
async fn serve_reports_the_real_port_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_text_origin("ok").await;
    write(dir.path(), "c.toml", &config_allowing_loopback(""));
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    assert_ne!(served.addr.port(), 0);
    let (status, _, body) = get_via(served.addr, &format!("http://{}/hello", origin.addr)).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "ok"));

    let event = served.next_access_line().await;
    // Issue 9 item 13: every key once; parsers keep only the last of two.
    assert_eq!(event.matches("\"target\":").count(), 1, "{event}");
    for field in [
        "\"client\":\"127.0.0.1:",
        "\"method\":\"GET\"",
        &format!("\"target\":\"http://{}/hello\"", origin.addr),
        "\"rule\":\"test-allow-all\"",
        "\"action\":\"direct\"",
        &format!("\"upstream\":\"{}\"", origin.addr),
        "\"status\":200",
        "\"bytes_in\":0",
        "\"bytes_out\":2",
        "\"duration_ms\":",
    ] {
        assert!(event.contains(field), "missing {field} in {event}");
    }

    sigterm(&served.child);
    let status = tokio::time::timeout(STEP, served.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// `[limits] workers` sets how many threads serve connections; `"auto"`
/// (the default) is one per core the process may use. Each count is read
/// from the process's own threads, and the proxy serves through them.
#[tokio::test]
async fn serve_runs_as_many_workers_as_limits_workers_asks_for() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let origin = start_text_origin("ok").await;
    for (written, expected) in [("1", 1), ("3", 3), ("\"auto\"", cores)] {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.toml",
            &config_allowing_loopback(&format!("[limits]\nworkers = {written}\n")),
        );
        let mut served = start_served_json(dir.path(), "c.toml", &[]).await;
        let started = served.wait_for_line("\"message\":\"started\"").await;
        assert!(
            started.contains(&format!("\"workers\":{expected}")),
            "{written}: {started}"
        );
        let pid = served.child.id().unwrap();
        let workers = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
            .filter(|name| name.starts_with("modgate-worker-"))
            .count();
        assert_eq!(workers, expected, "workers = {written}");
        for _ in 0..4 {
            let (status, _, body) = get_via(served.addr, &format!("http://{}/hello", origin.addr)).await;
            assert_eq!((status.as_u16(), body.as_str()), (200, "ok"), "workers = {written}");
        }
    }
}

#[tokio::test]
async fn serve_finishes_a_download_in_flight_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The origin answers only once SIGTERM was sent; `arrived` says the
    // request is in its hands.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let (r, a) = (release.clone(), arrived.clone());
    let origin = start_origin(std::sync::Arc::new(move |_req| {
        let (r, a) = (r.clone(), a.clone());
        Box::pin(async move {
            let released = r.notified();
            a.notify_one();
            released.await;
            http::Response::new(full("finished"))
        })
    }))
    .await;
    write(dir.path(), "c.toml", &config_allowing_loopback(""));
    let mut served = start_served(dir.path(), &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    let addr = served.addr;
    let url = format!("http://{}/slow", origin.addr);
    let in_flight = tokio::spawn(async move { get_via(addr, &url).await });
    tokio::time::timeout(STEP, arrived.notified())
        .await
        .expect("the request reaches the origin");
    sigterm(&served.child);
    // serve is draining: it stops listening, and has not exited.
    let deadline = tokio::time::Instant::now() + STEP;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve stops listening after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "serve waits for the download"
    );
    release.notify_waiters();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "finished"));
    let status = tokio::time::timeout(STEP, served.child.wait()).await.unwrap().unwrap();
    assert!(status.success());
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.toml", "listen = \"nowhere\"\n");
    let out = run(dir.path(), &["serve", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&in_dir(
            dir.path(),
            "c.toml:1:10: bad address 'nowhere': expected IP:port, e.g. 127.0.0.1:3128"
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config that never ends (`/dev/zero`) or is a directory is refused in
/// one line, without reading it all into memory.
#[test]
fn an_endless_or_directory_config_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d.toml")).unwrap();
    for (config, why) in [
        (
            "/dev/zero",
            "/dev/zero: cannot read config: it is larger than 32 MiB".to_owned(),
        ),
        (
            "d.toml",
            in_dir(dir.path(), "d.toml: cannot read config: it is a directory"),
        ),
    ] {
        let out = run(dir.path(), &["check", "--config", config]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim_end(), why);
    }
}

/// Issue 9 item 17: `check` makes the checks `serve` makes before it
/// listens, and exits 2 where `serve` would refuse to start.
#[test]
fn check_refuses_what_serve_refuses() {
    let dir = tempfile::tempdir().unwrap();
    // A file written in the config is reported at its key; the default CA
    // path, written nowhere, at the tls.intercept entry that needs it.
    let cases = [
        (
            "roots.toml",
            "[tls]\nextra_roots = [\"missing-root.pem\"]\n[[rule]]\naction = \"direct\"\n",
            "roots.toml:2:16: ",
            "missing-root.pem: cannot read",
        ),
        (
            "no-ca.toml",
            "[tls]\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
            "no-ca.toml:2:14: ",
            "no CA at ",
        ),
    ];
    for (name, text, at, want) in cases {
        write(dir.path(), name, text);
        let out = run(dir.path(), &["check", "--config", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.starts_with(&in_dir(dir.path(), at)) && stderr.contains(want),
            "{name}: {stderr}"
        );
        let serve = run(dir.path(), &["serve", "--config", name, "--listen", "127.0.0.1:0"]);
        assert!(!serve.status.success(), "serve refuses {name} too");
    }
    // A CA that does not cover tls.intercept.
    write(
        dir.path(),
        "ca.toml",
        "[tls]\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    );
    assert!(run(dir.path(), &["ca", "init", "--config", "ca.toml"]).status.success());
    write(
        dir.path(),
        "ca.toml",
        "[tls]\nintercept = [\"proxy.golang.org\", \"goproxy.cn\"]\n[[rule]]\naction = \"direct\"\n",
    );
    let out = run(dir.path(), &["check", "--config", "ca.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid for 'goproxy.cn'"));
}

/// A table whose last rule does not match everything says what happens to
/// the rest.
#[test]
fn check_warns_about_a_table_with_no_catch_all() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.toml",
        "[[rule]]\nname = \"only\"\nhosts = [\"a.test\"]\naction = \"direct\"\n",
    );
    let out = run(dir.path(), &["check", "--config", "c.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("(no rule matched: block, \"no rule matched; add a rule"),
        "{stdout}"
    );
    write(dir.path(), "d.toml", "[[rule]]\nname = \"all\"\naction = \"direct\"\n");
    let stdout = String::from_utf8(run(dir.path(), &["check", "--config", "d.toml"]).stdout).unwrap();
    assert!(!stdout.contains("no rule matched"), "{stdout}");
}

/// Issue 9 item 18: without a config, modgate writes nothing into the
/// working directory: evidence and the CA go under the state directory, and
/// the paths it prints are absolute.
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_default_writes_into_the_state_dir_not_the_working_dir() {
    let cwd = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let pki = TestPki::new("Unknown Self-Made Root");
    let (addr, _origin) = start_tls_origin(&pki, &["localhost"], "x").await;
    let out = std::process::Command::new(modgate_bin())
        .args(["inspect", &format!("localhost:{}", addr.port()), "--json"])
        .current_dir(cwd.path())
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let saved = json["saved"].as_str().expect("the chain is saved");
    assert!(std::path::Path::new(saved).is_absolute(), "{saved}");
    assert!(
        saved.starts_with(state.path().join("modgate/intercepted").to_str().unwrap()),
        "{saved}"
    );
    let out = std::process::Command::new(modgate_bin())
        .args(["ca", "init"])
        .current_dir(cwd.path())
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    // The embedded default intercepts nothing, so there is no CA to make;
    // what matters is that nothing was written here.
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "the working directory stays empty"
    );
}

/// A file the config names that cannot be used (a missing CA, a missing
/// htpasswd) is reported at the key naming it, file:line:col, by `check`
/// and by `serve` alike.
#[test]
fn a_missing_file_the_config_names_is_reported_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ca.toml",
        "[tls]\nintercept = [\"proxy.golang.org\"]\nca_cert = \"nowhere/ca.pem\"\nca_key = \"nowhere/ca.key\"\n[[rule]]\naction = \"direct\"\n",
    );
    write(
        dir.path(),
        "auth.toml",
        "[auth]\nhtpasswd = \"missing.htpasswd\"\n[[rule]]\naction = \"direct\"\n",
    );
    // The default CA path is written nowhere: the tls.intercept entry
    // that needs it, then.
    write(
        dir.path(),
        "default-ca.toml",
        "[tls]\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    );
    for (name, at) in [
        ("ca.toml", "ca.toml:3:11: "),
        ("auth.toml", "auth.toml:2:12: "),
        ("default-ca.toml", "default-ca.toml:2:14: "),
    ] {
        let out = run(dir.path(), &["check", "--config", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.starts_with(&in_dir(dir.path(), at)), "{name}: {stderr}");
        // No summary of a config that fails.
        assert!(
            out.stdout.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        if name.contains("ca") {
            // The fix names this config: `ca init` alone would make a CA
            // for another one.
            assert!(
                stderr.contains(&format!("run `modgate ca init --config {}`", in_dir(dir.path(), name))),
                "{name}: {stderr}"
            );
        }
        let out = run(dir.path(), &["serve", "--config", name, "--listen", "127.0.0.1:0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("modgate: {}", in_dir(dir.path(), at)))),
            "{name}: {stderr}"
        );
    }
}

/// A listen address modgate cannot bind is one line naming it and the
/// socket error once (it was repeated: "…in use (os error 98): Address
/// already in use (os error 98)").
#[test]
fn a_busy_listen_address_is_one_line_naming_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    write(
        dir.path(),
        "c.toml",
        "[admin]\nlisten = \"\"\n[[rule]]\naction = \"direct\"\n",
    );
    let out = run(dir.path(), &["serve", "--config", "c.toml", "--listen", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("modgate: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.starts_with(&format!("modgate: cannot listen on {addr}: ")),
        "{line}"
    );
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    // No CA yet: a config that intercepts nothing has none to make.
    let out = run(dir.path(), &["ca", "bundle", "--config", "c.toml"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "(this config intercepts no host: set tls.intercept in a config file, then run `modgate ca init --config FILE`)"
        ),
        "{out:?}"
    );
    write(
        dir.path(),
        "i.toml",
        "[tls]\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    );
    let out = run(dir.path(), &["ca", "bundle", "--config", "i.toml"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(run `modgate ca init --config i.toml` first)"),
        "{out:?}"
    );
}

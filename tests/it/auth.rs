//! Issue 11 §3: Basic proxy authentication on the explicit listener, from
//! an htpasswd file (bcrypt and sha-crypt entries), driven by real curl and
//! the real go.

use std::path::Path;

use crate::gotool::*;
use crate::support::*;
use crate::tools::*;

/// An htpasswd file: alice with bcrypt (as `htpasswd -B` writes it), bob
/// and ci-linux with sha512-crypt (as `openssl passwd -6` writes it).
fn write_users(dir: &Path) {
    let alice = bcrypt::hash("s3cret", 5).unwrap().replacen("$2b$", "$2y$", 1);
    std::fs::write(
        dir.join("users.htpasswd"),
        format!(
            "# modgate test users\nalice:{alice}\nbob:{}\nci-linux:{}\n",
            sha512_crypt("b0b-pw"),
            sha512_crypt("ci-pw")
        ),
    )
    .unwrap();
}

/// What curl saw: the status (of the CONNECT when there was one), the
/// headers and the body.
struct Curl {
    code: String,
    connect_code: String,
    headers: String,
    body: String,
}

/// Runs curl with `args`, printing the codes on the last line.
async fn curl(dir: &Path, args: &[&str]) -> Curl {
    tools(&["squid"]); // brings curl
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-D",
            "headers.txt",
            "-w",
            "\n%{http_code} %{http_connect}",
            "--max-time",
            "20",
        ])
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .await
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let (code, connect_code) = codes.split_once(' ').unwrap_or((codes, ""));
    Curl {
        code: code.to_owned(),
        connect_code: connect_code.to_owned(),
        headers: std::fs::read_to_string(dir.join("headers.txt")).unwrap_or_default(),
        body: body.strip_suffix('\n').unwrap_or(body).to_owned(),
    }
}

/// modgate with `[auth]` and `extra` (rules) in `dir`, serving JSON logs.
async fn serve_with_auth(dir: &Path, auth_extra: &str, rules: &str) -> Served {
    write_users(dir);
    std::fs::write(
        dir.join("c.toml"),
        format!("[auth]\nhtpasswd = \"users.htpasswd\"\n{auth_extra}\n\n{rules}\n[[rule]]\nname = \"allow\"\naction = \"direct\"\n"),
    )
    .unwrap();
    start_served(
        dir,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_authenticates_and_the_credentials_stop_at_modgate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = start_text_origin("authenticated").await;
    let pki = TestPki::new("Auth Test Root");
    std::fs::write(d.join("root.pem"), &pki.ca_pem).unwrap();
    let (tls_origin, _t) = start_tls_origin(&pki, &["localhost"], "authenticated over tls").await;
    // The test root is the public PKI here: an untrusted chain would close
    // the relayed tunnel.
    let rules = "[tls]\npublic_roots = \"root.pem\"\n\n\
                 [hosts]\n\"ci.test\" = \"127.0.0.1\"\n\n\
                 [[rule]]\nname = \"ci-only\"\nhosts = [\"ci.test\"]\nusers = [\"ci-*\"]\naction = \"direct\"\n\n\
                 [[rule]]\nname = \"not-ci\"\nhosts = [\"ci.test\"]\naction = \"block\"\nreason = \"for ci-* users only\"\n";
    let mut served = serve_with_auth(d, "realm = \"corp proxy\"", rules).await;
    let addr = served.addr;
    let proxy = |user: &str| format!("http://{user}@{addr}");
    let url = format!("http://localhost:{}/x", plain.addr.port());

    // bcrypt and sha-crypt users, over a forward and a CONNECT.
    let ok = curl(d, &["-x", &proxy("alice:s3cret"), &url]).await;
    assert_eq!(
        (ok.code.as_str(), ok.body.as_str()),
        ("200", "authenticated"),
        "{}",
        ok.headers
    );
    let origin_saw = plain.last_headers.lock().unwrap().clone().unwrap();
    assert!(
        origin_saw.get("proxy-authorization").is_none() && origin_saw.get("authorization").is_none(),
        "{origin_saw:?}"
    );
    let access = served.next_access().await;
    assert_eq!(
        (access["user"].as_str(), access["status"].as_u64()),
        (Some("alice"), Some(200))
    );

    let tls_url = format!("https://localhost:{}/", tls_origin.port());
    let ok = curl(d, &["--cacert", "root.pem", "-x", &proxy("bob:b0b-pw"), &tls_url]).await;
    assert_eq!((ok.code.as_str(), ok.body.as_str()), ("200", "authenticated over tls"));
    let access = served.next_access().await;
    assert_eq!(
        (access["method"].as_str(), access["user"].as_str()),
        (Some("CONNECT"), Some("bob"))
    );

    // Wrong password, unknown user, none at all: 407 with the challenge,
    // the same line for a wrong password as for an unknown user.
    let challenge = "proxy-authenticate: Basic realm=\"corp proxy\", charset=\"UTF-8\"";
    for who in ["alice:wrong", "mallory:s3cret"] {
        let refused = curl(d, &["-x", &proxy(who), &url]).await;
        assert_eq!(refused.code, "407", "{who}");
        assert!(
            refused
                .headers
                .to_ascii_lowercase()
                .contains(&challenge.to_ascii_lowercase()),
            "{}",
            refused.headers
        );
        assert_eq!(
            refused.body,
            "modgate: proxy authentication required: unknown user or wrong password"
        );
        let access = served.next_access().await;
        assert_eq!(access["status"], 407);
        assert!(access.get("user").is_none(), "{access}");
        let refused = curl(d, &["--cacert", "root.pem", "-x", &proxy(who), &tls_url]).await;
        assert_eq!(refused.connect_code, "407", "{who}: CONNECT");
        served.next_access().await;
    }
    let none = curl(d, &["-x", &format!("http://{addr}"), &url]).await;
    assert_eq!(none.code, "407");
    assert!(
        none.body.contains("no credentials; send Proxy-Authorization: Basic"),
        "{}",
        none.body
    );
    served.next_access().await;

    // Malformed headers are 407 too, saying what is wrong.
    for (header, why) in [
        ("Basic !!!notbase64", "the Basic token is not base64"),
        ("Bearer abc", "the scheme is 'Bearer', not Basic"),
        (
            "Basic bm9jb2xvbg==",
            "the Basic token has no ':' between user and password",
        ),
    ] {
        let raw = raw_exchange(
            addr,
            format!(
                "GET {url} HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: {header}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 407"), "{raw}");
        assert!(
            raw.contains(&format!(
                "modgate: proxy authentication required: malformed credentials: {why}"
            )),
            "{raw}"
        );
        served.next_access().await;
    }

    // `users` rules see the authenticated user.
    let ci_url = format!("http://ci.test:{}/build", plain.addr.port());
    let ci = curl(d, &["-x", &proxy("ci-linux:ci-pw"), &ci_url]).await;
    assert_eq!(ci.code, "200");
    let access = served.next_access().await;
    assert_eq!(
        (access["rule"].as_str(), access["user"].as_str()),
        (Some("ci-only"), Some("ci-linux"))
    );
    let not_ci = curl(d, &["-x", &proxy("alice:s3cret"), &ci_url]).await;
    assert_eq!(not_ci.code, "403");
    assert_eq!(not_ci.body, "modgate: blocked by rule 'not-ci': for ci-* users only");

    // `explain --user` agrees.
    let explain = |args: &[&str]| {
        std::process::Command::new(modgate_bin())
            .args(["explain", "--config", "c.toml"])
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let out = explain(&["--user", "ci-linux", &ci_url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("user:    ci-linux (authenticated)") && text.contains("rule:    'ci-only'"),
        "{text}"
    );
    let out = explain(&["--user", "alice", &ci_url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(user not in users)") && text.contains("rule:    'not-ci'"),
        "{text}"
    );
    let out = explain(&[&ci_url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("(no user authenticated)") && text.contains("rule:    'not-ci'"),
        "{text}"
    );
    let out = explain(&["--user", "alice", "--transparent", "192.0.2.1", &ci_url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redirected connections carry no credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_a_client_out_with_a_clear_403() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plain = start_text_origin("ok").await;
    let mut served = serve_with_auth(d, "max_failures = 3\nlockout = \"1m\"", "").await;
    let url = format!("http://localhost:{}/", plain.addr.port());
    let addr = served.addr;
    let proxy = |user: &str| format!("http://{user}@{addr}");
    for _ in 0..3 {
        let refused = curl(d, &["-x", &proxy("alice:guess"), &url]).await;
        assert_eq!(refused.code, "407");
        served.next_access().await;
    }
    // Locked out now, even with the right password.
    let locked = curl(d, &["-x", &proxy("alice:s3cret"), &url]).await;
    assert_eq!(locked.code, "403", "{}", locked.body);
    assert!(
        locked
            .body
            .starts_with("modgate: too many failed proxy logins from 127.0.0.1; try again in "),
        "{}",
        locked.body
    );
    let access = served.next_access().await;
    assert_eq!(access["status"], 403);
    assert!(
        access["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many failed proxy logins")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_go_authenticates_with_credentials_in_https_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_fixture(
        &d.join("fixture"),
        &[FixtureModule {
            path: "example.test/authed",
            version: "v1.0.0",
            payload: 1_000,
        }],
    );
    let pki = TestPki::new("Auth Go Public Root");
    std::fs::write(d.join("public-root.pem"), &pki.ca_pem).unwrap();
    let mirror = start_module_origin(&pki, &["mirror.test"], &d.join("fixture"), Behavior::Serve).await;
    write_users(d);
    std::fs::write(
        d.join("c.toml"),
        format!(
            "[auth]\nhtpasswd = \"users.htpasswd\"\n\n[cache]\ndir = \"\"\n\n\
             [tls]\nca_cert = \"ca/modgate-ca.pem\"\nca_key = \"ca/modgate-ca.key\"\nintercept = [\"proxy.golang.org\"]\npublic_roots = \"public-root.pem\"\n\n\
             [hosts]\n\"mirror.test\" = \"{}\"\n\n\
             [[rule]]\nname = \"go-modules\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n\
             [[rule]]\nname = \"endpoint\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n\n\
             [[rule]]\nname = \"default\"\naction = \"direct\"\n",
            mirror.addr
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(modgate_bin())
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    assert!(run(&["ca", "init", "--config", "c.toml"]).status.success());
    let bundle = run(&["ca", "bundle", "--config", "c.toml"]);
    std::fs::write(d.join("bundle.pem"), bundle.stdout).unwrap();
    let mut served = start_served(
        d,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let addr = served.addr;
    let env = |who: &str| {
        vec![
            ("HTTPS_PROXY", format!("http://{who}@{addr}")),
            ("SSL_CERT_FILE", d.join("bundle.pem").display().to_string()),
            ("GOPROXY", "https://proxy.golang.org".to_owned()),
        ]
    };

    let project = GoProject::new(&[("example.test/authed", "v1.0.0")]);
    project.download(&env("alice:s3cret")).await.assert_ok();
    // The tunnel and every request inside it carry the user.
    let access = served.next_access().await;
    assert_eq!(access["user"], "alice", "{access}");
    assert!(mirror.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    let project = GoProject::new(&[("example.test/authed", "v1.0.0")]);
    let refused = project.download(&env("alice:not-it")).await;
    assert!(!refused.ok, "a wrong password must fail go");
    assert!(
        refused.output().contains("Proxy Authentication Required"),
        "{}",
        refused.output()
    );

    // The module endpoint wants credentials too: go sends none over
    // http://, and is told what to do instead; curl can send them.
    let project = GoProject::new(&[("example.test/authed", "v1.0.0")]);
    let refused = project.download(&[("GOPROXY", format!("http://{addr}"))]).await;
    assert!(!refused.ok, "no credentials, no modules");
    assert!(
        refused.output().contains("401 Unauthorized")
            && refused.output().contains("server response: modgate: authentication required: no credentials; send Authorization: Basic (go sends no credentials over http://: use HTTPS_PROXY"),
        "{}",
        refused.output()
    );
    let list = format!("http://{addr}/example.test/authed/@v/list");
    let ok = curl(d, &["-u", "bob:b0b-pw", &list]).await;
    assert_eq!(
        (ok.code.as_str(), ok.body.as_str()),
        ("200", "v1.0.0"),
        "{}",
        ok.headers
    );
    let challenged = curl(d, &[&list]).await;
    assert_eq!(challenged.code, "401");
    assert!(
        challenged.headers.contains("www-authenticate: Basic realm=\"modgate\""),
        "{}",
        challenged.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_credentials_never_reach_the_parent_or_the_origin() {
    let squid = Squid::start(&[("alice", "s3cret")], "").await;
    let plain = start_text_origin("behind two proxies").await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_users(d);
    std::fs::write(
        d.join("c.toml"),
        format!(
            "[auth]\nhtpasswd = \"users.htpasswd\"\n\n[parent]\nurl = \"{}\"\n\n[[rule]]\naction = \"direct\"\n",
            squid.url("alice", "s3cret")
        ),
    )
    .unwrap();
    let served = start_served(d, &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    let url = format!("http://localhost:{}/two", plain.addr.port());
    let ok = curl(d, &["-x", &format!("http://bob:b0b-pw@{}", served.addr), &url]).await;
    assert_eq!((ok.code.as_str(), ok.body.as_str()), ("200", "behind two proxies"));
    // The parent saw modgate's user, never the client's.
    let line = squid.logged(&["TCP_MISS/200", &format!("GET {url}")]).await;
    assert!(line.contains(" alice ") && !line.contains("bob"), "{line}");
    let origin_saw = plain.last_headers.lock().unwrap().clone().unwrap();
    assert!(origin_saw.get("proxy-authorization").is_none(), "{origin_saw:?}");
    assert!(origin_saw.get("authorization").is_none(), "{origin_saw:?}");
}

#[test]
fn check_reads_the_htpasswd_file_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("c.toml"),
        "[auth]\nhtpasswd = \"users.htpasswd\"\n\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let check = || {
        std::process::Command::new(modgate_bin())
            .args(["check", "--config", "c.toml"])
            .current_dir(d)
            .output()
            .unwrap()
    };
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "auth.htpasswd: {}: cannot read the htpasswd file",
            d.join("users.htpasswd").display()
        )),
        "{err}"
    );
    std::fs::write(
        d.join("users.htpasswd"),
        format!("alice:{}\nbob:$apr1$abc$def\n", sha512_crypt("x")),
    )
    .unwrap();
    let out = check();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2: user 'bob': MD5-crypt hashes ($apr1$, $1$) are not supported",
            d.join("users.htpasswd").display()
        )),
        "{err}"
    );
    std::fs::write(d.join("users.htpasswd"), format!("alice:{}\n", sha512_crypt("x"))).unwrap();
    let out = check();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("auth:     Basic, realm \"modgate\""), "{shown}");
}

/// `[admin] require_auth`: the admin listener (an origin server) asks for
/// an `[auth]` user with 401 and `WWW-Authenticate` on every path but
/// `/healthz`; proxy credentials do not count there. A reload (SIGHUP)
/// reads the htpasswd file again and keeps the failed-login counts; a
/// config edit turns the requirement off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_asks_for_an_auth_user_under_require_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_users(d);
    let config = |require: bool| {
        format!(
            "[auth]\nhtpasswd = \"users.htpasswd\"\nmax_failures = 4\n\
             [admin]\nlisten = \"127.0.0.1:0\"\nrequire_auth = {require}\n\n\
             [[rule]]\nname = \"allow\"\naction = \"direct\"\n"
        )
    };
    std::fs::write(d.join("c.toml"), config(true)).unwrap();
    let check = std::process::Command::new(modgate_bin())
        .args(["check", "--config", "c.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout);
    assert!(
        shown.contains("admin:    127.0.0.1:0, [auth] users only (but /healthz)"),
        "{shown}"
    );
    let mut served = start_served(
        d,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let admin = served.admin.expect("the admin listener");
    let at = |path: &str| format!("http://{admin}{path}");
    let challenge = "www-authenticate: Basic realm=\"modgate\", charset=\"UTF-8\"";

    // No credentials: 401 with the challenge, on every path but /healthz.
    for path in ["/", "/metrics", "/readyz", "/chains/0123.pem"] {
        let refused = curl(d, &[&at(path)]).await;
        assert_eq!(refused.code, "401", "{path}: {}", refused.body);
        assert!(refused.headers.contains(challenge), "{path}: {}", refused.headers);
        assert_eq!(
            refused.body,
            "modgate: authentication required: no credentials; the admin listener asks for an [auth] user (admin.require_auth): send Authorization: Basic (e.g. curl -u user:password)",
            "{path}"
        );
    }
    let health = curl(d, &[&at("/healthz")]).await;
    assert_eq!((health.code.as_str(), health.body.as_str()), ("200", "ok"));

    // With a user's credentials (bcrypt and sha-crypt): the page, the
    // metrics (they parse) and readiness.
    let page = curl(d, &["-u", "alice:s3cret", &at("/")]).await;
    assert_eq!(page.code, "200", "{}", page.body);
    assert!(
        page.body.contains("<html") && page.body.contains("c.toml"),
        "{}",
        page.body
    );
    let metrics = curl(d, &["-u", "bob:b0b-pw", &at("/metrics")]).await;
    assert_eq!(metrics.code, "200", "{}", metrics.body);
    let parsed = prometheus_parse::Scrape::parse(metrics.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(
        parsed.samples.iter().any(|s| s.metric == "modgate_build_info"),
        "{}",
        metrics.body
    );
    let ready = curl(d, &["-u", "ci-linux:ci-pw", &at("/readyz")]).await;
    assert_eq!(ready.code, "200", "{}", ready.body);

    // Proxy credentials are not the origin server's: still 401, and no
    // failure counted (nothing was offered).
    let basic = format!("Proxy-Authorization: Basic {}", base64("alice:s3cret"));
    let proxied = curl(d, &["-H", &basic, &at("/metrics")]).await;
    assert_eq!(proxied.code, "401");

    // A wrong password and an unknown user: 401, the same line (2 failures).
    let wrong = curl(d, &["-u", "alice:wrong", &at("/")]).await;
    let unknown = curl(d, &["-u", "mallory:s3cret", &at("/")]).await;
    assert_eq!((wrong.code.as_str(), unknown.code.as_str()), ("401", "401"));
    // Not "proxy authentication": the admin listener is the server asking.
    assert_eq!(
        wrong.body,
        "modgate: authentication required: unknown user or wrong password"
    );
    assert_eq!(unknown.body, wrong.body);
    assert!(wrong.headers.contains(challenge), "{}", wrong.headers);

    // The htpasswd file changes: alice goes, carol comes. SIGHUP reads it.
    let carol = bcrypt::hash("c4rol", 5).unwrap();
    std::fs::write(
        d.join("users.htpasswd"),
        format!("bob:{}\ncarol:{carol}\n", sha512_crypt("b0b-pw")),
    )
    .unwrap();
    signal(&served.child, "HUP");
    served.wait_for_line("config reloaded").await;
    assert_eq!(curl(d, &["-u", "carol:c4rol", &at("/")]).await.code, "200");
    // alice's credentials worked a moment ago; not any more (failure 3).
    assert_eq!(curl(d, &["-u", "alice:s3cret", &at("/")]).await.code, "401");
    // Failure 4: the counts from before the reload still count, so this
    // client is locked out now, even with bob's right password.
    assert_eq!(curl(d, &["-u", "bob:nope", &at("/")]).await.code, "401");
    let locked = curl(d, &["-u", "bob:b0b-pw", &at("/")]).await;
    assert_eq!(locked.code, "403", "{}", locked.body);
    assert!(
        locked
            .body
            .starts_with("modgate: too many failed proxy logins from 127.0.0.1"),
        "{}",
        locked.body
    );

    // An edit turns the requirement off: the page opens without credentials.
    std::fs::write(d.join("c.toml"), config(false)).unwrap();
    served.wait_for_line("config reloaded").await;
    let open = curl(d, &[&at("/")]).await;
    assert_eq!(open.code, "200", "{}", open.body);
}

/// `Basic` credentials, base64.
fn base64(user_password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(user_password)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_cannot_add_fields_to_the_failed_login_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_users(d);
    std::fs::write(
        d.join("c.toml"),
        "[auth]\nhtpasswd = \"users.htpasswd\"\n\n[[rule]]\nname = \"allow\"\naction = \"direct\"\n",
    )
    .unwrap();
    let mut served = start_served(d, &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    let user = r#"mallory client=10.9.9.9 user="alice" status=200"#;
    let basic = base64(&format!("{user}:x"));
    let reply = raw_exchange(
        served.addr,
        format!(
            "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 407"), "{reply}");
    let line = served.wait_for_line("proxy authentication failed").await;
    assert!(
        line.contains(r#"client=127.0.0.1 user="mallory client=10.9.9.9 user=\"alice\" status=200""#),
        "the user name is one quoted field: {line}"
    );
}

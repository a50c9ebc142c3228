//! `explain` and `serve` make one decision (issue 8): for the same target,
//! the dry run names the rule, the action and the refusal line that a real
//! request through `modgate serve` gets.

use tokio::net::TcpListener;

use crate::support::*;

/// What `explain` printed last for `rule:`, `action:` (its first word) and
/// `refusal:`.
struct Explained {
    rule: String,
    action: String,
    refusal: Option<String>,
    text: String,
}

fn explain(dir: &std::path::Path, target: &str) -> Explained {
    let out = std::process::Command::new(modgate_bin())
        .args(["explain", "--config", "c.toml", target])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = |prefix: &str| {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    Explained {
        rule: last("rule:").unwrap_or_default().trim_matches('\'').to_owned(),
        action: last("action:")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        refusal: last("refusal:"),
        text,
    }
}

/// The response status line and body of a CONNECT through the proxy.
async fn connect(proxy: std::net::SocketAddr, target: &str) -> (String, String) {
    let raw = raw_exchange(
        proxy,
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    )
    .await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.trim_end().to_owned(),
    )
}

#[tokio::test]
async fn explain_names_the_rule_action_and_refusal_that_serve_applies() {
    // A TCP origin that accepts and closes, for the tunnel that is allowed.
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = origin.accept().await {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        r#"
[hosts]
"plain.test" = "127.0.0.1"
"mirrored.test" = "127.0.0.1"
"internal.test" = "127.0.0.2"

[[rule]]
name = "evil-modules"
modules = ["github.com/evil/*"]
action = "block"
reason = "SEC-42"

[[rule]]
name = "mirror-it"
hosts = ["mirrored.test"]
action = "mirror"
mirrors = "https://mirror.invalid"

[[rule]]
name = "no-internal"
dst = ["127.0.0.2/32"]
action = "block"
reason = "destination is an internal address"

[[rule]]
name = "allow"
action = "direct"
"#,
    )
    .unwrap();
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;

    // 1. A module rule cannot apply to a tunnel that is not intercepted: the
    //    dry run of a module URL on that host says so and plans the CONNECT.
    let e = explain(
        dir.path(),
        &format!("https://plain.test:{port}/github.com/evil/x/@v/list"),
    );
    assert!(e.text.contains("module rules cannot apply there"), "{}", e.text);
    assert_eq!(
        (e.rule.as_str(), e.action.as_str(), e.refusal.as_deref()),
        ("allow", "direct", None)
    );
    let (status, _) = connect(served.addr, &format!("plain.test:{port}")).await;
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    let access = served.next_access().await;
    assert_eq!(
        (access["rule"].as_str(), access["action"].as_str()),
        (Some("allow"), Some("direct"))
    );

    // 2. A mirror rule on a CONNECT outside tls.intercept is refused, by the
    //    plan, with the same line in both.
    let e = explain(dir.path(), "mirrored.test:443");
    assert_eq!(
        (e.rule.as_str(), e.action.as_str()),
        ("mirror-it", "block"),
        "{}",
        e.text
    );
    let refusal = e.refusal.expect("a refusal line");
    assert!(refusal.contains("not in tls.intercept"), "{refusal}");
    let (status, body) = connect(served.addr, "mirrored.test:443").await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, refusal);
    let access = served.next_access().await;
    assert_eq!(
        (access["rule"].as_str(), access["action"].as_str()),
        (Some("mirror-it"), Some("block"))
    );

    // The same rule on an absolute-form request.
    let e = explain(dir.path(), "http://mirrored.test/x");
    let refusal = e.refusal.expect("a refusal line");
    let (status, _, body) = get_via(served.addr, "http://mirrored.test/x").await;
    assert_eq!((status.as_u16(), body.trim_end()), (403, refusal.as_str()));
    let access = served.next_access().await;
    assert_eq!(
        (access["rule"].as_str(), access["action"].as_str()),
        (Some("mirror-it"), Some("block"))
    );

    // 3. A dst rule, with the address known from [hosts].
    let e = explain(dir.path(), "internal.test:443");
    assert_eq!(
        (e.rule.as_str(), e.action.as_str()),
        ("no-internal", "block"),
        "{}",
        e.text
    );
    let refusal = e.refusal.expect("a refusal line");
    let (status, body) = connect(served.addr, "internal.test:443").await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden");
    assert_eq!(body, refusal);
    let access = served.next_access().await;
    assert_eq!(
        (access["rule"].as_str(), access["action"].as_str()),
        (Some("no-internal"), Some("block"))
    );
}

/// The `upstream:` line `explain` prints for a target.
fn upstream_line(e: &Explained) -> String {
    e.text
        .lines()
        .find_map(|l| l.strip_prefix("upstream:"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn explain_and_serve_agree_on_the_parent() {
    // Another modgate is the parent; the origin accepts and closes.
    let parent = start_proxy(&config_allowing_loopback("")).await;
    let origin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = origin.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = origin.accept().await {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[parent]\nurl = \"http://{}\"\nno_parent = [\"exempt.test\"]\n\n[hosts]\n\"straight.test\" = \"127.0.0.1\"\n\"exempt.test\" = \"127.0.0.1\"\n\n\
             [[rule]]\nname = \"straight\"\nhosts = [\"straight.test\"]\naction = \"direct\"\nparent = false\n\n\
             [[rule]]\nname = \"allow\"\naction = \"direct\"\n",
            parent.addr
        ),
    )
    .unwrap();
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let parent_url = format!("http://{}", parent.addr);

    let target = format!("localhost:{port}");
    let e = explain(dir.path(), &target);
    assert_eq!(
        upstream_line(&e),
        format!("{target} via parent {parent_url}"),
        "{}",
        e.text
    );
    let (status, _) = connect(served.addr, &target).await;
    assert_eq!(status, "HTTP/1.1 200 Connection established");
    let access = served.next_access().await;
    assert_eq!(access["parent"], parent_url.as_str(), "{access}");

    for (host, why) in [
        ("straight.test", "direct (the rule says parent = false)"),
        ("exempt.test", "direct (the host is in no_parent)"),
    ] {
        let target = format!("{host}:{port}");
        let e = explain(dir.path(), &target);
        assert_eq!(upstream_line(&e), format!("{target} {why}"), "{}", e.text);
        let (status, _) = connect(served.addr, &target).await;
        assert_eq!(status, "HTTP/1.1 200 Connection established");
        let access = served.next_access().await;
        assert!(access.get("parent").is_none(), "{access}");
        assert_eq!(access["upstream"], format!("127.0.0.1:{port}"), "{access}");
    }
    parent.stop().await;
}

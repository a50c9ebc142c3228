//! `modgate inspect`: a host, through a parent proxy, a saved chain; text
//! and JSON; exit codes; bad input files.

use std::path::Path;
use std::process::Output;

use crate::support::*;

fn inspect(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(modgate_bin())
        .arg("inspect")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config whose public root is a test root; `extra` adds extra_roots.
fn config(dir: &Path, public: &TestPki, extra: Option<&TestPki>, hosts: &str) {
    std::fs::write(dir.join("public.pem"), &public.ca_pem).unwrap();
    let mut tls = "[tls]\npublic_roots = \"public.pem\"\nintercepted_dir = \"seen\"\n".to_owned();
    if let Some(extra) = extra {
        std::fs::write(dir.join("extra.pem"), &extra.ca_pem).unwrap();
        tls.push_str("extra_roots = [\"extra.pem\"]\n");
    }
    std::fs::write(
        dir.join("c.toml"),
        format!("{tls}[hosts]\n{hosts}\n[[rule]]\naction = \"direct\"\n"),
    )
    .unwrap();
}

fn chain_pem(pki: &TestPki, name: &str) -> String {
    let (chain, _) = pki.leaf(&[name]);
    chain.iter().map(|c| modgate::tls::pem::to_pem(c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspecting_a_host_names_the_interceptor_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let public = TestPki::new("Test Public Root CA");
    let root = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let zscaler = root.intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    let (origin, _task) = start_tls_origin(&zscaler, &["git.test"], "hi").await;
    config(&d, &public, Some(&root), &format!("\"git.test\" = \"{origin}\""));

    let out = tokio::task::spawn_blocking(move || inspect(&d, &["git.test", "--config", "c.toml"]))
        .await
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    for expected in [
        "inspect git.test:443 (SNI git.test)",
        "certificate 1 (leaf)",
        "certificate 2 (CA)",
        "subject:      CN=Zscaler Intermediate Root CA (zscaler.net), O=Zscaler Inc.",
        "SANs:         git.test",
        "key:          ECDSA P-256",
        "signature:    ecdsa-with-SHA256",
        "days left",
        "spki sha256:  ",
        "system + extra roots: ok",
        "verdict:  intercepted",
        "vendor:   Zscaler",
        "issuer:   Zscaler Intermediate Root CA (zscaler.net)",
        "export SSL_CERT_FILE=$PWD/go-bundle.pem",
    ] {
        assert!(t.contains(expected), "missing {expected:?} in:\n{t}");
    }
    assert!(t.contains("public roots (") && t.contains("UnknownIssuer"), "{t}");
    // go gets the root modgate trusts (tls.extra_roots), never the chain.
    let bundle = t
        .lines()
        .find(|l| l.trim_start().starts_with("cat "))
        .unwrap_or_default();
    assert!(bundle.trim_end().ends_with("extra.pem > go-bundle.pem"), "{t}");
    let saved: Vec<String> = std::fs::read_dir(dir.path().join("seen"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    assert_eq!(
        saved,
        [format!("{}.pem", spki_sha256(&zscaler.ca_der))],
        "leaf and intermediate, named by the intermediate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspecting_through_a_parent_proxy_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let fortigate = TestPki::named("FortiGate CA", Some("Fortinet"));
    let (origin, _task) = start_tls_origin(&fortigate, &["git.test"], "hi").await;
    // The parent proxy resolves git.test; inspect itself knows no [hosts].
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[hosts]\n\"git.test\" = \"{origin}\"\n"
    )))
    .await;
    config(dir.path(), &public, None, "");
    let d = dir.path().to_owned();
    let url = format!("http://{}", proxy.addr);
    let out = tokio::task::spawn_blocking(move || {
        inspect(&d, &["git.test:443", "--proxy", &url, "--config", "c.toml", "--json"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "untrusted");
    assert_eq!(json["vendor"], "Fortinet");
    assert_eq!(json["target"], "git.test:443");
    assert_eq!(json["sni"], "git.test");
    assert_eq!(json["host"], "git.test");
    assert_eq!(json["file"], serde_json::Value::Null);
    assert_eq!(json["proxy"], format!("http://{}", proxy.addr));
    assert!(json["public_roots"].as_str().unwrap().ends_with("public.pem"), "{json}");
    assert_eq!(json["exit_code"], 4);
    let certs = json["certs"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    let leaf = &certs[0];
    assert_eq!(leaf["subject"], "CN=rcgen self signed cert");
    assert_eq!(leaf["issuer"], "CN=FortiGate CA, O=Fortinet");
    assert_eq!(leaf["sans"], serde_json::json!(["git.test"]));
    assert_eq!(leaf["key"], "ECDSA P-256");
    assert_eq!(leaf["signature"], "ecdsa-with-SHA256");
    assert_eq!(leaf["is_ca"], false);
    assert!(matches!(leaf["days_left"].as_i64(), Some(9 | 10)), "{leaf}");
    assert!(leaf["serial"].as_str().unwrap().chars().all(|c| c.is_ascii_hexdigit()));
    assert!(leaf["not_before"].as_str().unwrap().ends_with('Z'));
    assert!(leaf["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(leaf["sha256"].as_str().unwrap().len(), 64);
    let spki = leaf["spki_sha256"].as_str().unwrap();
    assert_eq!(spki.len(), 64);
    assert_eq!(json["public_check"], "invalid peer certificate: UnknownIssuer");
    assert_eq!(json["local_check"], "invalid peer certificate: UnknownIssuer");
    assert_eq!(json["issuer"], "FortiGate CA");
    assert_eq!(
        json["flags"],
        serde_json::json!({
            "hostname_mismatch": false,
            "expired": false,
            "not_yet_valid": false,
            "self_signed_leaf": false,
            "missing_intermediates": false,
            "unlinked": false,
        })
    );
    assert_eq!(json["linked"], 1);
    assert_eq!(json["root_in_chain"], false);
    assert_eq!(json["top_spki_sha256"], spki, "the leaf alone is the top");
    let saved = json["saved"].as_str().unwrap();
    assert!(saved.ends_with(&format!("seen/{spki}.pem")), "{saved}");
    assert_eq!(json["saved_root"], serde_json::Value::Null);
    let fix: Vec<&str> = json["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        fix[0],
        "# The connection is re-signed by Fortinet; its chain was saved as:"
    );
    assert_eq!(fix[1], format!("#   {saved}"));
    assert!(fix.contains(&"extra_roots = [\"interceptor-root.pem\"]"), "{fix:?}");
    assert_eq!(
        fix.iter().filter(|l| l.contains(spki)).count(),
        1,
        "only the line saying where the chain is names it; nothing suggests trusting it: {fix:?}"
    );
    proxy.stop().await;
}

#[test]
fn inspecting_saved_chains_gives_each_verdict_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    let corp = TestPki::named("Example Corp Root CA", Some("Example Corp"));
    config(d, &public, Some(&corp), "");
    std::fs::write(d.join("public-chain.pem"), chain_pem(&public, "proxy.golang.org")).unwrap();
    std::fs::write(d.join("corp-chain.pem"), chain_pem(&corp, "proxy.golang.org")).unwrap();
    let other = TestPki::named("Sophos SSL CA_ABC123", None);
    std::fs::write(d.join("sophos-chain.pem"), chain_pem(&other, "proxy.golang.org")).unwrap();
    // As pasted from `openssl s_client -showcerts`: text around the blocks.
    let pasted = format!(
        "CONNECTED(00000003)\n---\nCertificate chain\n 0 s:CN = proxy.golang.org\n{}---\nServer certificate\n",
        chain_pem(&public, "proxy.golang.org")
    );
    std::fs::write(d.join("pasted.pem"), pasted).unwrap();

    let out = inspect(d, &["--file", "public-chain.pem", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing to fix"));
    assert_eq!(
        inspect(d, &["--file", "pasted.pem", "--config", "c.toml"])
            .status
            .code(),
        Some(0)
    );
    let out = inspect(d, &["--file", "corp-chain.pem", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("vendor:   unknown"), "{}", text(&out));
    let out = inspect(d, &["--file", "sophos-chain.pem", "--config", "c.toml", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "untrusted");
    assert_eq!(json["vendor"], "Sophos");
    assert_eq!(json["file"], "sophos-chain.pem");
    assert_eq!(json["target"], serde_json::Value::Null);
    assert_eq!(json["host"], serde_json::Value::Null);
    assert_eq!(json["exit_code"], 4);
    let fix: Vec<&str> = json["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        fix.contains(
            &"# The chain holds no self-signed root, and a leaf or an intermediate must never be trusted as one."
        ),
        "{fix:?}"
    );
    assert!(fix.contains(&"extra_roots = [\"interceptor-root.pem\"]"), "{fix:?}");
}

/// Issue 9 item 1: the fix trusts the chain's self-signed root, saved
/// alone; never the leaf or an intermediate.
#[test]
fn issue9_the_fix_trusts_only_the_self_signed_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    config(d, &public, None, "");
    let root = TestPki::named("Sophos SSL CA_ABC123", None);
    let mut sub = root.intermediate("Sophos Web Appliance", None);
    sub.send_also(root.ca_der.clone());
    std::fs::write(d.join("chain.pem"), chain_pem(&sub, "proxy.golang.org")).unwrap();
    let out = inspect(d, &["--file", "chain.pem", "--config", "c.toml", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["linked"], 3);
    assert_eq!(json["root_in_chain"], true);
    let spki = spki_sha256(&root.ca_der);
    assert_eq!(json["top_spki_sha256"], spki);
    let saved = json["saved"].as_str().unwrap();
    let saved_root = json["saved_root"].as_str().unwrap();
    assert!(saved.ends_with(&format!("seen/{spki}.pem")), "{saved}");
    assert!(saved_root.ends_with(&format!("seen/{spki}.root.pem")), "{saved_root}");
    let root_path = if Path::new(saved_root).is_absolute() {
        Path::new(saved_root).to_owned()
    } else {
        d.join(saved_root)
    };
    assert_eq!(pem_file_certs(&root_path), std::slice::from_ref(&root.ca_der));
    let fix: Vec<&str> = json["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        fix[..8],
        [
            "# The connection is re-signed by Sophos; its chain was saved as:".to_owned(),
            format!("#   {saved}"),
            "# and its self-signed root, alone, as:".to_owned(),
            format!("#   {saved_root}"),
            "# 1. Trust that root in modgate (modgate.toml):".to_owned(),
            "[tls]".to_owned(),
            format!("extra_roots = [\"{saved_root}\"]"),
            "# 2. Give go the system roots plus that root (on Linux SSL_CERT_FILE replaces the system bundle):"
                .to_owned(),
        ]
    );
    assert!(
        fix[8].starts_with("cat ") && fix[8].ends_with(&format!(" {saved_root} > go-bundle.pem")),
        "{fix:?}"
    );
    assert_eq!(fix[9], "export SSL_CERT_FILE=$PWD/go-bundle.pem");
    assert_eq!(fix.len(), 10);
}

/// A CA whose name holds terminal and line-breaking characters.
const HOSTILE: &str = "Evil CA\u{1b}[2J\r\nverdict:  public\u{2028}\u{85}\u{9b}31m";

/// Issue 9 item 2: certificate text is escaped in inspect's output and in
/// the saved chain's comments; JSON keeps the exact value.
#[test]
fn issue9_certificate_text_is_escaped_in_inspect_output_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    config(d, &public, None, "");
    let evil = TestPki::named(HOSTILE, Some("Evil\nOrg"));
    std::fs::write(d.join("evil.pem"), chain_pem(&evil, "proxy.golang.org")).unwrap();
    let out = inspect(d, &["--file", "evil.pem", "--config", "c.toml"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    for raw in ['\u{1b}', '\r', '\u{2028}', '\u{85}', '\u{9b}'] {
        assert!(!stdout.contains(raw), "raw {raw:?} in:\n{stdout}");
    }
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("verdict:")).count(),
        1,
        "no forged line:\n{stdout}"
    );
    assert!(stdout.contains("verdict:  untrusted"), "{stdout}");
    assert!(
        stdout.contains("issuer:   Evil CA\\u{1b}[2J\\u{d}\\u{a}verdict:  public\\u{2028}\\u{85}\\u{9b}31m"),
        "{stdout}"
    );
    // The saved chain: comments on one line each, escaped.
    let saved: Vec<_> = std::fs::read_dir(d.join("seen"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let pem = std::fs::read_to_string(&saved[0]).unwrap();
    assert_eq!(pem.matches("-----BEGIN").count(), 1, "{pem}");
    for raw in ['\u{1b}', '\r', '\u{2028}', '\u{85}', '\u{9b}'] {
        assert!(!pem.contains(raw), "raw {raw:?} in:\n{pem}");
    }
    assert!(pem.contains("# issuer: CN=Evil CA\\u{1b}[2J"), "{pem}");
    // JSON is JSON: the exact name, escaped by the JSON encoding itself.
    let out = inspect(d, &["--file", "evil.pem", "--config", "c.toml", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["issuer"], HOSTILE);
}

#[test]
fn bad_chain_files_get_a_clear_error_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    let good = chain_pem(&public, "a.test");
    let (_, key) = public.leaf(&["a.test"]);
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", key.secret_der().to_vec()));
    let der = public.ca_der.to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.pem", b"\n\n".to_vec(), "the file is empty"),
        (
            "garbage.pem",
            b"hello, I am not a certificate\n".to_vec(),
            "no PEM certificates found",
        ),
        ("truncated.pem", good.as_bytes()[..good.len() / 2].to_vec(), "truncated"),
        ("der.cer", der, "looks like DER"),
        ("key-only.pem", key_pem.clone().into_bytes(), "no CERTIFICATE"),
        (
            "bad-base64.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
            "malformed PEM",
        ),
        (
            "not-x509.pem",
            pem::encode(&pem::Pem::new("CERTIFICATE", b"not der at all".to_vec())).into_bytes(),
            "not valid X.509",
        ),
    ];
    for (name, bytes, message) in cases {
        std::fs::write(d.join(name), bytes).unwrap();
        let out = inspect(d, &["--file", name]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {t}");
        assert!(t.contains(message), "{name}: expected {message:?} in {t}");
        assert!(!t.contains("panicked"), "{name}: {t}");
        assert_eq!(t.trim_end().lines().count(), 1, "{name}: one line: {t}");
    }
    // Mixed: a key and a certificate; the certificate is used (and no root
    // on this machine or in webpki trusts the test root).
    std::fs::write(d.join("mixed.pem"), format!("{key_pem}{good}")).unwrap();
    let out = inspect(d, &["--file", "mixed.pem", "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["certs"][0]["sans"], serde_json::json!(["a.test"]));
    assert_eq!(json["verdict"], "untrusted");
    let missing = inspect(d, &["--file", "nope.pem"]);
    assert_eq!(missing.status.code(), Some(2));
    let nothing = inspect(d, &[]);
    assert_eq!(nothing.status.code(), Some(2));
    // A byte-order mark (a Windows export), or a chain pasted indented
    // with CRLF line ends, is read as the chain it is.
    let indented: String = good.lines().map(|l| format!("    {l}\r\n")).collect();
    for (name, bytes) in [
        ("bom.pem", [&b"\xEF\xBB\xBF"[..], good.as_bytes()].concat()),
        ("indented.pem", indented.into_bytes()),
    ] {
        std::fs::write(d.join(name), bytes).unwrap();
        let out = inspect(d, &["--file", name, "--json"]);
        assert_eq!(out.status.code(), Some(4), "{name}: {}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["certs"][0]["sans"], serde_json::json!(["a.test"]), "{name}");
    }
}

/// Runs `modgate inspect ARGS` in `dir`, killing it after `limit`.
fn inspect_within(dir: &Path, args: &[&str], limit: std::time::Duration) -> (Output, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new(modgate_bin())
        .arg("inspect")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

/// Issue 9 item 12: `inspect --file` reads a bounded amount, and says so
/// in one line.
#[test]
fn issue9_inspect_file_input_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let limit = std::time::Duration::from_secs(20);
    let (out, took) = inspect_within(d, &["--file", "/dev/zero"], limit);
    let t = text(&out);
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert_eq!(t.trim_end().lines().count(), 1, "{t}");
    assert!(t.contains("larger than 1 MiB"), "{t}");

    let public = TestPki::new("Test Public Root CA");
    let one = chain_pem(&public, "a.test");
    std::fs::write(d.join("many.pem"), one.repeat(21)).unwrap();
    let (out, _) = inspect_within(d, &["--file", "many.pem"], limit);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert_eq!(t.trim_end().lines().count(), 1, "{t}");
    assert!(t.contains("21 certificates; a chain has at most 20"), "{t}");
    // 20 is still a chain.
    std::fs::write(d.join("twenty.pem"), one.repeat(20)).unwrap();
    let (out, _) = inspect_within(d, &["--file", "twenty.pem"], limit);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
}

/// A TLS 1.3 server that answers only ClientHellos whose SNI is `name`
/// (with a chain for `name` from `pki`), and fails any other handshake.
async fn start_sni_only_server(pki: &TestPki, name: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    install_crypto();
    let (chain, key) = pki.leaf(&[name]);
    let key = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    resolver.add(name, rustls::sign::CertifiedKey::new(chain, key)).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(std::sync::Arc::new(resolver));
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    (addr, task)
}

/// `--sni NAME` is the name sent and verified; the target is still where
/// the handshake goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_sends_the_sni_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let (origin, _task) = start_sni_only_server(&public, "other.test").await;
    config(dir.path(), &public, None, &format!("\"git.test\" = \"{origin}\""));
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let without = inspect(&d, &["git.test", "--config", "c.toml"]);
        let with = inspect(&d, &["git.test", "--sni", "other.test", "--config", "c.toml", "--json"]);
        (without, with)
    })
    .await
    .unwrap();
    let (without, with) = out;
    assert_eq!(
        without.status.code(),
        Some(2),
        "no certificate for SNI git.test: {}",
        text(&without)
    );
    assert!(text(&without).contains("TLS handshake failed"), "{}", text(&without));
    assert_eq!(with.status.code(), Some(0), "{}", text(&with));
    let json: serde_json::Value = serde_json::from_slice(&with.stdout).unwrap();
    assert_eq!(json["target"], "git.test:443");
    assert_eq!(json["sni"], "other.test");
    assert_eq!(json["host"], "other.test");
    assert_eq!(json["verdict"], "public");
    assert_eq!(json["certs"][0]["sans"], serde_json::json!(["other.test"]));
    assert_eq!(
        json["fix"],
        serde_json::json!(["nothing to fix: the chain verifies against the public roots"])
    );
}

/// Issue 9 item 16: a name mismatch is fixed by the name, not by trusting
/// a root (which would loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_a_name_mismatch_is_not_fixed_with_extra_roots() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    let (origin, _task) = start_tls_origin(&public, &["other.test"], "hi").await;
    config(dir.path(), &public, None, &format!("\"git.test\" = \"{origin}\""));
    let d = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || inspect(&d, &["git.test", "--config", "c.toml", "--json"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["flags"]["hostname_mismatch"], true);
    let fix: Vec<&str> = json["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        fix[0], "# The certificate is not valid for 'git.test': it names other.test.",
        "{fix:?}"
    );
    assert!(
        fix.contains(
            &"# Check the host name (and --sni); if they are right, an interceptor sends this name to the wrong site."
        ),
        "{fix:?}"
    );
    assert!(!fix.iter().any(|l| l.contains("extra_roots = [")), "{fix:?}");
    assert!(!fix.iter().any(|l| l.starts_with("cat ")), "{fix:?}");
}

/// Issue 9 item 16: a chain from modgate's own CA is modgate's own
/// interception: clients need `modgate ca bundle`, never modgate's leaf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_modgates_own_interception_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let public = TestPki::new("Test Public Root CA");
    config(&d, &public, None, "");
    std::fs::write(
        d.join("mg.toml"),
        "[tls]\nca_cert = \"ca/ca.pem\"\nca_key = \"ca/ca.key\"\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let init = std::process::Command::new(modgate_bin())
        .args(["ca", "init", "--config", "mg.toml"])
        .current_dir(&d)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let text_config = std::fs::read_to_string(d.join("mg.toml")).unwrap();
    let proxy =
        start_proxy_with(modgate::config::Config::parse(&text_config, d.join("mg.toml").to_str().unwrap()).unwrap())
            .await;
    let url = format!("http://{}", proxy.addr);
    let run = |args: &'static [&'static str]| {
        let (d, url) = (d.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["proxy.golang.org", "--proxy", &url, "--json"];
            all.extend_from_slice(args);
            std::process::Command::new(modgate_bin())
                .arg("inspect")
                .args(&all)
                .current_dir(&d)
                .env("XDG_STATE_HOME", d.join("state"))
                .output()
                .unwrap()
        })
    };
    // Recognised from the configured CA, and by name without a config.
    for (args, configured) in [(&["--config", "mg.toml"][..], true), (&[][..], false)] {
        let out = run(args).await.unwrap();
        assert_eq!(out.status.code(), Some(4), "{}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["vendor"], "modgate", "{json}");
        let fix: Vec<&str> = json["fix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(
            fix[0].starts_with("# This chain is issued by modgate's own local CA"),
            "{fix:?}"
        );
        assert_eq!(fix[0].contains("tls.ca_cert"), configured, "{fix:?}");
        assert!(fix.iter().any(|l| l.starts_with("modgate ca bundle")), "{fix:?}");
        assert!(fix.contains(&"export SSL_CERT_FILE=$PWD/modgate-bundle.pem"), "{fix:?}");
        assert!(!fix.iter().any(|l| l.contains("extra_roots")), "{fix:?}");
        assert!(!fix.iter().any(|l| l.contains("admin-generated")), "{fix:?}");
    }
    proxy.stop().await;
}

/// An Authority Information Access extension whose caIssuers URL is `url`.
fn aia_ca_issuers(url: &str) -> rcgen::CustomExtension {
    let mut uri = vec![0x86, url.len() as u8];
    uri.extend_from_slice(url.as_bytes());
    let mut description = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    description.extend(uri);
    let mut access = vec![0x30, description.len() as u8];
    access.extend(description);
    let mut syntax = vec![0x30, access.len() as u8];
    syntax.extend(access);
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], syntax)
}

/// `missing_intermediates`: a server that sends its leaf alone, whose
/// issuer is reachable by URL, forgot its intermediate; a leaf signed
/// straight by an interceptor's root (no such URL) did not.
#[test]
fn a_leaf_sent_without_its_intermediate_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    config(d, &public, None, "");
    let intermediate = public.intermediate("Test Issuing CA", None);
    let (chain, _) = intermediate.leaf_with(&["proxy.golang.org"], |p| {
        p.custom_extensions.push(aia_ca_issuers("http://ca.test/issuing.crt"));
    });
    assert_eq!(chain.len(), 2);
    std::fs::write(
        d.join("full.pem"),
        chain.iter().map(|c| modgate::tls::pem::to_pem(c)).collect::<String>(),
    )
    .unwrap();
    std::fs::write(d.join("leaf-only.pem"), modgate::tls::pem::to_pem(&chain[0])).unwrap();
    let flags = |file: &str| {
        let out = inspect(d, &["--file", file, "--config", "c.toml", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            out.status.code(),
            json["flags"]["missing_intermediates"].clone(),
            json["verdict"].clone(),
        )
    };
    assert_eq!(flags("full.pem"), (Some(0), false.into(), "public".into()));
    assert_eq!(flags("leaf-only.pem"), (Some(4), true.into(), "untrusted".into()));
    let out = inspect(d, &["--file", "leaf-only.pem", "--config", "c.toml"]);
    assert!(text(&out).contains("flags:    missing_intermediates"), "{}", text(&out));
    // An interceptor's leaf, signed by its root directly: not flagged.
    let corp = TestPki::named("Example Corp Root CA", None);
    std::fs::write(d.join("corp.pem"), chain_pem(&corp, "proxy.golang.org")).unwrap();
    assert_eq!(flags("corp.pem"), (Some(4), false.into(), "untrusted".into()));
}

/// A public CA's certificate that has expired is not an interception: the
/// fix says to check the clock or renew the certificate, the advice serve
/// gives, and suggests trusting no root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_public_certificate_gets_the_clock_advice_not_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let public = TestPki::new("Test Public Root CA");
    let now = time::OffsetDateTime::now_utc();
    let (chain, key) = public.leaf_with(&["old.test"], |p| {
        p.not_before = now - time::Duration::days(30);
        p.not_after = now - time::Duration::days(2);
    });
    let tls12_13 = [&rustls::version::TLS12, &rustls::version::TLS13];
    let (origin, _task) = start_tls_server(chain, key, "x", &tls12_13).await;
    config(&d, &public, None, &format!("\"old.test\" = \"{origin}\""));
    let out = tokio::task::spawn_blocking(move || inspect(&d, &["old.test", "--config", "c.toml"]))
        .await
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("flags:    expired"), "{t}");
    assert!(t.contains("# Certificate 1 (CN=") && t.contains(") expired on "), "{t}");
    assert!(t.contains("check this machine's clock"), "{t}");
    assert!(!t.contains("extra_roots = ["), "no root to trust: {t}");
    assert!(!t.contains("re-signed"), "{t}");
}

/// A server that speaks only TLS 1.0 (a real `openssl s_server -tls1`):
/// inspect says so, as serve does (DESIGN "Old TLS").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspecting_a_tls10_only_server_says_old_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let public = TestPki::new("Test Public Root CA");
    let (chain, key) = public.leaf(&["old.test"]);
    let server = crate::faults::start_tls10_server(&chain, &key).await;
    config(&d, &public, None, &format!("\"old.test\" = \"{}\"", server.addr));
    let out = tokio::task::spawn_blocking(move || inspect(&d, &["old.test", "--config", "c.toml"]))
        .await
        .unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("TLS handshake failed: the server speaks only TLS 1.0 or 1.1"),
        "{t}"
    );
}

/// An interceptor root that expired 30 days ago, as the machine trusts it
/// in `tls.extra_roots`, with a leaf still in its dates.
fn expired_interceptor_root() -> TestPki {
    let now = time::OffsetDateTime::now_utc();
    TestPki::named_with("Zscaler Root CA", Some("Zscaler Inc."), |p| {
        p.not_before = now - time::Duration::days(400);
        p.not_after = now - time::Duration::days(30);
    })
}

/// webpki ignores a trust anchor's own dates; go refuses a chain ending at
/// an expired root ("certificate has expired or is not yet valid"). So does
/// inspect: `expired`, the root named with its date, exit 4, and no root
/// to trust, whether or not the server sends the root.
#[test]
fn an_expired_root_in_extra_roots_makes_the_chain_expired_not_intercepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = TestPki::new("Test Public Root CA");
    let mut root = expired_interceptor_root();
    config(d, &public, Some(&root), "");
    std::fs::write(d.join("leaf.pem"), chain_pem(&root, "proxy.golang.org")).unwrap();
    root.send_also(root.ca_der.clone());
    std::fs::write(d.join("leaf-root.pem"), chain_pem(&root, "proxy.golang.org")).unwrap();
    for file in ["leaf.pem", "leaf-root.pem"] {
        let out = inspect(d, &["--file", file, "--config", "c.toml", "--json"]);
        assert_eq!(out.status.code(), Some(4), "{file}: {}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["verdict"], "untrusted", "{file}: {json}");
        assert_eq!(json["flags"]["expired"], true, "{file}: {json}");
        assert_eq!(json["vendor"], "Zscaler", "{file}: {json}");
        let stale = &json["root_outside_dates"];
        assert_eq!(stale["subject"], "CN=Zscaler Root CA, O=Zscaler Inc.", "{file}: {json}");
        // Paths in the config are resolved from its directory.
        let source = stale["source"].as_str().unwrap();
        assert!(source.ends_with("/extra.pem"), "{file}: {json}");
        let local = json["local_check"].as_str().unwrap();
        assert!(
            local.contains(&format!(
                "ends at the trusted root 'CN=Zscaler Root CA, O=Zscaler Inc.' ({source}) expired on "
            )),
            "{file}: {local}"
        );
        let fix = json["fix"].to_string();
        assert!(
            fix.contains(&format!(
                "# The chain ends at the trusted root 'CN=Zscaler Root CA, O=Zscaler Inc.' ({source}) expired on "
            )),
            "{file}: {fix}"
        );
        assert!(fix.contains("check this machine's clock"), "{file}: {fix}");
        assert!(!fix.contains("extra_roots = ["), "{file}: no root to trust: {fix}");
        assert!(!fix.contains("already trusts"), "{file}: {fix}");
    }
    // `check` warns about the file, naming the certificate and its notAfter.
    let out = std::process::Command::new(modgate_bin())
        .args(["check", "--config", "c.toml"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let warning = text(&out)
        .lines()
        .find(|l| {
            l.starts_with("warning:  /")
                && l.contains("/extra.pem: the root 'CN=Zscaler Root CA, O=Zscaler Inc.' expired on ")
        })
        .map(str::to_owned);
    assert!(
        warning.as_deref().is_some_and(|w| w.contains("(notAfter)")),
        "{}",
        text(&out)
    );
    // A root within its dates: the same chain is intercepted, and check is quiet.
    let current = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    config(d, &public, Some(&current), "");
    std::fs::write(d.join("current.pem"), chain_pem(&current, "proxy.golang.org")).unwrap();
    let out = inspect(d, &["--file", "current.pem", "--config", "c.toml", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["root_outside_dates"], serde_json::Value::Null, "{json}");
}

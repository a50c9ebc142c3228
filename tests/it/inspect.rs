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
    let saved: Vec<_> = std::fs::read_dir(dir.path().join("seen"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(saved.iter().any(|e| e.file_name().to_string_lossy().ends_with(".pem")));
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
    assert_eq!(json["proxy"], format!("http://{}", proxy.addr));
    assert_eq!(json["exit_code"], 4);
    assert_eq!(json["certs"].as_array().unwrap().len(), 1);
    for key in [
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "days_left",
        "sans",
        "key",
        "signature",
        "sha256",
        "spki_sha256",
        "is_ca",
    ] {
        assert!(json["certs"][0].get(key).is_some(), "certs[0].{key} missing: {json}");
    }
    for key in [
        "public_check",
        "local_check",
        "issuer",
        "flags",
        "top_spki_sha256",
        "saved",
        "fix",
        "public_roots",
        "sni",
        "file",
        "host",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    assert!(json["saved"].as_str().unwrap().ends_with(".pem"));
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
    assert_eq!(json["vendor"], "Sophos");
    assert_eq!(json["file"], "sophos-chain.pem");
    assert!(
        json["fix"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("extra_roots = ["))
    );
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
    // Mixed: a key and a certificate; the certificate is used.
    std::fs::write(d.join("mixed.pem"), format!("{key_pem}{good}")).unwrap();
    let out = inspect(d, &["--file", "mixed.pem"]);
    assert!(matches!(out.status.code(), Some(0 | 3 | 4)), "{}", text(&out));
    let missing = inspect(d, &["--file", "nope.pem"]);
    assert_eq!(missing.status.code(), Some(2));
    let nothing = inspect(d, &[]);
    assert_eq!(nothing.status.code(), Some(2));
}

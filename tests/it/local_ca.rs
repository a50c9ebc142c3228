//! modgate's local CA as `serve` loads it (issue 9 item 3): a CA made
//! before IP addresses were excluded gets a warning naming the fix.

use tokio::io::AsyncBufReadExt;

use crate::support::*;

#[tokio::test]
async fn issue9_serve_warns_about_a_ca_that_does_not_exclude_ip_addresses() {
    let dir = tempfile::tempdir().unwrap();
    // A CA as `ca init` made it before: DNS permitted, no IP exclusions.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "modgate local CA 0ld0ld00");
    params.name_constraints = Some(rcgen::NameConstraints {
        permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("proxy.golang.org".into())],
        excluded_subtrees: Vec::new(),
    });
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    // Read stderr from the start: the warning comes before the listening line.
    let mut child = tokio::process::Command::new(modgate_bin())
        .args(["serve", "--config", "c.toml", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let warning = loop {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("the warning in time")
            .unwrap()
            .expect("the warning before the log ends");
        if line.contains("does not exclude IP addresses") {
            break line;
        }
    };
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        // The fix names this config: `ca init` alone would replace another one's CA.
        warning.contains("ca.pem")
            && warning.contains(&format!(
                "modgate ca init --config {} --force",
                dir.path().canonicalize().unwrap().join("c.toml").display()
            )),
        "{warning}"
    );
}

/// Issue 9 item 19: a client that refuses modgate's certificate is pointed
/// to the trust setting of every common client, not only go's.
#[tokio::test]
async fn issue9_a_client_that_does_not_trust_the_ca_is_pointed_to_clients_md() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let init = std::process::Command::new(modgate_bin())
        .args(["ca", "init", "--config", "c.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;
    let (stream, head) = connect_via(served.addr, "proxy.golang.org:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A client that trusts some other root, not modgate's CA.
    let other = TestPki::new("Not modgate");
    let name = rustls::pki_types::ServerName::try_from("proxy.golang.org").unwrap();
    let refused = tokio_rustls::TlsConnector::from(other.client_config())
        .connect(name, stream)
        .await;
    assert!(refused.is_err(), "the client must refuse modgate's leaf");
    let access = served.next_access().await;
    let error = access["error"].as_str().unwrap_or_default();
    assert!(error.contains("the client does not trust modgate's CA"), "{access}");
    assert!(error.contains("docs/clients.md"), "{access}");
}

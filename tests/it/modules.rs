//! Module routing at the HTTP level: sumdb paths, the zip limit, bad module
//! paths, the endpoint's refusals, and the CA commands.

use std::process::Command;

use http::Request;
use http_body_util::BodyExt;

use crate::gotool::*;
use crate::support::*;

fn modgate(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(modgate_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A fixture tree with sumdb answers, a mirror serving it, and a proxy with
/// a CA intercepting sum.golang.org and proxy.golang.org.
struct Setup {
    dir: tempfile::TempDir,
    mirror: ModuleOrigin,
    proxy: Proxy,
}

async fn setup(behavior: Behavior, rules: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fixture");
    write_fixture(
        &root,
        &[FixtureModule {
            path: "example.test/alpha",
            version: "v1.0.0",
            payload: 0,
        }],
    );
    let sumdb = root.join("sumdb/sum.golang.org");
    std::fs::create_dir_all(sumdb.join("lookup")).unwrap();
    std::fs::write(sumdb.join("supported"), "").unwrap();
    std::fs::write(sumdb.join("latest"), "go.sum database tree\n42\n").unwrap();
    std::fs::create_dir_all(sumdb.join("lookup/example.test")).unwrap();
    std::fs::write(
        sumdb.join("lookup/example.test/alpha@v1.0.0"),
        "7\nexample.test/alpha v1.0.0 h1:x=\n",
    )
    .unwrap();
    let pki = TestPki::new("Test Public Root CA");
    std::fs::write(dir.path().join("public-root.pem"), &pki.ca_pem).unwrap();
    let mirror = start_module_origin(&pki, &["mirror.test"], &root, behavior).await;
    let config = format!(
        "[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca.key\"\nintercept = [\"proxy.golang.org\", \"sum.golang.org\", \"mirror.test\"]\npublic_roots = \"public-root.pem\"\n[hosts]\n\"mirror.test\" = \"{}\"\n{rules}",
        mirror.addr
    );
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, &config).unwrap();
    let init = modgate(&["ca", "init", "--config", "modgate.toml"], dir.path());
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let config = modgate::config::Config::parse(&config, path.to_str().unwrap()).unwrap();
    let proxy = start_proxy_with(config).await;
    Setup { dir, mirror, proxy }
}

const MIRROR_ALL: &str = "[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n";

/// GET `path` on the module endpoint: the status and the body.
pub(crate) async fn endpoint_get(proxy: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut conn = ProxyConn::open(proxy).await;
    let resp = conn
        .send(Request::get(path).header("host", "modgate").body(full("")).unwrap())
        .await;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GET `path` on `host` inside an intercepted tunnel, trusting modgate's CA.
async fn intercepted_get(setup: &Setup, host: &str, path: &str) -> (u16, String) {
    let ca = std::fs::read(setup.dir.path().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    install_crypto();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let (stream, head) = connect_via(setup.proxy.addr, &format!("{host}:443")).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let tls = tls_connect(stream, config, host).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::get(path).header("host", host).body(full("")).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

use rustls::pki_types::pem::PemObject;

/// The configured checksum database is fetched from `sumdb.url` (here a
/// proxied copy on the mirror), from the endpoint and from an intercepted
/// sum.golang.org alike; `supported` is answered by modgate itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sumdb_requests_go_to_sumdb_url_from_the_endpoint_and_from_sum_golang_org() {
    let rules = format!("[sumdb]\nurl = \"https://mirror.test/sumdb/sum.golang.org\"\n{MIRROR_ALL}");
    let s = setup(Behavior::Serve, &rules).await;
    assert_eq!(
        endpoint_get(s.proxy.addr, "/sumdb/sum.golang.org/supported").await.0,
        200
    );
    let (status, body) = endpoint_get(s.proxy.addr, "/sumdb/sum.golang.org/latest").await;
    assert_eq!((status, body.as_str()), (200, "go.sum database tree\n42\n"));
    // Inside an intercepted sum.golang.org the same database answers at /latest.
    let (status, body) = intercepted_get(&s, "sum.golang.org", "/latest").await;
    assert_eq!((status, body.as_str()), (200, "go.sum database tree\n42\n"));
    let (status, body) = intercepted_get(&s, "sum.golang.org", "/lookup/example.test/alpha@v1.0.0").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("example.test/alpha v1.0.0"));
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_over_500_mib_is_refused_not_streamed() {
    let s = setup(Behavior::HugeZips, MIRROR_ALL).await;
    let (status, body) = endpoint_get(s.proxy.addr, "/example.test/alpha/@v/v1.0.0.zip").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body,
        "modgate: upstream https://mirror.test failed: the zip of example.test/alpha is larger than go's limit of 500 MiB\n"
    );
    // Other files of the same module are fine.
    assert_eq!(
        endpoint_get(s.proxy.addr, "/example.test/alpha/@v/v1.0.0.mod").await.0,
        200
    );
    s.proxy.stop().await;
}

/// A zip sent without a length is cut where it passes go's 500 MiB limit:
/// the client never gets more, and the body fails instead of ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_zip_is_cut_mid_stream_at_500_mib() {
    let s = setup(Behavior::EndlessZips, MIRROR_ALL).await;
    let mut conn = ProxyConn::open(s.proxy.addr).await;
    let resp = conn
        .send(
            Request::get("/example.test/alpha/@v/v1.0.0.zip")
                .header("host", "modgate")
                .body(full(""))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200, "the zip starts as any other");
    assert!(resp.headers().get("content-length").is_none());
    let mut body = resp.into_body();
    let mut got = 0u64;
    let ended = loop {
        match tokio::time::timeout(STEP, body.frame())
            .await
            .expect("streamed in time")
        {
            Some(Ok(frame)) => {
                got += frame.data_ref().map_or(0, |d| d.len() as u64);
                assert!(got <= 500 * 1024 * 1024, "streamed past the limit: {got} bytes");
            }
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    assert!(ended.is_err(), "the body fails, it does not end cleanly");
    assert!(got >= 400 * 1024 * 1024, "cut near the limit, not early: {got} bytes");
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_module_paths_get_a_400_naming_the_problem() {
    let s = setup(Behavior::Serve, MIRROR_ALL).await;
    for (path, message) in [
        ("/github.com/Azure/x/@v/list", "upper"),
        ("/github.com/!1zure/x/@v/list", "!"),
        ("/nodot/@v/list", "dot"),
        ("/example.test/a/../b/@v/list", ".."),
        ("/example.test/a/@v/v1.0.0.exe", "v1.0.0.exe"),
        ("/example.test/a%zz/@v/list", "percent"),
        ("/sumdb/sum.golang.org/tile/8/0/../x", "tile"),
    ] {
        let (status, body) = endpoint_get(s.proxy.addr, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.starts_with("modgate: bad request: "), "{path}: {body}");
        assert!(
            body.to_lowercase().contains(message),
            "{path}: expected {message:?} in {body}"
        );
        assert_eq!(body.lines().count(), 1);
    }
    // Inside an intercepted tunnel too.
    let (status, body) = intercepted_get(&s, "proxy.golang.org", "/github.com/Azure/x/@v/list").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        s.mirror.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing bad reached the mirror"
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_stops_the_list_and_non_module_paths_are_not_mirrored() {
    let s = setup(
        Behavior::Serve,
        "[[rule]]\nname = \"frozen\"\nmodules = [\"example.test/*\"]\naction = \"mirror\"\nmirrors = \"off\"\n\n[[rule]]\nname = \"all\"\nhosts = [\"proxy.golang.org\"]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n",
    )
    .await;
    let (status, body) = intercepted_get(&s, "proxy.golang.org", "/example.test/alpha/@v/list").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.starts_with("modgate: blocked by rule 'frozen': module downloads are off for example.test/alpha"),
        "{body}"
    );
    let (status, body) = intercepted_get(&s, "proxy.golang.org", "/").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not a module request"), "{body}");
    s.proxy.stop().await;
}

#[tokio::test]
async fn ca_init_refuses_what_it_should_and_serve_checks_the_constraints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The embedded default intercepts nothing: there is nothing to constrain to.
    let out = modgate(&["ca", "init"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls.intercept is empty"),
        "{out:?}"
    );

    std::fs::write(
        d.join("a.toml"),
        "[tls]\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let out = modgate(&["ca", "init", "--config", "a.toml", "--dir", "keys"], d);
    assert!(out.status.success(), "{out:?}");
    // The next step reads the same CA: it carries the same options.
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("next: modgate ca bundle --config a.toml --dir keys > modgate-bundle.pem"),
        "{out:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("keys/modgate-ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = modgate(&["ca", "init", "--config", "a.toml", "--dir", "keys"], d);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists; use --force"));
    assert!(
        modgate(&["ca", "init", "--config", "a.toml", "--dir", "keys", "--force"], d)
            .status
            .success()
    );

    let bundle = modgate(&["ca", "bundle", "--config", "a.toml", "--dir", "keys"], d);
    assert!(bundle.status.success());
    let ca = std::fs::read_to_string(d.join("keys/modgate-ca.pem")).unwrap();
    let printed = String::from_utf8_lossy(&bundle.stdout);
    assert!(
        printed.trim_end().ends_with(ca.trim_end()),
        "the bundle ends with the modgate CA"
    );
    assert!(
        printed.matches("BEGIN CERTIFICATE").count() > 1,
        "and carries the system roots"
    );

    // A leaf is not a CA: a bundle with it would make no client trust
    // modgate's leaves.
    let pki = TestPki::new("Some Root");
    let (leaf, _) = pki.leaf(&["not-a-ca.test"]);
    std::fs::create_dir_all(d.join("leaf")).unwrap();
    std::fs::write(d.join("leaf/modgate-ca.pem"), modgate::tls::pem::to_pem(&leaf[0])).unwrap();
    let refused = modgate(&["ca", "bundle", "--config", "a.toml", "--dir", "leaf"], d);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a CA certificate"),
        "{refused:?}"
    );

    // A CA made for proxy.golang.org does not cover goproxy.cn: serve refuses.
    std::fs::write(
        d.join("b.toml"),
        "[tls]\nca_cert = \"keys/modgate-ca.pem\"\nca_key = \"keys/modgate-ca.key\"\nintercept = [\"proxy.golang.org\", \"goproxy.cn\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let out = modgate(&["serve", "--config", "b.toml", "--listen", "127.0.0.1:0"], d);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not valid for 'goproxy.cn'")
            && stderr.contains(&format!(
                "ca init --config {} --force",
                d.canonicalize().unwrap().join("b.toml").display()
            )),
        "{stderr}"
    );
    // And with no CA at all, serve says how to make one.
    std::fs::write(
        d.join("c.toml"),
        "[tls]\nca_cert = \"none.pem\"\nintercept = [\"proxy.golang.org\"]\n[[rule]]\naction = \"direct\"\n",
    )
    .unwrap();
    let out = modgate(&["serve", "--config", "c.toml", "--listen", "127.0.0.1:0"], d);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "run `modgate ca init --config {}`",
            d.canonicalize().unwrap().join("c.toml").display()
        )),
        "{out:?}"
    );
}

/// Python 3.13 turns on OpenSSL's strict X.509 checks by default; modgate's
/// CA and leaves must pass them (Go's verifier is covered by go_e2e).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_pass_python_strict_x509_verification() {
    let s = setup(Behavior::Serve, MIRROR_ALL).await;
    let script = r#"
import socket, ssl, sys
proxy_port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
s = socket.create_connection(("127.0.0.1", proxy_port))
s.sendall(b"CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n\r\n")
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
assert b" 200 " in head, head
t = ctx.wrap_socket(s, server_hostname="proxy.golang.org")
t.sendall(b"GET /example.test/alpha/@v/list HTTP/1.1\r\nHost: proxy.golang.org\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = t.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().split("\r\n")[0])
print(data.decode().split("\r\n\r\n", 1)[1].strip())
"#;
    let ca = s.dir.path().join("ca.pem");
    let port = s.proxy.addr.port().to_string();
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &port, ca.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "HTTP/1.1 200 OK\nv1.0.0\n");
    s.proxy.stop().await;
}

/// An answer from `direct` (the original host of an intercepted tunnel)
/// that fails its check names that host, as a mirror's names the mirror:
/// never "upstream direct".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_answer_from_the_original_host_names_the_host() {
    let rules = "[[rule]]\nname = \"origin\"\nhosts = [\"mirror.test\"]\naction = \"mirror\"\nmirrors = \"direct\"\n";
    let setup = setup(Behavior::Serve, rules).await;
    let info = setup.dir.path().join("fixture/example.test/alpha/@v/v1.0.0.info");
    std::fs::write(&info, "<html>not JSON</html>").unwrap();
    let (status, body) = intercepted_get(&setup, "mirror.test", "/example.test/alpha/@v/v1.0.0.info").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with("modgate: upstream https://mirror.test sent a bad answer: .info of example.test/alpha@v1.0.0"),
        "{body}"
    );
}

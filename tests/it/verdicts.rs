//! Verdicts on upstream chains: public, intercepted (warn/allow/block) and
//! untrusted, the product named from the chain, and the evidence kept.

use http::Request;
use http_body_util::BodyExt;

use crate::gotool::*;
use crate::support::*;

/// The PKIs of the tests: a stand-in public root, interceptor roots named
/// after real products, and an admin-generated root.
struct Pkis {
    public: TestPki,
    zscaler_root: TestPki,
    zscaler: TestPki,
    netskope: TestPki,
    fortigate: TestPki,
    corp: TestPki,
}

fn pkis() -> Pkis {
    let zscaler_root = TestPki::named("Zscaler Root CA", Some("Zscaler Inc."));
    let zscaler = zscaler_root.intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    Pkis {
        public: TestPki::new("Test Public Root CA"),
        zscaler_root,
        zscaler,
        netskope: TestPki::named("ca.acme.goskope.com", Some("Netskope Inc.")),
        fortigate: TestPki::named("FortiGate CA", Some("Fortinet")),
        corp: TestPki::named("Example Corp Root CA", Some("Example Corp")),
    }
}

struct Env {
    dir: tempfile::TempDir,
    proxy: Proxy,
    _mirror: ModuleOrigin,
}

/// A proxy whose module endpoint mirrors from `https://mirror.test`, served
/// with a leaf from `signer`; `extra_roots` lists the roots trusted locally.
async fn env(p: &Pkis, signer: &TestPki, extra_roots: &[&TestPki], on_interception: &str) -> Env {
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
    std::fs::write(dir.path().join("public.pem"), &p.public.ca_pem).unwrap();
    let mut extra = Vec::new();
    for (i, r) in extra_roots.iter().enumerate() {
        let name = format!("extra-{i}.pem");
        std::fs::write(dir.path().join(&name), &r.ca_pem).unwrap();
        extra.push(format!("\"{name}\""));
    }
    let mirror = start_module_origin(signer, &["mirror.test"], &root, Behavior::Serve).await;
    let text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nextra_roots = [{}]\non_interception = \"{on_interception}\"\nintercepted_dir = \"seen\"\n[hosts]\n\"mirror.test\" = \"{}\"\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n",
        extra.join(", "),
        mirror.addr
    );
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, &text).unwrap();
    let config = modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap();
    let proxy = start_proxy_with(config).await;
    Env {
        dir,
        proxy,
        _mirror: mirror,
    }
}

async fn get(env: &Env, path: &str) -> (u16, String) {
    let mut conn = ProxyConn::open(env.proxy.addr).await;
    let resp = conn
        .send(Request::get(path).header("host", "modgate").body(full("")).unwrap())
        .await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn saved_pems(env: &Env) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(env.dir.path().join("seen")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|n| n.ends_with(".pem"))
        .collect()
}

fn index(env: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.dir.path().join("seen/index.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const LIST: &str = "/example.test/alpha/@v/list";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_chain_leaves_no_evidence() {
    let p = pkis();
    let env = env(&p, &p.public, &[], "warn").await;
    assert_eq!(get(&env, LIST).await, (200, "v1.0.0\n".into()));
    assert!(saved_pems(&env).is_empty());
    assert!(index(&env).is_empty());
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_chain_with_warn_works_and_is_saved_once() {
    let p = pkis();
    let env = env(&p, &p.zscaler, &[&p.zscaler_root], "warn").await;
    for _ in 0..3 {
        assert_eq!(get(&env, LIST).await, (200, "v1.0.0\n".into()));
    }
    let saved = saved_pems(&env);
    assert_eq!(saved.len(), 1, "one file per interceptor: {saved:?}");
    let pem = std::fs::read_to_string(&saved[0]).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf and intermediate");
    let index = index(&env);
    assert_eq!(index.len(), 1);
    let record = &index[0];
    assert_eq!(record["vendor"], "Zscaler");
    assert_eq!(record["verdict"], "intercepted");
    assert_eq!(record["issuer"], "Zscaler Intermediate Root CA (zscaler.net)");
    assert_eq!(record["hosts"], serde_json::json!(["mirror.test"]));
    assert!(record["count"].as_u64().unwrap() >= 1);
    assert!(saved[0].ends_with(&format!("{}.pem", record["spki"].as_str().unwrap())));
    for field in ["first_seen", "last_seen"] {
        assert!(record[field].as_str().unwrap().ends_with('Z'), "{record}");
    }
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_chain_with_block_is_refused_with_the_message() {
    let p = pkis();
    let env = env(&p, &p.netskope, &[&p.netskope], "block").await;
    let (status, body) = get(&env, LIST).await;
    assert_eq!(status, 403, "{body}");
    let saved = saved_pems(&env);
    assert_eq!(saved.len(), 1);
    assert_eq!(
        body,
        format!(
            "modgate: upstream https://mirror.test presented a chain issued by 'ca.acme.goskope.com' (Netskope): the connection is intercepted and tls.on_interception = \"block\" (saved in {})\n",
            saved[0]
        )
    );
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_chain_fails_and_names_the_vendor() {
    let p = pkis();
    let env = env(&p, &p.fortigate, &[], "allow").await;
    let (status, body) = get(&env, LIST).await;
    assert_eq!(status, 502, "{body}");
    let saved = saved_pems(&env);
    assert_eq!(saved.len(), 1);
    assert_eq!(
        body,
        format!(
            "modgate: upstream https://mirror.test presented a chain issued by 'FortiGate CA' (Fortinet), which is not trusted; add its root to tls.extra_roots (saved in {})\n",
            saved[0]
        )
    );
    assert_eq!(index(&env)[0]["verdict"], "untrusted");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_generated_root_is_reported_as_unknown() {
    let p = pkis();
    let env = env(&p, &p.corp, &[&p.corp], "warn").await;
    assert_eq!(get(&env, LIST).await.0, 200);
    let index = index(&env);
    assert_eq!(index[0]["vendor"], "unknown");
    assert_eq!(index[0]["issuer"], "Example Corp Root CA");
    env.proxy.stop().await;
}

/// An issuer string alone is no verdict: a public chain whose issuer is
/// named like an interceptor is still public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_chain_named_like_an_interceptor_is_still_public() {
    let p = pkis();
    let env = env(&p, &p.zscaler, &[], "block").await;
    // Make the Zscaler root the *public* root for this proxy.
    std::fs::write(env.dir.path().join("public.pem"), &p.zscaler_root.ca_pem).unwrap();
    let text = std::fs::read_to_string(env.dir.path().join("modgate.toml")).unwrap();
    let config = modgate::config::Config::parse(&text, env.dir.path().join("modgate.toml").to_str().unwrap()).unwrap();
    let proxy = start_proxy_with(config).await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    let resp = conn
        .send(Request::get(LIST).header("host", "modgate").body(full("")).unwrap())
        .await;
    assert_eq!(resp.status(), 200, "block does not apply to a public chain");
    assert!(saved_pems(&env).is_empty());
    proxy.stop().await;
    env.proxy.stop().await;
}

/// A relayed (not intercepted) tunnel to a TLS origin presenting `signer`'s
/// chain, with `probe` set; returns the proxy's evidence directory.
async fn probe_tunnel(
    signer: &TestPki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    probe: &str,
) -> (tempfile::TempDir, String) {
    let p_public = TestPki::new("Test Public Root CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public.pem"), &p_public.ca_pem).unwrap();
    let (origin, _task) = start_tls_origin_with(signer, &["git.test"], "hello through the tunnel", versions).await;
    let text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nprobe = \"{probe}\"\nintercepted_dir = \"seen\"\n[hosts]\n\"git.test\" = \"{origin}\"\n[[rule]]\naction = \"direct\"\n"
    );
    let path = dir.path().join("modgate.toml");
    let config = modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap();
    let proxy = start_proxy_with(config).await;
    let (stream, head) = connect_via(proxy.addr, "git.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The client trusts the interceptor itself (as a machine behind it does).
    let tls = tls_connect(stream, signer.client_config(), "git.test").await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(Request::get("/").header("host", "git.test").body(full("")).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello through the tunnel", "the relayed bytes are untouched");
    drop(sender);
    // Evidence is written off the tunnel's path; give it a moment.
    let index = dir.path().join("seen/index.jsonl");
    for _ in 0..50 {
        if index.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    proxy.stop().await;
    let text = std::fs::read_to_string(&index).unwrap_or_default();
    (dir, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_detection_reads_a_tls12_tunnel() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.zscaler, &[&rustls::version::TLS12], "passive").await;
    assert!(
        index.contains("\"vendor\":\"Zscaler\"") && index.contains("\"hosts\":[\"git.test\"]"),
        "{index}"
    );
    assert!(index.contains("\"verdict\":\"untrusted\""), "{index}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_detection_cannot_see_tls13_but_an_active_probe_does() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.fortigate, &[&rustls::version::TLS13], "passive").await;
    assert!(index.is_empty(), "TLS 1.3 certificates are encrypted: {index}");
    let (_dir, index) = probe_tunnel(&p.fortigate, &[&rustls::version::TLS13], "active").await;
    assert!(
        index.contains("\"vendor\":\"Fortinet\"") && index.contains("\"hosts\":[\"git.test\"]"),
        "{index}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_off_look_at_nothing() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.zscaler, &[&rustls::version::TLS12], "off").await;
    assert!(index.is_empty(), "{index}");
}

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
    _marker: ModuleOrigin,
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
    // A second mirror whose chain no root trusts: a request to it always
    // leaves evidence, the positive signal before asserting there is none.
    let marker = start_module_origin(&TestPki::new("Marker Root"), &["marker.test"], &root, Behavior::Serve).await;
    let text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nextra_roots = [{}]\non_interception = \"{on_interception}\"\nintercepted_dir = \"seen\"\n[hosts]\n\"mirror.test\" = \"{}\"\n\"marker.test\" = \"{}\"\n[[rule]]\nname = \"marker\"\nmodules = [\"marker.test/*\"]\naction = \"mirror\"\nmirrors = \"https://marker.test\"\n[[rule]]\nname = \"all\"\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n",
        extra.join(", "),
        mirror.addr,
        marker.addr
    );
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, &text).unwrap();
    let config = modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap();
    let proxy = start_proxy_with(config).await;
    Env {
        dir,
        proxy,
        _mirror: mirror,
        _marker: marker,
    }
}

async fn get(env: &Env, path: &str) -> (u16, String) {
    get_at(env.proxy.addr, path).await
}

/// A request to the proxy's module endpoint.
async fn get_at(proxy: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut conn = ProxyConn::open(proxy).await;
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
    index_in(&env.dir.path().join("seen"))
}

fn index_in(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("index.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether the index has a record naming `host`.
fn indexed(dir: &std::path::Path, host: &str) -> bool {
    index_in(dir).iter().any(|r| {
        r["hosts"]
            .as_array()
            .is_some_and(|hosts| hosts.iter().any(|h| h == host))
    })
}

/// Waits until the index names `host`.
async fn wait_indexed(dir: &std::path::Path, host: &str) {
    eventually(&format!("an index record for {host}"), || indexed(dir, host)).await;
}

/// A request whose upstream chain is untrusted, then waits for its
/// evidence: after this, evidence from any earlier request would be there.
async fn mark(env: &Env) {
    let (status, body) = get(env, "/marker.test/m/@v/list").await;
    assert_eq!(status, 502, "{body}");
    wait_indexed(&env.dir.path().join("seen"), "marker.test").await;
}

/// The index without the marker's record.
fn index_unmarked(env: &Env) -> Vec<serde_json::Value> {
    index(env)
        .into_iter()
        .filter(|r| r["hosts"] != serde_json::json!(["marker.test"]))
        .collect()
}

/// Saved PEM files other than the marker's.
fn saved_unmarked(env: &Env) -> Vec<String> {
    let marker: Vec<String> = index(env)
        .iter()
        .filter(|r| r["hosts"] == serde_json::json!(["marker.test"]))
        .filter_map(|r| r["spki"].as_str().map(str::to_owned))
        .collect();
    saved_pems(env)
        .into_iter()
        .filter(|p| !marker.iter().any(|m| p.contains(m.as_str())))
        .collect()
}

const LIST: &str = "/example.test/alpha/@v/list";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_chain_leaves_no_evidence() {
    let p = pkis();
    let env = env(&p, &p.public, &[], "warn").await;
    assert_eq!(get(&env, LIST).await, (200, "v1.0.0\n".into()));
    mark(&env).await;
    assert!(saved_unmarked(&env).is_empty(), "{:?}", saved_pems(&env));
    assert!(index_unmarked(&env).is_empty(), "{:?}", index(&env));
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_chain_with_warn_works_and_is_saved_once() {
    let p = pkis();
    let env = env(&p, &p.zscaler, &[&p.zscaler_root], "warn").await;
    for _ in 0..3 {
        assert_eq!(get(&env, LIST).await, (200, "v1.0.0\n".into()));
    }
    mark(&env).await;
    let saved = saved_unmarked(&env);
    assert_eq!(saved.len(), 1, "one file per interceptor: {saved:?}");
    let pem = std::fs::read_to_string(&saved[0]).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf and intermediate");
    let index = index_unmarked(&env);
    assert_eq!(index.len(), 1);
    let record = &index[0];
    assert_eq!(record["vendor"], "Zscaler");
    assert_eq!(record["verdict"], "intercepted");
    assert_eq!(record["issuer"], "Zscaler Intermediate Root CA (zscaler.net)");
    assert_eq!(record["hosts"], serde_json::json!(["mirror.test"]));
    assert_eq!(
        record["count"], 1,
        "one verdict per chain, address and name: the later requests reuse it"
    );
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
    mark(&env).await;
    let saved = saved_unmarked(&env);
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

/// A chain ending at a root in `tls.extra_roots` that expired is refused
/// as expired, as go refuses it, although webpki ignores a trust anchor's
/// own dates: the line names the root and its date, and suggests no root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_ending_at_an_expired_extra_root_is_refused_as_expired() {
    let p = pkis();
    let now = time::OffsetDateTime::now_utc();
    let expired = TestPki::named_with("Zscaler Root CA", Some("Zscaler Inc."), |params| {
        params.not_before = now - time::Duration::days(400);
        params.not_after = now - time::Duration::days(30);
    });
    let env = env(&p, &expired, &[&expired], "warn").await;
    let (status, body) = get(&env, LIST).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with(
            "modgate: upstream https://mirror.test presented a chain issued by 'Zscaler Root CA' (Zscaler) that ends at the trusted root 'CN=Zscaler Root CA, O=Zscaler Inc.' ("
        ) && body.contains("extra-0.pem) expired on "),
        "{body}"
    );
    assert!(body.contains("check this machine's clock"), "{body}");
    assert!(!body.contains("add its root to tls.extra_roots"), "{body}");
    mark(&env).await;
    let index = index_unmarked(&env);
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(index[0]["verdict"], "untrusted");
    env.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_chain_fails_and_names_the_vendor() {
    let p = pkis();
    let env = env(&p, &p.fortigate, &[], "allow").await;
    let (status, body) = get(&env, LIST).await;
    assert_eq!(status, 502, "{body}");
    mark(&env).await;
    let saved = saved_unmarked(&env);
    assert_eq!(saved.len(), 1);
    // The server sent the leaf alone: there is no root here to trust.
    assert_eq!(
        body,
        format!(
            "modgate: upstream https://mirror.test presented a chain issued by 'FortiGate CA' (Fortinet), which is not trusted and holds no root certificate (saved in {}); get the root CA from the interceptor's admin and add it to tls.extra_roots\n",
            saved[0]
        )
    );
    let index = index_unmarked(&env);
    assert_eq!(index.len(), 1);
    assert_eq!(index[0]["verdict"], "untrusted");
    assert_eq!(index[0]["vendor"], "Fortinet");
    env.proxy.stop().await;
}

/// Issue 9 item 1: the printed fix trusts the chain's self-signed root and
/// nothing else, saved alone beside the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_the_fix_points_at_the_self_signed_root_alone() {
    let p = pkis();
    let mut zscaler = p
        .zscaler_root
        .intermediate("Zscaler Intermediate Root CA (zscaler.net)", Some("Zscaler Inc."));
    zscaler.send_also(p.zscaler_root.ca_der.clone());
    let env = env(&p, &zscaler, &[], "warn").await;
    let (status, body) = get(&env, LIST).await;
    assert_eq!(status, 502, "{body}");
    let seen = env.dir.path().join("seen");
    let spki = spki_sha256(&p.zscaler_root.ca_der);
    let root_file = seen.join(format!("{spki}.root.pem"));
    assert_eq!(
        body,
        format!(
            "modgate: upstream https://mirror.test presented a chain issued by 'Zscaler Intermediate Root CA (zscaler.net)' (Zscaler), which is not trusted; add its root to tls.extra_roots (saved in {})\n",
            root_file.display()
        )
    );
    wait_indexed(&seen, "mirror.test").await;
    assert_eq!(
        pem_file_certs(&root_file),
        std::slice::from_ref(&p.zscaler_root.ca_der),
        "the root and nothing else"
    );
    let chain = pem_file_certs(&seen.join(format!("{spki}.pem")));
    assert_eq!(chain.len(), 3, "leaf, intermediate and root");
    assert_eq!(chain[1], zscaler.ca_der);
    assert_eq!(chain[2], p.zscaler_root.ca_der);
    env.proxy.stop().await;
}

/// Issue 9 item 1: a self-signed leaf whose CN smuggles a PEM block, sent
/// with a genuine corporate root it does not chain to, through a relayed
/// TLS 1.2 tunnel (whose chain modgate reads without a handshake of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_a_chain_that_does_not_link_cannot_poison_the_evidence() {
    let public = TestPki::new("Test Public Root CA");
    let corp = TestPki::named("Example Corp Root CA", Some("Example Corp"));
    let hidden = TestPki::new("Attacker Hidden Root");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["git.test".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("git.test\n{}", hidden.ca_pem));
    let leaf = params.self_signed(&key).unwrap().der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let (origin, _task) = start_tls_server(
        vec![leaf.clone(), corp.ca_der.clone()],
        key,
        "hi",
        &[&rustls::version::TLS12],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public.pem"), &public.ca_pem).unwrap();
    std::fs::write(dir.path().join("corp.pem"), &corp.ca_pem).unwrap();
    let text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nextra_roots = [\"corp.pem\"]\nprobe = \"passive\"\nintercepted_dir = \"seen\"\n[hosts]\n\"git.test\" = \"{origin}\"\n[[rule]]\naction = \"direct\"\n"
    );
    let path = dir.path().join("modgate.toml");
    let proxy = start_proxy_with(modgate::config::Config::parse(&text, path.to_str().unwrap()).unwrap()).await;
    let direct = tokio::net::TcpStream::connect(origin).await.unwrap();
    let presented = modgate::tls::probe::handshake(direct, "git.test").await.unwrap();
    assert_eq!(
        presented.len(),
        2,
        "the origin presents the leaf and the corporate root"
    );
    let (stream, head) = connect_via(proxy.addr, "git.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The chain is untrusted: modgate closes the tunnel once it has read it,
    // perhaps before this handshake ends.
    let _ = modgate::tls::probe::handshake(stream, "git.test").await;
    let seen = dir.path().join("seen");
    wait_indexed(&seen, "git.test").await;
    let index = index_in(&seen);
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(
        index[0]["spki"],
        spki_sha256(&leaf),
        "named after what actually links: the leaf"
    );
    assert_eq!(index[0]["verdict"], "untrusted");
    let mut files: Vec<String> = std::fs::read_dir(&seen)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [format!("{}.pem", spki_sha256(&leaf))],
        "no file takes the corporate root's name"
    );
    let saved = seen.join(&files[0]);
    assert_eq!(
        pem_file_certs(&saved),
        [leaf],
        "only the certificate that links, nothing smuggled"
    );
    let text = std::fs::read_to_string(&saved).unwrap();
    assert_eq!(text.matches("-----BEGIN").count(), 1, "{text}");
    let mut in_block = false;
    for line in text.lines() {
        match line {
            "-----BEGIN CERTIFICATE-----" => in_block = true,
            "-----END CERTIFICATE-----" => in_block = false,
            _ if in_block => {}
            _ => assert!(
                line.starts_with("# "),
                "a line outside a block that is no comment: {line:?}"
            ),
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_generated_root_is_reported_as_unknown() {
    let p = pkis();
    let env = env(&p, &p.corp, &[&p.corp], "warn").await;
    assert_eq!(get(&env, LIST).await.0, 200);
    mark(&env).await;
    let index = index_unmarked(&env);
    assert_eq!(index.len(), 1);
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
    drop(conn);
    // The marker, through this proxy: its evidence is the positive signal.
    let (status, body) = get_at(proxy.addr, "/marker.test/m/@v/list").await;
    assert_eq!(status, 502, "{body}");
    wait_indexed(&env.dir.path().join("seen"), "marker.test").await;
    assert!(saved_unmarked(&env).is_empty(), "{:?}", saved_pems(&env));
    assert!(index_unmarked(&env).is_empty(), "{:?}", index(&env));
    proxy.stop().await;
    env.proxy.stop().await;
}

/// A relayed (not intercepted) tunnel to a TLS origin presenting `signer`'s
/// chain, with `probe` set; with `expect`, waits for the tunnel's evidence.
/// `trusted` is in `extra_roots`, as a machine behind an interceptor has
/// it: the chain is intercepted, not untrusted, so the tunnel stays open
/// (an untrusted one is closed: tunnel_policy.rs).
/// Then a module request whose upstream chain is
/// untrusted, waited for in the index: evidence from the tunnel, if there
/// is any, is written by then. Returns the proxy's evidence directory and
/// the index without that marker's record.
async fn probe_tunnel(
    signer: &TestPki,
    trusted: &TestPki,
    versions: &[&'static rustls::SupportedProtocolVersion],
    probe: &str,
    expect: bool,
) -> (tempfile::TempDir, String) {
    let p_public = TestPki::new("Test Public Root CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public.pem"), &p_public.ca_pem).unwrap();
    std::fs::write(dir.path().join("corp.pem"), &trusted.ca_pem).unwrap();
    let (origin, _task) = start_tls_origin_with(signer, &["git.test"], "hello through the tunnel", versions).await;
    let empty = tempfile::tempdir().unwrap();
    let marker = start_module_origin(
        &TestPki::new("Marker Root"),
        &["marker.test"],
        empty.path(),
        Behavior::Serve,
    )
    .await;
    let text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nextra_roots = [\"corp.pem\"]\nprobe = \"{probe}\"\nintercepted_dir = \"seen\"\n[hosts]\n\"git.test\" = \"{origin}\"\n\"marker.test\" = \"{}\"\n[[rule]]\nname = \"marker\"\nmodules = [\"marker.test/*\"]\naction = \"mirror\"\nmirrors = \"https://marker.test\"\n[[rule]]\naction = \"direct\"\n",
        marker.addr
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
    let seen = dir.path().join("seen");
    if expect {
        // Evidence is written off the tunnel's path: wait for it.
        wait_indexed(&seen, "git.test").await;
    }
    let (status, body) = get_at(proxy.addr, "/marker.test/m/@v/list").await;
    assert_eq!(status, 502, "{body}");
    wait_indexed(&seen, "marker.test").await;
    proxy.stop().await;
    let text: String = std::fs::read_to_string(seen.join("index.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"hosts\":[\"marker.test\"]"))
        .map(|l| format!("{l}\n"))
        .collect();
    (dir, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_detection_reads_a_tls12_tunnel() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.zscaler, &p.zscaler_root, &[&rustls::version::TLS12], "passive", true).await;
    assert_eq!(index.lines().count(), 1, "{index}");
    assert!(
        index.contains("\"vendor\":\"Zscaler\"") && index.contains("\"hosts\":[\"git.test\"]"),
        "{index}"
    );
    assert!(index.contains("\"verdict\":\"intercepted\""), "{index}");
    assert!(
        index.contains("\"count\":1,") || index.contains("\"count\":1}"),
        "{index}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_detection_cannot_see_tls13_but_an_active_probe_does() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.fortigate, &p.fortigate, &[&rustls::version::TLS13], "passive", false).await;
    assert!(index.is_empty(), "TLS 1.3 certificates are encrypted: {index}");
    let (_dir, index) = probe_tunnel(&p.fortigate, &p.fortigate, &[&rustls::version::TLS13], "active", true).await;
    assert_eq!(index.lines().count(), 1, "{index}");
    assert!(
        index.contains("\"vendor\":\"Fortinet\"") && index.contains("\"hosts\":[\"git.test\"]"),
        "{index}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_off_look_at_nothing() {
    let p = pkis();
    let (_dir, index) = probe_tunnel(&p.zscaler, &p.zscaler_root, &[&rustls::version::TLS12], "off", false).await;
    assert!(index.is_empty(), "{index}");
}

/// A `modgate serve --log-format json` process relaying tunnels (probe
/// active) with the test public root, and `hosts` as `[hosts]`.
async fn serve_tunnels(dir: &std::path::Path, public: &TestPki, hosts: &[(&str, std::net::SocketAddr)]) -> Served {
    serve_tunnels_with(dir, public, hosts, "", "json").await
}

/// Like `serve_tunnels`, with `tls_extra` lines in `[tls]` and the log in
/// `format`.
async fn serve_tunnels_with(
    dir: &std::path::Path,
    public: &TestPki,
    hosts: &[(&str, std::net::SocketAddr)],
    tls_extra: &str,
    format: &str,
) -> Served {
    std::fs::write(dir.join("public.pem"), &public.ca_pem).unwrap();
    let mut text = format!(
        "[tls]\npublic_roots = \"public.pem\"\nprobe = \"active\"\nintercepted_dir = \"seen\"\n{tls_extra}\n[hosts]\n"
    );
    for (host, addr) in hosts {
        text.push_str(&format!("\"{host}\" = \"{addr}\"\n"));
    }
    text.push_str("[[rule]]\naction = \"direct\"\n");
    std::fs::write(dir.join("c.toml"), text).unwrap();
    start_served(
        dir,
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", format],
    )
    .await
}

/// The next log line of `served` containing `needle`, and every line read
/// until then (that one included).
async fn read_until(served: &mut Served, needle: &str) -> (String, Vec<String>) {
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(STEP, served.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line with {needle:?} in time; read: {lines:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the log ended before {needle:?}; read: {lines:#?}"));
        lines.push(line.clone());
        if line.contains(needle) {
            return (line, lines);
        }
    }
}

/// CONNECT `target` through `proxy`, one TLS handshake with `sni` (any
/// chain accepted), then close. modgate closes a tunnel whose chain is
/// untrusted as soon as it has judged it, which may be mid-handshake, so
/// the handshake's outcome is not asserted: the tests read the verdict
/// from the log.
async fn tunnel_handshake(proxy: std::net::SocketAddr, target: &str, sni: &str) {
    let (stream, head) = connect_via(proxy, target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let _ = modgate::tls::probe::handshake(stream, sni).await;
}

/// Opens a tunnel and sends a ClientHello for `sni`, then leaves the
/// tunnel open: only modgate can close it.
async fn tunnel_hello(proxy: std::net::SocketAddr, target: &str, sni: &str, pki: &TestPki) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let (mut stream, head) = connect_via(proxy, target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    stream.write_all(&hello).await.unwrap();
    stream
}

/// Issue 9 item 4: a tunnel to attacker.test that sends SNI
/// proxy.golang.org is recorded against attacker.test, and does not label
/// later tunnels to the real proxy.golang.org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_a_borrowed_sni_labels_only_the_destination_it_was_sent_to() {
    let public = TestPki::new("Test Public Root CA");
    let p = pkis();
    let (chain, key) = public.leaf(&["proxy.golang.org"]);
    let (real, real_connections, _real) =
        start_counted_tls_server(chain, key, "real", &[&rustls::version::TLS13]).await;
    let (chain, key) = p.zscaler.leaf(&["proxy.golang.org"]);
    let (fake, _, _fake) = start_counted_tls_server(chain, key, "fake", &[&rustls::version::TLS13]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels(
        dir.path(),
        &public,
        &[("attacker.test", fake), ("proxy.golang.org", real)],
    )
    .await;
    let seen = dir.path().join("seen");

    tunnel_handshake(served.addr, "attacker.test:443", "proxy.golang.org").await;
    let access = served.next_access().await;
    assert_eq!(access["verdict"], "untrusted", "{access}");
    assert_eq!(access["vendor"], "Zscaler", "{access}");
    wait_indexed(&seen, "attacker.test (SNI proxy.golang.org)").await;
    assert!(!indexed(&seen, "proxy.golang.org"), "{:?}", index_in(&seen));

    tunnel_handshake(served.addr, "proxy.golang.org:443", "proxy.golang.org").await;
    let access = served.next_access().await;
    assert_eq!(
        access["verdict"], "public",
        "the real site is judged on its own: {access}"
    );
    assert_eq!(
        real_connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the client's handshake and modgate's own probe"
    );
    let index = index_in(&seen);
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(
        index[0]["hosts"],
        serde_json::json!(["attacker.test (SNI proxy.golang.org)"])
    );
}

/// Issue 9 item 4: new SNIs towards one address cannot make modgate probe
/// it without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_active_probes_of_one_address_are_bounded() {
    let public = TestPki::new("Test Public Root CA");
    let (chain, key) = public.leaf(&["git.test"]);
    let (origin, connections, _task) = start_counted_tls_server(chain, key, "hi", &[&rustls::version::TLS13]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels(dir.path(), &public, &[("git.test", origin)]).await;
    let tunnels = modgate::tls::probe::MAX_NAMES_PER_ADDRESS + 4;
    for i in 0..tunnels {
        tunnel_handshake(served.addr, "git.test:443", &format!("n{i}.test")).await;
        served.next_access().await;
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        tunnels + modgate::tls::probe::MAX_NAMES_PER_ADDRESS,
        "one probe per new name, up to the budget"
    );
}

/// `tls.probe_ttl`: a probe's result is reused for the same address and
/// name until the TTL ends, then the address is probed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_ttl_reuses_a_result_until_it_expires() {
    let public = TestPki::new("Test Public Root CA");
    let p = pkis();
    let (chain, key) = p.fortigate.leaf(&["git.test"]);
    let (origin, connections, _task) = start_counted_tls_server(chain, key, "hi", &[&rustls::version::TLS13]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels_with(
        dir.path(),
        &public,
        &[("git.test", origin)],
        "probe_ttl = \"2s\"",
        "json",
    )
    .await;
    let count = || connections.load(std::sync::atomic::Ordering::SeqCst);
    let mut tunnel = async || {
        tunnel_handshake(served.addr, "git.test:443", "git.test").await;
        let access = served.next_access().await;
        assert_eq!(access["verdict"], "untrusted", "{access}");
        assert_eq!(access["vendor"], "Fortinet", "{access}");
    };
    tunnel().await;
    assert_eq!(count(), 2, "the client's handshake and one probe");
    tunnel().await;
    assert_eq!(count(), 3, "within probe_ttl the result is reused: no probe");
    // Each of the three tunnels is a sighting, the one judged from the
    // reused result included.
    // The behaviour under test is time passing.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    tunnel().await;
    assert_eq!(count(), 5, "after probe_ttl the address is probed again");
    let seen = dir.path().join("seen");
    eventually("three sightings in the index", || {
        index_in(&seen).first().is_some_and(|r| r["count"] == 3)
    })
    .await;
    assert_eq!(index_in(&seen).len(), 1);
}

/// `count` is one per judged tunnel for relayed tunnels (docs/config.md),
/// including those judged from an active probe's reused result within
/// `tls.probe_ttl`: the index counts every tunnel, and `last_seen` moves
/// on, as the access events and the metric do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_judged_from_a_reused_probe_are_counted_in_the_index() {
    const TUNNELS: usize = 6;
    let public = TestPki::new("Test Public Root CA");
    let p = pkis();
    let (chain, key) = p.fortigate.leaf(&["git.test"]);
    let (origin, connections, _task) = start_counted_tls_server(chain, key, "hi", &[&rustls::version::TLS13]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels(dir.path(), &public, &[("git.test", origin)]).await;
    for _ in 0..TUNNELS {
        tunnel_handshake(served.addr, "git.test:443", "git.test").await;
        let access = served.next_access().await;
        assert_eq!(access["verdict"], "untrusted", "{access}");
        assert_eq!(access["vendor"], "Fortinet", "{access}");
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        TUNNELS + 1,
        "the clients' handshakes and one probe, whose result the later tunnels reuse"
    );
    let seen = dir.path().join("seen");
    eventually(&format!("{TUNNELS} sightings in the index"), || {
        index_in(&seen).first().is_some_and(|r| r["count"] == TUNNELS)
    })
    .await;
    let index = index_in(&seen);
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(index[0]["hosts"], serde_json::json!(["git.test"]));
    let at = |field: &str| {
        let text = index[0][field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(at("last_seen") > at("first_seen"), "{index:?}");
}

/// The `interception` event and the access event's `verdict` and
/// `vendor`, as `serve --log-format json` writes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interception_event_and_the_access_fields_name_the_interceptor() {
    let public = TestPki::new("Test Public Root CA");
    let p = pkis();
    let (chain, key) = p.zscaler.leaf(&["git.test"]);
    let (origin, _task) = start_tls_server(chain, key, "hi", &[&rustls::version::TLS12]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels_with(dir.path(), &public, &[("git.test", origin)], "", "json").await;
    // The client never gives up on the tunnel itself: the close is modgate's.
    let _tunnel = tunnel_hello(served.addr, "git.test:443", "git.test", &public).await;
    let (line, _) = read_until(&mut served, "\"message\":\"interception\"").await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let spki = spki_sha256(&p.zscaler.ca_der);
    assert_eq!(event["level"], "WARN", "{event}");
    assert_eq!(event["host"], "git.test", "{event}");
    assert_eq!(event["sni"], "-", "{event}");
    assert_eq!(event["addr"], origin.to_string(), "{event}");
    assert_eq!(event["verdict"], "untrusted", "{event}");
    assert_eq!(event["vendor"], "Zscaler", "{event}");
    assert_eq!(event["issuer"], "Zscaler Intermediate Root CA (zscaler.net)", "{event}");
    assert_eq!(event["spki"], spki, "{event}");
    let saved = event["saved"].as_str().unwrap();
    assert!(saved.ends_with(&format!("seen/{spki}.pem")), "{event}");
    assert_eq!(event["root"], "-", "the chain holds no root: {event}");
    assert_eq!(event["flags"], "", "{event}");
    let summary = event["chain"].as_str().unwrap();
    assert_eq!(summary.split(" ;; ").count(), 2, "{summary}");
    assert!(
        summary.contains(
            "subject=CN=Zscaler Intermediate Root CA (zscaler.net), O=Zscaler Inc. | issuer=CN=Zscaler Root CA, O=Zscaler Inc."
        ),
        "{summary}"
    );
    let access = served.next_access().await;
    assert_eq!(access["method"], "CONNECT", "{access}");
    assert_eq!(access["verdict"], "untrusted", "{access}");
    assert_eq!(access["vendor"], "Zscaler", "{access}");
    assert_eq!(access["status"], 200, "{access}");
    let error = access["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("closed: the upstream's chain is untrusted (Zscaler)"),
        "an untrusted tunnel is closed: {access}"
    );
}

/// Issue 9 item 2: a hostile issuer name reaches the text log escaped: it
/// can neither end the line (and forge another) nor drive the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue9_certificate_text_is_escaped_in_the_text_log() {
    let public = TestPki::new("Test Public Root CA");
    let evil = TestPki::named(
        "Evil CA\u{1b}[2J\r\nINFO modgate::access: forged\u{2028}\u{85}\u{9b}31m",
        None,
    );
    let (chain, key) = evil.leaf(&["git.test"]);
    let (origin, _task) = start_tls_server(chain, key, "hi", &[&rustls::version::TLS12]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_tunnels_with(dir.path(), &public, &[("git.test", origin)], "", "text").await;
    tunnel_handshake(served.addr, "git.test:443", "git.test").await;
    let (line, _) = read_until(&mut served, "modgate::interception").await;
    assert!(
        line.contains("issuer=Evil CA\\u{1b}[2J\\u{d}\\u{a}INFO modgate::access: forged\\u{2028}\\u{85}\\u{9b}31m"),
        "{line}"
    );
    let (_, lines) = read_until(&mut served, "modgate::access").await;
    for line in std::iter::once(&line).chain(&lines) {
        for raw in ['\u{1b}', '\r', '\u{2028}', '\u{85}', '\u{9b}'] {
            assert!(!line.contains(raw), "raw {raw:?} in {line:?}");
        }
        assert!(
            !line.starts_with("INFO modgate::access: forged"),
            "a forged line: {line:?}"
        );
    }
}

/// A TLS origin for `mirror.test` that closes every connection after one
/// response, so each request is a new upstream connection, and records
/// how each connection's handshake went.
async fn start_closing_origin(
    signer: &TestPki,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<rustls::HandshakeKind>>>,
    tokio::task::JoinHandle<()>,
) {
    use std::sync::{Arc, Mutex};
    install_crypto();
    let (chain, key) = signer.leaf(&["mirror.test"]);
    let config = rustls::ServerConfig::builder_with_protocol_versions(versions)
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let seen = kinds.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(stream).await else {
                continue;
            };
            seen.lock().unwrap().extend(tls.get_ref().1.handshake_kind());
            let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(full("v1.0.0\n")))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
            );
        }
    });
    (addr, kinds, task)
}

/// A new upstream connection resumes the TLS session of an earlier one to
/// the same host and address (rustls resumes only with the verifier that
/// verified the session, so modgate keeps one per host and address), over
/// TLS 1.2 and 1.3; and a request on a resumed session still reports the
/// verdict its chain got in the full handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_sessions_resume_and_keep_their_verdict() {
    let p = pkis();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (origin, kinds, _task) = start_closing_origin(&p.zscaler, &[version]).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("public.pem"), &p.public.ca_pem).unwrap();
        std::fs::write(dir.path().join("zscaler.pem"), &p.zscaler_root.ca_pem).unwrap();
        let text = format!(
            "[cache]\ndir = \"\"\n[tls]\npublic_roots = \"public.pem\"\nextra_roots = [\"zscaler.pem\"]\non_interception = \"warn\"\nintercepted_dir = \"seen\"\n[hosts]\n\"mirror.test\" = \"{origin}\"\n[[rule]]\naction = \"mirror\"\nmirrors = \"https://mirror.test\"\n"
        );
        std::fs::write(dir.path().join("c.toml"), text).unwrap();
        let mut served = start_served_json(dir.path(), "c.toml", &[]).await;
        for n in 0..3 {
            let (status, body) = get_at(served.addr, &format!("/example.test/m{n}/@v/list")).await;
            assert_eq!((status, body.as_str()), (200, "v1.0.0\n"), "{version:?}");
            let access = served.next_access().await;
            assert_eq!(access["verdict"], "intercepted", "{version:?} request {n}: {access}");
            assert_eq!(access["vendor"], "Zscaler", "{version:?} request {n}: {access}");
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(*kinds.lock().unwrap(), [Full, Resumed, Resumed], "{version:?}");
    }
}

/// A client that names no host and goes to an address checks the
/// certificate against that address itself: a public chain naming
/// something else is a server's default certificate, judged on trust
/// alone, not an interceptor (it used to be `untrusted`, flagged
/// `hostname_mismatch`, and the tunnel cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_chain_reached_by_address_without_a_name_is_public() {
    let dir = tempfile::tempdir().unwrap();
    let public = TestPki::new("Test Public Root CA");
    for versions in [&[&rustls::version::TLS12], &[&rustls::version::TLS13]] {
        let (origin, _task) = start_tls_origin_with(&public, &["git.test"], "hello", versions).await;
        let mut served = serve_tunnels(dir.path(), &public, &[]).await;
        tunnel_handshake(served.addr, &origin.to_string(), &origin.ip().to_string()).await;
        let access = served.next_access().await;
        assert_eq!(access["verdict"], "public", "{access}");
        assert!(!dir.path().join("seen/index.jsonl").exists(), "no evidence was saved");
    }
}

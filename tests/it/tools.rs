//! Real third-party software the network tests drive, installed by
//! `tests/tools/install` on first use (as `gotool` installs go): Squid as
//! an authenticating parent proxy and mitmproxy as a re-signing one. The
//! recipes and their traps are in `tests/tools/README.md`.
//!
//! A test that needs a tool and cannot install it fails; it never skips.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::support::STEP;

/// Installs the named components of `tests/tools/install`, or panics with
/// its message.
pub fn tools(components: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/install");
    let out = std::process::Command::new(&script)
        .args(components)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "cannot install {components:?} for this test:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A binary of the tools venv: mitmdump, python.
pub fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools-venv/bin")
        .join(name)
}

/// A port that was free a moment ago (Squid cannot report an ephemeral one).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `openssl passwd -6 PASSWORD`: a sha512-crypt htpasswd hash.
pub fn sha512_crypt(password: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["passwd", "-6", password])
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// ---------- Squid ----------

/// A Squid on 127.0.0.1 with Basic authentication (`basic_ncsa_auth`),
/// killed on drop.
pub struct Squid {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: std::process::Child,
    name: String,
}

impl Squid {
    /// Starts Squid accepting `users` (name, password), with `acl` lines
    /// placed before the rule that allows authenticated users (e.g.
    /// `acl denied dstdomain denied.test` and `http_access deny denied`).
    pub async fn start(users: &[(&str, &str)], acl: &str) -> Squid {
        tools(&["squid"]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let htpasswd: String = users
            .iter()
            .map(|(user, password)| format!("{user}:{}\n", sha512_crypt(password)))
            .collect();
        std::fs::write(d.join("htpasswd"), htpasswd).unwrap();
        let conf = format!(
            "http_port 127.0.0.1:{port}\n\
             visible_hostname modgate-test-squid\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             coredump_dir {d}\n\
             cache deny all\n\
             cache_mem 0 MB\n\
             shutdown_lifetime 0 seconds\n\
             pinger_enable off\n\
             auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/htpasswd\n\
             auth_param basic realm modgate-test\n\
             acl authed proxy_auth REQUIRED\n\
             {acl}\n\
             http_access allow authed\n\
             http_access deny all\n",
            d = d.display()
        );
        std::fs::write(d.join("squid.conf"), conf).unwrap();
        // Squid drops root for `proxy`, which must reach its files.
        let chown = std::process::Command::new("chown")
            .args(["-R", "proxy:proxy"])
            .arg(d)
            .status()
            .unwrap();
        assert!(chown.success(), "chown proxy {}", d.display());
        let name = format!("mgsq{port}");
        let child = std::process::Command::new("squid")
            .args(["-N", "-n", &name, "-f"])
            .arg(d.join("squid.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("squid starts");
        let mut squid = Squid {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child,
            name,
        };
        squid.wait_ready().await;
        squid
    }

    async fn wait_ready(&mut self) {
        let log = self.dir.path().join("cache.log");
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Accepting HTTP Socket connections") {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("squid exited ({status}) before it listened:\n{text}");
            }
            assert!(tokio::time::Instant::now() < deadline, "squid did not start:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://user:password@127.0.0.1:PORT`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Waits until the access log has a line containing every one of
    /// `parts` (Squid writes a line when a transaction ends), and returns
    /// it.
    pub async fn logged(&self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let log = self.access_log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "squid's access.log has no line with {parts:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Squid leaves its shared memory behind when killed.
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.name))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

// ---------- mitmproxy ----------

/// mitmdump on 127.0.0.1 as a re-signing parent, killed on drop.
pub struct Mitm {
    pub addr: SocketAddr,
    pub confdir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Mitm {
    /// Starts mitmdump trusting `origin_root` (a PEM file) for its own
    /// upstream connections.
    pub async fn start(origin_root: &Path) -> Mitm {
        tools(&["mitmproxy"]);
        let confdir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(venv_bin("mitmdump"))
            .args(["--listen-host", "127.0.0.1", "--listen-port", "0", "--set"])
            .arg(format!("confdir={}", confdir.path().display()))
            .arg("--set")
            .arg(format!("ssl_verify_upstream_trusted_ca={}", origin_root.display()))
            .env("PYTHONUNBUFFERED", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("mitmdump starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = tokio::time::timeout(STEP, lines.next_line())
                .await
                .expect("mitmdump's listening line in time")
                .unwrap()
                .expect("mitmdump exited before it listened");
            if let Some(rest) = line.split("proxy listening at ").nth(1) {
                break rest.trim_end_matches('.').parse().expect("an address");
            }
        };
        // mitmdump dies when nobody reads its stdout.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Mitm {
            addr,
            confdir,
            _child: child,
        }
    }

    /// mitmproxy's CA certificate, created at its first start.
    pub fn ca_cert(&self) -> PathBuf {
        self.confdir.path().join("mitmproxy-ca-cert.pem")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

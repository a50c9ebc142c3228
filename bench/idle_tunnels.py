#!/usr/bin/env python3
"""Opens N idle CONNECT tunnels through a proxy and reports the proxy's RSS
growth per tunnel. Everything runs on 127.0.0.1.

The tunnels' far end is a sink in a child process, so this process and the
sink each hold N descriptors, and the proxy holds 2N.

usage: idle_tunnels.py PROXY_PORT PROXY_PID N
"""
import asyncio
import multiprocessing
import resource
import sys


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def sink(conn):
    raise_fd_limit()

    async def serve():
        held = []

        async def hold(reader, writer):
            held.append(writer)

        server = await asyncio.start_server(hold, "127.0.0.1", 0, backlog=4096)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


async def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    raise_fd_limit()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=sink, args=(child,), daemon=True)
    proc.start()
    sink_port = parent.recv()
    before = rss_kib(pid)
    tunnels = []
    for start in range(0, n, 500):
        batch = []
        for _ in range(start, min(n, start + 500)):
            batch.append(asyncio.open_connection("127.0.0.1", port))
        for reader, writer in await asyncio.gather(*batch):
            writer.write(f"CONNECT 127.0.0.1:{sink_port} HTTP/1.1\r\nHost: 127.0.0.1:{sink_port}\r\n\r\n".encode())
            tunnels.append((reader, writer))
        for reader, writer in tunnels[start:]:
            line = await reader.readline()
            if b" 200 " not in line:
                raise SystemExit(f"tunnel refused: {line!r}")
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
    await asyncio.sleep(2)
    after = rss_kib(pid)
    per = (after - before) * 1024 / n
    print(f"idle_tunnels n={n} rss_before_kib={before} rss_after_kib={after} bytes_per_tunnel={per:.0f}")
    for _, w in tunnels:
        w.close()
    proc.terminate()


asyncio.run(main())

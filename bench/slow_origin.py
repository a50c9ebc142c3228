#!/usr/bin/env python3
"""A GOPROXY origin with a fixed delay, for the cache workloads of bench/run.

It serves the files under ROOT, each after sleeping DELAY_MS, and counts the
requests for every path, so the harness can time a cold miss through a slow
upstream and count how many fetches a burst of clients caused.
`GET /_counts` answers the counts as JSON, without delay. It listens on a free
port of 127.0.0.1 and prints that port on its first line.

usage: slow_origin.py ROOT DELAY_MS
"""
import http.server
import json
import os
import shutil
import sys
import threading
import time


def main():
    root, delay = os.path.realpath(sys.argv[1]), int(sys.argv[2]) / 1000
    counts, lock = {}, threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/_counts":
                with lock:
                    self.answer(200, json.dumps(counts).encode(), "application/json")
                return
            with lock:
                counts[self.path] = counts.get(self.path, 0) + 1
            time.sleep(delay)
            path = os.path.realpath(os.path.join(root, self.path.split("?")[0].lstrip("/")))
            if not path.startswith(root + os.sep) or not os.path.isfile(path):
                self.answer(404, b"not found\n", "text/plain")
                return
            self.send_response(200)
            self.send_header("content-length", str(os.path.getsize(path)))
            self.end_headers()
            with open(path, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

        def answer(self, status, body, kind):
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 1024
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

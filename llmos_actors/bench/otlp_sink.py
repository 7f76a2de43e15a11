"""An OTLP/HTTP trace receiver that takes every export and keeps nothing, in its own process.

The tracing benchmark exports spans the way the docs recommend (batches of OTLP/HTTP to a
collector on loopback): this stands in for the collector, out of the measured processes,
so the benchmark pays for encoding and posting spans but not for a collector's work.

``python -m llmos_actors.bench.otlp_sink`` prints ``port <n>`` once it listens on
127.0.0.1 and serves until its stdin closes (so it cannot outlive the benchmark).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: The largest export accepted (the SDK's batches of 512 spans are well under it).
MAX_BODY = 16 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.path != "/v1/traces" or not 0 <= length <= MAX_BODY:
            self.send_error(400 if self.path == "/v1/traces" else 404)
            return
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"port {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or exits)
    server.shutdown()


class Sink:
    """The receiver's process, started and stopped by the benchmark (``url`` to export to)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmos_actors.bench.otlp_sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"the OTLP sink did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/v1/traces"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()

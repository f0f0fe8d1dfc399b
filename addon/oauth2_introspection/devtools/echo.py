"""An echo upstream: answers every request with what it received, as JSON.

Byte-exact: the body comes back base64-encoded beside a text rendering, and
headers come back as an ordered list, so tests can prove what was forwarded.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: EchoServer = self.server  # type: ignore[assignment]
        with server.lock:
            server.request_count += 1
        payload = {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(body).decode(),
        }
        out = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo

    def __getattr__(self, name: str) -> object:
        # any other method (PURGE, FOO...): http.server looks up do_<METHOD>
        if name.startswith("do_") and name[3:].isupper():
            return self._echo
        raise AttributeError(name)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        super().__init__((host, port), EchoHandler)
        self.lock = threading.Lock()
        self.request_count = 0
        self.verbose = verbose

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> EchoServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

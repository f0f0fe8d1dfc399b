"""A development RFC 7662 introspection endpoint.

- `POST /introspect` (form `token`, optional `token_type_hint`) answers the
  claims registered for the token, or `{"active": false}`.
- Registered claims may carry directives (keys starting with `_`, never sent):
  `_exp_in` (seconds: `exp` = now + value), `_delay_ms` (answer late),
  `_status` (answer with this HTTP status), `_raw_body` (answer this text
  verbatim), `_pad` (that many spaces after the JSON), `_gzip` (answer
  gzip-compressed, `Content-Encoding: gzip`) -- so error paths can be
  exercised per token.
- With `client_auth` set, a call whose Authorization differs gets 401.
- Control API for tests and demos (JSON): `POST /_control/tokens` adds
  `{token: claims}`; `GET|DELETE /_control/calls` reads or clears the
  recorded calls (headers and form of each); `POST /_control/behaviour`
  sets `delay_ms`/`status`/`raw_body` for every call; `DELETE` resets it.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class IdpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dev-idp"

    @property
    def idp(self) -> IdpServer:
        return self.server  # type: ignore[return-value]

    def _read(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes | str | Any, ctype: str = "application/json",
              pad: int = 0, compress: bool = False) -> None:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        data = (body.encode() if isinstance(body, str) else body) + b" " * pad
        if compress:
            data = gzip.compress(data, compresslevel=9)
        self.send_response(status)
        if compress:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_control/calls":
            with self.idp.lock:
                self._send(200, list(self.idp.calls))
        elif self.path == "/_control/health":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        if self.path == "/_control/calls":
            with self.idp.lock:
                self.idp.calls.clear()
            self._send(204, b"")
        elif self.path == "/_control/behaviour":
            self.idp.behaviour = {}
            self._send(204, b"")
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        raw = self._read()
        if self.path == "/_control/tokens":
            self.idp.add_tokens(json.loads(raw))
            self._send(204, b"")
            return
        if self.path == "/_control/behaviour":
            self.idp.behaviour = json.loads(raw)
            self._send(204, b"")
            return
        if self.path.split("?", 1)[0] != self.idp.path:
            self._send(404, {"error": "not found"})
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode("latin-1"), keep_blank_values=True).items()}
        with self.idp.lock:
            self.idp.calls.append(
                {"path": self.path, "headers": dict(self.headers.items()), "form": form}
            )
        if self.idp.client_auth and self.headers.get("Authorization") != self.idp.client_auth:
            self._send(401, {"error": "invalid_client"})
            return
        token = form.get("token", "")
        with self.idp.lock:
            entry = dict(self.idp.tokens.get(token, {"active": False}))
        directives = {**self.idp.behaviour, **{k[1:]: entry.pop(k) for k in list(entry)
                                               if k.startswith("_")}}
        if directives.get("delay_ms"):
            time.sleep(float(directives["delay_ms"]) / 1000)
        if "exp_in" in directives:
            entry["exp"] = int(time.time() + float(directives["exp_in"]))
        if "raw_body" in directives:
            self._send(int(directives.get("status", 200)), str(directives["raw_body"]),
                       directives.get("content_type", "text/plain"))
            return
        self._send(int(directives.get("status", 200)), entry, pad=int(directives.get("pad", 0)),
                   compress=bool(directives.get("gzip")))

    def log_message(self, format: str, *args: object) -> None:
        if self.idp.verbose:
            super().log_message(format, *args)


class IdpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: dict[str, dict[str, Any]] | None = None,
        client_auth: str | None = None,
        path: str = "/introspect",
        verbose: bool = False,
    ) -> None:
        super().__init__((host, port), IdpHandler)
        self.lock = threading.Lock()
        self.tokens: dict[str, dict[str, Any]] = dict(tokens or {})
        self.calls: list[dict[str, Any]] = []
        self.behaviour: dict[str, Any] = {}
        self.client_auth = client_auth
        self.path = path
        self.verbose = verbose

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def add_tokens(self, tokens: dict[str, dict[str, Any]]) -> None:
        with self.lock:
            self.tokens.update(tokens)

    def calls_for(self, token: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["form"].get("token") == token]

    def start(self) -> IdpServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

"""The Admin API's HTTP listener: tornado, inside mitmproxy's own event loop.

tornado is already installed with mitmproxy (mitmweb is a tornado app) and
runs on asyncio, so the listener shares the proxy's process and event loop
with no new dependency (docs/admin-api.md says why). This module only does
HTTP: the access checks, then `AdminAPI.handle()`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from ..manager import HEADERS, page, same_origin, wants_page
from .api import AdminAPI, AdminResponse

logger = logging.getLogger("oauth2_introspection.admin")

TOKEN_HEADER = "Kong-Admin-Token"
MAX_BODY = 16 * 1024 * 1024


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:8001`, `[::1]:8001`, `localhost:8001`, `:8001` -> (host, port).

    Raises ValueError with a message for the user."""
    value = value.strip()
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise ValueError(f"{value!r}: expected [IPv6]:PORT")
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8001")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: invalid port {port!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name (or "" = every interface) is not loopback


def host_allowed(host_name: str, bind_host: str) -> bool:
    """May a request naming `host_name` in its Host header be served without a
    token? Loopback names and the listener's own address only (DNS rebinding).

    tornado's host_name keeps an IPv6 literal's brackets (`[::1]`), with or
    without a port; ipaddress wants it bare."""
    host = host_name[1:-1] if host_name.startswith("[") and host_name.endswith("]") else host_name
    return is_loopback(host) or host == bind_host


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the admin token."""
    return hmac.compare_digest(expected.encode(), (given or "").encode())


class _Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, api: AdminAPI, token: str, bind_host: str) -> None:
        self.api = api
        self.token = token
        self.bind_host = bind_host

    def check_xsrf_cookie(self) -> None:  # JSON API, no cookies
        return

    def _refuse(self, status: int, message: str) -> None:
        self._write(AdminResponse(status, {"message": message}))

    def _allowed(self) -> bool:
        if self.token:
            if token_matches(self.token, self.request.headers.get(TOKEN_HEADER)):
                return True
            self._refuse(401, "Invalid credentials. Token or User credentials required")
            return False
        # No token (loopback only): refuse what a web page in a browser could
        # send, so a site cannot drive the API through the user's browser.
        # (The Manager page's own calls carry this listener's Origin: same origin.)
        origin = self.request.headers.get("Origin")
        if (origin and not same_origin(origin, self.request.protocol, self.request.host)) or (
                self.request.headers.get("Sec-Fetch-Site") in ("cross-site", "same-site")):
            self._refuse(403, "Cross-origin requests are refused (set "
                              "introspection_admin_token to allow them)")
            return False
        host = self.request.host_name
        if not host_allowed(host, self.bind_host):
            self._refuse(403, f"Host {host!r} refused: the Admin API answers loopback "
                              "names only without introspection_admin_token")
            return False
        return True

    def _serve(self) -> None:
        req = self.request
        if wants_page(req.method or "GET", req.path, req.headers.get("Accept")):
            # the Manager page (static, no data: its API calls pass _allowed())
            self._write(AdminResponse(200, page(), "text/html; charset=utf-8", dict(HEADERS)))
            return
        if not self._allowed():
            return
        resp = self.api.handle(req.method or "GET", req.path, req.query,
                               req.headers.get("Content-Type", ""), req.body or b"")
        if resp.status >= 500:
            logger.error("Admin API %s %s -> %d", req.method, req.path, resp.status)
        else:
            logger.info("Admin API %s %s -> %d", req.method, req.path, resp.status)
        self._write(resp)

    def _write(self, resp: AdminResponse) -> None:
        self.set_status(resp.status)
        self.set_header("Server", "mitmproxy-oauth2-introspection")
        for name, value in resp.headers.items():
            self.set_header(name, value)
        if resp.status in (204, 304):
            self.clear_header("Content-Type")
            self.finish()
            return
        self.set_header("Content-Type", resp.content_type)
        if self.request.method != "HEAD":
            self.write(resp.payload())
        self.finish()

    def get(self, *_: Any) -> None:
        self._serve()

    head = post = put = patch = delete = options = get


class AdminServer:
    """One listening tornado HTTPServer; start() binds, stop() closes."""

    def __init__(self, api: AdminAPI, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        app = tornado.web.Application(
            [(r"/.*", _Handler, {"api": api, "token": token, "bind_host": host})],
            default_handler_class=_Handler,
            default_handler_args={"api": api, "token": token, "bind_host": host},
            log_function=lambda _handler: None,  # _serve() logs each request itself
        )
        self._server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_BODY)

    def start(self) -> None:
        """Bind now (raises OSError when the address is taken)."""
        sockets = tornado.netutil.bind_sockets(self.port, self.host or None)
        self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        host = self.host or "0.0.0.0"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

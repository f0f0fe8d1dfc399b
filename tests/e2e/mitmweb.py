"""A real mitmweb with the addon, and a client for mitmweb's own JSON API.

mitmproxy 11: GETs are open; POST/PUT need the XSRF cookie (`_xsrf`) echoed in
an `X-XSRFToken` header. mitmproxy 12: every request needs the web token
(`web_password` here, sent as `Authorization: Bearer ...`, which also sets an
auth cookie), and POST/PUT need the XSRF cookie (`_mitmproxy_xsrf`) echoed too.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from mitmproxy import version

from .harness import Mitmdump, free_port, wait_for_port

MITMPROXY_MAJOR = int(version.VERSION.split(".")[0])


class Mitmweb(Mitmdump):
    def __init__(
        self,
        config: dict[str, Any] | str | Path | None,
        upstream_port: int,
        extra_args: list[str] | None = None,
    ) -> None:
        self.web_port = free_port()
        self.password = secrets.token_hex(8) if MITMPROXY_MAJOR >= 12 else None
        args = [
            "--set", "web_host=127.0.0.1",
            "--set", f"web_port={self.web_port}",
            "--set", "web_open_browser=false",
        ]
        if self.password:
            args += ["--set", f"web_password={self.password}"]
        super().__init__(config, upstream_port, [*args, *(extra_args or [])], tool="mitmweb")

    def start(self) -> Mitmweb:
        super().start()
        try:
            wait_for_port(self.web_port, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"mitmweb failed to start:\n{self.log()}") from None
        return self

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def api(self) -> WebApi:
        return WebApi(self)


class WebApi:
    def __init__(self, web: Mitmweb) -> None:
        headers = {"Authorization": f"Bearer {web.password}"} if web.password else {}
        self.http = httpx.Client(base_url=web.web_url, trust_env=False, timeout=15,
                                 headers=headers)
        index = self.http.get("/")
        assert index.status_code == 200, index.text[:300]
        # Tornado's XSRF check is a double submit: the cookie and the header must
        # carry the same token. mitmweb 11 sets `_xsrf` on `/`; 12 sets
        # `_mitmproxy_xsrf` only from its websocket: bring our own for both.
        xsrf = secrets.token_hex(16)
        for name in ("_xsrf", "_mitmproxy_xsrf"):
            self.http.cookies.set(name, xsrf, domain="127.0.0.1")
        self.http.headers["X-XSRFToken"] = xsrf

    def close(self) -> None:
        self.http.close()

    def flows(self) -> list[dict[str, Any]]:
        resp = self.http.get("/flows")
        assert resp.status_code == 200, resp.text[:300]
        return resp.json()

    def wait_flows(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            flows = self.flows()
            if predicate(flows) or time.monotonic() > deadline:
                return flows
            time.sleep(0.1)

    def command(self, name: str, *arguments: str) -> Any:
        resp = self.http.post(f"/commands/{name}", json={"arguments": list(arguments)})
        assert resp.status_code == 200, resp.text[:300]
        data = resp.json()
        if "error" in data:
            raise RuntimeError(f"{name}: {data['error']}")
        return data["value"]

    def set_options(self, **options: Any) -> httpx.Response:
        return self.http.put("/options", json=options)

    def options(self) -> dict[str, Any]:
        return self.http.get("/options").json()

"""The benchmark's baseline for cold tokens: the least any introspecting addon
must do per request. One shared httpx.AsyncClient, one POST per request to the
introspection endpoint, two headers set; no cache, no policy.

    mitmdump --mode reverse:http://127.0.0.1:9000@127.0.0.1:8080 -s bench/bare_hook.py \
        --set bare_introspection_url=http://127.0.0.1:9001/introspect
"""

from __future__ import annotations

from typing import Any

import httpx
from mitmproxy import ctx, http


class BareHook:
    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("bare_introspection_url", str, "", "introspection endpoint")

    def running(self) -> None:
        self.client = httpx.AsyncClient(
            trust_env=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def request(self, flow: http.HTTPFlow) -> None:
        assert self.client is not None
        auth = flow.request.headers.get("authorization", "")
        resp = await self.client.post(
            ctx.options.bare_introspection_url,
            data={"token": auth.partition(" ")[2]},
            headers={"Authorization": "Basic YmVuY2g6YmVuY2g=", "Accept": "application/json"},
        )
        doc = resp.json()
        flow.request.headers["X-Credential-Sub"] = str(doc.get("sub", ""))
        flow.request.headers["X-Credential-Scope"] = str(doc.get("scope", ""))

    async def done(self) -> None:
        if self.client is not None:
            await self.client.aclose()


addons = [BareHook()]

#!/usr/bin/env python3
"""RSS growth of the addon's cache at scale: 100,000 cached answers, with the
hot set full of what the fast lane keeps per answer (bench/run.py runs it).

    .venv/bin/python bench/memory_probe.py [--tokens 100000] [--addon-dir addon]

A real OAuth2Introspection addon (mitmproxy's test context, no proxy) with
bench/run.py's configuration: every answer is put in its cache, then the
last cache.HOT_MAXSIZE tokens each send two requests through the request
hook (the general path, then the fast lane), so the hot set holds identity
headers and a plan for each. Answers differ per token in sub, iat and exp,
as real ones do. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def hooked(result: Any) -> None:
    """Await what a hook returned when it is awaitable, as mitmproxy does."""
    if result is not None and inspect.isawaitable(result):
        await result


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def probe(n: int) -> dict[str, int]:
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons, tflow, tutils

    from oauth2_introspection import OAuth2Introspection
    from oauth2_introspection.cache import HOT_MAXSIZE, make_key
    from oauth2_introspection.introspection import parse_answer

    sys.path.insert(0, str(ROOT / "bench"))
    from run import addon_config

    path = Path(tempfile.mkdtemp(prefix="oauth2-memory-")) / "kong.json"
    path.write_text(json.dumps(addon_config(9)))
    addon = OAuth2Introspection()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, introspection_config=str(path), introspection_cache_size=str(n))
        addon.log_allowed = False
        plugin = addon.policy.plugins[0]
        now = int(time.time())

        def flow(token: str):  # as wrk sends them
            return tflow.tflow(req=tutils.treq(
                host="127.0.0.1", port=8080, path=b"/bench", content=b"",
                headers=((b"host", b"bench.test"), (b"authorization", f"Bearer {token}".encode()))))

        await hooked(addon.request(flow("warm-up")))  # refused (no answer): routes, imports
        gc.collect()
        before = rss_kb()
        for i in range(n):
            body = json.dumps({
                "active": True, "username": "bench", "client_id": "bench-client",
                "scope": "read write", "sub": f"bench-{i:08d}", "token_type": "Bearer",
                "iss": "http://127.0.0.1/bench-idp", "iat": now - i % 3600,
                "exp": now - i % 3600 + 7200,
            }, separators=(",", ":")).encode()
            addon.cache.put(make_key(plugin.key_prefix, f"tok-{i:08d}"), parse_answer(body), 3600)
        hot = min(n, HOT_MAXSIZE)
        for i in range(n - hot, n):
            for _ in range(2):
                f = flow(f"tok-{i:08d}")
                await hooked(addon.request(f))
                assert f.response is None, f.response
        gc.collect()
        return {"entries": len(addon.cache), "hot": len(addon.cache._hot),
                "growth_kb": rss_kb() - before}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=100_000)
    p.add_argument("--addon-dir", type=Path, default=ROOT / "addon")
    args = p.parse_args()
    sys.path.insert(0, str(args.addon_dir.resolve()))
    print(json.dumps(asyncio.run(probe(args.tokens))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

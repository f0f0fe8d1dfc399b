#!/usr/bin/env python3
"""Time the addon's request hook alone: microseconds per cached-token request.

    .venv/bin/python bench/hook.py                      # this checkout
    .venv/bin/python bench/hook.py --addon-dir DIR      # another copy of addon/
    .venv/bin/python bench/hook.py --profile            # and cProfile's top entries
    .venv/bin/python bench/hook.py --tokens 10000       # (d): more tokens than the hot set

No network and no proxy: mitmproxy's own test flows go through the hook of an
addon configured like bench/run.py's (one route, one plugin, one consumer),
with the token's answer already cached. This isolates what the hook costs from
what mitmproxy costs around it; mitmproxy's per-event addon dispatch and its
log-event machinery are not included (bench/run.py measures those).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import random
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--addon-dir", type=Path, default=ROOT / "addon")
    p.add_argument("--tokens", type=int, default=1,
                   help="distinct cached tokens, picked at random (10000: bench/run.py's (d))")
    p.add_argument("--log-allowed", action="store_true",
                   help="build the debug line of allowed requests (termlog_verbosity=debug)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(args.addon_dir.resolve()))
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.test import taddons, tflow, tutils

    from oauth2_introspection import OAuth2Introspection
    from oauth2_introspection.cache import make_key
    from oauth2_introspection.introspection import parse_answer

    config = {
        "_format_version": "3.0",
        "services": [{
            "name": "bench",
            "routes": [{"name": "all", "paths": ["/"], "strip_path": False}],
            "plugins": [{"name": "oauth2-introspection", "config": {
                "introspection_url": "http://127.0.0.1:9/introspect",
                "authorization_value": "Basic YmVuY2g6YmVuY2g=", "ttl": 3600}}],
        }],
        "consumers": [{"username": "bench", "custom_id": "bench-0001"}],
    }
    path = Path(tempfile.mkdtemp(prefix="oauth2-hook-")) / "kong.json"
    path.write_text(json.dumps(config))
    addon = OAuth2Introspection()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, introspection_config=str(path))
        addon.log_allowed = args.log_allowed
        now = int(time.time())
        answer = json.dumps({
            "active": True, "username": "bench", "client_id": "bench-client",
            "scope": "read write", "sub": "bench-abcdefgh", "token_type": "Bearer",
            "iss": "http://127.0.0.1/bench-idp", "iat": now, "exp": now + 3600,
        }).encode()
        plugin = addon.policy.plugins[0]
        tokens = [f"tok{i}" for i in range(args.tokens)]
        for token in tokens:
            addon.cache.put(make_key(plugin.key_prefix, token), parse_answer(answer), 3600)
        rng = random.Random(1)

        def flows(n: int) -> list:
            return [tflow.tflow(req=tutils.treq(
                host="127.0.0.1", port=8080, path=b"/bench", content=b"",
                headers=((b"host", b"bench.test"),
                         (b"authorization", f"Bearer {rng.choice(tokens)}".encode()),
                         (b"user-agent", b"wrk")))) for _ in range(n)]

        for f in flows(500):  # warm-up
            await hooked(addon.request(f))
        batch = flows(args.requests)
        # The batch's flows are the harness's, not the hook's: moved out of the
        # collector's sight, so that full collections walking them are not
        # charged to the hook (inside mitmdump a flow lives for one request).
        gc.collect()
        gc.freeze()
        started = time.perf_counter()
        for f in batch:
            await hooked(addon.request(f))
        elapsed = time.perf_counter() - started
        gc.unfreeze()
        assert batch[-1].response is None, batch[-1].response
        print(f"{elapsed / len(batch) * 1e6:.1f} us per request in the hook "
              f"({len(batch)} requests, {args.tokens} cached token(s), {args.addon_dir})")
        if args.profile:
            import cProfile
            import pstats

            batch = flows(min(args.requests, 5000))
            prof = cProfile.Profile()
            prof.enable()
            for f in batch:
                await hooked(addon.request(f))
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())

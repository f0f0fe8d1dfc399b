#!/usr/bin/env python3
"""What mitmweb does per flow, with and without the addon, counted in-process.

    .venv/bin/python bench/web_sim.py               # CPU µs per flow (process time)
    .venv/bin/python bench/web_sim.py --callgrind   # instructions per flow (valgrind, ~10 min)

A real mitmweb master (`WebMaster`, all of mitmweb's addons: the view, the
event store, the web app's broadcasts) in one process, with no network: test
flows of bench/run.py's cached-token load (Host and Authorization only, a
small response) go through the four HTTP hooks as the proxy core sends them,
each followed by mitmproxy's `update` event. Variants:

- `plain`: mitmweb with no script;
- `addon`: `-s addon/introspect.py` with bench/run.py's configuration and the
  token's answer cached (the fast lane);
- `ideal`: bench/ideal_hook.py, the least an introspecting addon does;
- `fields`: an addon that only appends the same 11 identity header fields and
  the comment (no marker, no work): what mitmweb pays for the data alone;
- `marked`: the same and the allowed flow's marker.

Process time is noisy on a shared machine; `--callgrind` runs each variant at
two flow counts under `valgrind --tool=callgrind` and divides the difference,
which gives instruction counts that repeat to about 0.5 % whatever else the
machine does (docs/performance.md, fifth round).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VARIANTS = ("plain", "addon", "ideal", "fields", "marked")
TOKEN = "single-d0-websim"

#: the identity header fields the addon adds for bench/fast_idp.py's answer
FIELDS = (
    (b"X-Credential-Scope", b"read write"), (b"X-Credential-Client-ID", b"bench-client"),
    (b"X-Credential-Identifier", b"bench"), (b"X-Credential-Token-Type", b"Bearer"),
    (b"X-Credential-Exp", b"1796325617"), (b"X-Credential-Iat", b"1796322017"),
    (b"X-Credential-Sub", b"bench-abcdefgh"), (b"X-Credential-Iss", b"http://127.0.0.1/bench-idp"),
    (b"X-Consumer-ID", b"9a9fcaf3-e91f-5f3d-a55f-609bc77025ed"),
    (b"X-Consumer-Custom-ID", b"bench-0001"), (b"X-Consumer-Username", b"bench"),
)
COMMENT = ("oauth2-introspection [route all, service 'bench']: "
           "allowed bench (cache hit, 3599 s left)")


class FieldsOnly:
    """The `fields` and `marked` variants: the data the addon puts on an
    allowed flow (header fields, comment; marker), none of the work."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def request(self, flow: Any) -> None:
        headers = flow.request.data.headers
        headers.fields = headers.fields + FIELDS
        flow.comment = COMMENT
        if self.marker:
            flow.marked = self.marker


async def simulate(variant: str, flows: int, warm: int, workdir: Path, confdir: Path) -> float:
    """CPU seconds per flow of `flows` flows after `warm` unmeasured ones."""
    import run  # bench/run.py: the benchmark's addon configuration
    from mitmproxy import options
    from mitmproxy.proxy.layers import http as layers
    from mitmproxy.proxy.mode_specs import ProxyMode
    from mitmproxy.test import tflow, tutils
    from mitmproxy.tools.web.master import WebMaster

    master = WebMaster(options.Options(), with_termlog=True)
    spec = "reverse:http://127.0.0.1:9@8080"
    # mitmproxy 12's request hooks need the CA loaded
    master.options.update(web_open_browser=False, mode=[spec], confdir=str(confdir))
    if variant == "addon":
        config = workdir / "kong.json"
        config.write_text(json.dumps(run.addon_config(9)))
        # as `mitmweb -s addon/introspect.py --set introspection_config=...`
        master.options.update_defer(introspection_config=str(config))
        master.options.update(scripts=[str(ROOT / "addon" / "introspect.py")])
        _cache_answer((await _loaded(master, "introspectionaddon")).core)
    elif variant == "ideal":
        master.options.update(scripts=[str(BENCH / "ideal_hook.py")])
        await _loaded(master, "idealhook")
    elif variant == "fields":
        master.addons.add(FieldsOnly())
    elif variant == "marked":
        from oauth2_introspection.annotations import MARKERS

        master.addons.add(FieldsOnly(MARKERS["allowed"]))
    mode = ProxyMode.parse(spec)
    response = tutils.tresp(content=b"ok")

    def make() -> Any:
        flow = tflow.tflow(req=tutils.treq(
            host="127.0.0.1", port=9, path=b"/bench", content=b"",
            headers=((b"host", b"127.0.0.1:8080"), (b"authorization", f"Bearer {TOKEN}".encode()))))
        flow.client_conn.proxy_mode = mode
        flow.timestamp_created = time.time()  # the view orders by it: distinct, as in real use
        return flow

    async def one(flow: Any) -> None:
        for hook in (layers.HttpRequestHeadersHook, layers.HttpRequestHook):
            await master.addons.handle_lifecycle(hook(flow))
        if flow.response is not None:
            raise RuntimeError(f"{variant}: answered {flow.response.status_code}, not forwarded")
        flow.response = response.copy()
        for hook in (layers.HttpResponseHeadersHook, layers.HttpResponseHook):
            await master.addons.handle_lifecycle(hook(flow))

    for _ in range(warm):
        await one(make())
    batch = [make() for _ in range(flows)]
    started = time.process_time()
    for flow in batch:
        await one(flow)
    elapsed = time.process_time() - started
    if variant != "plain" and len(batch[-1].request.headers) < 13:
        raise RuntimeError(f"{variant}: the identity headers were not added")
    return elapsed / max(1, flows)


async def _loaded(master: Any, name: str) -> Any:
    """The script's addon once mitmproxy has loaded it (scripts load in a task)."""
    for _ in range(200):
        if (addon := master.addons.get(name)) is not None:
            return addon
        await asyncio.sleep(0.05)
    raise RuntimeError(f"script addon {name} not loaded after 10 s")


def _cache_answer(core: Any) -> None:
    """The answer bench/fast_idp.py gives for the token, cached as the
    benchmark's warm-up request would have cached it."""
    from fast_idp import FastIdp  # bench/fast_idp.py

    from oauth2_introspection.cache import make_key
    from oauth2_introspection.introspection import parse_answer

    answer = json.dumps(FastIdp(0).claims(TOKEN)).encode()
    plugin = core.policy.plugins[0]
    core.cache.put(make_key(plugin.key_prefix, TOKEN), parse_answer(answer), 3600)


def instructions(variant: str, flows: int, warm: int, confdir: Path) -> int:
    """Instructions valgrind counts for a whole run of `variant`."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--variant", variant, "--flows", str(flows), "--warm", str(warm),
         "--confdir", str(confdir)],
        capture_output=True, text=True, timeout=3600, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-2000:]}")
    return int(match.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=VARIANTS, help="run one variant (used by the others)")
    p.add_argument("--flows", type=int, default=3000)
    p.add_argument("--warm", type=int, default=300)
    p.add_argument("--callgrind", action="store_true",
                   help="instructions per flow under valgrind: runs of 100 and 400 flows")
    p.add_argument("--only", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="these variants (plain is always included)")
    p.add_argument("--confdir", type=Path,
                   help="mitmproxy's confdir (CA); default: a new one, made for the run")
    args = p.parse_args()
    sys.path.insert(0, str(BENCH))
    if args.variant:
        with tempfile.TemporaryDirectory(prefix="oauth2-websim-") as workdir:
            confdir = args.confdir or Path(workdir) / "conf"
            per_flow = asyncio.run(simulate(args.variant, args.flows, args.warm, Path(workdir),
                                            confdir))
        print(json.dumps({"variant": args.variant, "cpu_us_per_flow": per_flow * 1e6}))
        return 0
    variants = ["plain", *(v for v in args.only if v != "plain")]
    if args.callgrind:
        if shutil.which("valgrind") is None:
            sys.exit("valgrind not found (Debian package valgrind)")
        low, high = 100, 400
        jobs = [(v, n) for v in variants for n in (low, high)]
        with tempfile.TemporaryDirectory(prefix="oauth2-websim-conf-") as confdir:
            # the CA made once, outside the counted runs: key generation's
            # prime search takes a different number of instructions each time
            subprocess.run([sys.executable, __file__, "--variant", "plain", "--flows", "1",
                            "--warm", "0", "--confdir", confdir],
                           capture_output=True, timeout=300, check=True)
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                counts = dict(zip(jobs, pool.map(
                    lambda j: instructions(j[0], j[1], 50, Path(confdir)), jobs), strict=True))
        per = {v: (counts[v, high] - counts[v, low]) / (high - low) for v in variants}
        print(f"instructions per flow through mitmweb's hooks (callgrind, {high} - {low} flows):")
        for v in variants:
            print(f"  {v:<7} {per[v] / 1e6:6.3f} M   {per[v] - per['plain']:+10,.0f} vs plain")
        return 0
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(3):  # alternated, each in a fresh process
        for v in variants:
            out = subprocess.run([sys.executable, __file__, "--variant", v, "--flows",
                                  str(args.flows), "--warm", str(args.warm)],
                                 capture_output=True, text=True, timeout=600, check=True)
            runs[v].append(json.loads(out.stdout.splitlines()[-1])["cpu_us_per_flow"])
    print(f"CPU µs per flow through mitmweb's hooks (best of 3 processes, {args.flows} flows):")
    for v in variants:
        best = min(runs[v])
        print(f"  {v:<7} {best:8.1f}   {best - min(runs['plain']):+8.1f} vs plain")
    return 0


if __name__ == "__main__":
    sys.exit(main())

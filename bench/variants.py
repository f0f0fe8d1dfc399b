#!/usr/bin/env python3
"""Compare mitmdump variants against plain mitmdump, in one run.

    .venv/bin/python bench/variants.py addon=addon ideal=bench/ideal_hook.py
    .venv/bin/python bench/variants.py old=/tmp/before/addon new=addon --rounds 20

Each argument is NAME=WHAT: a directory holding an `introspect.py` (a copy
of addon/, started with the benchmark's configuration), a script (`-s`), or
`plain`. Plain mitmdump is always measured first. The variants get the same
cached-token load (wrk -t2 -c32, as bench/run.py's (c)) in interleaved
rounds; the figure is the median over rounds of each round's ratio to plain,
by throughput and by CPU time per request (from /proc/<pid>/schedstat, in
nanoseconds). Differences of a point or two need 15 rounds or more: this is
how docs/performance.md's second-round table was measured. `--tool mitmweb`
runs every variant, plain included, as mitmweb instead.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, beside this file

TOKEN = "single-d0-variants"


def cpu_seconds(pid: int) -> float:
    """Time on CPU (ns resolution, unlike /proc/<pid>/stat's clock ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="+", metavar="NAME=WHAT")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--duration", type=float, default=1.5, help="seconds per run (1.5)")
    p.add_argument("--tool", choices=("mitmdump", "mitmweb"), default="mitmdump",
                   help="the proxy every variant (and plain) runs in")
    args = p.parse_args()
    run.cpu_seconds = cpu_seconds  # Bench.measure reads the proxy's CPU time with it
    bench = run.Bench(argparse.Namespace(
        quick=True, duration=args.duration, tokens=1, rounds=1, threads=2, connections=32,
        addon_dir=None, delay_ms=0, python_load=False, no_install=False))
    try:
        bench.start()
        for name in ("addon", "addon-d", "bare"):
            bench.procs.stop(name)
        ports = {"plain": bench.ports["plain"]}
        if args.tool != "mitmdump":
            bench.procs.stop("plain")
            ports["plain"] = run.free_port()
            bench.mitm("plain", args.tool, ports["plain"], [])
        for spec in args.variants:
            name, _, what = spec.partition("=")
            path = Path(what)
            if what == "plain":
                extra: list[str] = []
            elif path.is_dir():
                extra = ["-s", str(path.resolve() / "introspect.py"), *bench.addon_args[2:]]
            else:
                extra = ["-s", str(path.resolve())]
            ports[name] = run.free_port()
            bench.mitm(name, args.tool, ports[name], extra)
        for name, port in ports.items():
            bench.procs.wait(name, port)
            if name != "plain":
                asyncio.run(run.requests_with_tokens(port, [TOKEN], 1))
            bench.loader.run(port, 1, "single", TOKEN)
        loads: dict[str, list[run.Load]] = {name: [] for name in ports}
        for _ in range(args.rounds):
            for name, port in ports.items():
                loads[name].append(bench.measure(name, port, kind="single", token=TOKEN))
        plain = loads["plain"]
        for name, runs in loads.items():
            by_rps = statistics.median(x.rps / b.rps for b, x in zip(plain, runs, strict=True))
            by_cpu = statistics.median(
                (b.cpu_ms or 0) / (x.cpu_ms or 1) for b, x in zip(plain, runs, strict=True))
            cpu = statistics.median(x.cpu_ms or 0 for x in runs) * 1000
            print(f"{name:<12} ratio {by_rps:.3f} by req/s, {by_cpu:.3f} by CPU/request "
                  f"({cpu:.0f} µs CPU/request, median of {len(runs)} rounds)", flush=True)
    finally:
        bench.procs.stop_all()
        shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

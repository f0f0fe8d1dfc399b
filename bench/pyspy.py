#!/usr/bin/env python3
"""Profile the addon's hot path under load with py-spy (pip install py-spy).

    .venv/bin/python bench/pyspy.py                  # cached single token, 10 s
    .venv/bin/python bench/pyspy.py --kind many      # 10k distinct warm tokens
    .venv/bin/python bench/pyspy.py --out prof/      # keep the raw (collapsed) stacks

Starts nginx, the fast introspection endpoint and mitmdump with the addon (as
bench/run.py does), records the mitmdump process with `py-spy record` while wrk
drives load, and prints the share of samples spent in the addon's own
functions (inclusive) and the top frames overall (self time).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, beside this file


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=("single", "many"), default="single")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, help="directory for flamegraph.svg and stacks.txt")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--addon-dir", type=Path, help="profile another copy of addon/ (before/after)")
    p.add_argument("--target", choices=("addon", "plain", "bare"), default="addon",
                   help="which mitmdump to profile (plain: no script, for comparison)")
    args = p.parse_args()
    py_spy = run.tool_path("py-spy")
    if py_spy is None:
        sys.exit("py-spy not found: pip install py-spy")

    bench = run.Bench(argparse.Namespace(
        quick=True, duration=args.duration, tokens=args.tokens, rounds=1, threads=2,
        connections=32, addon_dir=args.addon_dir,
        delay_ms=0, python_load=False, no_install=False))
    out = args.out or bench.workdir
    out.mkdir(parents=True, exist_ok=True)
    try:
        bench.start()
        port = bench.ports[args.target]
        token = "single-d0-profile"
        prefix = "w-d0-profile-"
        if args.kind == "single":
            asyncio.run(run.requests_with_tokens(port, [token], 1))
        else:
            tokens = [f"{prefix}{i}" for i in range(1, args.tokens + 1)]
            asyncio.run(run.requests_with_tokens(port, tokens, 32))
        pid = bench.procs.procs[args.target].pid
        stacks = out / "stacks.txt"
        spy = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", str(args.rate),
                                "--format", "raw", "--output", str(stacks), "--duration",
                                str(int(args.duration) + 1), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = bench.loader.run(port, args.duration, args.kind, token if args.kind == "single"
                                else prefix, args.tokens)
        spy.wait(60)
        print(f"load: {load.line()}")
        report(stacks, args.top)
        if args.out:
            print(f"raw (collapsed) stacks in {stacks}: open them in speedscope or any "
                  f"flamegraph tool")
    finally:
        bench.procs.stop_all()
        shutil.rmtree(bench.workdir, ignore_errors=True)  # --out is a directory of its own
    return 0


def report(stacks: Path, top: int) -> None:
    total = 0
    self_time: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    idle = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf = frames[-1]
        if "select" in leaf or "epoll" in leaf:
            idle += n
        self_time[_short(leaf)] += n
        seen = set()
        for f in frames:
            if "oauth2_introspection" in f:
                name = _short(f)
                if name not in seen:
                    seen.add(name)
                    ours[name] += n
    if not total:
        print("no samples")
        return
    print(f"{total} samples; idle (event loop waiting) {100 * idle / total:.1f} %")
    print(f"\naddon functions, inclusive share of all samples (top {top}):")
    for name, n in ours.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print(f"\nframes by self time (top {top}):")
    for name, n in self_time.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {name}")


def _short(frame: str) -> str:
    # py-spy raw frames: "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


if __name__ == "__main__":
    sys.exit(main())

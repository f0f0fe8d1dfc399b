#!/usr/bin/env python3
"""Benchmark the addon against plain mitmdump, in one run, on loopback.

    .venv/bin/python bench/run.py            # full run (about 8.5 minutes)
    .venv/bin/python bench/run.py --quick    # under 60 s: proves it works, noisier figures

Starts, on 127.0.0.1 and free ports: nginx (the upstream, from a generated
config in a temporary directory), a fast introspection endpoint
(bench/fast_idp.py, real HTTP, 50 ms answers for cold tokens), plain mitmdump
in reverse mode, mitmdump with the addon (in full mode three pairs of plain and
addon processes, measured in turn), mitmdump with a bare introspecting hook
(bench/bare_hook.py), and mitmweb with and without the addon. Load comes
from wrk (`wrk -t2 -c32`), or from a bounded Python client when wrk is
missing. Every process is stopped at the end, whatever happens.

Run it with the Python that has mitmproxy and the addon installed (the
project's .venv). Missing nginx/wrk are installed with
scripts/install-system-deps when possible (root or sudo), else replaced by the
Python fallbacks (the figures then say so). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
AUTH = "Basic YmVuY2g6YmVuY2g="

#: every figure line starts with one of these (tests check they are all printed)
LABELS = (
    "(a) upstream direct",
    "(b) plain mitmdump",
    "(c) addon, cached token",
    "(d) addon, distinct cached tokens",
    "(e) addon, cold tokens",
    "(e') bare hook, cold tokens",
    "ratio (c)/(b)",
    "ratio (d)/(b)",
    "ratio (e)/bare hook",
    "added p99, cached path",
    "introspection calls (d)",
    "introspection calls (e)",
    "single-flight",
    "cached latency during a 3 s call",
    "mitmweb without addon",
    "mitmweb with addon",
    "ratio mitmweb",
    "mitmweb, ideal hook",
    "addon peak RSS",
    "RSS growth at 100k tokens",
)


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str
    #: CPU time (user + system) the proxy process spent per request
    cpu_ms: float | None = None
    #: req/s of every round, when several were run (the figure is their median)
    rounds: tuple[float, ...] = ()

    def line(self) -> str:
        cpu = f", {self.cpu_ms:.3f} ms CPU/req" if self.cpu_ms is not None else ""
        rounds = (f", rounds {'/'.join(f'{r:.0f}' for r in self.rounds)}"
                  if len(self.rounds) > 1 else "")
        return (f"{self.rps:9.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms"
                f"   ({self.requests} requests, {self.errors} errors{cpu}{rounds})")


# -- processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: nothing listening on {port} after {timeout} s")


def tool_path(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None
    )


class Processes:
    """Every process the benchmark starts; all stopped by stop_all()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, args: list[str], port: int) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT, start_new_session=True)
        self.procs[name], self.logs[name] = proc, log
        return proc

    def wait(self, name: str, port: int) -> None:
        try:
            wait_for_port(port, self.procs[name], name)
        except Exception:
            sys.stderr.write(self.logs[name].read_text(errors="replace")[-3000:])
            raise

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(name)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_load(loads: list[Load]) -> Load:
    """The round with the median req/s, carrying every round's req/s."""
    ordered = sorted(loads, key=lambda x: x.rps)
    mid = ordered[len(ordered) // 2]
    return Load(**{**asdict(mid), "rounds": tuple(x.rps for x in loads)})


def paired_ratios(loads: list[Load], base: list[Load]) -> tuple[float, float]:
    """Median over rounds of each round's ratio to the base run of the same
    round, by req/s and by CPU time per request: runs next to each other in
    time share the machine's state, so pairing them cancels its drift."""
    by_rps = statistics.median(x.rps / b.rps for x, b in zip(loads, base, strict=True))
    by_cpu = statistics.median((b.cpu_ms or 0) / (x.cpu_ms or 1)
                               for x, b in zip(loads, base, strict=True))
    return by_rps, by_cpu


def rounds_note(loads: list[Load], base: list[Load]) -> str:
    if len(loads) < 2:
        return ""
    each = "/".join(f"{x.rps / b.rps:.3f}" for x, b in zip(loads, base, strict=True))
    return f"; median of {len(loads)} paired rounds: {each}"


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
"""


# -- load --------------------------------------------------------------------------

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"errors\\":%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_script(kind: str, token: str = "", n: int = 0, run: str = "") -> str:
    """Lua for wrk: one token, `n` tokens picked at random, or a new token per request."""
    if kind == "none":
        body = ""
    elif kind == "single":
        body = f'wrk.headers["Authorization"] = "Bearer {token}"\n'
    elif kind == "many":
        body = textwrap.dedent(f"""
            math.randomseed(os.time() + math.floor(os.clock() * 1000000))
            request = function()
              return wrk.format(nil, nil, {{["Authorization"] = "Bearer {token}" ..
                math.random({n})}})
            end
        """)
    else:  # cold: unique per thread and request
        body = textwrap.dedent(f"""
            local threads = 0
            setup = function(thread)
              threads = threads + 1
              thread:set("tid", threads)
            end
            local counter = 0
            request = function()
              counter = counter + 1
              return wrk.format(nil, nil, {{["Authorization"] =
                "Bearer cold-{run}-" .. tid .. "-" .. counter}})
            end
        """)
    return body + WRK_DONE


class Loader:
    def __init__(self, workdir: Path, threads: int, conns: int, force_python: bool) -> None:
        self.workdir = workdir
        self.threads, self.conns = threads, conns
        self.wrk = None if force_python else shutil.which("wrk")

    @property
    def tool(self) -> str:
        return f"wrk -t{self.threads} -c{self.conns}" if self.wrk else f"python -c{self.conns}"

    def run(self, port: int, duration: float, kind: str = "none", token: str = "", n: int = 0,
            run: str = "", conns: int | None = None) -> Load:
        """`conns` overrides the connection count (1: latency without queueing)."""
        conns = conns or self.conns
        if self.wrk:
            return self._wrk(port, duration, wrk_script(kind, token, n, run), conns)
        return asyncio.run(self._python(port, duration, kind, token, n, run, conns))

    def _wrk(self, port: int, duration: float, lua: str, conns: int) -> Load:
        script = self.workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
        script.write_text(lua)
        threads = min(self.threads, conns)
        cmd = [self.wrk, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}/bench"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                             check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")
        r = json.loads(line[len("BENCHJSON "):])
        return Load(r["requests"] / (r["duration_us"] / 1e6), r["p50_us"] / 1000,
                    r["p99_us"] / 1000, r["requests"], r["errors"], self.tool)

    async def _python(self, port: int, duration: float, kind: str, token: str, n: int,
                      run: str, conns: int) -> Load:
        latencies: list[float] = []
        errors = 0
        counter = 0
        deadline = time.monotonic() + duration

        def next_token() -> str | None:
            nonlocal counter
            counter += 1
            if kind == "single":
                return token
            if kind == "many":
                return f"{token}{random.randint(1, n)}"
            if kind == "cold":
                return f"cold-{run}-0-{counter}"
            return None

        async def worker() -> None:
            nonlocal errors
            conn = await RawConnection.open(port)
            try:
                while time.monotonic() < deadline:
                    tok = next_token()
                    started = time.perf_counter()
                    status = await conn.get("/bench", tok)
                    latencies.append(time.perf_counter() - started)
                    if status != 200:
                        errors += 1
            finally:
                conn.close()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.monotonic() - started
        latencies.sort()
        return Load(len(latencies) / elapsed, percentile(latencies, 50) * 1000,
                    percentile(latencies, 99) * 1000, len(latencies), errors, self.tool)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client (Content-Length answers only): cheap
    enough not to steal the CPU the proxy under test needs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str, token: str | None, timeout: float = 30) -> int:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench.test\r\n{auth}\r\n".encode())
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def get_json(port: int, path: str) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def idp_stats(port: int, token: str | None = None) -> dict[str, Any]:
    path = "/_stats" if token is None else f"/_count?token={token}"
    return asyncio.run(get_json(port, path))


async def requests_with_tokens(port: int, tokens: list[str], conns: int) -> int:
    """Send one request per token over `conns` connections; return the non-200 count."""
    bad = 0
    queue = list(reversed(tokens))

    async def worker() -> None:
        nonlocal bad
        conn = await RawConnection.open(port)
        try:
            while queue:
                if await conn.get("/bench", queue.pop()) != 200:
                    bad += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(min(conns, len(tokens)))))
    return bad


async def burst(port: int, token: str, n: int) -> list[int]:
    """`n` connections, opened first, then one request each, all at once."""
    conns = await asyncio.gather(*(RawConnection.open(port) for _ in range(n)))
    try:
        return list(await asyncio.gather(*(c.get("/bench", token) for c in conns)))
    finally:
        for c in conns:
            c.close()


# -- the benchmark -----------------------------------------------------------------


def addon_config(idp_port: int) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{
            "name": "bench",
            "routes": [{"name": "all", "paths": ["/"], "strip_path": False}],
            "plugins": [{"name": "oauth2-introspection", "config": {
                "introspection_url": f"http://127.0.0.1:{idp_port}/introspect",
                "authorization_value": AUTH,
                "ttl": 3600,
            }}],
        }],
        "consumers": [{"username": "bench", "custom_id": "bench-0001"}],
    }


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.duration = args.duration or (2 if self.quick else 6)
        #: plain/addon process pairs the interleaved rounds go through in turn:
        #: two processes of one build can differ by a few points, so a figure
        #: from one pair alone is partly that pair's luck
        self.pairs = max(1, getattr(args, "pairs", None) or (1 if self.quick else 3))
        self.rounds = args.rounds or (1 if self.quick else 2 * self.pairs)
        self.addon_dir = (args.addon_dir or ROOT / "addon").resolve()
        if args.addon_dir:
            # mitmdump must import this copy of the package, not the installed one
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.addon_dir), os.environ.get("PYTHONPATH")) if p)
        self.tokens = args.tokens or (1000 if self.quick else 10_000)
        self.workdir = Path(tempfile.mkdtemp(prefix="oauth2-bench-"))
        self.procs = Processes(self.workdir)
        self.loader = Loader(self.workdir, args.threads, args.connections, args.python_load)
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]

    # -- setup --

    def ensure_tools(self) -> None:
        missing = [p for p in ("nginx", "wrk") if tool_path(p) is None]
        if missing and not self.args.no_install:
            print(f"installing {' '.join(missing)} with scripts/install-system-deps ...")
            subprocess.run([str(ROOT / "scripts" / "install-system-deps"), *missing],
                           check=False, timeout=600)
        if tool_path("wrk") is None and not self.args.python_load:
            self.notes.append("wrk not found: load from the Python client (lower ceilings)")
            self.loader.wrk = None

    def mitm(self, name: str, tool: str, port: int, extra: list[str]) -> None:
        binary = tool_path(tool)
        if binary is None:
            raise RuntimeError(f"{tool} not found next to {sys.executable} or on PATH")
        args = [binary, "--mode", f"reverse:http://127.0.0.1:{self.upstream_port}@127.0.0.1:{port}",
                "--set", "connection_strategy=lazy",
                "--set", f"confdir={self.workdir / ('conf-' + name)}", *extra]
        if tool == "mitmweb":
            args += ["--set", "web_open_browser=false", "--set", f"web_port={free_port()}",
                     "--set", "web_host=127.0.0.1"]
        self.procs.start(name, args, port)

    def start(self) -> None:
        self.ensure_tools()
        self.upstream_port, self.idp_port = free_port(), free_port()
        nginx = tool_path("nginx")
        if nginx:
            conf = self.workdir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=self.workdir, port=self.upstream_port))
            self.procs.start("nginx", [nginx, "-p", str(self.workdir), "-c", str(conf)],
                             self.upstream_port)
        else:
            self.notes.append("nginx not found: upstream is bench/fast_idp.py --upstream")
            self.procs.start("upstream", [sys.executable, str(BENCH / "fast_idp.py"), "--port",
                                          str(self.upstream_port), "--upstream"],
                             self.upstream_port)
        self.procs.start("idp", [sys.executable, str(BENCH / "fast_idp.py"), "--port",
                                 str(self.idp_port), "--delay-ms", str(self.args.delay_ms)],
                         self.idp_port)
        cfg = self.workdir / "kong.json"
        cfg.write_text(json.dumps(addon_config(self.idp_port)))
        self.addon_args = ["-s", str(self.addon_dir / "introspect.py"),
                           "--set", f"introspection_config={cfg}"]
        # Each pair: a plain mitmdump, an addon process for (c) that only ever
        # sees its one token, and one for (d) that holds (d)'s tokens, so that
        # neither scenario measures the other's state (docs/performance.md).
        self.pair_names = [("plain", "addon", "addon-d")] + [
            (f"plain-{k}", f"addon-{k}", f"addon-d-{k}") for k in range(2, self.pairs + 1)]
        #: (c)'s token in each addon process: its own, so that calls per token
        #: still say whether one process introspected a token twice
        self.singles = {addon: f"single-d0-{self.run_id}" + (f"-p{k}" if k > 1 else "")
                        for k, (_, addon, _) in enumerate(self.pair_names, 1)}
        names = [name for pair in self.pair_names for name in pair]
        self.ports = {name: free_port() for name in (*names, "bare")}
        for plain, addon, addon_d in self.pair_names:
            self.mitm(plain, "mitmdump", self.ports[plain], [])
            self.mitm(addon, "mitmdump", self.ports[addon], self.addon_args)
            self.mitm(addon_d, "mitmdump", self.ports[addon_d], self.addon_args)
        self.mitm("bare", "mitmdump", self.ports["bare"], [
            "-s", str(BENCH / "bare_hook.py"),
            "--set", f"bare_introspection_url=http://127.0.0.1:{self.idp_port}/introspect"])
        for name in ("nginx" if nginx else "upstream", "idp"):
            self.procs.wait(name, self.upstream_port if name != "idp" else self.idp_port)
        for name, port in self.ports.items():
            self.procs.wait(name, port)

    # -- output --

    def figure(self, label: str, text: str, value: Any = None) -> None:
        assert label in LABELS, label
        print(f"{label:<36} {text}", flush=True)
        self.results[label] = value if value is not None else text

    def measure(self, name: str | None, port: int, duration: float | None = None,
                settle: bool = False, **kw: Any) -> Load:
        """One load run; with the proxy's CPU time per request when `name` is
        one of our processes. `settle`: first an unmeasured 1 s run of the
        same load (full mode), since a process that sat idle while the other
        pairs were measured starts slow on this machine (docs/performance.md)."""
        if settle and not self.quick:
            self.loader.run(port, 1, **kw)
        pid = self.procs.procs[name].pid if name else None
        before = cpu_seconds(pid) if pid else 0.0
        result = self.loader.run(port, duration or self.duration, **kw)
        if pid and result.requests:
            result.cpu_ms = (cpu_seconds(pid) - before) * 1000 / result.requests
        return result

    def load(self, label: str, name: str | None, port: int, **kw: Any) -> Load:
        result = self.measure(name, port, **kw)
        self.figure(label, result.line(), asdict(result))
        return result

    def warm_up(self) -> None:
        """A short run through each proxy first: the first requests of a fresh
        Python process are slower (imports, connection set-up)."""
        for k, (plain, addon, addon_d) in enumerate(self.pair_names, 1):
            single = self.singles[addon]
            # (d)'s process gets a token of its own, so that its lazily made
            # parts (introspection client, ...) are not counted as cache growth
            warm_d = f"single-d0-{self.run_id}-d{k}"
            for name, token in ((plain, single), (addon, single), (addon_d, warm_d)):
                if name != plain:
                    asyncio.run(requests_with_tokens(self.ports[name], [token], 1))
                self.loader.run(self.ports[name], 1, "single", token)

    def pair(self, round_no: int) -> tuple[str, str, str]:
        """The plain, (c) and (d) processes measured in round `round_no` (in turn)."""
        return self.pair_names[round_no % len(self.pair_names)]

    # -- scenarios --

    def run(self) -> None:
        a = self.load(LABELS[0], None, self.upstream_port)
        self.warm_up()
        single = f"single-d0-{self.run_id}"

        # (d)'s tokens are warmed first, so that (b), (c) and (d) can be
        # measured in interleaved rounds (the median is reported). Each (d)
        # process gets tokens of its own (calls stay one per token), all warmed
        # at once.
        prefixes = {addon_d: f"w-d0-{self.run_id}-p{k}-"
                    for k, (_, _, addon_d) in enumerate(self.pair_names, 1)}
        addon_pid = self.procs.procs["addon-d"].pid
        rss_before = rss_kb(addon_pid)
        started = time.monotonic()

        async def warm_all() -> list[int]:
            return await asyncio.gather(*(
                requests_with_tokens(self.ports[addon_d],
                                     [f"{prefix}{i}" for i in range(1, self.tokens + 1)], 32)
                for addon_d, prefix in prefixes.items()))

        bad = sum(asyncio.run(warm_all()))
        warm_s = time.monotonic() - started
        rss_after_warm = rss_kb(addon_pid)
        before = idp_stats(self.idp_port)
        runs: dict[str, list[Load]] = {"b": [], "c": [], "d": []}
        for r in range(self.rounds):
            plain, addon, addon_d = self.pair(r)
            runs["b"].append(self.measure(plain, self.ports[plain], settle=True))
            runs["c"].append(self.measure(addon, self.ports[addon], settle=True, kind="single",
                                          token=self.singles[addon]))
            runs["d"].append(self.measure(addon_d, self.ports[addon_d], settle=True, kind="many",
                                          token=prefixes[addon_d], n=self.tokens))
        after = idp_stats(self.idp_port)
        calls_d = after["calls"] - before["calls"]
        b, c, d = (median_load(runs[k]) for k in "bcd")
        for label, load in ((LABELS[1], b), (LABELS[2], c), (LABELS[3], d)):
            self.figure(label, load.line(), asdict(load))
        self.figure(LABELS[10], f"{self.tokens} distinct tokens warmed in {warm_s:.1f} s "
                    f"in each of {self.pairs} (d) process(es) ({bad} refused), "
                    f"{calls_d} introspection calls during the run "
                    f"(expected 0), max calls for one token {after['max_per_token']}",
                    {"tokens": self.tokens, "calls_during_run": calls_d, "warm_refused": bad,
                     "max_per_token": after["max_per_token"]})

        # (e): a new token per request, 50 ms endpoint; and the bare hook.
        before = idp_stats(self.idp_port)
        e = self.load(LABELS[4], "addon-d", self.ports["addon-d"], kind="cold",
                      run=f"a{self.run_id}")
        after = idp_stats(self.idp_port)
        calls_e = after["calls"] - before["calls"]
        distinct_e = after["distinct"] - before["distinct"]
        bare = self.load(LABELS[5], "bare", self.ports["bare"], kind="cold",
                         run=f"b{self.run_id}")

        rc, cpu_c = paired_ratios(runs["c"], runs["b"])
        rd, cpu_d = paired_ratios(runs["d"], runs["b"])
        self.figure(LABELS[6], f"{rc:.3f}   (target >= 0.95; by CPU per request {cpu_c:.3f}"
                    f"{rounds_note(runs['c'], runs['b'])})", rc)
        self.figure(LABELS[7], f"{rd:.3f}   (target >= 0.90; by CPU per request {cpu_d:.3f}"
                    f"{rounds_note(runs['d'], runs['b'])})", rd)
        self.figure(LABELS[8], f"{e.rps / bare.rps:.3f}   (target >= 0.90)", e.rps / bare.rps)
        # Added latency: with 32 connections latency is mostly queueing (32 x the
        # time per request), so it is measured on one connection, no queue; in
        # interleaved rounds like (b)-(d), as one stray pause moves a p99.
        pairs = []
        for r in range(self.rounds):
            plain, addon, _ = self.pair(r)
            lat_b = self.measure(plain, self.ports[plain], settle=True, conns=1)
            lat_c = self.measure(addon, self.ports[addon], settle=True, kind="single",
                                 token=self.singles[addon], conns=1)
            pairs.append((lat_c.p99_ms - lat_b.p99_ms, lat_b, lat_c))
        pairs.sort(key=lambda pair: pair[0])
        added, lat_b, lat_c = pairs[len(pairs) // 2]
        rounds = (f", median of {len(pairs)} rounds: "
                  f"{'/'.join(f'{d:+.2f}' for d, _, _ in pairs)}" if len(pairs) > 1 else "")
        self.figure(LABELS[9], f"{added:+.2f} ms p99, {lat_c.p50_ms - lat_b.p50_ms:+.2f} ms p50 "
                    f"on one connection ((b) p50/p99 {lat_b.p50_ms:.2f}/{lat_b.p99_ms:.2f} ms, "
                    f"(c) {lat_c.p50_ms:.2f}/{lat_c.p99_ms:.2f} ms{rounds}; target <= 1 ms); "
                    f"with 32 connections {c.p99_ms - b.p99_ms:+.2f} ms",
                    {"added_p99_ms": added, "b": asdict(lat_b), "c": asdict(lat_c)})
        self.figure(LABELS[11], f"{calls_e} calls for {distinct_e} distinct tokens "
                    f"({'equal' if calls_e == distinct_e else 'NOT equal'})",
                    {"calls": calls_e, "distinct": distinct_e})

        # 200 concurrent cold requests for one token: one call.
        token = f"burst-d300-{self.run_id}"
        statuses = asyncio.run(burst(self.ports["addon"], token, 200))
        calls = idp_stats(self.idp_port, token)["calls"]
        ok = sum(1 for s in statuses if s == 200)
        self.figure(LABELS[12], f"200 concurrent requests, one cold token: {calls} introspection "
                    f"call(s), {ok}/200 answered 200 (target: exactly 1 call)",
                    {"calls": calls, "ok": ok})

        # Cached tokens while one token's introspection takes 3 s.
        slow = self.slow_window(single)
        self.figure(LABELS[13], f"{slow['load'].line()}; slow request {slow['status']} "
                    f"after {slow['slow_s']:.2f} s (compare p50/p99 with (c))",
                    {**asdict(slow["load"]), "slow_status": slow["status"],
                     "slow_s": slow["slow_s"]})

        # mitmweb without and with the addon (the same warm single token), and
        # in full mode with bench/ideal_hook.py as a yardstick: the least any
        # hook adding the same header fields, comment and marker costs there.
        # All running, in interleaved rounds like (b)-(d) (the median is
        # reported); as many sets as pairs above, measured in turn.
        kinds = ("web-plain", "web-addon") + (() if self.quick else ("web-ideal",))
        web_sets = [tuple(f"{kind}-{k}" for kind in kinds) for k in range(1, self.pairs + 1)]
        web_ports = {name: free_port() for names in web_sets for name in names}
        scripts = {"web-addon": self.addon_args, "web-ideal": ["-s", str(BENCH / "ideal_hook.py")],
                   "web-plain": []}
        for name, port in web_ports.items():
            self.mitm(name, "mitmweb", port, scripts[name.rsplit("-", 1)[0]])
        for name, port in web_ports.items():
            self.procs.wait(name, port)
            if not name.startswith("web-plain"):
                asyncio.run(requests_with_tokens(port, [single], 1))
            self.loader.run(port, 1, "single", single)  # warm-up
        web_runs: dict[str, list[Load]] = {kind: [] for kind in kinds}
        for r in range(self.rounds):
            for kind, name in zip(web_runs, web_sets[r % len(web_sets)], strict=True):
                web_runs[kind].append(self.measure(name, web_ports[name], settle=True,
                                                   kind="single", token=single))
        web = {name: median_load(loads) for name, loads in web_runs.items()}
        for name in web_ports:
            self.procs.stop(name)
        self.figure(LABELS[14], web["web-plain"].line(), asdict(web["web-plain"]))
        self.figure(LABELS[15], web["web-addon"].line(), asdict(web["web-addon"]))
        ratio, _ = paired_ratios(web_runs["web-addon"], web_runs["web-plain"])
        self.figure(LABELS[16], f"{ratio:.3f}   (target >= 0.95"
                    f"{rounds_note(web_runs['web-addon'], web_runs['web-plain'])})", ratio)
        if self.quick:
            self.figure(LABELS[17], "not measured with --quick (bench/ideal_hook.py through "
                        "mitmweb, full mode only)", {})
        else:
            ideal, _ = paired_ratios(web_runs["web-ideal"], web_runs["web-plain"])
            self.figure(LABELS[17], f"{ideal:.3f} of mitmweb without addon: bench/ideal_hook.py, "
                        f"the same header fields, comment and marker with no policy "
                        f"({web['web-ideal'].rps:.0f} req/s"
                        f"{rounds_note(web_runs['web-ideal'], web_runs['web-plain'])})",
                        {**asdict(web["web-ideal"]), "ratio": ideal})

        # Memory.
        peak = rss_kb(addon_pid, "VmHWM")
        per_token = (rss_after_warm - rss_before) / max(1, self.tokens)
        self.figure(LABELS[18], f"{peak / 1024:.1f} MB (VmHWM of the addon's mitmdump "
                    "holding (d)'s tokens; "
                    f"{(rss_after_warm - rss_before) / 1024:+.1f} MB while warming "
                    f"{self.tokens} tokens)", {"peak_kb": peak, "warm_growth_kb":
                                               rss_after_warm - rss_before})
        probe = subprocess.run([sys.executable, str(BENCH / "memory_probe.py"), "--addon-dir",
                                str(self.addon_dir), "--tokens", "100000"],
                               capture_output=True, text=True, timeout=300, check=True)
        mem = json.loads(probe.stdout)
        self.figure(LABELS[19], f"{mem['growth_kb'] / 1024:.1f} MB for {mem['entries']} cached "
                    f"answers, {mem['hot']} of them hot (bench/memory_probe.py; target <= "
                    f"100 MB); the live proxy grew "
                    f"{per_token:.2f} kB/token, {per_token * 100_000 / 1024:.0f} MB "
                    f"per 100k extrapolated", {**mem, "live_kb_per_token": per_token})
        self.results["_context"] = {"a": asdict(a), "e": asdict(e), "quick": self.quick,
                                    "duration_s": self.duration, "notes": self.notes}

    def slow_window(self, cached_token: str) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            conn = await RawConnection.open(self.ports["addon"])
            started = time.perf_counter()
            task = asyncio.ensure_future(conn.get("/bench", f"slow-d3000-{self.run_id}"))
            await asyncio.sleep(0.3)
            load = await asyncio.to_thread(self.loader.run, self.ports["addon"], 2, "single",
                                           cached_token)
            status = await task
            conn.close()
            return {"load": load, "status": status, "slow_s": time.perf_counter() - started}

        return asyncio.run(go())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs, 1,000 tokens (< 60 s)")
    p.add_argument("--duration", type=float, help="seconds per load run (2 quick, 6 full)")
    p.add_argument("--tokens", type=int, help="distinct warm tokens for (d) (1k quick, 10k)")
    p.add_argument("--pairs", type=int,
                   help="plain/addon process pairs (and mitmweb pairs) measured in turn "
                        "(1 quick, 3)")
    p.add_argument("--rounds", type=int,
                   help="interleaved rounds of (b)-(d), the p99 and mitmweb pairs, going "
                        "through the pairs in turn (1 quick, 2 per pair)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    p.add_argument("--delay-ms", type=float, default=50, help="cold introspection delay (50)")
    p.add_argument("--python-load", action="store_true", help="use the Python client, not wrk")
    p.add_argument("--no-install", action="store_true", help="never install nginx/wrk")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--addon-dir", type=Path,
                   help="benchmark another copy of addon/ (e.g. an older commit's, from "
                        "git archive), for before/after figures")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args()

    bench = Bench(args)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        import mitmproxy.version

        print(f"oauth2-introspection benchmark ({'quick' if args.quick else 'full'}): "
              f"Python {sys.version.split()[0]}, mitmproxy {mitmproxy.version.VERSION}, "
              f"{os.cpu_count()} CPUs, load {bench.loader.tool}, {bench.duration:g} s per run, "
              f"{bench.rounds} round(s) over {bench.pairs} process pair(s)", flush=True)
        bench.start()
        bench.run()
    finally:
        bench.procs.stop_all()
        if not args.keep:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        else:
            print(f"logs kept in {bench.workdir}")
    for note in bench.notes:
        print(f"note: {note}")
    print(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)

"""Real processes on loopback: a mitmdump in reverse mode with the addon, in
front of a real echo upstream, calling a real introspection server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "addon" / "introspect.py"
CLIENT_AUTH = "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ="  # test-client:test-secret


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mitm_binary(name: str = "mitmdump") -> str:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} not found"
    return found


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s")


class Mitmdump:
    """A mitmdump subprocess in reverse mode with our addon."""

    def __init__(
        self,
        config: dict[str, Any] | str | Path | None,
        upstream_port: int,
        extra_args: list[str] | None = None,
        tool: str = "mitmdump",
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="oauth2-e2e-"))
        if isinstance(config, dict):
            self.config_path: Path | None = self.dir / "kong.yaml"
            self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        elif config is None:
            self.config_path = None
        else:
            self.config_path = Path(config)
        self.port = free_port()
        self.log_path = self.dir / "mitmdump.log"
        args = [
            mitm_binary(tool),
            "--mode", f"reverse:http://127.0.0.1:{upstream_port}@127.0.0.1:{self.port}",
            "-s", str(SCRIPT),
            "--set", "connection_strategy=lazy",
            "--set", f"confdir={self.dir / 'conf'}",
            "--set", "termlog_verbosity=debug",
        ]
        if self.config_path is not None:
            args += ["--set", f"introspection_config={self.config_path}"]
        args += extra_args or []
        self.args = args
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)

    def start(self) -> Mitmdump:
        try:
            wait_for_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"mitmdump failed to start:\n{self.log()}") from None
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def outcome(self, timeout: float = 30.0) -> tuple[int, str]:
        """For a start expected to fail: the exit code and the output, the
        process stopped whatever happens."""
        try:
            return self.wait_exit(timeout), self.log()
        finally:
            self.stop()

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def plugin(idp_url: str, **config: Any) -> dict[str, Any]:
    """An oauth2-introspection plugin entry pointing at the test IdP."""
    return {
        "name": "oauth2-introspection",
        "config": {"introspection_url": idp_url, "authorization_value": CLIENT_AUTH, **config},
    }


def echoed(resp: httpx.Response) -> dict[str, Any]:
    """The echo upstream's JSON, with a case-insensitive header lookup."""
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text}"
    data = resp.json()
    data["h"] = {k.lower(): v for k, v in data["headers"]}
    return data


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2)


# mitmproxy's event log: "[12:34:56.789] text". Connection events carry a second
# "[client address]" bracket, and flow dumps ("127.0.0.1:5000: GET ...") have no
# timestamp: both are mitmproxy's own lines, which print request URLs verbatim.
_EVENT_LINE = re.compile(r"^\[\d{2}:\d{2}:\d{2}\.\d{3}\] (?!\[)(?P<text>.*)$")


def addon_lines(log: str) -> list[str]:
    """The event-log lines not tied to a client connection: our addon's own
    lines (plus mitmproxy's few start-up lines)."""
    return [m["text"] for line in log.splitlines() if (m := _EVENT_LINE.match(line))]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll `predicate` until it is truthy (returned) or `timeout` seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send one raw HTTP/1.1 request to 127.0.0.1:`port` (what httpx would not
    send: absolute form, odd bytes, lower-case methods); the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split(b" ", 2)[1]), body

"""The seed's Admin API curl command lines, and a way to run them verbatim
(only the URL and the secret values changed) with curl, or, where curl is not
installed, the same request with httpx."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from .harness import CLIENT_AUTH, Mitmdump, free_port

# Copied from ../shared/seed/kong-oauth2-introspection.txt, character for character.
SEED_SERVICE = """curl -X POST http://localhost:8001/services/SERVICE_NAME|SERVICE_ID/plugins \\
--data "name=oauth2-introspection" \\
--data "config.introspection_url=https://example-url.com" \\
--data "config.authorization_value=Basic MG9hNWlpbjpPcGVuU2VzYW1l" \\
--data "config.consumer_by=username\""""

SEED_ROUTE = """curl -X POST http://localhost:8001/routes/ROUTE_NAME|ROUTE_ID/plugins \\
--data "name=oauth2-introspection" \\
--data "config.introspection_url=https://example-url.com" \\
--data "config.authorization_value=Basic MG9hNWlpbjpPcGVuU2VzYW1l" \\
--data "config.consumer_by=username\""""

SEED_GLOBAL = """curl -X POST http://localhost:8001/plugins/ \\
--data "name=oauth2-introspection" \\
--data "config.introspection_url=https://example-url.com" \\
--data "config.authorization_value=Basic MG9hNWlpbjpPcGVuU2VzYW1l" \\
--data "config.consumer_by=username\""""


def seed_command(template: str, admin_url: str, idp_url: str, target: str = "") -> str:
    """The seed's line with only the URLs, the secret and the placeholder changed."""
    return (template.replace("http://localhost:8001", admin_url)
            .replace("https://example-url.com", idp_url)
            .replace("Basic MG9hNWlpbjpPcGVuU2VzYW1l", CLIENT_AUTH)
            .replace("SERVICE_NAME|SERVICE_ID", target)
            .replace("ROUTE_NAME|ROUTE_ID", target))


@dataclass
class CurlResult:
    status: int
    body: str
    via: str


def run_curl(command: str) -> CurlResult:
    """Run a curl command line (with its backslash-newlines) as a shell would."""
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl"
    if shutil.which("curl"):
        proc = subprocess.run([*argv, "-sS", "--write-out", "\n%{http_code}"],
                              capture_output=True, text=True, timeout=15, check=False)
        assert proc.returncode == 0, proc.stderr
        body, _, status = proc.stdout.rpartition("\n")
        return CurlResult(int(status), body, "curl")
    # No curl on this machine: the same request (curl --data = urlencoded form).
    method, url, data = "GET", "", []
    i = 1
    while i < len(argv):
        if argv[i] == "-X":
            method, i = argv[i + 1], i + 2
        elif argv[i] in ("--data", "-d"):
            data.append(argv[i + 1])
            method = method if method != "GET" else "POST"
            i += 2
        else:
            url, i = argv[i], i + 1
    body = "&".join(urlencode([tuple(d.split("=", 1))]) for d in data)
    resp = httpx.request(method, url, content=body.encode(), trust_env=False, timeout=15,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    return CurlResult(resp.status_code, resp.text, "httpx")


class AdminMitmdump(Mitmdump):
    """A mitmdump with the Admin API on a loopback port."""

    def __init__(self, config: Any, upstream_port: int, extra_args: list[str] | None = None,
                 admin_port: int | None = None, token: str = "") -> None:
        self.admin_port = admin_port or free_port()
        args = ["--set", f"introspection_admin=127.0.0.1:{self.admin_port}"]
        if token:
            args += ["--set", f"introspection_admin_token={token}"]
        super().__init__(config, upstream_port, [*args, *(extra_args or [])])

    def start(self) -> AdminMitmdump:
        super().start()
        from .harness import wait_for_port

        wait_for_port(self.admin_port, self.proc)
        return self

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.admin_url, trust_env=False, timeout=15, **kwargs)

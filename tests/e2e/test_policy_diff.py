"""The policy diff on recordings a real mitmdump wrote (`save_stream_file`):
answers that changed while recording, hidden tokens whose answer was not
recorded, and requests refused for want of a policy. test_debugging.py has
the main case (a candidate config that changes three decisions)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from oauth2_introspection.devtools.echo import EchoServer
from oauth2_introspection.devtools.idp import IdpServer

from .harness import ROOT, Mitmdump, plugin


def _config(idp_url: str) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "echo", "routes": [
            {"name": "api", "paths": ["/api"], "strip_path": False,
             "plugins": [plugin(idp_url, ttl=1)]},
            {"name": "hidden", "paths": ["/hidden"], "strip_path": False,
             "plugins": [plugin(idp_url, hide_credentials=True)]},
        ]}],
        "consumers": [{"username": "alice"}, {"username": "bob"}],
    }


def _record(echo: EchoServer, config: Any, path: Path, requests: Any,
            *extra: str) -> None:
    m = Mitmdump(config, echo.port,
                 extra_args=["--set", f"save_stream_file={path}", *extra]).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            requests(c)
    finally:
        m.stop()


def _diff(flows: Path, config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "oauth2_introspection.diff_cli", "--json", *args,
         str(flows), str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    return proc.returncode, json.loads(proc.stdout)


def _changes(report: dict[str, Any]) -> dict[str, list[str]]:
    return {c["request"]: c["changes"] for c in report["changes"]}


def test_each_request_is_replayed_with_the_answer_it_was_decided_on(
    echo: EchoServer, idp: IdpServer, tmp_path: Path
) -> None:
    # one token: alice, then revoked, then re-issued to bob (ttl 1 s, so each
    # change is introspected); against the recorded config nothing changes
    token = "tok-diff-changing-0123456789"
    flows, config = tmp_path / "flows.mitm", tmp_path / "kong.yaml"
    config.write_text(yaml.safe_dump(_config(idp.url), sort_keys=False))

    def requests(c: httpx.Client) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        for path, answer, status in (("/api/one", {"active": True, "username": "alice"}, 200),
                                     ("/api/two", {"active": False}, 401),
                                     ("/api/three", {"active": True, "username": "bob"}, 200)):
            idp.add_tokens({token: answer})
            time.sleep(1.3)  # the previous answer has expired from the cache
            assert c.get(path, headers=auth).status_code == status
            assert c.get(path + "/cached", headers=auth).status_code == status

    _record(echo, config, flows, requests)
    status, report = _diff(flows, config)
    assert status == 0, report
    assert report["evaluated"] == 6 and report["changes"] == []

    # and a candidate that maps no consumer changes exactly the allowed ones
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(yaml.safe_dump({**_config(idp.url), "consumers": []},
                                        sort_keys=False))
    status, report = _diff(flows, candidate)
    assert status == 1
    changes = _changes(report)
    assert sorted(changes) == ["GET /api/one", "GET /api/one/cached", "GET /api/three",
                               "GET /api/three/cached"]
    assert changes["GET /api/one"][0] == "consumer alice → -"
    assert changes["GET /api/three/cached"][0] == "consumer bob → -"


def test_a_hidden_token_without_a_recorded_answer_is_unknown(
    echo: EchoServer, idp: IdpServer, tmp_path: Path
) -> None:
    token = "tok-diff-hidden-0123456789"
    idp.add_tokens({token: {"active": True, "username": "alice"}})
    flows, config = tmp_path / "flows.mitm", tmp_path / "kong.yaml"
    config.write_text(yaml.safe_dump(_config(idp.url), sort_keys=False))

    def requests(c: httpx.Client) -> None:
        assert c.get("/hidden/h", headers={"Authorization": f"Bearer {token}"}
                     ).status_code == 200

    # no introspection sub-flows: nothing recorded the answer
    _record(echo, config, flows, requests, "--set", "introspection_subflows=false")
    for args in ((), ("--live",)):  # the token itself is not in the recording either
        _, report = _diff(flows, config, *args)
        [row] = report["changes"]
        assert row["request"] == "GET /hidden/h"
        assert row["candidate"].startswith("unknown"), row  # was "401 missing token"


def test_requests_refused_for_want_of_a_policy_are_replayed(
    echo: EchoServer, idp: IdpServer, tmp_path: Path
) -> None:
    flows, config = tmp_path / "flows.mitm", tmp_path / "kong.yaml"
    config.write_text(yaml.safe_dump(_config(idp.url), sort_keys=False))

    def requests(c: httpx.Client) -> None:
        assert c.get("/api/x").status_code == 503
        assert c.get("/elsewhere").status_code == 503

    _record(echo, None, flows, requests)
    status, report = _diff(flows, config)
    assert status == 1 and report["evaluated"] == 2
    assert _changes(report) == {"GET /api/x": ["503 → 401"],
                                "GET /elsewhere": ["503 → no plugin"]}

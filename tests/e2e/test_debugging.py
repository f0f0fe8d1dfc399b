"""Issue 6 end to end: what mitmweb shows (read through mitmweb's own JSON API,
as its UI does), the introspection sub-flows, the commands over mitmweb's
command API, report mode switched live from the options API, and the policy
diff on a flow file recorded by a real `mitmdump -w`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mitmproxy import io

from oauth2_introspection.devtools.echo import EchoServer
from oauth2_introspection.devtools.idp import IdpServer

from .harness import ROOT, Mitmdump, echoed, plugin
from .mitmweb import Mitmweb, WebApi

MARK = {"allowed": "🟢", "unauthorized": "🔴", "report": "🟡", "introspection": "🔍"}


def web_config(idp_url: str) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "echo", "routes": [
            {"name": "api", "paths": ["/api"], "strip_path": False,
             "plugins": [plugin(idp_url)]},
        ]}],
        "consumers": [{"username": "alice"}],
    }


@pytest.fixture(scope="module")
def web(echo: EchoServer, idp: IdpServer) -> Iterator[Mitmweb]:
    w = Mitmweb(web_config(idp.url), echo.port).start()
    yield w
    w.stop()


@pytest.fixture
def api(web: Mitmweb) -> Iterator[WebApi]:
    a = WebApi(web)
    a.set_options(introspection_mode="enforce")
    yield a
    a.set_options(introspection_mode="enforce")
    a.close()


@pytest.fixture
def proxied(web: Mitmweb) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, trust_env=False, timeout=15) as c:
        yield c


def by_path(flows: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    return next((f for f in flows if f["request"]["path"] == path), None)


def test_refused_and_allowed_flows_show_comment_marker_and_linked_introspection_flow(
    api: WebApi, proxied: httpx.Client, make_token: Callable[..., str]
) -> None:
    token = make_token(username="alice")
    assert proxied.get("/api/refused").status_code == 401
    echoed(proxied.get("/api/allowed", headers={"Authorization": f"Bearer {token}"}))
    flows = api.wait_flows(lambda fl: by_path(fl, "/api/allowed") and any(
        "introspection call" in f["comment"] for f in fl))

    refused = by_path(flows, "/api/refused")
    assert refused is not None
    assert refused["comment"] == "oauth2-introspection [route api, route 'api']: 401 missing token"
    assert refused["marked"] == MARK["unauthorized"]

    allowed = by_path(flows, "/api/allowed")
    assert allowed is not None
    assert allowed["comment"].startswith(
        "oauth2-introspection [route api, route 'api']: allowed alice (introspected, ")
    assert allowed["marked"] == MARK["allowed"]

    subs = [f for f in flows if allowed["id"][:8] in f["comment"]
            and "introspection call" in f["comment"]]
    assert len(subs) == 1, [f["comment"] for f in flows]
    sub = subs[0]
    assert sub["marked"] == MARK["introspection"]
    assert sub["request"]["method"] == "POST" and sub["request"]["path"] == "/introspect"
    assert sub["response"]["status_code"] == 200
    # what the endpoint saw, its secrets masked
    headers = dict((k.lower(), v) for k, v in sub["request"]["headers"])
    assert headers["authorization"] == "Basic ***"
    body = api.http.get(f"/flows/{sub['id']}/request/content.data").text
    assert body.startswith("token=tok-***") and token not in body
    answer = api.http.get(f"/flows/{sub['id']}/response/content.data").json()
    assert answer["username"] == "alice"
    # linked: same hashed token id in both, never the token
    explained = api.command("introspection.explain", "@" + allowed["id"])
    token_id = explained.split(", id ")[1].split()[0]
    assert token_id in sub["comment"]
    # (the client's own request holds it, as mitmproxy records it; our annotations don't)
    assert token not in json.dumps([sub, *(f["comment"] for f in flows)])
    assert token not in explained


def test_commands_over_mitmwebs_command_api(
    api: WebApi, proxied: httpx.Client, make_token: Callable[..., str]
) -> None:
    token = make_token(username="alice")
    echoed(proxied.get("/api/cmd", headers={"Authorization": f"Bearer {token}"}))
    flows = api.wait_flows(lambda fl: by_path(fl, "/api/cmd"))
    flow = by_path(flows, "/api/cmd")
    assert flow is not None

    explained = api.command("introspection.explain", "@" + flow["id"])
    assert "decision: allowed: the token is active" in explained
    assert "consumer: alice" in explained and "route: api" in explained
    token_id = explained.split(", id ")[1].split()[0]

    shown = api.command("introspection.cache.show")
    assert token_id in shown and token not in shown
    assert api.command("introspection.cache.flush", token) == "flushed 1 cached answer(s)"
    assert token_id not in api.command("introspection.cache.show")
    echoed(proxied.get("/api/cmd2", headers={"Authorization": f"Bearer {token}"}))
    assert token_id in api.command("introspection.cache.show")
    assert api.command("introspection.cache.flush", token_id) == "flushed 1 cached answer(s)"
    api.command("introspection.cache.flush")
    assert api.command("introspection.cache.show") == "0 cached introspection answer(s)"

    assert api.command("introspection.reload").startswith("reloaded ")
    listed = api.http.get("/commands").json()
    for name in ("introspection.cache.show", "introspection.cache.flush",
                 "introspection.explain", "introspection.reload", "introspection.diff"):
        assert name in listed


def test_report_mode_forwards_what_enforce_refuses(
    api: WebApi, proxied: httpx.Client, make_token: Callable[..., str]
) -> None:
    assert proxied.get("/api/enforced").status_code == 401
    resp = api.set_options(introspection_mode="report")
    assert resp.status_code == 200, resp.text
    assert api.options()["introspection_mode"]["value"] == "report"
    # a bad value is refused and changes nothing
    assert api.set_options(introspection_mode="audit").status_code == 400
    assert api.options()["introspection_mode"]["value"] == "report"

    spoofed = {"X-Consumer-Username": "admin"}
    data = echoed(proxied.get("/api/reported", headers=spoofed))
    assert data["h"]["x-consumer-username"] == "admin"  # exactly as received

    token = make_token(username="alice")
    data = echoed(proxied.get("/api/reported-ok", headers={"Authorization": f"Bearer {token}"}))
    assert data["h"]["authorization"] == f"Bearer {token}"
    assert not any(k.startswith(("x-consumer-", "x-credential-")) for k in data["h"])

    flows = api.wait_flows(lambda fl: by_path(fl, "/api/reported-ok"))
    reported = by_path(flows, "/api/reported")
    assert reported is not None and reported["response"]["status_code"] == 200
    assert reported["marked"] == MARK["report"]
    assert reported["comment"].endswith(
        "report only: would refuse 401 missing token (forwarded unchanged)")
    explained = api.command("introspection.explain", "@" + reported["id"])
    assert "would answer: 401" in explained and "would remove: X-Consumer-Username" in explained
    ok = by_path(flows, "/api/reported-ok")
    assert ok is not None and ok["marked"] == MARK["allowed"]
    assert "report only: would forward allowed alice" in ok["comment"]
    explained = api.command("introspection.explain", "@" + ok["id"])
    assert "would set: " in explained and "X-Consumer-Username: alice" in explained


# -- the policy diff on a recorded flow file ---------------------------------------


def recorded_config(idp_url: str, hide: bool = True) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "echo", "routes": [
            {"name": "api", "paths": ["/api"], "strip_path": False,
             "plugins": [plugin(idp_url)]},
            {"name": "hidden", "paths": ["/hidden"], "strip_path": False,
             "plugins": [plugin(idp_url, hide_credentials=hide)]},
            {"name": "open", "paths": ["/open"], "strip_path": False},
        ]}],
        "consumers": [{"username": "alice"}, {"username": "bob", "custom_id": "bob-app"}],
    }


def candidate_config(idp_url: str) -> dict[str, Any]:
    cfg = recorded_config(idp_url, hide=False)
    routes = cfg["services"][0]["routes"]
    routes[0]["plugins"] = [plugin(idp_url, consumer_by="client_id")]
    routes[2]["plugins"] = [plugin(idp_url)]
    return cfg


@pytest.fixture(scope="module")
def recording(
    echo: EchoServer, idp: IdpServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("diff")
    flows_path = tmp / "flows.mitm"
    tokens = {"alice": "tok-diff-alice-0123456789", "bob": "tok-diff-bob-0123456789",
              "dead": "tok-diff-dead-0123456789"}
    idp.add_tokens({
        tokens["alice"]: {"active": True, "username": "alice", "client_id": "web"},
        tokens["bob"]: {"active": True, "username": "bob", "client_id": "bob-app"},
        tokens["dead"]: {"active": False},
    })
    m = Mitmdump(recorded_config(idp.url), echo.port,
                 extra_args=["--set", f"save_stream_file={flows_path}"]).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            def bearer(who: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {tokens[who]}"}
            echoed(c.get("/api/1", headers=bearer("alice")))
            assert c.get("/api/2").status_code == 401
            echoed(c.get("/open/3"))
            data = echoed(c.get("/hidden/4", headers=bearer("alice")))
            assert "authorization" not in data["h"]
            echoed(c.get("/api/5", headers=bearer("bob")))
            assert c.get("/api/6", headers=bearer("dead")).status_code == 401
            echoed(c.get(f"/api/7?access_token={tokens['bob']}"))
    finally:
        m.stop()
    candidate = tmp / "candidate.yaml"
    candidate.write_text(yaml.safe_dump(candidate_config(idp.url), sort_keys=False))
    return {"flows": flows_path, "candidate": candidate, "tokens": tokens}


EXPECTED_CHANGES = {
    "GET /api/1": ["consumer alice → -",
                   "headers added: -X-Consumer-ID -X-Consumer-Username"],
    "GET /open/3": ["no plugin → 401"],
    "GET /hidden/4": ["headers removed: -header:Authorization"],
}


def test_the_recording_holds_introspection_flows_without_tokens(
    recording: dict[str, Any]
) -> None:
    with open(recording["flows"], "rb") as f:
        flows = list(io.FlowReader(f).stream())
    subs = [f for f in flows if f.metadata.get("oauth2_introspection", {}).get("kind")
            == "introspection call"]
    assert len(subs) == 3  # alice, bob, dead: one call each, the rest cache hits
    for sub in subs:
        assert sub.request.headers["Authorization"] == "Basic ***"
        text = sub.request.get_text() + json.dumps(sub.metadata) + sub.comment
        assert not any(t in text for t in recording["tokens"].values())


def test_policy_diff_console_script_reports_exactly_the_changed_decisions(
    recording: dict[str, Any], idp: IdpServer
) -> None:
    calls = len(idp.calls)
    proc = subprocess.run(
        [sys.executable, "-m", "oauth2_introspection.diff_cli", "--json",
         str(recording["flows"]), str(recording["candidate"])],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["evaluated"] == 7
    assert {c["request"]: c["changes"] for c in report["changes"]} == EXPECTED_CHANGES
    assert len(idp.calls) == calls  # answers from the recording, no live IdP
    assert not any(t in proc.stdout for t in recording["tokens"].values())

    table = subprocess.run(
        [sys.executable, "-m", "oauth2_introspection.diff_cli",
         str(recording["flows"]), str(recording["candidate"])],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    ).stdout
    assert "3 of 7 recorded decision(s) change" in table
    assert "allowed alice" in table and "no plugin" in table

    # the recorded config itself changes nothing
    same = Path(recording["candidate"]).with_name("same.yaml")
    same.write_text(yaml.safe_dump(recorded_config(idp.url), sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "oauth2_introspection.diff_cli", str(recording["flows"]),
         str(same)], capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 of 7 recorded decision(s) change" in proc.stdout


def test_policy_diff_as_a_mitmproxy_command(recording: dict[str, Any], api: WebApi) -> None:
    table = api.command("introspection.diff", str(recording["flows"]),
                        str(recording["candidate"]))
    assert "3 of 7 recorded decision(s) change" in table
    for request in EXPECTED_CHANGES:
        assert request in table

"""Decisions are logged, and tokens never appear in full in our addon's lines.

mitmdump itself prints request URLs (query tokens included) in its flow dump;
we check the event-log lines the addon writes.
"""

from __future__ import annotations

import json
import re

import httpx
from mitmproxy import io

from .harness import Mitmdump, addon_lines, echoed, plugin, wait_until

TOKEN_RE = re.compile(r"tok-[0-9a-f]{32}")


def test_tokens_never_appear_in_the_addons_log_lines(client, proxy, make_token):
    tokens = {
        "header": make_token(username="alice"),
        "query": make_token(username="alice"),
        "form": make_token(username="alice"),
        "json": make_token(username="alice"),
        "inactive": make_token(active=False),
        "error": make_token(_status=500, _raw_body="nope"),
        "bad-claim": make_token(username="alice", sub="x\r\ny"),
        "hidden": make_token(username="alice"),
    }
    echoed(client.get("/basic/l", headers={"Authorization": f"Bearer {tokens['header']}"}))
    echoed(client.get(f"/basic/l?a=1&access_token={tokens['query']}&b=2"))
    echoed(client.post("/basic/l", data={"access_token": tokens["form"]}))
    echoed(client.post("/basic/l", json={"access_token": tokens["json"]}))
    assert client.get(f"/basic/l?access_token={tokens['inactive']}").status_code == 401
    assert client.get(f"/basic/l?access_token={tokens['error']}").status_code == 502
    echoed(client.get("/basic/l", headers={"Authorization": f"Bearer {tokens['bad-claim']}"}))
    echoed(client.get(f"/hide/l?access_token={tokens['hidden']}"))

    def decision_lines():
        return [line for line in addon_lines(proxy.log()) if "[route basic]" in line
                and any(word in line for word in ("allowed", "401", "502"))]

    # every decision above was logged (query-token URLs with the token masked)
    assert wait_until(lambda: len(decision_lines()) >= 7, 5)
    assert any("access_token=***" in line for line in decision_lines())
    lines = addon_lines(proxy.log())
    for source, token in tokens.items():
        leaking = [line for line in lines if token in line or token[4:] in line]
        assert not leaking, f"{source} token logged: {leaking}"
    # no token of any test in this session leaked either
    assert not [line for line in lines if TOKEN_RE.search(line)]


def test_each_decision_is_written_onto_the_flow_without_the_token(
    echo, idp, make_token, tmp_path
):
    config = {
        "_format_version": "3.0",
        "services": [{"name": "echo", "routes": [
            {"name": "guarded", "paths": ["/g"], "strip_path": False, "plugins": [plugin(idp.url)]},
            {"name": "fallback", "paths": ["/a"], "strip_path": False,
             "plugins": [plugin(idp.url, anonymous="anon")]},
        ]}],
        "consumers": [{"username": "alice"}, {"username": "anon"}],
    }
    live, dead = make_token(username="alice"), make_token(active=False)
    flows_path = tmp_path / "flows.mitm"
    m = Mitmdump(config, echo.port, extra_args=["--set", f"save_stream_file={flows_path}"])
    m.start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            echoed(c.get(f"/g/1?access_token={live}"))
            assert c.get("/g/2", headers={"Authorization": f"Bearer {dead}"}).status_code == 401
            assert c.get("/g/3").status_code == 401
            echoed(c.get("/a/4"))
            echoed(c.get("/unrouted"))
    finally:
        m.stop()
    with open(flows_path, "rb") as f:
        flows = {fl.request.path.split("?")[0]: fl for fl in io.FlowReader(f).stream()}
    expected = {
        "/g/1": ("allowed", "allowed alice"),
        "/g/2": ("refused", "401 invalid token"),
        "/g/3": ("refused", "401 missing token"),
        "/a/4": ("anonymous", "anonymous anon"),
    }
    for path, (outcome, summary) in expected.items():
        flow = flows[path]
        meta = flow.metadata["oauth2_introspection"]
        assert meta["outcome"] == outcome, path
        assert "oauth2-introspection" in flow.comment and summary in flow.comment, flow.comment
        dumped = json.dumps(meta, default=str) + flow.comment
        assert live not in dumped and dead not in dumped
    assert flows["/g/1"].metadata["oauth2_introspection"]["route"] == "guarded"
    assert flows["/unrouted"].metadata["oauth2_introspection"]["outcome"] == "no plugin"

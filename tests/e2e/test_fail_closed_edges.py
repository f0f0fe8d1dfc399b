"""Edges where mitmproxy itself would forward a request the policy never saw:
a `--set` of our options mitmproxy cannot apply (it then starts without the
addon), a request target that is not a path; and flows that must stay
savable whatever bytes the client sent."""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy.io import FlowReader

from .harness import Mitmdump, plugin, raw_request


def _config(idp_url: str) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "s", "routes": [{"name": "all", "paths": ["/"]}],
                      "plugins": [plugin(idp_url)]}],
    }


@pytest.mark.parametrize(("extra", "option"), [
    (["--set", "introspection_subflows"], "introspection_subflows"),
    (["--set", "introspection_mode=enforce", "--set", "introspection_mode=enforce"],
     "introspection_mode"),
    (["--set", "introspection_config=CONFIG"], "introspection_config"),  # given twice
], ids=["no-value", "twice", "config-twice"])
def test_a_set_mitmproxy_cannot_apply_stops_startup(echo, idp, extra, option):
    m = Mitmdump(_config(idp.url), echo.port)
    m.stop()  # only for its config path: started again with the extra arguments
    args = [str(m.config_path) if a.endswith("CONFIG") else a for a in extra]
    args = [f"introspection_config={m.config_path}" if a == str(m.config_path) else a
            for a in args]
    m2 = Mitmdump(m.config_path, echo.port, extra_args=args)
    before = echo.request_count
    code, log = m2.outcome()
    assert code != 0, log
    assert any(option in line and "--set" in line for line in log.splitlines()), log
    assert echo.request_count == before


@pytest.mark.parametrize("target", [b"*"])  # HTTP/1 `x`: mitmproxy refuses it itself
def test_a_request_target_that_is_not_a_path_is_refused(echo, idp, target):
    m = Mitmdump(_config(idp.url), echo.port).start()
    try:
        before = echo.request_count
        status, body = raw_request(m.port, b"OPTIONS " + target + b" HTTP/1.1\r\n"
                                   b"Host: 127.0.0.1\r\n\r\n")
        assert status == 400, body
        assert b"request target" in body
        assert echo.request_count == before
    finally:
        m.stop()


def test_flows_with_non_utf8_paths_and_hosts_are_saved(echo, idp):
    m = Mitmdump(_config(idp.url), echo.port)
    m.stop()
    saved = m.dir / "flows.mitm"
    m = Mitmdump(m.config_path, echo.port, extra_args=["-w", str(saved)]).start()
    try:
        assert raw_request(m.port, b"GET /caf\xe9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 401
        assert raw_request(m.port, b"GET /x HTTP/1.1\r\nHost: \xff\r\n\r\n")[0] == 401
        assert raw_request(m.port, b"GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 401
    finally:
        m.stop()
    assert "UnicodeEncodeError" not in m.log_path.read_text(errors="replace")
    with saved.open("rb") as f:
        metas = [fl.metadata["oauth2_introspection"] for fl in FlowReader(f).stream()]
    paths = [meta["client_path"] for meta in metas]
    assert paths == ["/caf%E9", "/x", "/after"], paths
    assert metas[1]["client_host"] == "%FF"


def test_503_answers_are_logged(echo):
    m = Mitmdump(None, echo.port).start()
    try:
        for _ in range(3):
            assert raw_request(m.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 503
    finally:
        m.stop()
    assert "503 no policy loaded" in m.log_path.read_text(errors="replace")

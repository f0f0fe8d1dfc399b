"""Hostile input through a real mitmdump: introspection answers and client
requests built to crash the addon get a clean answer (502, 200 or 401), never
a 500 with a traceback, and a token never reaches the addon's log lines."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .harness import Mitmdump, addon_lines, echoed, plugin, raw_request, wait_until

BOOM = Path(__file__).parent / "scripts" / "raise_in_decide.py"
MALFORMED = {"error": "bad_gateway",
             "message": "The token introspection endpoint did not give a usable answer"}

HOSTILE_ANSWERS = {
    "huge exp": '{"active":true,"username":"alice","exp":' + "9" * 401 + "}",
    "lone surrogate": '{"active":true,"username":"alice","sub":"x\\ud800"}',
    "deep nesting": '{"active":true,"x":' + "[" * 5000 + "]" * 5000 + "}",
}


def _no_traceback(proxy: Mitmdump, since: int) -> None:
    """No 500 in what the (shared) proxy logged since offset `since`."""
    log = proxy.log()[since:]
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


# -- item: hostile introspection answers ----------------------------------------------------


@pytest.mark.parametrize("raw", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_a_hostile_introspection_answer_is_a_502_malformed_answer(
    client, proxy, make_token, raw: str
) -> None:
    token = make_token(_raw_body=raw, _content_type="application/json")
    since = len(proxy.log())
    resp = client.get("/basic/h", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 502
    assert resp.json() == MALFORMED
    assert wait_until(lambda: "introspection answer malformed" in proxy.log()[since:], 5)
    _no_traceback(proxy, since)


@pytest.mark.parametrize("raw", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_a_hostile_answer_falls_back_to_the_anonymous_consumer(
    client, proxy, make_token, raw: str
) -> None:
    token = make_token(_raw_body=raw, _content_type="application/json")
    since = len(proxy.log())
    data = echoed(client.get("/anon/h", headers={"Authorization": f"Bearer {token}"}))
    assert data["h"]["x-anonymous-consumer"] == "true"
    assert data["h"]["x-consumer-username"] == "anonymous-user"
    _no_traceback(proxy, since)


# -- item: deeply nested client bodies ------------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 1000 + b"]" * 1000,
                                  b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
                         ids=["1000 deep", "200 KB deep"])
def test_a_deeply_nested_json_body_has_no_parameters(
    client, proxy, make_token, body: bytes
) -> None:
    token = make_token(username="alice")
    since = len(proxy.log())
    data = echoed(client.post("/basic/j", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"}))
    assert data["h"]["x-consumer-username"] == "alice"
    _no_traceback(proxy, since)


# -- item: tokens that are not UTF-8 --------------------------------------------------------


def test_a_token_with_a_byte_that_is_not_utf8_is_invalid_without_a_call(
    proxy, idp
) -> None:
    form = b"access_token=ok-SECRET4\xff"
    since = len(proxy.log())
    requests = [
        b"GET /basic/b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ok-SECRET1\xff\r\n\r\n",
        b"GET /basic/b?access_token=ok-SECRET2%FF HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /basic/b?access_token=ok-SECRET3\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /basic/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\nContent-Length: %d\r\n\r\n%s" % (len(form), form),
    ]
    for raw in requests:
        status, body = raw_request(proxy.port, raw)
        assert status == 401, (raw, body)
        assert b'"invalid_token"' in body
    with idp.lock:
        assert not [c for c in idp.calls if "SECRET" in c["form"].get("token", "")]
    assert wait_until(
        lambda: proxy.log()[since:].count("invalid token (not UTF-8 text)") >= 4, 5)
    _no_traceback(proxy, since)
    assert not [line for line in addon_lines(proxy.log()[since:]) if "SECRET" in line]


# -- item: claims in log lines --------------------------------------------------------------


def test_a_claim_with_crlf_cannot_forge_a_log_line(client, proxy, make_token) -> None:
    token = make_token(username="eve\r\nX-Evil: forged\x85")
    since = len(proxy.log())
    data = echoed(client.get("/basic/c", headers={"Authorization": f"Bearer {token}"}))
    assert "x-credential-identifier" not in data["h"]
    expected = "allowed eve\\r\\nX-Evil: forged\\x85 ("
    assert wait_until(lambda: expected in proxy.log()[since:], 5)
    lines = proxy.log()[since:].splitlines()
    assert not [line for line in lines if line.startswith("X-Evil")]
    _no_traceback(proxy, since)


# -- item: the token in the addon's own log lines -------------------------------------------


def test_a_token_under_a_percent_encoded_name_is_masked_in_the_decision_line(
    echo, idp, make_token
) -> None:
    config = {"_format_version": "3.0", "services": [{"name": "s", "routes": [
        {"name": "r", "paths": ["/"], "plugins": [plugin(idp.url)]}]}]}
    token = make_token(active=False)
    # flow_detail=0: no mitmproxy flow dump, so every line left is checked
    m = Mitmdump(config, echo.port, extra_args=["--set", "flow_detail=0"]).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=10) as c:
            assert c.get(f"/qq?access%5Ftoken={token}").status_code == 401
            assert c.get(f"/qq?a=1&%61ccess_token={token}").status_code == 401
        assert wait_until(lambda: m.log().count("401 invalid token") >= 2, 5)
        log = m.log()
        assert "/qq?access_token=*** [route r]" in log
        assert token not in log and token[4:] not in log
    finally:
        m.stop()


def test_a_token_under_a_percent_encoded_name_is_masked_in_the_500_line(
    echo, idp, make_token
) -> None:
    config = {"_format_version": "3.0", "services": [{"name": "s", "routes": [
        {"name": "r", "paths": ["/"], "plugins": [plugin(idp.url)]}]}]}
    token = make_token(username="alice")
    m = Mitmdump(config, echo.port,
                 extra_args=["-s", str(BOOM), "--set", "flow_detail=0"]).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=10) as c:
            assert c.get(f"/qq?access%5Ftoken={token}").status_code == 500
        assert wait_until(lambda: "internal error on" in m.log(), 5)
        log = m.log()
        assert "/qq?access_token=***; answering 500" in log
        assert token not in log and token[4:] not in log
    finally:
        m.stop()


# -- item: compressed introspection answers ------------------------------------------------


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_a_gzip_answer_is_read_and_a_gzip_bomb_is_refused_in_bounded_memory(
    client, proxy, make_token
) -> None:
    token = make_token(username="alice", _gzip=True)
    assert client.get("/basic/g", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    before = _peak_rss_kb(proxy.proc.pid)
    # 200 MB of JSON whitespace, about 200 kB on the wire
    bomb = make_token(username="alice", _gzip=True, _pad=200_000_000)
    since = len(proxy.log())
    resp = client.get("/basic/g", headers={"Authorization": f"Bearer {bomb}"}, timeout=60)
    assert resp.status_code == 502 and resp.json() == MALFORMED
    assert wait_until(lambda: "answer larger than" in proxy.log()[since:], 5)
    # read in bounded steps: never the whole inflated answer in memory
    assert _peak_rss_kb(proxy.proc.pid) - before < 50_000
    _no_traceback(proxy, since)

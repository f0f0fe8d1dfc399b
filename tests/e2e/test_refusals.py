"""The answers the plugin gives itself: 401 missing/inactive, 502 when the
introspection endpoint gives no usable answer (without leaking it)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .harness import addon_lines, wait_until

MISSING = {"error": "invalid_request", "error_description": "The access token is missing"}
INVALID = {"error": "invalid_token",
           "error_description": "The access token is invalid or has expired"}
INVALID_CHALLENGE = ('Bearer realm="service", error="invalid_token", '
                     'error_description="The access token is invalid or has expired"')


def test_missing_token_gets_invalid_request_and_bare_challenge(client, echo):
    before = echo.request_count
    resp = client.post("/basic/x", data={"other": "1"})
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == MISSING
    assert resp.headers["www-authenticate"] == 'Bearer realm="service"'
    assert echo.request_count == before


def test_inactive_token_gets_rfc6750_challenge(client, echo, idp, make_token):
    token = make_token(active=False)
    before = echo.request_count
    resp = client.get("/basic/x", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert resp.json() == INVALID
    assert resp.headers["www-authenticate"] == INVALID_CHALLENGE
    assert len(idp.calls_for(token)) == 1
    assert echo.request_count == before


def test_token_unknown_to_the_idp_is_invalid(client):
    resp = client.get("/basic/x", headers={"Authorization": "Bearer tok-never-registered-123"})
    assert resp.status_code == 401
    assert resp.json() == INVALID
    assert resp.headers["www-authenticate"] == INVALID_CHALLENGE


def _assert_generic_502(resp, *leaks: str) -> None:
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"] == "bad_gateway"
    text = resp.text.lower()
    for leak in leaks:
        assert leak.lower() not in text, f"502 body leaks {leak!r}: {resp.text}"
    assert "www-authenticate" not in resp.headers


def _unreachable_lines(proxy) -> int:
    return sum("unreachable" in line and "ConnectError" in line
               for line in addon_lines(proxy.log()))


def test_unreachable_introspection_endpoint_gives_502_without_socket_error(client, echo, proxy):
    before, logged = echo.request_count, _unreachable_lines(proxy)
    resp = client.get("/down/x", headers={"Authorization": "Bearer tok-down-0001"})
    _assert_generic_502(resp, "refused", "errno", "connecterror", "connect", "127.0.0.1",
                        "tok-down-0001")
    assert echo.request_count == before
    # the detail goes to the log instead
    assert wait_until(lambda: _unreachable_lines(proxy) > logged, 5)


def test_introspection_timeout_gives_502(client, idp, make_token):
    token = make_token(username="alice", _delay_ms=1500)  # the route's timeout is 300 ms
    resp = client.get("/timeout/x", headers={"Authorization": f"Bearer {token}"})
    _assert_generic_502(resp, "timeout", "timed out", token)
    assert resp.elapsed.total_seconds() < 1.4
    assert len(idp.calls_for(token)) == 1


def test_a_call_started_for_another_timeout_is_not_shared(proxy, idp, make_token):
    # /basic (10 s timeout) and /timeout (300 ms) call one endpoint with the
    # same credentials: one token, at the same moment, on both routes. Each
    # request waits under its own route's timeout, whichever started first.
    def get(path: str, token: str) -> httpx.Response:
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=15) as c:
            return c.get(path, headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(2) as pool:
        for first, second in (("/basic/x", "/timeout/x"), ("/timeout/x", "/basic/x")):
            token = make_token(username="alice", _delay_ms=1200)
            started = pool.submit(get, first, token)
            time.sleep(0.2)
            joined = get(second, token)
            by_path = {first: started.result(), second: joined}
            assert by_path["/basic/x"].status_code == 200
            assert by_path["/timeout/x"].status_code == 502
            assert by_path["/timeout/x"].elapsed.total_seconds() < 1.0
            assert len(idp.calls_for(token)) == 2


@pytest.mark.parametrize("status", [500, 401, 404, 201])
def test_non_200_introspection_answer_gives_502_without_its_body(client, proxy, make_token,
                                                                   status):
    marker = f"IDP-SECRET-BODY-{status}"
    token = make_token(username="alice",
                       _status=status, _raw_body=json.dumps({"active": True, "m": marker}))
    resp = client.get("/basic/x", headers={"Authorization": f"Bearer {token}"})
    _assert_generic_502(resp, marker, token)
    assert wait_until(lambda: any(marker in line for line in addon_lines(proxy.log())), 5)


def test_non_json_introspection_answer_gives_502_without_its_body(client, make_token):
    token = make_token(_raw_body="<html>IDP-HTML-LEAK</html>")
    resp = client.get("/basic/x", headers={"Authorization": f"Bearer {token}"})
    _assert_generic_502(resp, "IDP-HTML-LEAK", "<html>")


@pytest.mark.parametrize("raw", [
    '{"active": "true", "m": "IDP-NOBOOL-LEAK"}',
    '{"active": 1, "m": "IDP-NOBOOL-LEAK"}',
    '{"m": "IDP-NOBOOL-LEAK"}',
    '["IDP-NOBOOL-LEAK"]',
])
def test_json_answer_without_boolean_active_gives_502(client, make_token, raw):
    token = make_token(_raw_body=raw, _content_type="application/json")
    resp = client.get("/basic/x", headers={"Authorization": f"Bearer {token}"})
    _assert_generic_502(resp, "IDP-NOBOOL-LEAK")


def test_refused_request_opens_no_upstream_connection(client, echo, make_token):
    before = echo.request_count
    assert client.get("/basic/x").status_code == 401
    assert client.get("/basic/x", headers={
        "Authorization": f"Bearer {make_token(active=False)}"}).status_code == 401
    assert client.get("/down/x", headers={"Authorization": "Bearer tok-x"}).status_code == 502
    assert echo.request_count == before

"""`anonymous` fallback and `run_on_preflight: false`."""

from __future__ import annotations

import pytest

from .harness import addon_lines, echoed, wait_until

ANON_ID = "5d3a2c1e-0000-4000-8000-00000000a001"


def _assert_anonymous(data) -> None:
    h = data["h"]
    assert h["x-anonymous-consumer"] == "true"
    assert h["x-consumer-id"] == ANON_ID
    assert h["x-consumer-username"] == "anonymous-user"
    assert not [k for k, _ in data["headers"] if k.lower().startswith("x-credential-")]


def test_missing_token_forwards_as_anonymous_consumer_by_username(client):
    _assert_anonymous(echoed(client.get("/anon/x")))


def test_inactive_token_forwards_as_anonymous_consumer(client, make_token):
    token = make_token(active=False, username="alice", scope="read")
    _assert_anonymous(echoed(client.get("/anon/x", headers={"Authorization": f"Bearer {token}"})))


def test_introspection_error_forwards_as_anonymous_consumer(client, make_token):
    token = make_token(username="alice", _status=500, _raw_body="boom")
    _assert_anonymous(echoed(client.get("/anon/x", headers={"Authorization": f"Bearer {token}"})))


def test_anonymous_can_name_the_consumer_by_id(client):
    _assert_anonymous(echoed(client.get("/anon-id/x")))


def test_active_token_on_anonymous_route_is_not_anonymous(client, make_token):
    token = make_token(username="alice", scope="read")
    data = echoed(client.get("/anon/x", headers={"Authorization": f"Bearer {token}"}))
    assert "x-anonymous-consumer" not in data["h"]
    assert data["h"]["x-consumer-username"] == "alice"
    assert data["h"]["x-credential-scope"] == "read"


def test_anonymous_naming_no_consumer_answers_500_and_logs_the_plugin(client, echo, proxy):
    before = echo.request_count
    resp = client.get("/anon-missing/x")
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"] == "server_error"
    assert "ghost" in body["message"]
    assert "anonymous" in body["message"]
    assert echo.request_count == before
    assert wait_until(lambda: any(
        "'ghost'" in line and "anon-missing" in line and "does not exist" in line
        for line in addon_lines(proxy.log())), 5)


def test_options_passes_without_token_when_run_on_preflight_is_false(client):
    resp = client.options("/preflight/x", headers={"Origin": "https://app.example",
                                                   "Access-Control-Request-Method": "POST"})
    data = echoed(resp)
    assert data["method"] == "OPTIONS"
    assert not [k for k, _ in data["headers"] if k.lower().startswith(("x-credential-",
                                                                        "x-consumer-"))]


def test_other_methods_still_need_a_token_when_run_on_preflight_is_false(client):
    assert client.get("/preflight/x").status_code == 401


@pytest.mark.parametrize("method", ["OPTIONS", "GET"])
def test_preflight_is_authenticated_by_default(client, method):
    resp = client.request(method, "/basic/x")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Bearer realm="service"'

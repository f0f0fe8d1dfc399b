"""The introspection cache: hits, ttl and exp bounds, negative and error
entries, single-flight, and a slow endpoint that holds up no other flow."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from .harness import echoed, wait_until


def _get(client, path, token):
    return client.get(path, headers={"Authorization": f"Bearer {token}"})


def test_second_request_with_same_token_makes_no_second_introspection_call(
    client, idp, make_token
):
    token = make_token(username="alice", scope="read")
    first = echoed(_get(client, "/basic/a", token))
    second = echoed(_get(client, "/basic/b", token))
    assert len(idp.calls_for(token)) == 1
    assert second["h"]["x-credential-scope"] == first["h"]["x-credential-scope"] == "read"
    assert second["h"]["x-consumer-username"] == "alice"


def test_cached_answer_is_used_whatever_the_token_source(client, idp, make_token):
    token = make_token(username="alice")
    echoed(_get(client, "/basic/a", token))
    echoed(client.get("/basic/b", params={"access_token": token}))
    echoed(client.post("/basic/c", data={"access_token": token}))
    assert len(idp.calls_for(token)) == 1


def test_plugins_with_different_introspection_settings_do_not_share_answers(
    client, idp, make_token
):
    token = make_token(username="alice")
    echoed(_get(client, "/basic/a", token))
    echoed(client.get("/ir/a", headers={"Authorization": f"Bearer {token}"}))
    assert len(idp.calls_for(token)) == 2


def test_cached_answer_expires_after_ttl(client, idp, make_token):
    token = make_token(username="alice")
    echoed(_get(client, "/ttl1/a", token))
    echoed(_get(client, "/ttl1/a", token))
    assert len(idp.calls_for(token)) == 1
    time.sleep(1.2)
    echoed(_get(client, "/ttl1/a", token))
    assert len(idp.calls_for(token)) == 2


def test_active_answer_is_not_cached_past_the_token_exp(client, idp, make_token):
    # the IdP still says active, but exp has passed: the 30 s ttl must not apply
    token = make_token(username="alice", exp=int(time.time()) - 10)
    echoed(_get(client, "/basic/a", token))
    echoed(_get(client, "/basic/a", token))
    assert len(idp.calls_for(token)) == 2


def test_ttl_zero_caches_until_the_token_exp(client, idp, make_token):
    token = make_token(username="alice", _exp_in=2)
    echoed(_get(client, "/ttl0/a", token))
    echoed(_get(client, "/ttl0/a", token))
    assert len(idp.calls_for(token)) == 1  # ttl 0 is "no limit but exp", not "no cache"

    def recalled():
        echoed(_get(client, "/ttl0/a", token))
        return len(idp.calls_for(token)) == 2

    assert wait_until(recalled, 4, interval=0.2)


def test_inactive_answer_is_cached_only_briefly(client, idp, make_token):
    token = make_token(active=False)
    assert _get(client, "/basic/a", token).status_code == 401
    idp.add_tokens({token: {"active": True, "username": "alice"}})
    assert _get(client, "/basic/a", token).status_code == 401  # the negative answer is cached
    assert len(idp.calls_for(token)) == 1
    started = time.monotonic()
    # at most 5 s, although the route's ttl is 30 s
    assert wait_until(lambda: _get(client, "/basic/a", token).status_code == 200, 7,
                      interval=0.25)
    assert time.monotonic() - started < 6.5
    assert len(idp.calls_for(token)) == 2


@pytest.mark.parametrize("failure", [
    {"_status": 503, "_raw_body": "down"},
    {"_raw_body": "not json"},
    {"_raw_body": '{"active": "yes"}'},
], ids=["non-200", "non-json", "no-boolean-active"])
def test_introspection_errors_are_never_cached(client, idp, make_token, failure):
    token = make_token(username="alice", **failure)
    assert _get(client, "/basic/a", token).status_code == 502
    assert _get(client, "/basic/a", token).status_code == 502
    assert len(idp.calls_for(token)) == 2
    idp.add_tokens({token: {"active": True, "username": "alice"}})
    assert echoed(_get(client, "/basic/a", token))["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 3


def test_timeouts_are_never_cached(client, idp, make_token):
    token = make_token(username="alice", _delay_ms=800)  # route timeout: 300 ms
    assert _get(client, "/timeout/a", token).status_code == 502
    idp.add_tokens({token: {"active": True, "username": "alice"}})
    assert echoed(_get(client, "/timeout/a", token))["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 2


async def test_concurrent_requests_with_one_uncached_token_make_one_introspection_call(
    proxy, idp, make_token
):
    token = make_token(username="alice", scope="read", _delay_ms=500)
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=15,
                                 limits=limits) as ac:
        responses = await asyncio.gather(*(
            ac.get(f"/basic/{i}", headers={"Authorization": f"Bearer {token}"})
            for i in range(20)
        ))
    assert [r.status_code for r in responses] == [200] * 20
    assert all(echoed(r)["h"]["x-credential-scope"] == "read" for r in responses)
    assert len(idp.calls_for(token)) == 1


async def test_concurrent_requests_share_an_error_without_caching_it(proxy, idp, make_token):
    token = make_token(username="alice", _delay_ms=300, _status=500, _raw_body="x")
    async with httpx.AsyncClient(base_url=proxy.url, trust_env=False, timeout=15) as ac:
        responses = await asyncio.gather(*(
            ac.get("/basic/e", headers={"Authorization": f"Bearer {token}"}) for _ in range(5)
        ))
        assert [r.status_code for r in responses] == [502] * 5
        assert len(idp.calls_for(token)) == 1
        again = await ac.get("/basic/e", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 502
    assert len(idp.calls_for(token)) == 2


def test_slow_introspection_for_one_token_does_not_hold_up_other_flows(
    proxy, idp, make_token
):
    slow = make_token(username="alice", _delay_ms=2000)
    fast = make_token(username="alice")
    slow_result: dict[str, httpx.Response] = {}

    def slow_request():
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=15) as c:
            slow_result["resp"] = _get(c, "/basic/slow", slow)

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        assert wait_until(lambda: idp.calls_for(slow), 5), "slow call never reached the IdP"
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=15) as c:
            started = time.monotonic()
            data = echoed(_get(c, "/basic/fast", fast))
            fast_took = time.monotonic() - started
            # a missing token is answered without waiting either
            assert c.get("/basic/none").status_code == 401
        assert data["h"]["x-credential-identifier"] == "alice"
        assert fast_took < 1.5, f"fast request waited {fast_took:.1f} s for the slow one"
        assert "resp" not in slow_result, "the slow request finished first: test is void"
    finally:
        thread.join(15)
    assert slow_result["resp"].status_code == 200

"""The shared second-level cache in a real redis-server: two mitmdump processes
share one introspection call, entries expire with the token, and Redis going
away mid-test keeps requests flowing (logged once per outage)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import Mitmdump, echoed, plugin, wait_until
from .redis_helpers import RedisServer

pytest.importorskip("redis")


def _config(idp_url: str, **plugin_config: Any) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{
            "name": "shared",
            "routes": [{"name": "api", "paths": ["/api"], "strip_path": False,
                        "plugins": [plugin(idp_url, **plugin_config)]}],
        }],
        "consumers": [{"username": "alice"}],
    }


def _get(proxy: Mitmdump, token: str) -> httpx.Response:
    return httpx.get(f"{proxy.url}/api/x", headers={"Authorization": f"Bearer {token}"},
                     trust_env=False, timeout=15)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def two_proxies(echo, idp, redis_server) -> Iterator[tuple[Mitmdump, Mitmdump]]:
    args = ["--set", f"introspection_cache_redis_url={redis_server.url}"]
    a = Mitmdump(_config(idp.url, ttl=600), echo.port, args)
    b = Mitmdump(_config(idp.url, ttl=600), echo.port, args)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def _redis_keys(redis_server: RedisServer) -> list[bytes]:
    with redis_server.client() as r:
        return list(r.scan_iter(match="oauth2-introspection:*"))


def test_two_proxies_share_one_introspection_call(two_proxies, idp, make_token, redis_server):
    a, b = two_proxies
    token = make_token(username="alice", scope="read")
    first = echoed(_get(a, token))
    second = echoed(_get(b, token))
    assert len(idp.calls_for(token)) == 1
    for name in ("x-credential-scope", "x-consumer-username", "x-credential-identifier"):
        assert first["h"][name] == second["h"][name]
    # The value is compact JSON under a hashed key: the token is nowhere in Redis.
    keys = _redis_keys(redis_server)
    assert keys and all(token.encode() not in k for k in keys)
    with redis_server.client() as r:
        values = [r.get(k) for k in keys]
    assert all(v is not None and token.encode() not in v for v in values)
    assert any(b'"username":"alice"' in v and b", " not in v for v in values if v)


def test_redis_entries_expire_with_the_token(two_proxies, idp, make_token, redis_server):
    a, b = two_proxies
    token = make_token(username="alice", _exp_in=2)
    echoed(_get(a, token))
    keys = _redis_keys(redis_server)
    assert len(keys) == 1
    with redis_server.client() as r:
        pttl = r.pttl(keys[0])
    assert 0 < pttl <= 2000
    assert wait_until(lambda: not _redis_keys(redis_server), timeout=5)
    # Expired everywhere: the other proxy asks the endpoint again.
    echoed(_get(b, token))
    assert len(idp.calls_for(token)) == 2


def test_killing_redis_keeps_requests_flowing_and_logs_the_outage_once(
    echo, idp, make_token, redis_server
):
    proxy = Mitmdump(_config(idp.url, ttl=600), echo.port,
                     ["--set", f"introspection_cache_redis_url={redis_server.url}"]).start()
    try:
        cached = make_token(username="alice")
        echoed(_get(proxy, cached))
        assert _redis_keys(redis_server)
        redis_server.kill()
        started = time.monotonic()
        fresh = [make_token(username="alice") for _ in range(5)]
        for token in [cached, *fresh, cached, *fresh]:
            resp = _get(proxy, token)
            assert resp.status_code == 200, resp.text
        # Never slowed down by more than the one Redis timeout it took to notice.
        assert time.monotonic() - started < 10
        assert len(idp.calls_for(cached)) == 1  # still answered from the process's cache
        assert all(len(idp.calls_for(t)) == 1 for t in fresh)
        log = proxy.log()
        assert log.count("unavailable") == 1, log
        # Redis back on the same port: noticed by the probe, logged once.
        restarted = RedisServer(redis_server.port).start()
        try:
            assert wait_until(lambda: "is back" in proxy.log(), timeout=10), proxy.log()

            def shared_again() -> bool:
                echoed(_get(proxy, make_token(username="alice")))
                return bool(_redis_keys(restarted))

            # (a write right after the recovery may be lost: it is only a cache)
            assert wait_until(shared_again, timeout=10, interval=0.5), proxy.log()
            assert proxy.log().count("unavailable") == 1
        finally:
            restarted.stop()
    finally:
        proxy.stop()


@pytest.mark.parametrize("option,value,message", [
    ("introspection_cache_size", "lots", "invalid introspection_cache_size"),
    ("introspection_cache_size", "0", "invalid introspection_cache_size"),
    ("introspection_cache_redis_url", "http://127.0.0.1:6379", "invalid "
     "introspection_cache_redis_url"),
])
def test_bad_cache_options_stop_startup(echo, idp, option, value, message):
    proxy = Mitmdump(_config(idp.url), echo.port, ["--set", f"{option}={value}"])
    try:
        assert proxy.wait_exit(30) != 0
        assert message in proxy.log()
    finally:
        proxy.stop()

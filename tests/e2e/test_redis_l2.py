"""The Redis second level (redis_cache.RedisL2) against a real redis-server on a
loopback port: reads and writes, key checks, flush of this configuration's
entries only, and an unreachable Redis that never fails a lookup."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import pytest

from oauth2_introspection.cache import IntrospectionCache, make_key
from oauth2_introspection.introspection import IntrospectionResult, parse_answer
from oauth2_introspection.redis_cache import NAMESPACE, RedisL2, scope_id

from .harness import free_port
from .redis_helpers import RedisServer

pytest.importorskip("redis")


def _answer(user: str = "alice", exp_in: float = 3600) -> IntrospectionResult:
    body = json.dumps({"active": True, "username": user, "exp": int(time.time() + exp_in)})
    return parse_answer(body.encode())


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def test_a_miss_reads_the_second_level_and_a_fetch_writes_it(redis_server) -> None:
    l2 = RedisL2(redis_server.url)
    writer, reader = IntrospectionCache(), IntrospectionCache()
    writer.l2 = reader.l2 = l2
    calls = 0

    async def fetch() -> IntrospectionResult:
        nonlocal calls
        calls += 1
        return _answer(exp_in=100)

    key = make_key(b"prefix", "token")
    first = await writer.lookup(key, 600, fetch, scope=b"prefix")
    second = await reader.lookup(key, 600, fetch, scope=b"prefix")
    assert calls == 1 and not first.hit and second.hit and second.l2
    assert second.result.claims == first.result.claims
    assert 0 < second.remaining <= 100
    with redis_server.client() as r:
        name = f"{NAMESPACE}:{scope_id(b'prefix')}:{key}"
        assert 0 < r.pttl(name) <= 100_000
        assert json.loads(r.get(name))["k"] == key
    await l2.aclose()


async def test_a_value_stored_under_another_key_is_never_used(redis_server) -> None:
    l2 = RedisL2(redis_server.url)
    now = time.time()
    await l2.put(b"s", "key-a", b'{"active":true}', now, now + 60)
    with redis_server.client() as r:
        r.set(f"{NAMESPACE}:{scope_id(b's')}:key-b", r.get(f"{NAMESPACE}:{scope_id(b's')}:key-a"))
    assert await l2.get(b"s", "key-a") is not None
    assert await l2.get(b"s", "key-b") is None
    await l2.aclose()


async def test_flush_clears_this_configurations_entries_only(redis_server) -> None:
    ours, theirs = RedisL2(redis_server.url), RedisL2(redis_server.url)
    now = time.time()
    for i in range(30):
        await ours.put(b"ours", f"k{i}", b'{"active":true}', now, now + 60)
    await theirs.put(b"theirs", "k0", b'{"active":true}', now, now + 60)
    cache = IntrospectionCache()
    cache.l2 = ours
    assert await ours.flush("k3") == 1
    cache.flush()  # the command's path: the second level is flushed in the background
    await asyncio.wait_for(asyncio.gather(*ours._tasks), 10)
    with redis_server.client() as r:
        left = sorted(k.decode() for k in r.scan_iter(match=f"{NAMESPACE}:*"))
    assert left == [f"{NAMESPACE}:{scope_id(b'theirs')}:k0"]
    await ours.aclose()
    await theirs.aclose()


async def test_redis_down_never_fails_and_logs_once(caplog) -> None:
    l2 = RedisL2(f"redis://127.0.0.1:{free_port()}/0")
    cache = IntrospectionCache()
    cache.l2 = l2
    calls = 0

    async def fetch() -> IntrospectionResult:
        nonlocal calls
        calls += 1
        return _answer()

    caplog.set_level(logging.INFO, logger="oauth2_introspection")
    started = time.monotonic()
    for i in range(20):
        lookup = await cache.lookup(make_key(b"p", f"t{i}"), 60, fetch, scope=b"p")
        assert lookup.result.active
    assert calls == 20
    assert time.monotonic() - started < 2
    assert l2.down
    assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1
    await l2.aclose()

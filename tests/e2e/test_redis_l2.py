"""The Redis second level (redis_cache.RedisL2) against a real redis-server on a
loopback port: reads and writes, key checks, flush of this configuration's
entries only, and an unreachable Redis that never fails a lookup."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Iterator

import pytest

from oauth2_introspection import redis_cache
from oauth2_introspection.cache import IntrospectionCache, make_key
from oauth2_introspection.introspection import IntrospectionResult, parse_answer
from oauth2_introspection.redis_cache import MAX_SHARED_LIFE, NAMESPACE, RedisL2, scope_id

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
    assert await ours.flush(["k3"]) == 1
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


async def test_an_answer_with_no_end_is_shared_for_at_most_a_day(redis_server) -> None:
    # ttl 0 and no exp: cached until flushed in process; Redis takes no
    # infinite (nor a far) expiry, and the lookup must not fail on it
    l2 = RedisL2(redis_server.url)
    cache = IntrospectionCache()
    cache.l2 = l2

    answers = {"no-end": b'{"active": true, "username": "alice"}',
               "far": b'{"active": true, "exp": 1e30}'}
    for name, body in answers.items():
        key = make_key(b"p", name)

        async def fetch(body: bytes = body) -> IntrospectionResult:
            return parse_answer(body)

        lookup = await cache.lookup(key, 0, fetch, scope=b"p")
        assert lookup.result.active
        with redis_server.client() as r:
            pttl = r.pttl(f"{NAMESPACE}:{scope_id(b'p')}:{key}")
        assert 86_000_000 < pttl <= MAX_SHARED_LIFE * 1000
        shared = await l2.get(b"p", key)
        assert shared is not None and shared[2] <= time.time() + MAX_SHARED_LIFE
    assert not l2.down
    await l2.aclose()


async def test_a_flush_redis_missed_is_done_when_it_is_back(
    redis_server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_cache, "FLUSH_TIMEOUT", 0.5)
    l2 = RedisL2(redis_server.url)
    l2.set_scopes([b"p"])
    now = time.time()
    await l2.put(b"p", "k1", b'{"active":true}', now, now + 600)
    name = f"{NAMESPACE}:{scope_id(b'p')}:k1"
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # hangs, keeping its data
    try:
        assert await l2.flush() == 0  # not answered: kept for later
        assert l2.down
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 10
    while l2.down and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not l2.down
    with redis_server.client() as r:
        assert r.exists(name) == 0  # flushed before Redis was used again
    await l2.aclose()


# -- found by the third black-box review ----------------------------------------------


async def test_a_miss_right_after_a_flush_never_reads_the_flushed_entry(
    redis_server, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the in-process cache is cleared at once and Redis in the background:
    # a lookup in between must not bring the flushed (revoked) answer back
    delete = RedisL2._delete

    async def slow_delete(self: RedisL2, prefixes: list[str] | None) -> int:
        await asyncio.sleep(0.2)  # a big Redis: the scan takes a while
        return await delete(self, prefixes)

    monkeypatch.setattr(RedisL2, "_delete", slow_delete)
    for _ in range(3):
        l2 = RedisL2(redis_server.url)
        l2.set_scopes([b"p"])
        cache = IntrospectionCache()
        cache.l2 = l2
        key = make_key(b"p", "revoked")
        now = time.time()
        await l2.put(b"p", key, b'{"active":true}', now, now + 600)

        async def fetch() -> IntrospectionResult:
            return parse_answer(b'{"active": false}')

        cache.flush()
        looked = await cache.lookup(key, 600, fetch, scope=b"p")
        assert not looked.active and not looked.l2
        await l2.aclose()


async def test_a_flush_by_token_id_reaches_entries_this_process_never_held(redis_server) -> None:
    other, ours = RedisL2(redis_server.url), RedisL2(redis_server.url)
    ours.set_scopes([b"p"])
    now = time.time()
    keys = [make_key(b"p", "tok", f"GET /{i}") for i in range(2)]
    for key in [*keys, make_key(b"p", "another")]:
        await other.put(b"p", key, b'{"active":true}', now, now + 600)
    cache = IntrospectionCache()
    cache.l2 = ours
    assert cache.flush_prefixes([keys[0][:12]]) == 0  # nothing held here
    await asyncio.wait_for(asyncio.gather(*ours._tasks), 10)
    with redis_server.client() as r:
        left = [k.decode() for k in r.scan_iter(match=f"{NAMESPACE}:*")]
    assert left == [f"{NAMESPACE}:{scope_id(b'p')}:{make_key(b'p', 'another')}"]
    await other.aclose()
    await ours.aclose()


@pytest.mark.parametrize("times", ['"t":NaN,"e":NaN', '"t":0,"e":Infinity', '"t":1,"e":"x"'])
async def test_an_entry_with_unusable_times_is_ignored(redis_server, times: str) -> None:
    l2 = RedisL2(redis_server.url)
    with redis_server.client() as r:
        r.set(f"{NAMESPACE}:{scope_id(b's')}:k", '{"k":"k",' + times + ',"r":{"active":true}}')
    assert await l2.get(b"s", "k") is None
    await l2.aclose()


async def test_a_flush_after_a_reload_leaves_the_previous_configurations_entries(
    redis_server,
) -> None:
    l2 = RedisL2(redis_server.url)
    now = time.time()
    await l2.put(b"old", "k", b'{"active":true}', now, now + 600)  # another proxy's now
    l2.set_scopes([b"new"])
    await l2.put(b"new", "k", b'{"active":true}', now, now + 600)
    assert await l2.flush() == 1
    with redis_server.client() as r:
        assert r.exists(f"{NAMESPACE}:{scope_id(b'old')}:k") == 1
    await l2.aclose()


async def test_flushes_while_redis_is_down_are_said_once(caplog) -> None:
    l2 = RedisL2(f"redis://127.0.0.1:{free_port()}/0")
    l2.set_scopes([b"a", b"b"])
    with caplog.at_level(logging.WARNING):
        for prefixes in (["k1"], ["k2"], None, ["k3"]):
            assert await l2.flush(prefixes) == 0
    assert caplog.text.count("could not flush the Redis cache") == 1
    await l2.aclose()

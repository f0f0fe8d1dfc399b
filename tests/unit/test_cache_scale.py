"""Cache at scale: compact entries, the entry bound, resizing, the cache options
(the Redis second level against a real redis-server: tests/e2e/test_redis_l2.py)."""

from __future__ import annotations

import gc
import json
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from oauth2_introspection import OAuth2Introspection
from oauth2_introspection.cache import IntrospectionCache
from oauth2_introspection.cache_options import parse_size
from oauth2_introspection.introspection import IntrospectionResult, parse_answer
from oauth2_introspection.redis_cache import check_url, redacted


def _answer(user: str = "alice", exp_in: float = 3600) -> IntrospectionResult:
    body = json.dumps({"active": True, "username": user, "exp": int(time.time() + exp_in)})
    return parse_answer(body.encode())


# -- in process -------------------------------------------------------------------


def test_entries_are_plain_tuples_the_collector_stops_tracking() -> None:
    """Every object the collector tracks is walked by every full collection:
    100,000 cached answers must not add 100,000 of them."""
    cache = IntrospectionCache()
    for k in "abc":
        cache.put(k, _answer(), 60)
    assert cache.hit("a", 60) is not None  # and one in the hot set
    gc.collect()
    assert [k for k, v in cache._entries.items() if gc.is_tracked(v)] == []


def test_an_expired_entry_is_dropped_when_read() -> None:
    now = [1000.0]
    cache = IntrospectionCache(clock=lambda: now[0], wallclock=time.time)
    cache.put("k", _answer(exp_in=3600), 10)
    assert len(cache._entries) == 1
    now[0] += 11
    assert cache.get("k", 60) is None
    assert len(cache._entries) == 0


def test_entries_keep_the_answer_as_compact_json_and_decode_it_equal() -> None:
    cache = IntrospectionCache()
    cache.put("k", _answer(), 60)
    entry = cache.get("k", 60)[0]
    assert isinstance(entry.raw, bytes) and b", " not in entry.raw
    assert entry.result.claims["username"] == "alice" and entry.active


async def test_hits_share_one_memo_while_the_answer_is_hot() -> None:
    cache = IntrospectionCache()
    cache.put("k", _answer(), 60)

    async def never() -> IntrospectionResult:
        raise AssertionError("no call on a hit")

    first = await cache.lookup("k", 60, never)
    second = await cache.lookup("k", 60, never)
    assert first.hit and second.hit
    assert first.result == second.result
    assert first.memo is second.memo is not None
    cache.put("k", _answer("bob"), 60)  # a new answer: a new memo
    third = await cache.lookup("k", 60, never)
    assert third.result.claims["username"] == "bob" and third.memo is not first.memo


def test_the_entry_bound_evicts_the_least_recently_used() -> None:
    cache = IntrospectionCache(maxsize=3)
    for k in "abc":
        cache.put(k, _answer(), 60)
    assert cache.get("a", 60) is not None  # a is now the most recently used
    cache.put("d", _answer(), 60)
    assert len(cache) == 3
    assert cache.get("b", 60) is None and cache.get("a", 60) is not None


def test_resize_keeps_entries_up_to_the_new_size() -> None:
    cache = IntrospectionCache(maxsize=10)
    for i in range(10):
        cache.put(str(i), _answer(), 60)
    cache.resize(4)
    assert cache.maxsize == 4 and len(cache) == 4
    cache.resize(100)
    assert cache.maxsize == 100 and len(cache) == 4


@pytest.mark.parametrize("text,size", [("100000", 100_000), ("1_000", 1000), (" 7 ", 7)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "0", "-5", "1.5", "1000000000"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_cache_options_resize_and_refuse_bad_values() -> None:
    core = OAuth2Introspection()
    opts = core.cache_options
    with taddons.context(Proxyserver(), core) as tctx:
        tctx.configure(core, introspection_cache_size="250")
        assert core.cache.maxsize == 250
        with pytest.raises(exceptions.OptionsError, match="introspection_cache_size"):
            tctx.configure(core, introspection_cache_size="many")
        with pytest.raises(exceptions.OptionsError, match="introspection_cache_redis_url"):
            tctx.configure(core, introspection_cache_redis_url="http://127.0.0.1:1")
        tctx.configure(core, introspection_cache_redis_url="redis://127.0.0.1:1/0")
        assert core.cache.l2 is opts.l2 and opts.l2 is not None
        tctx.configure(core, introspection_cache_redis_url="")
        assert core.cache.l2 is None


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h:1", "unix:///tmp/r.sock"])
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["http://h:1", "127.0.0.1:6379", "redis://", "redis://h:99999"])
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        check_url(url)


def test_redacted_hides_the_password() -> None:
    assert redacted("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert "secret" not in redacted("redis://:secret@h:1/0")
    assert redacted("redis://h:1/0") == "redis://h:1/0"
    assert redacted("redis://h:1/0?password=secret&db=2") == "redis://h:1/0?password=***&db=2"


@pytest.mark.parametrize("url", ["redis://:TopSecretPW1@127.0.0.1:notaport/0",
                                 "http://:TopSecretPW1@h/",
                                 "redis://:TopSecretPW1@/0"])
def test_a_refused_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(ValueError) as e:
        check_url(url)
    assert "TopSecretPW1" not in str(e.value) and ":***@" in str(e.value)

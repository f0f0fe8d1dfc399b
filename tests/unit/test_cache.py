"""The introspection cache: hashed keys, exp-bounded TTL, short negative TTL,
no errors, per-reader TTL, LRU bound and single-flight."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from oauth2_introspection.cache import (
    NEGATIVE_TTL,
    TOKEN_PART,
    IntrospectionCache,
    make_key,
    ttl_cap,
)
from oauth2_introspection.config import OAuth2IntrospectionConfig
from oauth2_introspection.errors import IntrospectionTimeout
from oauth2_introspection.introspection import IntrospectionResult
from oauth2_introspection.policy import _key_prefix

NOW = 1_700_000_000.0
TOKEN = "raw-token-value-123"


class Clock:
    """Monotonic and wall clocks that move together, by hand."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = NOW

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> IntrospectionCache:
    return IntrospectionCache(clock=clock.monotonic, wallclock=clock.time)


def active(**claims: Any) -> IntrospectionResult:
    return IntrospectionResult(True, {"active": True, **claims})


INACTIVE = IntrospectionResult(False, {"active": False})


# -- keys ------------------------------------------------------------------------


def prefix(**overrides: Any) -> bytes:
    cfg = OAuth2IntrospectionConfig.model_validate(
        {"introspection_url": "https://idp/introspect", "authorization_value": "Basic a",
         **overrides}
    )
    headers = {k.replace("_", "-"): v for k, v in cfg.custom_introspection_headers.items()}
    return _key_prefix(cfg, headers)


def test_the_key_is_a_sha256_hex_digest_without_the_raw_token() -> None:
    key = make_key(prefix(), TOKEN)
    assert len(key) == 64
    int(key, 16)
    assert TOKEN not in key


def test_the_same_token_and_plugin_give_the_same_key() -> None:
    assert make_key(prefix(), TOKEN) == make_key(prefix(), TOKEN)


@pytest.mark.parametrize(
    "other",
    [
        {"introspection_url": "https://other-idp/introspect"},
        {"authorization_value": "Basic b"},
        {"token_type_hint": "access_token"},
        {"custom_introspection_headers": {"X-Tenant": "acme"}},
    ],
)
def test_a_different_endpoint_authorization_hint_or_header_gives_a_different_key(
    other: dict[str, Any],
) -> None:
    assert make_key(prefix(), TOKEN) != make_key(prefix(**other), TOKEN)


def test_different_tokens_give_different_keys() -> None:
    assert make_key(prefix(), "a") != make_key(prefix(), "b")


def test_the_request_extra_is_part_of_the_key() -> None:
    base = make_key(prefix(), TOKEN)
    assert base != make_key(prefix(), TOKEN, "GET /a")
    assert make_key(prefix(), TOKEN, "GET /a") != make_key(prefix(), TOKEN, "POST /a")


def test_ttl_and_other_behaviour_keys_do_not_change_the_key() -> None:
    assert make_key(prefix(), TOKEN) == make_key(prefix(ttl=5, hide_credentials=True), TOKEN)


# -- lifetimes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "ttl", "life"),
    [
        (active(), 30, 30),
        (active(exp=NOW + 10), 30, 10),
        (active(exp=NOW + 100), 30, 30),
        (active(exp=NOW + 10.5), 0, 10.5),
        (active(), 0, math.inf),
        (active(exp=NOW - 1), 30, -1),
        (active(exp=NOW), 30, 0),
        # RFC 7662 sends exp as a number; a decimal string is read as one, and
        # an exp that cannot be read keeps nothing (it cannot bound the entry)
        (active(exp=str(int(NOW + 10))), 30, 10),
        (active(exp=f" {NOW + 10.5} "), 0, 10.5),
        (active(exp=True), 30, 0),
        (active(exp="soon"), 30, 0),
        (active(exp="1e3"), 30, 0),
        (active(exp=math.nan), 30, 0),
        (active(exp=math.inf), 0, 0),
        (active(exp=None), 30, 30),
        (INACTIVE, 30, NEGATIVE_TTL),
        (INACTIVE, 2, 2),
        (INACTIVE, 0, NEGATIVE_TTL),
        (IntrospectionResult(False, {"active": False, "exp": NOW + 1}), 30, NEGATIVE_TTL),
    ],
)
def test_lifetime_is_ttl_bounded_by_exp_and_negative_answers_are_brief(
    cache: IntrospectionCache, result: IntrospectionResult, ttl: float, life: float
) -> None:
    assert cache.lifetime(result, ttl) == life


def test_negative_ttl_is_at_most_five_seconds() -> None:
    assert NEGATIVE_TTL <= 5
    assert ttl_cap(False, 3600) == NEGATIVE_TTL
    assert ttl_cap(True, 3600) == 3600
    assert ttl_cap(True, 0) == math.inf


def test_an_active_answer_expires_after_ttl(cache: IntrospectionCache, clock: Clock) -> None:
    cache.put("k", active(), 30)
    clock.advance(29.9)
    hit = cache.get("k", 30)
    assert hit is not None
    assert hit[1] == pytest.approx(0.1)
    clock.advance(0.1)
    assert cache.get("k", 30) is None


def test_an_active_answer_never_outlives_the_token_exp(
    cache: IntrospectionCache, clock: Clock
) -> None:
    cache.put("k", active(exp=NOW + 3), 30)
    clock.advance(2.9)
    assert cache.get("k", 30) is not None
    clock.advance(0.1)
    assert cache.get("k", 30) is None


def test_ttl_zero_keeps_an_answer_until_exp(cache: IntrospectionCache, clock: Clock) -> None:
    cache.put("k", active(exp=NOW + 86400), 0)
    clock.advance(86399)
    assert cache.get("k", 0) is not None
    clock.advance(1)
    assert cache.get("k", 0) is None


def test_ttl_zero_without_exp_keeps_an_answer_indefinitely(
    cache: IntrospectionCache, clock: Clock
) -> None:
    cache.put("k", active(), 0)
    clock.advance(10 * 365 * 86400)
    hit = cache.get("k", 0)
    assert hit is not None
    assert hit[1] == math.inf


def test_an_already_expired_token_is_not_stored(cache: IntrospectionCache) -> None:
    assert cache.put("k", active(exp=NOW - 1), 30) is None
    assert len(cache) == 0
    assert cache.get("k", 30) is None


def test_an_inactive_answer_lives_at_most_five_seconds(
    cache: IntrospectionCache, clock: Clock
) -> None:
    assert cache.put("k", INACTIVE, 3600) == NEGATIVE_TTL
    clock.advance(NEGATIVE_TTL - 0.01)
    assert cache.get("k", 3600) is not None
    clock.advance(0.01)
    assert cache.get("k", 3600) is None


def test_a_reader_with_a_shorter_ttl_honours_its_own(
    cache: IntrospectionCache, clock: Clock
) -> None:
    cache.put("k", active(), 60)
    clock.advance(20)
    assert cache.get("k", 10) is None
    long_reader = cache.get("k", 60)
    assert long_reader is not None
    assert long_reader[1] == pytest.approx(40)
    short_but_longer = cache.get("k", 30)
    assert short_but_longer is not None
    assert short_but_longer[1] == pytest.approx(10)


def test_a_reader_with_a_longer_ttl_does_not_extend_an_entry(
    cache: IntrospectionCache, clock: Clock
) -> None:
    cache.put("k", active(), 10)
    clock.advance(10)
    assert cache.get("k", 600) is None


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(clock: Clock) -> None:
    cache = IntrospectionCache(maxsize=2, clock=clock.monotonic, wallclock=clock.time)
    cache.put("a", active(), 30)
    cache.put("b", active(), 30)
    assert cache.get("a", 30) is not None  # a is now the most recently used
    cache.put("c", active(), 30)
    assert len(cache) == 2
    assert cache.get("b", 30) is None
    assert cache.get("a", 30) is not None
    assert cache.get("c", 30) is not None


def test_flush_removes_one_key_or_everything(cache: IntrospectionCache) -> None:
    cache.put("a", active(), 30)
    cache.put("b", active(), 30)
    assert cache.flush("a") == 1
    assert cache.flush("a") == 0
    assert cache.flush() == 1
    assert len(cache) == 0


def test_items_lists_only_live_entries(cache: IntrospectionCache, clock: Clock) -> None:
    cache.put("short", INACTIVE, 30)
    cache.put("long", active(), 30)
    clock.advance(NEGATIVE_TTL + 1)
    assert [k for k, _ in cache.items()] == ["long"]


# -- lookup and single-flight ----------------------------------------------------


class Fetcher:
    def __init__(self, result: IntrospectionResult | Exception | None = None) -> None:
        self.calls = 0
        self.result = result if result is not None else active()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> IntrospectionResult:
        self.calls += 1
        await self.gate.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def test_a_miss_fetches_and_a_second_lookup_hits(cache: IntrospectionCache) -> None:
    fetch = Fetcher(active(sub="u"))
    first = await cache.lookup("k", 30, fetch)
    second = await cache.lookup("k", 30, fetch)
    assert fetch.calls == 1
    assert (first.hit, first.shared, first.remaining) == (False, False, 30)
    assert (second.hit, second.remaining) == (True, 30)
    assert second.result.claims["sub"] == "u"


async def test_an_uncacheable_answer_reports_no_remaining_time(
    cache: IntrospectionCache,
) -> None:
    lookup = await cache.lookup("k", 30, Fetcher(active(exp=NOW - 5)))
    assert lookup.result.active
    assert lookup.remaining is None
    assert len(cache) == 0


async def test_errors_are_never_cached(cache: IntrospectionCache) -> None:
    fetch = Fetcher(IntrospectionTimeout("slow"))
    for _ in range(2):
        with pytest.raises(IntrospectionTimeout):
            await cache.lookup("k", 30, fetch)
    assert fetch.calls == 2
    assert len(cache) == 0
    fetch.result = active()
    assert (await cache.lookup("k", 30, fetch)).result.active
    assert fetch.calls == 3


async def test_concurrent_lookups_for_one_key_make_a_single_call(
    cache: IntrospectionCache,
) -> None:
    fetch = Fetcher(active(sub="shared"))
    fetch.gate.clear()
    tasks = [asyncio.create_task(cache.lookup("k", 30, fetch)) for _ in range(20)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.gather(*tasks)
    assert fetch.calls == 1
    assert all(r.result.claims["sub"] == "shared" for r in results)
    assert sum(not r.shared for r in results) == 1
    assert sum(r.shared for r in results) == 19


async def test_concurrent_lookups_share_a_call_only_when_it_is_made_the_same_way(
    cache: IntrospectionCache,
) -> None:
    # two plugins on one endpoint with different timeouts: one key (the
    # answer is the same), but each waits under its own timeout
    short, long = Fetcher(IntrospectionTimeout("300 ms")), Fetcher(active(sub="u"))
    short.gate.clear()
    long.gate.clear()
    tasks = [asyncio.create_task(cache.lookup("k", 30, fetch, call=timeout))
             for fetch, timeout in ((long, 10000), (short, 300), (long, 10000))]
    await asyncio.sleep(0)
    short.gate.set()
    await asyncio.sleep(0)
    long.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert (short.calls, long.calls) == (1, 1)
    assert isinstance(results[1], IntrospectionTimeout)
    assert results[0].result.claims["sub"] == "u" and not results[0].shared
    assert results[2].result.claims["sub"] == "u" and results[2].shared
    # once cached, the answer serves either
    assert (await cache.lookup("k", 30, short, call=300)).hit


async def test_concurrent_lookups_for_different_keys_call_separately(
    cache: IntrospectionCache,
) -> None:
    fetch = Fetcher()
    await asyncio.gather(*(cache.lookup(k, 30, fetch) for k in ("a", "b", "c")))
    assert fetch.calls == 3


async def test_a_shared_error_reaches_every_waiter_and_is_not_cached(
    cache: IntrospectionCache,
) -> None:
    fetch = Fetcher(IntrospectionTimeout("slow"))
    fetch.gate.clear()
    tasks = [asyncio.create_task(cache.lookup("k", 30, fetch)) for _ in range(5)]
    await asyncio.sleep(0)
    fetch.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert fetch.calls == 1
    assert all(isinstance(r, IntrospectionTimeout) for r in results)
    fetch.result = active()
    await cache.lookup("k", 30, fetch)
    assert fetch.calls == 2


async def test_cancelling_one_waiter_does_not_cancel_the_shared_call(
    cache: IntrospectionCache,
) -> None:
    fetch = Fetcher(active(sub="survivor"))
    fetch.gate.clear()
    first = asyncio.create_task(cache.lookup("k", 30, fetch))
    second = asyncio.create_task(cache.lookup("k", 30, fetch))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert first.cancelled()
    fetch.gate.set()
    lookup = await second
    assert lookup.result.claims["sub"] == "survivor"
    assert fetch.calls == 1
    assert cache.get("k", 30) is not None


async def test_the_call_completes_and_is_cached_even_if_every_waiter_leaves(
    cache: IntrospectionCache,
) -> None:
    fetch = Fetcher(active())
    fetch.gate.clear()
    waiter = asyncio.create_task(cache.lookup("k", 30, fetch))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiter.cancel()
    fetch.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert cache.get("k", 30) is not None
    hit = await cache.lookup("k", 30, fetch)
    assert hit.hit
    assert fetch.calls == 1


def test_hot_hits_honour_expiry_each_plugins_ttl_and_flush(
    cache: IntrospectionCache, clock: Clock
) -> None:
    cache.put("k", active(exp=NOW + 100), 3600)
    assert cache.hit("k", 3600) is not None  # now in the hot set
    hot = cache.hit("k", 3600)
    assert hot is not None and hot.hit and hot.memo is not None
    assert hot.remaining == pytest.approx(100)
    assert cache.hit("k", 10).remaining == pytest.approx(10)  # a shorter ttl of another plugin
    clock.advance(10)
    assert cache.hit("k", 10) is None
    assert cache.hit("k", 3600) is not None
    clock.advance(90)
    assert cache.hit("k", 3600) is None  # past exp
    cache.put("k", active(), 3600)
    assert cache.hit("k", 3600) is not None
    cache.flush("k")
    assert cache.hit("k", 3600) is None


def test_the_hot_set_never_holds_what_the_bounded_store_pushed_out(clock: Clock) -> None:
    # the entry bound is the bound on answers in use: one pushed out of the
    # main store is not served from the hot set (nor left there, unflushable)
    cache = IntrospectionCache(maxsize=3, clock=clock.monotonic, wallclock=clock.time)
    for k in "abc":
        cache.put(k, active(), 60)
        assert cache.hit(k, 60) is not None
    for _ in range(3):
        assert cache.hit("a", 60) is not None  # hot hits: the main store is not touched
    assert len(cache._hot) == 3
    cache.put("d", active(), 60)  # the main store evicts its least recently used: a
    assert cache.get("a", 60) is None
    assert cache.hit("a", 60) is None and "a" not in cache._hot
    assert cache.hit("d", 60) is not None
    assert set(cache._hot) <= {k for k, _ in cache.items()}
    assert len(cache) == 3


# -- found by the third black-box review ----------------------------------------------


def test_a_tokens_keys_on_one_plugin_share_their_start_whatever_the_request() -> None:
    # introspect_request keys go on with method and path; the token's id (the
    # first 12 digits) and a flush by token find them all
    base = make_key(b"p", "tok")
    keys = {make_key(b"p", "tok", extra) for extra in ("GET /a", "GET /b", "POST /a")}
    assert len(keys) == 3 and all(len(k) == 64 for k in keys)
    assert {k[:TOKEN_PART] for k in keys} == {base[:TOKEN_PART]}
    assert make_key(b"q", "tok", "GET /a")[:12] != base[:12]


def test_flush_by_prefix_drops_every_matching_answer(cache: IntrospectionCache) -> None:
    keys = [make_key(b"p", "tok", f"GET /{i}") for i in range(3)]
    other = make_key(b"p", "other")
    for k in [*keys, other]:
        cache.put(k, active(), 60)
        assert cache.hit(k, 60) is not None  # hot too
    assert cache.flush_prefixes([keys[0][:12]]) == 3
    assert all(cache.hit(k, 60) is None for k in keys)
    assert cache.hit(other, 60) is not None


async def test_an_answer_fetched_across_a_flush_serves_its_requests_and_is_not_kept(
    cache: IntrospectionCache,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def fetch() -> IntrospectionResult:
        started.set()
        await release.wait()
        return active()

    pending = asyncio.ensure_future(cache.lookup("k", 60, fetch))
    await started.wait()
    cache.flush()  # a revocation while the call is under way
    release.set()
    assert (await pending).active
    assert cache.get("k", 60) is None and cache.hit("k", 60) is None

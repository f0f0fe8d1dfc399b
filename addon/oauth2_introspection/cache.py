"""Introspection results cache: hashed keys, exp-bounded TTL, single-flight.

- Keys are SHA-256 over the plugin's endpoint, credentials and hint plus the
  token, so the raw token is never stored and two plugins pointing at
  different endpoints never share an answer.
- An active answer lives `min(ttl, exp - now)` (RFC 7662 §4: never trust an
  answer past the token's expiry); `ttl = 0` means "until exp". An inactive
  answer lives at most NEGATIVE_TTL seconds. Errors are never stored.
- Concurrent misses for one key share a single call.
- Entries are stamped with their store time, so a plugin with a shorter `ttl`
  reading an entry stored by a plugin with a longer one still honours its own.
- Bounded by entry count (`maxsize`, option `introspection_cache_size`), least
  recently used first out; an entry keeps the answer as compact JSON bytes
  (about 0.6 kB an entry in all). The most recently used answers (the hot
  set, up to HOT_MAXSIZE) also keep a memo of what requests derive from them
  (identity headers, the fast lane's plans), so a hit on them parses and
  builds nothing. Entries and memo values are plain tuples (see Stored).
- An optional second level (`l2`, redis_cache.RedisL2) is shared by several
  proxies: a miss asks it before calling the endpoint, a fresh answer is
  written to it; it never fails a request (see redis_cache.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, NamedTuple

from cachetools import LRUCache

from .introspection import IntrospectionResult

NEGATIVE_TTL = 5.0
DEFAULT_MAXSIZE = 100_000
#: answers whose memo is kept (the hot set). Sized by memory: about 1.2 kB an
#: answer with the fast lane's records, so a full hot set and 100,000 entries
#: stay under 100 MB (bench/memory_probe.py measures both).
HOT_MAXSIZE = 16384


#: a cached answer as stored: a plain tuple (raw, active, stored_at,
#: expires_at). CPython's garbage collector stops tracking a plain tuple of
#: bytes and numbers (never an instance of a class, a NamedTuple included),
#: and it walks every object it tracks on every full collection: as objects
#: (with cachetools' TLRUCache item each), 100,000 cached answers added
#: 200,000 objects to every such walk, a few times a minute under load.
Stored = tuple[bytes, bool, float, float]


class CacheEntry(NamedTuple):
    """One cached answer, as read (`CacheEntry._make(stored)`). The claims are
    kept as compact JSON bytes (a decoded dict costs about three times the
    memory); `result` decodes them."""

    raw: bytes
    active: bool
    stored_at: float
    expires_at: float

    @staticmethod
    def stored(result: IntrospectionResult | None, stored_at: float, expires_at: float,
               raw: bytes | None = None) -> Stored:
        if raw is None:
            assert result is not None
            raw = encode_claims(result.claims)
        active = result.active if result is not None else _raw_active(raw)
        return (raw, active, stored_at, expires_at)

    def valid_until(self, ttl: float) -> float:
        return valid_until(self, ttl)

    @property
    def result(self) -> IntrospectionResult:
        return IntrospectionResult(active=self.active, claims=json.loads(self.raw))


def valid_until(stored: Stored, ttl: float) -> float:
    """When a stored answer stops being valid for a plugin with this `ttl`
    (cache clock): its expiry, or sooner by the plugin's own ttl."""
    _, active, stored_at, expires_at = stored
    return min(expires_at, stored_at + ttl_cap(active, ttl))


def encode_claims(claims: Any) -> bytes:
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode()


def _raw_active(raw: bytes) -> bool:
    doc = json.loads(raw)
    return isinstance(doc, dict) and doc.get("active") is True


class Lookup:
    """An answer for one request: a fresh one, or a cached entry (decoded only
    if `result` is read: a hit whose identity is memoised needs no claims)."""

    __slots__ = ("_result", "entry", "hit", "l2", "memo", "remaining", "shared")

    def __init__(self, result: IntrospectionResult | None, hit: bool, remaining: float | None,
                 shared: bool = False, l2: bool = False, memo: dict[Any, Any] | None = None,
                 entry: CacheEntry | None = None) -> None:
        assert result is not None or entry is not None
        self._result = result
        self.entry = entry
        self.hit = hit
        #: seconds the answer stays cached from now (None: not cached at all)
        self.remaining = remaining
        #: this request waited for another request's call (single-flight)
        self.shared = shared
        #: the answer came from the shared second level (Redis), not the endpoint
        self.l2 = l2
        #: on a hit: a dict living as long as the answer is in the hot set, to
        #: memoise what is derived from it (e.g. identity headers under a plugin)
        self.memo = memo

    @property
    def result(self) -> IntrospectionResult:
        if self._result is None:
            assert self.entry is not None
            self._result = self.entry.result
        return self._result

    @property
    def active(self) -> bool:
        if self._result is None:
            assert self.entry is not None
            return self.entry.active
        return self._result.active


def make_key(prefix: bytes, token: str, extra: str = "") -> str:
    """64 hex digits. With `extra` (introspect_request's method and path) the
    first half is still the token's own key's: a token's id (its first 12
    digits, decision.token_id) and a flush by token find every such entry."""
    data = prefix + b"\x00" + token.encode("utf-8", "surrogateescape")
    key = hashlib.sha256(data).hexdigest()
    if extra:
        data += b"\x00" + extra.encode("utf-8", "surrogateescape")
        key = key[:TOKEN_PART] + hashlib.sha256(data).hexdigest()[TOKEN_PART:]
    return key


#: hex digits of a key that depend on the plugin and the token only
TOKEN_PART = 32


class _Entries(LRUCache[str, "Stored"]):
    """The main store; an answer that leaves it (pushed out by the bound,
    expired, flushed) leaves the hot set too: the hot set never holds what
    the store no longer does."""

    def __init__(self, maxsize: int, hot: OrderedDict[str, Any]) -> None:
        super().__init__(maxsize)
        self._hot = hot

    def __delitem__(self, key: str) -> None:  # cachetools' popitem and pop come here
        super().__delitem__(key)
        self._hot.pop(key, None)


def ttl_cap(active: bool, ttl: float) -> float:
    """Longest a plugin with this `ttl` keeps an answer, ignoring `exp`."""
    limit = ttl if ttl > 0 else math.inf
    return limit if active else min(limit, NEGATIVE_TTL)


#: an answer of the hot set: the stored entry and its memo
Hot = tuple[Stored, dict[Any, Any]]


_DECIMAL = re.compile(r"\s*[0-9]+(?:\.[0-9]+)?\s*")


def numeric_date(value: Any) -> float | None:
    """A claim such as `exp` as seconds since the epoch (RFC 7519 NumericDate),
    also when sent as a decimal string ("1767225600"); None: not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class IntrospectionCache:
    def __init__(
        self,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wallclock = wallclock
        # The hot set: the most recently used keys with their memos (plain
        # OrderedDict LRU: a hit on it runs no Python-level cache code).
        self._hot: OrderedDict[str, Hot]
        self._hot = OrderedDict()
        self._entries: _Entries = _Entries(maxsize, self._hot)
        #: flushes so far: an answer read or fetched across a flush is not stored
        self.epoch = 0
        self._hot_max = min(maxsize, HOT_MAXSIZE)
        #: calls under way, by (key, how the call is made): see lookup()
        self._inflight: dict[tuple[str, Hashable],
                             asyncio.Future[tuple[IntrospectionResult, bool]]] = {}
        #: optional shared second level (redis_cache.RedisL2)
        self.l2: Any = None

    @property
    def maxsize(self) -> int:
        return int(self._entries.maxsize)

    def resize(self, maxsize: int) -> None:
        """Change the entry bound, keeping entries up to the new size."""
        if maxsize == self.maxsize:
            return
        self._hot.clear()
        old, self._entries = self._entries, _Entries(maxsize, self._hot)
        self._hot_max = min(maxsize, HOT_MAXSIZE)
        for key, stored in self._live(old)[-maxsize:]:
            self._entries[key] = stored

    def _live(self, store: _Entries) -> list[tuple[str, Stored]]:
        """The store's entries, the expired ones dropped. Expiry is checked
        when an entry is read (get) and here: an expired entry nobody reads
        takes a slot until it is listed or pushed out by newer ones; the
        entry bound holds either way."""
        now = self._clock()
        for key in [k for k, stored in store.items() if stored[3] <= now]:
            del store[key]
        return list(store.items())

    def __len__(self) -> int:
        return len(self._live(self._entries))

    def items(self) -> Iterator[tuple[str, CacheEntry]]:
        return iter([(key, CacheEntry._make(stored)) for key, stored in self._live(self._entries)])

    def flush(self, key: str | None = None) -> int:
        """Drop every answer, or one key's; the shared second level (if any)
        drops them too, for this configuration's plugins (in the background;
        it is read again only once that is done)."""
        return self.flush_prefixes(None if key is None else [key])

    def flush_prefixes(self, prefixes: list[str] | None = None) -> int:
        """Drop every answer (None), or those whose key starts with one of
        `prefixes` (full keys, token ids, a token's half key); the count."""
        self.epoch += 1
        if self.l2 is not None:
            self.l2.flush_soon(prefixes)
        if prefixes is None:
            n = len(self)
            self._hot.clear()
            self._entries = _Entries(self.maxsize, self._hot)
            return n
        wanted = tuple(prefixes)
        keys = [k for k in self._entries if k.startswith(wanted)]
        now = self._clock()
        n = 0
        for key in keys:
            stored = self._entries.pop(key, None)
            n += stored is not None and stored[3] > now
        return n

    def lifetime(self, result: IntrospectionResult, ttl: float) -> float:
        """Seconds to keep a fresh answer (<= 0: do not store)."""
        life = ttl_cap(result.active, ttl)
        exp = result.claims.get("exp") if result.active else None
        if exp is not None:
            when = numeric_date(exp)
            if when is None:
                return 0.0  # an end that cannot be read: used once, not kept
            life = min(life, when - self._wallclock())
        return life

    def get(self, key: str, ttl: float) -> tuple[CacheEntry, float] | None:
        """A valid entry for a plugin with this `ttl`, and its seconds left."""
        found = self._get(key, ttl)
        return None if found is None else (CacheEntry._make(found[0]), found[1])

    def _get(self, key: str, ttl: float) -> tuple[Stored, float] | None:
        stored = self._entries.get(key)
        if stored is None:
            return None
        now = self._clock()
        if stored[3] <= now:  # expired for every plugin
            del self._entries[key]
            return None
        left = valid_until(stored, ttl) - now
        if left <= 0:
            return None
        return stored, left

    def _promote(self, key: str, entry: Stored) -> Hot:
        """The entry in the hot set (added, with an empty memo, if it is not
        there). The decoded answer is not kept: what is derived from it is."""
        hot = self._hot.get(key)
        if hot is not None and hot[0] is entry:
            self._hot.move_to_end(key)
            return hot
        hot = self._hot[key] = (entry, {})
        self._hot.move_to_end(key)
        if len(self._hot) > self._hot_max:
            cold, _ = self._hot.popitem(last=False)
            # hot hits skip the main store: its recency is brought up to date
            # when a key leaves the hot set
            self._entries.get(cold)
        return hot

    def put(self, key: str, result: IntrospectionResult, ttl: float) -> float | None:
        life = self.lifetime(result, ttl)
        self._hot.pop(key, None)
        if life <= 0:
            self._entries.pop(key, None)
            return None
        now = self._clock()
        self._entries[key] = CacheEntry.stored(result, now, now + life)
        return life

    def put_shared(self, key: str, raw: bytes, stored_wall: float, expires_wall: float) -> None:
        """Store an answer read from the second level (times are wall clock)."""
        wall, now = self._wallclock(), self._clock()
        if expires_wall <= wall:
            return
        self._hot.pop(key, None)
        self._entries[key] = CacheEntry.stored(None, now - max(0.0, wall - stored_wall),
                                               now + (expires_wall - wall), raw=raw)

    def hot(self, key: str, ttl: float) -> Hot | None:
        """The key's entry and memo, from the hot set (not checked for
        validity: the caller does, see hit()) or else from the main store
        (valid for `ttl`, and added to the hot set)."""
        hot = self._hot.get(key)
        if hot is not None:
            self._hot.move_to_end(key)
            return hot
        found = self._get(key, ttl)
        return None if found is None else self._promote(key, found[0])

    def now(self) -> float:
        return self._clock()

    def hit(self, key: str, ttl: float) -> Lookup | None:
        """The cached answer, without waiting for anything; None on a miss."""
        hot = self.hot(key, ttl)
        if hot is None:
            return None
        stored, memo = hot
        left = valid_until(stored, ttl) - self._clock()
        if left <= 0:
            return None
        return Lookup(None, True, left, False, False, memo, CacheEntry._make(stored))

    async def lookup(
        self, key: str, ttl: float, fetch: Callable[[], Awaitable[IntrospectionResult]],
        scope: bytes = b"", call: Hashable = None,
    ) -> Lookup:
        """`scope` (the plugin's key prefix) names the second-level entries a
        flush of this configuration removes. Concurrent misses of one key share
        one call only when `call` (how it is made: the plugin's timeout) is the
        same too: a request must not fail by another plugin's shorter timeout,
        nor wait out another's longer one. The answer, once cached, is shared."""
        cached = self.hit(key, ttl)
        if cached is not None:
            return cached
        flight = (key, call)
        future = self._inflight.get(flight)
        shared = future is not None
        if future is None:
            future = asyncio.ensure_future(self._fetch_and_store(key, ttl, fetch, scope))
            self._inflight[flight] = future
            future.add_done_callback(lambda f: self._done(flight, f))
        # shield: a client that hangs up must not cancel the call others await.
        result, from_l2 = await asyncio.shield(future)
        cached = self.get(key, ttl)
        return Lookup(result, hit=from_l2, remaining=cached[1] if cached else None,
                      shared=shared, l2=from_l2)

    async def _fetch_and_store(
        self, key: str, ttl: float, fetch: Callable[[], Awaitable[IntrospectionResult]],
        scope: bytes = b"",
    ) -> tuple[IntrospectionResult, bool]:
        l2 = self.l2
        epoch = self.epoch
        if l2 is not None:
            shared = await l2.get(scope, key)  # never raises; None when down or absent
            # an entry read while a flush went on may be the flushed one: not used
            if shared is not None and self.epoch == epoch:
                raw, stored_wall, expires_wall = shared
                self.put_shared(key, raw, stored_wall, expires_wall)
                cached = self.get(key, ttl)
                if cached is not None:
                    return cached[0].result, True
        epoch = self.epoch
        result = await fetch()
        if self.epoch != epoch:
            # flushed while the call was under way (a revocation, say): the
            # answer may predate it, so it serves the requests that waited
            # for it and is not kept
            return result, False
        life = self.put(key, result, ttl)
        if l2 is not None and life is not None:
            stored = self._entries.get(key)
            if stored is not None:
                wall = self._wallclock()
                await l2.put(scope, key, stored[0], wall, wall + life)
        return result, False

    def _done(self, flight: tuple[str, Hashable],
              future: asyncio.Future[tuple[IntrospectionResult, bool]]) -> None:
        if self._inflight.get(flight) is future:
            del self._inflight[flight]
        if not future.cancelled():
            future.exception()  # mark retrieved even if every waiter went away

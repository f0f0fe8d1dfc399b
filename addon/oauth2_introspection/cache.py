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
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from cachetools import TLRUCache

from .introspection import IntrospectionResult

NEGATIVE_TTL = 5.0
DEFAULT_MAXSIZE = 100_000


@dataclass(frozen=True)
class CacheEntry:
    result: IntrospectionResult
    stored_at: float
    expires_at: float


@dataclass(frozen=True)
class Lookup:
    result: IntrospectionResult
    hit: bool
    #: seconds the answer stays cached from now (None: not cached at all)
    remaining: float | None
    #: this request waited for another request's call (single-flight)
    shared: bool = False


def make_key(prefix: bytes, token: str, extra: str = "") -> str:
    h = hashlib.sha256(prefix)
    h.update(b"\x00")
    h.update(token.encode("utf-8", "surrogateescape"))
    if extra:
        h.update(b"\x00")
        h.update(extra.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def ttl_cap(active: bool, ttl: float) -> float:
    """Longest a plugin with this `ttl` keeps an answer, ignoring `exp`."""
    limit = ttl if ttl > 0 else math.inf
    return limit if active else min(limit, NEGATIVE_TTL)


class IntrospectionCache:
    def __init__(
        self,
        maxsize: int = DEFAULT_MAXSIZE,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wallclock = wallclock
        self._entries: TLRUCache[str, CacheEntry] = TLRUCache(
            maxsize=maxsize, ttu=lambda _k, entry, _now: entry.expires_at, timer=clock
        )
        self._inflight: dict[str, asyncio.Future[IntrospectionResult]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterator[tuple[str, CacheEntry]]:
        self._entries.expire()
        return iter(list(self._entries.items()))

    def flush(self, key: str | None = None) -> int:
        if key is None:
            n = len(self._entries)
            self._entries.clear()
            return n
        return 1 if self._entries.pop(key, None) is not None else 0

    def lifetime(self, result: IntrospectionResult, ttl: float) -> float:
        """Seconds to keep a fresh answer (<= 0: do not store)."""
        life = ttl_cap(result.active, ttl)
        exp = result.claims.get("exp") if result.active else None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            life = min(life, exp - self._wallclock())
        return life

    def get(self, key: str, ttl: float) -> tuple[CacheEntry, float] | None:
        """A valid entry for a plugin with this `ttl`, and its seconds left."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        until = min(entry.expires_at, entry.stored_at + ttl_cap(entry.result.active, ttl))
        if now >= until:
            return None
        return entry, until - now

    def put(self, key: str, result: IntrospectionResult, ttl: float) -> float | None:
        life = self.lifetime(result, ttl)
        if life <= 0:
            self._entries.pop(key, None)
            return None
        now = self._clock()
        self._entries[key] = CacheEntry(result, now, now + life)
        return life

    async def lookup(
        self, key: str, ttl: float, fetch: Callable[[], Awaitable[IntrospectionResult]]
    ) -> Lookup:
        cached = self.get(key, ttl)
        if cached is not None:
            entry, left = cached
            return Lookup(entry.result, hit=True, remaining=left)
        future = self._inflight.get(key)
        shared = future is not None
        if future is None:
            future = asyncio.ensure_future(self._fetch_and_store(key, ttl, fetch))
            self._inflight[key] = future
            future.add_done_callback(lambda f: self._done(key, f))
        # shield: a client that hangs up must not cancel the call others await.
        result = await asyncio.shield(future)
        cached = self.get(key, ttl)
        return Lookup(result, hit=False, remaining=cached[1] if cached else None, shared=shared)

    async def _fetch_and_store(
        self, key: str, ttl: float, fetch: Callable[[], Awaitable[IntrospectionResult]]
    ) -> IntrospectionResult:
        result = await fetch()
        self.put(key, result, ttl)
        return result

    def _done(self, key: str, future: asyncio.Future[IntrospectionResult]) -> None:
        if self._inflight.get(key) is future:
            del self._inflight[key]
        if not future.cancelled():
            future.exception()  # mark retrieved even if every waiter went away

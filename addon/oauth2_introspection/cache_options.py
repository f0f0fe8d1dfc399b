"""Cache options of the core addon (which calls load/configure/done here).

- `introspection_cache_size` (default 100000): most answers kept in process;
  beyond it the least recently used go first (expired ones go anyway).
- `introspection_cache_redis_url` (default empty: none): a Redis shared by
  several proxies as a second-level cache (redis_cache.py), e.g.
  `redis://127.0.0.1:6379/0`; needs the `redis` package (extra `[redis]`).

Both are declared as `str` and parsed here, raising OptionsError on a bad
value: mitmproxy silently disables an addon whose typed option fails to parse
from `--set`, and would then forward traffic unprotected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mitmproxy import ctx, exceptions

from .cache import DEFAULT_MAXSIZE
from .redis_cache import RedisL2, check_url, redacted

logger = logging.getLogger("oauth2_introspection")

SIZE_OPTION = "introspection_cache_size"
REDIS_OPTION = "introspection_cache_redis_url"
MAX_SIZE = 100_000_000


def parse_size(value: str) -> int:
    text = str(value).strip().replace("_", "")
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"{size} is not between 1 and {MAX_SIZE}")
    return size


class CacheOptions:
    def __init__(self, core: Any) -> None:
        self.core = core
        self.l2: RedisL2 | None = None
        self._closing: set[asyncio.Task[None]] = set()
        core.state.subscribe(self._policy_changed)

    def load(self, loader: Any) -> None:
        loader.add_option(
            SIZE_OPTION, str, str(DEFAULT_MAXSIZE),
            "Most introspection answers kept in process (least recently used go first).",
        )
        loader.add_option(
            REDIS_OPTION, str, "",
            "Redis URL (redis://host:port/db) of a second-level introspection cache shared by "
            "several proxies; empty: none. Needs the redis package.",
        )

    def configure(self, updated: set[str]) -> None:
        if SIZE_OPTION in updated:
            try:
                size = parse_size(ctx.options.introspection_cache_size)
            except ValueError as e:
                raise exceptions.OptionsError(f"invalid {SIZE_OPTION}: {e}") from None
            self.core.cache.resize(size)
        if REDIS_OPTION in updated:
            url = str(ctx.options.introspection_cache_redis_url).strip()
            if url == (self.l2.url if self.l2 else ""):
                return
            new = None
            if url:
                try:
                    new = RedisL2(check_url(url))
                except ValueError as e:
                    raise exceptions.OptionsError(f"invalid {REDIS_OPTION}: {e}") from None
                except ImportError:
                    raise exceptions.OptionsError(
                        f"{REDIS_OPTION} needs the redis package: "
                        "pip install 'mitmproxy-oauth2-introspection[redis]'") from None
                policy = self.core.policy
                if policy is not None:
                    new.set_scopes(p.key_prefix for p in policy.plugins)
                logger.info("oauth2-introspection: shared Redis cache %s", redacted(url))
            old, self.l2 = self.l2, new
            self.core.cache.l2 = new
            if old is not None:
                self._close_soon(old)

    def _policy_changed(self, _config: Any, policy: Any) -> None:
        if self.l2 is not None:
            self.l2.set_scopes(p.key_prefix for p in policy.plugins)

    def _close_soon(self, l2: RedisL2) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: nothing open yet
            task = asyncio.get_running_loop().create_task(l2.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def done(self) -> None:
        if self.l2 is not None:
            await self.l2.aclose()

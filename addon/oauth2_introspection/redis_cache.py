"""Optional shared second-level cache in Redis (option `introspection_cache_redis_url`).

Several proxies in front of the same services share introspection answers:
an answer one of them fetched is read by the others instead of calling the
endpoint again.

- Keys: `oauth2-introspection:<scope>:<key>`. `<key>` is the in-process
  cache key (SHA-256 over the plugin's endpoint, credentials, hint and the
  token: never the token), `<scope>` the first 16 hex digits of the plugin's
  key prefix, so a flush can find every entry of this configuration's plugins.
- Values: compact JSON `{"k": key, "t": stored (unix s), "e": expires (unix s),
  "r": answer}`; each key expires with its entry (`PX`), never past the token's
  `exp`. A value whose `k` is not the key asked for is never used (a reply
  read out of order on a broken connection must not authenticate anyone).
- Redis is a cache, never a dependency: every operation has a short timeout,
  and any failure marks Redis down. While down, requests use the in-process
  cache and the endpoint only (no Redis call at all) and a background probe
  pings every second; the outage is logged once when it starts and once when
  it ends, never per request.
- The client is `redis.asyncio` (`pip install 'mitmproxy-oauth2-introspection[redis]'`);
  it is imported only when the option is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

from .masking import mask_secret_params

logger = logging.getLogger("oauth2_introspection")

NAMESPACE = "oauth2-introspection"
#: seconds a Redis operation may take before Redis counts as down
OP_TIMEOUT = 0.5
#: seconds between probes while Redis is down
PROBE_INTERVAL = 1.0
#: seconds a flush (a scan over this configuration's keys) may take
FLUSH_TIMEOUT = 10.0
#: the longest a Redis entry lives (seconds): one day
MAX_SHARED_LIFE = 86400.0
SCHEMES = ("redis", "rediss", "unix")


def check_url(url: str) -> str:
    """The URL, or ValueError saying what is wrong with it (password hidden)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{redacted(url)!r} is not a redis://, rediss:// or unix:// URL")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{redacted(url)!r} names no host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueError(f"{redacted(url)!r}: {e}") from None
    return url


def redacted(url: str) -> str:
    """The URL for logs and errors: no password, whether in the user part
    (`redis://:pw@host`) or the query (`?password=pw`)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        url = parts._replace(netloc=user + netloc).geturl()
    return mask_secret_params(url)


def scope_id(scope: bytes) -> str:
    return scope.hex()[:16] if scope else "-"


class RedisL2:
    """The second level: get/put never raise and never wait long."""

    def __init__(self, url: str, client: Any = None) -> None:
        self.url = check_url(url)
        if client is None:
            import redis.asyncio as aioredis  # optional dependency
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            extra: dict[str, Any] = {}
            try:  # redis-py >= 7: no maintenance-notification handshake (Redis < 8 lacks it)
                from redis.maint_notifications import MaintNotificationsConfig

                extra["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
            except ImportError:
                pass
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=OP_TIMEOUT,
                socket_connect_timeout=OP_TIMEOUT,
                health_check_interval=0,
                # no retries: a failure marks Redis down at once (see above)
                retry=Retry(NoBackoff(), 0),
                protocol=2,
                **extra,
            )
        self.client = client
        self.down = False
        self.scopes: set[str] = set()
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: flushes Redis did not answer (None: all), done when it is back
        self._pending_flushes: list[list[str] | None] = []
        #: flushes under way: nothing is read from Redis until they are done
        self._flushing: set[asyncio.Task[Any]] = set()
        #: counters for logs, tests and the benchmark
        self.hits = self.misses = self.errors = 0

    def key(self, scope: bytes, key: str) -> str:
        sid = scope_id(scope)
        self.scopes.add(sid)
        return f"{NAMESPACE}:{sid}:{key}"

    def set_scopes(self, scopes: Any) -> None:
        """Scopes (plugin key prefixes) of the configuration in force: a flush
        reaches their entries, also those this process has not touched yet,
        and only theirs (not those of a configuration it ran before a reload,
        which other proxies may still run)."""
        self.scopes = {scope_id(s) for s in scopes}

    # -- operations --------------------------------------------------------------

    async def get(self, scope: bytes, key: str) -> tuple[bytes, float, float] | None:
        """(answer JSON, stored, expires) in unix seconds, or None."""
        if self._flushing:
            # a flush asked for must be done before anything is read again:
            # else a miss right after it reads the flushed entry back
            await asyncio.wait(list(self._flushing), timeout=FLUSH_TIMEOUT)
        if self.down or self._pending_flushes:
            return None
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                value = await self.client.get(self.key(scope, key))
        except Exception as e:
            self._failed(e)
            return None
        self._ok()
        if value is None:
            self.misses += 1
            return None
        try:
            doc = json.loads(value)
            if doc["k"] != key:
                raise ValueError("the entry belongs to another key")
            stored, expires, answer = float(doc["t"]), float(doc["e"]), doc["r"]
            if not (math.isfinite(stored) and math.isfinite(expires)):
                raise ValueError("times that are not finite numbers")
            if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
                raise ValueError("no boolean active")
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("oauth2-introspection: ignoring a malformed Redis cache entry (%s)", e)
            self.misses += 1
            return None
        self.hits += 1
        raw = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
        return raw, stored, expires

    async def put(self, scope: bytes, key: str, raw: bytes, stored: float,
                  expires: float) -> None:
        if self.down:
            return
        now = time.time()
        # an answer with no end (ttl 0 and no exp) or a far one is shared for
        # at most MAX_SHARED_LIFE: Redis refuses expiry times past its range
        life = min(expires - now, MAX_SHARED_LIFE)
        if not life > 0:
            return
        expires = now + life
        ms = int(life * 1000)
        value = b'{"k":"%s","t":%.3f,"e":%.3f,"r":%s}' % (key.encode(), stored, expires, raw)
        try:
            async with asyncio.timeout(OP_TIMEOUT):
                await self.client.set(self.key(scope, key), value, px=ms)
        except Exception as e:
            self._failed(e)
            return
        self._ok()

    def flush_soon(self, prefixes: list[str] | None = None) -> None:
        """Remove this configuration's entries (all, or those whose key starts
        with one of `prefixes`) in the background; reads wait for it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop (unit tests): nothing shared to clear
        task = loop.create_task(self.flush(prefixes))
        for group in (self._tasks, self._flushing):
            group.add(task)
            task.add_done_callback(group.discard)

    async def flush(self, prefixes: list[str] | None = None) -> int:
        """Delete this configuration's entries; return how many were deleted.
        If Redis does not answer, the flush is kept and done when it is back
        (before anything is read from it again)."""
        if not self.scopes:
            return 0
        if self.down or self._pending_flushes:
            # known to be down: kept for the probe, and said once per outage
            self._keep_pending(prefixes, None)
            return 0
        try:
            deleted = await self._delete(prefixes)
        except Exception as e:
            self._keep_pending(prefixes, e)
            self._failed(e)
            return 0
        self._ok()
        logger.info("oauth2-introspection: flushed %d Redis cache entr%s", deleted,
                    "y" if deleted == 1 else "ies")
        return deleted

    def _keep_pending(self, prefixes: list[str] | None, error: BaseException | None) -> None:
        if not self._pending_flushes:
            logger.warning("oauth2-introspection: could not flush the Redis cache %s (%s): "
                           "it will be flushed when it answers again", redacted(self.url),
                           _describe(error) if error is not None else "unavailable")
        self._pending_flushes.append(prefixes)

    async def _delete(self, prefixes: list[str] | None) -> int:
        deleted = 0
        async with asyncio.timeout(FLUSH_TIMEOUT):
            if prefixes is not None and all(len(p) == 64 for p in prefixes):
                # whole keys: deleted by name, no scan
                names = [f"{NAMESPACE}:{sid}:{p}" for sid in sorted(self.scopes)
                         for p in prefixes]
                return int(await self.client.delete(*names)) if names else 0
            for sid in sorted(self.scopes):
                for pattern in (["*"] if prefixes is None else [f"{p}*" for p in prefixes]):
                    batch: list[Any] = []
                    async for name in self.client.scan_iter(
                            match=f"{NAMESPACE}:{sid}:{pattern}", count=1000):
                        batch.append(name)
                        if len(batch) >= 1000:
                            deleted += int(await self.client.delete(*batch))
                            batch = []
                    if batch:
                        deleted += int(await self.client.delete(*batch))
        return deleted

    async def _flush_pending(self) -> bool:
        """The flushes asked for while Redis was down; False: not all done."""
        pending, self._pending_flushes = self._pending_flushes, []
        todo: list[list[str] | None] = [None] if None in pending else pending
        for i, prefixes in enumerate(todo):
            try:
                deleted = await self._delete(prefixes)
            except Exception:
                self._pending_flushes = [*todo[i:], *self._pending_flushes]
                return False
            logger.info("oauth2-introspection: flushed %d Redis cache entr%s (asked for while "
                        "it was down)", deleted, "y" if deleted == 1 else "ies")
        return True

    # -- outages -----------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        self.errors += 1
        if self.down:
            return
        self.down = True
        logger.warning(
            "oauth2-introspection: Redis cache %s unavailable (%s): using the in-process cache "
            "and the introspection endpoint until it is back", redacted(self.url),
            _describe(error))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._probe is None or self._probe.done():
            self._probe = loop.create_task(self._probe_until_up())

    def _ok(self) -> None:
        if self.down:
            self.down = False
            logger.info("oauth2-introspection: Redis cache %s is back", redacted(self.url))

    async def _probe_until_up(self) -> None:
        while self.down:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                async with asyncio.timeout(OP_TIMEOUT):
                    await self.client.ping()
                    # start afresh: no connection from before the outage
                    await self.client.connection_pool.disconnect()
            except Exception:
                continue
            # what was flushed during the outage must not be read after it
            if await self._flush_pending():
                self._ok()

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2)
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {OP_TIMEOUT} s"
    return f"{error.__class__.__name__}: {error}" if str(error) else error.__class__.__name__

"""One plugin, one request: find the token, introspect (cached), decide.

`decide()` reads the request but never changes it; it returns a Decision the
addon applies (or, in a report-only mode, only records). The steps read as
heimdall's: extract token -> get the answer (cache or call) -> validate it ->
build the identity -> headers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mitmproxy import http

from . import responses
from .cache import IntrospectionCache, Lookup, make_key
from .consumers import ConsumerRecord, ConsumerStore
from .errors import IntrospectionError
from .fastpath import RequestHead
from .headers import consumer_headers, credential_headers
from .introspection import ClientPool, IntrospectionRequest, IntrospectionResult, introspect
from .policy import PluginRuntime
from .sharing import Shared
from .text import header_text, is_utf8_text, log_safe
from .token import FoundToken, TokenSource, find_token

logger = logging.getLogger(__name__)


@dataclass
class Decision:
    #: allowed | anonymous | preflight | refused
    outcome: str
    #: short text for the flow comment, e.g. "allowed bob (cache hit, 12 s left)"
    summary: str
    refusal: responses.Refusal | None = None
    #: the identity headers as raw header fields, ready to append (built once
    #: per cached answer)
    fields: tuple[tuple[bytes, bytes], ...] = ()
    #: the names of those headers, sorted
    names: tuple[str, ...] = ()
    #: the token to remove before forwarding (hide_credentials)
    hide: FoundToken | None = None
    #: plain data for flow.metadata; never holds a token
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def forwards(self) -> bool:
        return self.refusal is None

    @property
    def set_headers(self) -> dict[str, str]:
        """The identity headers by name (built on each call)."""
        return {name.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
                for name, value in self.fields}


def token_id(key: str) -> str:
    """A short, non-reversible id for a token (a prefix of its cache key)."""
    return key[:12]


async def decide(
    plugin: PluginRuntime,
    request: http.Request,
    consumers: ConsumerStore,
    cache: IntrospectionCache,
    clients: ClientPool,
    head: RequestHead | None = None,
) -> Decision:
    """`head`: the request's head, when the caller read it already."""
    cfg = plugin.config
    details: dict[str, Any] = {"plugin": plugin.label, "plugin_id": plugin.id}

    # the raw method: mitmproxy's `method` is upper-cased, and methods are
    # case-sensitive (Kong lets only `OPTIONS` itself through)
    if request.data.method == b"OPTIONS" and not cfg.run_on_preflight:
        return Decision("preflight", "preflight passed (run_on_preflight: false)", details=details)

    found = find_token(request, head)
    if found is None:
        details["token_source"] = None
        return _failure(plugin, consumers, "missing token", responses.missing_token(), None,
                        details)
    details["token_source"] = _SOURCE_NAMES[found.source]
    if not is_utf8_text(found.value):
        # bytes that are not UTF-8: no endpoint issued it, and it cannot be
        # sent in the call's form; refused without a call (nor a cache key)
        return _failure(plugin, consumers, "invalid token (not UTF-8 text)",
                        responses.invalid_token(), found, details)

    extra = f"{request.method} {request.path.split('?', 1)[0]}" if cfg.introspect_request else ""
    key = make_key(plugin.key_prefix, found.value, extra)
    details["token_id"] = token_id(key)

    # A cached answer is decided without awaiting anything (the common case).
    lookup = cache.hit(key, cfg.ttl)
    if lookup is None:
        try:
            lookup = await cache.lookup(key, cfg.ttl, _Fetch(plugin, request, found.value, clients),
                                        scope=plugin.key_prefix, call=cfg.timeout)
        except IntrospectionError as e:
            details["introspection_error"] = e.reason
            details["introspection_error_detail"] = str(e)
            return _failure(plugin, consumers, e.reason, responses.introspection_failed(), found,
                            details)
    hit = lookup.hit
    details["cache"] = "hit" if hit else ("shared" if lookup.shared else "miss")
    remaining = lookup.remaining
    details["cache_remaining_s"] = None if remaining is None else round(remaining, 1)
    details["introspection_latency_ms"] = None if hit else round(lookup.result.latency_ms, 1)
    details["active"] = active = lookup.active

    if not active:
        return _failure(plugin, consumers, "invalid token", responses.invalid_token(), found,
                        details)

    identity = identity_in(lookup.memo, plugin, consumers, lambda: lookup.result.claims)
    if identity.dropped:
        logger.warning(
            "%s: dropped claim(s) %s for token %s: value contains CR, LF, NUL or another "
            "control character", plugin.label, ", ".join(identity.dropped), details["token_id"],
        )
        details["dropped_claims"] = identity.dropped
    if identity.consumer is not None:
        details["consumer"] = dict(identity.consumer)
    return Decision(
        "allowed",
        f"allowed {identity.who} ({cache_text(lookup)})",
        fields=identity.fields,
        names=identity.names,
        hide=found if cfg.hide_credentials else None,
        details=details,
    )


#: token sources as plain strings for the metadata (no enum machinery per request)
_SOURCE_NAMES = {source: source.value for source in TokenSource}


class _Fetch:
    """The introspection call for one request (built only on a cache miss)."""

    __slots__ = ("clients", "plugin", "request", "token")

    def __init__(self, plugin: PluginRuntime, request: http.Request, token: str,
                 clients: ClientPool) -> None:
        self.plugin, self.request, self.token, self.clients = plugin, request, token, clients

    async def __call__(self) -> IntrospectionResult:
        plugin, request = self.plugin, self.request
        cfg = plugin.config
        headers = dict(plugin.introspection_headers)
        if cfg.introspect_request:
            headers["X-Request-Path"] = header_text(request.data.path.split(b"?", 1)[0])
            headers["X-Request-Http-Method"] = header_text(request.method.encode(
                "utf-8", "surrogateescape"))
        return await introspect(
            self.clients.get(plugin.client_key),
            IntrospectionRequest(
                url=cfg.introspection_url,
                token=self.token,
                authorization=cfg.authorization_value,
                token_type_hint=cfg.token_type_hint,
                headers=headers,
                timeout_ms=cfg.timeout,
            ),
        )


class Identity(NamedTuple):
    """What an active answer vouches for under one plugin's settings. Kept for
    each answer of the hot set (as a plain tuple, see identity_in): equal
    parts are shared between answers."""

    #: the identity headers as raw fields, ready to append (never changed once
    #: built: every request of the token gets the same tuple)
    fields: tuple[tuple[bytes, bytes], ...]
    #: the names of those headers, sorted
    names: tuple[str, ...]
    #: claims left out because their value could inject header lines
    dropped: tuple[str, ...]
    #: the consumer's id, username and custom_id as (name, value) pairs
    consumer: tuple[tuple[str, Any], ...] | None
    #: the name the flow comment shows
    who: str


def identity_in(memo: dict[Any, Any] | None, plugin: PluginRuntime, consumers: ConsumerStore,
                claims: Callable[[], Any]) -> Identity:
    """The identity of a cached answer under `plugin` and `consumers`, worked
    out once while the answer is in the hot set and kept in its memo (None:
    not cached, worked out now). Kept as a plain tuple of plain values under
    keys of plain objects: the collector stops tracking it (cache.Stored).
    A consumer created or deleted makes a new ConsumerStore, so a new key."""
    key = (plugin.memo_key, consumers.memo_key)
    kept = memo.get(key) if memo is not None else None
    if kept is not None:
        return Identity._make(kept)
    identity = identity_for(claims(), plugin.config, consumers)
    if memo is not None:
        memo[SHARED(key)] = tuple(identity)
    return identity


def identity_for(claims: Any, cfg: Any, consumers: ConsumerStore) -> Identity:
    headers, dropped = credential_headers(claims, cfg.custom_claims_forward)
    consumer = consumers.for_claims(cfg.consumer_by, claims)
    if consumer is not None:
        headers.update(consumer_headers(consumer))
    return Identity(
        fields=encode_fields(headers),
        names=SHARED(tuple(sorted(headers))),
        dropped=tuple(dropped),
        consumer=SHARED(tuple(_consumer_details(consumer).items()))
        if consumer is not None else None,
        who=log_safe(consumer.label if consumer else _subject(claims)),
    )


#: values shared between the hot set's answers (sharing.py)
SHARED = Shared()


def encode_fields(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    # most fields (client id, scope, issuer, consumer...) are the same for many
    # tokens: each distinct one is kept once
    return tuple([SHARED((_encoded_name(name), value.encode("utf-8", "surrogateescape")))
                  for name, value in headers.items()])


_NAMES: dict[str, bytes] = {}


def _encoded_name(name: str) -> bytes:
    # header names come from a small set: encode (and keep) each once
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = name.encode("utf-8", "surrogateescape")
        if len(_NAMES) < 1024:
            _NAMES[name] = encoded
    return encoded


def _failure(
    plugin: PluginRuntime,
    consumers: ConsumerStore,
    reason: str,
    refusal: responses.Refusal,
    found: FoundToken | None,
    details: dict[str, Any],
) -> Decision:
    """Refuse, or, with `anonymous`, forward as the anonymous consumer (Kong's
    logical-OR of auth plugins: any authentication failure falls back)."""
    details["failure"] = reason
    anonymous = plugin.config.anonymous
    if not anonymous:
        return Decision("refused", f"{refusal.status} {reason}", refusal=refusal, details=details)
    consumer = consumers.anonymous(anonymous)
    if consumer is None:
        logger.error(
            "oauth2-introspection plugin %s (%s): anonymous consumer %r does not exist",
            plugin.id, plugin.label, anonymous,
        )
        refusal = responses.anonymous_not_found(anonymous)
        return Decision("refused", f"500 anonymous consumer {anonymous!r} not found",
                        refusal=refusal, details=details)
    details["consumer"] = _consumer_details(consumer)
    headers = consumer_headers(consumer, anonymous=True)
    return Decision(
        "anonymous",
        f"anonymous {log_safe(consumer.label)} ({reason})",
        fields=encode_fields(headers),
        names=tuple(sorted(headers)),
        hide=found if plugin.config.hide_credentials else None,
        details=details,
    )


def _subject(claims: Any) -> str:
    for claim in ("username", "client_id", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return "token"


def _consumer_details(consumer: ConsumerRecord) -> dict[str, Any]:
    return {"id": consumer.id, "username": consumer.username, "custom_id": consumer.custom_id}


def cache_text(lookup: Lookup) -> str:
    state = "cache hit" if lookup.hit else ("shared call" if lookup.shared else "introspected")
    if lookup.remaining is None:
        return f"{state}, not cached"
    if lookup.remaining == math.inf:
        return f"{state}, cached until flushed"
    return f"{state}, {int(lookup.remaining)} s left"

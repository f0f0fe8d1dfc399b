"""The cached-token fast lane: the most common request, allowed in one pass.

A request takes it when it is the plain case (HTTP/1.1, origin form, no body,
no query, one Host, one `Authorization: Bearer` header, no identity header sent) on a route
resolved without looking at headers, without path rewriting, and its token's
active answer is in the cache (the general path introspected it before).
Anything else returns False and takes the general path (addon._handle ->
decide), which the lane never contradicts: the same headers, metadata,
comment and marker (tests/unit/test_fastlane.py compares both on the same
requests).

Why it exists: inside mitmproxy each step of the general path runs with cold
CPU caches, between mitmproxy's own work, and costs several times what it
does in a tight loop; doing the cached case in one function, with one pass
over the header fields, only the Authorization value decoded, and what it
needs of the route and of the answer each in one flat tuple worked out on
first use, is what keeps the addon's cost near plain mitmdump's
(docs/performance.md).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, NamedTuple

from mitmproxy import http
from mitmproxy.net.http.url import hostport
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from .annotations import MARKERS
from .cache import CacheEntry, IntrospectionCache
from .decision import SHARED, identity_in
from .headers import ANONYMOUS_NAMES_B, SPOOFABLE_PREFIXES_B
from .policy import RESOLUTION_MEMO_SIZE, Policy, Resolution
from .text import storable
from .token import header_token

METADATA_KEY = "oauth2_introspection"
_ALLOWED = MARKERS["allowed"]
_HIDDEN = ("header:Authorization",)
#: plans kept per cached answer (one per route and client Host it is used on)
MAX_PLANS = 32


def allow_cached(flow: http.HTTPFlow, policy: Policy, cache: IntrospectionCache) -> bool:
    """Allow `flow` if it is the cached case (see above); False: not handled,
    nothing changed."""
    request = flow.request
    data = request.data
    raw_path = data.path
    if (data.content or b"?" in raw_path or data.http_version != b"HTTP/1.1"
            or data.authority):  # absolute form: fastpath.absolute_form_host
        return False
    # One pass over the raw fields: where Host and Authorization are, and
    # whether an identity header came in (repeated Host or Authorization, or
    # an identity header: the general way handles them).
    fields = data.headers.fields
    host_at = auth_at = -1
    for i, (name, _) in enumerate(fields):
        lower = name.lower()
        if lower == b"host":
            if host_at >= 0:
                return False
            host_at = i
        elif lower == b"authorization":
            if auth_at >= 0:
                return False
            auth_at = i
        elif lower.startswith(SPOOFABLE_PREFIXES_B) or lower in ANONYMOUS_NAMES_B:
            return False
    if host_at < 0 or auth_at < 0:
        return False
    # as headers.get() and str.split() read them on the general path
    token = header_token(fields[auth_at][1].decode("utf-8", "surrogateescape"))
    if token is None:
        return False
    raw_host = fields[host_at][1]
    lanes = policy.lane_routes
    if lanes is None:
        return False  # routes match on headers: resolved on every request, the general way
    lane = lanes.get((raw_host, raw_path, data.method))
    if lane is None:
        lane = _lane_route(policy, lanes, raw_host, raw_path, data.method)
    if not lane:
        return False
    resolution, route_id, client_host, hasher, ttl, plugin_key, base_meta = lane
    hashing = hasher.copy()  # = make_key(plugin.key_prefix, token)
    hashing.update(token.encode("utf-8", "surrogateescape"))
    key = hashing.hexdigest()
    hot = cache.hot(key, ttl)
    if hot is None:
        return False
    stored, memo = hot
    kept = memo.get((route_id, client_host))
    if (kept is None or kept[0] is not plugin_key
            or kept[1] is not policy.consumers.memo_key):
        if len(memo) >= MAX_PLANS:
            return False  # e.g. one token sent with ever new Host values: the general way
        plan = _plan(flow, policy, resolution, client_host, memo, CacheEntry._make(stored))
        if plan is None:
            return False
        # a plain tuple of plain values: the collector stops tracking it (and
        # then the memo), see cache.Stored
        memo[SHARED((route_id, client_host))] = kept = tuple(plan)
    _, _, until, upstream, host, hide, added_fields, added, consumer, comment = kept
    left = until - cache.now()
    if left <= 0:
        return False

    # Decided: allowed. Apply it as addon._handle and _send_upstream would.
    if upstream is not None:
        scheme, up_host, port = upstream
        if (data.scheme, data.host, data.port) != (scheme, up_host, port):
            request.scheme, request.host, request.port = scheme, up_host, port
    # the header list rebuilt once, as fastpath.rewrite_headers does: the
    # Host field keeps its place and name, Authorization goes if hidden
    new = list(fields)
    if host is not None:
        new[host_at] = (fields[host_at][0], host)
    if hide:
        del new[auth_at]
    new += added_fields
    data.headers.fields = tuple(new)

    # tuples, not lists (as on the general path): mitmweb keeps every flow,
    # and the garbage collector visits each list on every full collection
    meta = base_meta.copy()
    meta["token_id"] = key[:12]
    meta["cache_remaining_s"] = round(left, 1)
    meta["added_headers"] = added
    if consumer is not None:
        meta["consumer"] = dict(consumer)
    if hide:
        meta["hidden_credentials"] = _HIDDEN
    flow.metadata[METADATA_KEY] = meta
    flow.comment = (f"{comment}cached until flushed)" if left == math.inf
                    else f"{comment}{int(left)} s left)")
    flow.marked = _ALLOWED
    return True


def _lane_route(policy: Policy, lanes: dict[tuple[bytes, bytes, bytes], tuple[Any, ...]],
                raw_host: bytes, raw_path: bytes, raw_method: bytes) -> tuple[Any, ...]:
    """What the lane needs about a (Host, path, method) of `policy`, worked
    out once and kept in `lanes` (policy.lane_routes) as one flat tuple; ():
    not a request the lane takes."""
    method = raw_method.decode("utf-8", "surrogateescape")
    client_host = raw_host.decode("utf-8", "surrogateescape")
    path = raw_path.decode("utf-8", "surrogateescape")
    resolution = policy.resolve(client_host, path, method)
    plugin = resolution.plugin
    lane: tuple[Any, ...] = ()
    if method != "OPTIONS" and plugin is not None and resolution.match is not None:
        route = resolution.match.target
        service = route.service
        # the flow metadata of every allowed request of this line, in the
        # general path's order; copied and completed per request
        meta = {
            "route": route.label,
            "service": (service.name or service.id) if service is not None else None,
            "client_host": storable(client_host),
            "plugin": plugin.label,
            "plugin_id": plugin.id,
            "token_source": "header",
            "cache": "hit",
            "introspection_latency_ms": None,
            "active": True,
            "outcome": "allowed",
            "client_path": storable(path),
            "removed_headers": (),
            "token_id": None,
            "cache_remaining_s": None,
            "added_headers": None,
        }
        lane = (resolution, route.id, client_host,
                # make_key(plugin.key_prefix, token) goes on from this state
                hashlib.sha256(plugin.key_prefix + b"\x00"), plugin.config.ttl, plugin.memo_key,
                meta)
    if len(lanes) >= RESOLUTION_MEMO_SIZE:
        lanes.clear()
    lanes[(raw_host, raw_path, raw_method)] = lane
    return lane


class _Plan(NamedTuple):
    """Everything about allowing one cached answer on one route, worked out
    once (kept in the answer's memo as a plain tuple, so it goes with the
    answer). One per answer of the hot set: what is the same for many answers
    (header fields, metadata, comment) is shared between them (sharing.py)."""

    #: the plugin's and the consumer set's memo keys: the plan is theirs
    plugin: object
    consumers: object
    #: when the answer stops being valid for this plugin (cache clock)
    until: float
    #: (scheme, host, port) to send to; None: the reverse-mode target as is
    upstream: tuple[bytes, str, int] | None
    #: the Host to send (raw); None: the client's
    host: bytes | None
    hide: bool
    fields: tuple[tuple[bytes, bytes], ...]
    added: tuple[str, ...]
    consumer: dict[str, Any] | None
    #: the flow comment up to the seconds left
    comment: str


def _plan(flow: http.HTTPFlow, policy: Policy, resolution: Resolution, client_host: str,
          memo: dict[Any, Any], entry: CacheEntry) -> _Plan | None:
    """The plan, unless something about the answer, plugin or route asks for
    the general path."""
    plugin = resolution.plugin
    assert plugin is not None and resolution.match is not None
    cfg = plugin.config
    route = resolution.match.target
    service = route.service
    upstream = service.upstream if service is not None else None
    if cfg.introspect_request or not entry.active:
        return None
    if (upstream is not None and upstream[3]) or (route.strip_path
                                                  and resolution.match.matched_prefix):
        return None  # a rewritten path: the general way
    identity = identity_in(memo, plugin, policy.consumers, lambda: entry.result.claims)
    if identity.dropped:
        return None  # logged on every request: the general path does that
    if upstream is not None:
        target: str | None = service.upstream_host  # type: ignore[union-attr]
    else:
        target = reverse_target(flow.client_conn.proxy_mode)
    host_value = client_host if route.preserve_host else target
    until = entry.valid_until(cfg.ttl)
    return _Plan(
        plugin=plugin.memo_key,
        consumers=policy.consumers.memo_key,
        until=until,
        upstream=SHARED((upstream[0].encode(), upstream[1], upstream[2])) if upstream else None,
        host=(SHARED(host_value.encode("utf-8", "surrogateescape"))
              if host_value is not None else None),
        hide=cfg.hide_credentials,
        fields=identity.fields,
        added=identity.names,
        consumer=identity.consumer,
        comment=SHARED(f"oauth2-introspection [route {route.label}, {plugin.label}]: "
                       f"allowed {identity.who} (cache hit, "),
    )


def reverse_target(mode: ProxyMode) -> str | None:
    """The Host of the reverse-mode target (None: not reverse mode)."""
    if not isinstance(mode, ReverseMode):
        return None
    target = _REVERSE_TARGETS.get(mode.full_spec)
    if target is None:
        scheme = mode.scheme if mode.scheme in ("http", "https") else "http"
        target = hostport(scheme, *mode.address)
        if len(_REVERSE_TARGETS) < 64:  # one per listening mode, in practice
            _REVERSE_TARGETS[mode.full_spec] = target
    return target


_REVERSE_TARGETS: dict[str, str] = {}

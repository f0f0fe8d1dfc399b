"""Compile a validated DeclarativeConfig into an immutable, fast Policy.

Compilation flattens nested entities, resolves references, picks the plugin
each route runs (Kong precedence: route+service > route > service > global)
and builds the router, once per configuration. A request then costs one
router walk and a few dict lookups. A new configuration produces a new Policy
that replaces the old one in a single assignment, so no request ever sees a
half-built one.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mitmproxy.net.http.url import hostport

from .config import (
    ID_NAMESPACE,
    Consumer,
    DeclarativeConfig,
    OAuth2IntrospectionConfig,
    Plugin,
    Route,
    Service,
)
from .consumers import ConsumerRecord, ConsumerStore
from .loader import format_loc
from .routing import RouteMatch, Router, RouteSpec

logger = logging.getLogger(__name__)

Loc = tuple[str | int, ...]


def _stable_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "\x00".join([kind, *map(str, parts)])))


# -- flattening ------------------------------------------------------------------


@dataclass
class _FlatService:
    loc: Loc
    model: Service
    id: str


@dataclass
class _FlatRoute:
    loc: Loc
    model: Route
    id: str
    service_ref: str | None  # a name or id, unresolved


@dataclass
class _FlatPlugin:
    loc: Loc
    model: Plugin
    id: str
    service_ref: str | None
    route_ref: str | None


@dataclass
class _Flat:
    services: list[_FlatService] = field(default_factory=list)
    routes: list[_FlatRoute] = field(default_factory=list)
    plugins: list[_FlatPlugin] = field(default_factory=list)
    problems: list[tuple[Loc, str]] = field(default_factory=list)


def flatten(config: DeclarativeConfig) -> _Flat:
    """Every entity at top level with its id and unresolved references; shared
    with the Admin API so the ids it shows are the ones flows carry."""
    flat = _Flat()

    def add_plugin(loc: Loc, p: Plugin, service: str | None, route: str | None) -> None:
        if service is not None and p.service is not None and p.service.key != service:
            flat.problems.append(((*loc, "service"), "conflicts with the enclosing service"))
        if route is not None and p.route is not None and p.route.key != route:
            flat.problems.append(((*loc, "route"), "conflicts with the enclosing route"))
        svc = service if service is not None else (p.service.key if p.service else None)
        rte = route if route is not None else (p.route.key if p.route else None)
        pid = p.id or _stable_id("plugin", p.name, svc or "", rte or "", p.instance_name or "")
        flat.plugins.append(_FlatPlugin(loc, p, pid, svc, rte))

    def add_route(loc: Loc, r: Route, service: str | None) -> None:
        if service is not None and r.service is not None and r.service.key != service:
            flat.problems.append(((*loc, "service"), "conflicts with the enclosing service"))
        svc = service if service is not None else (r.service.key if r.service else None)
        rid = r.id or _stable_id("route", r.name or "/".join(map(str, loc)))
        flat.routes.append(_FlatRoute(loc, r, rid, svc))
        for i, p in enumerate(r.plugins):
            add_plugin((*loc, "plugins", i), p, None, r.name or rid)

    for i, s in enumerate(config.services):
        loc: Loc = ("services", i)
        sid = s.id or _stable_id("service", s.name or i)
        flat.services.append(_FlatService(loc, s, sid))
        for j, r in enumerate(s.routes):
            add_route((*loc, "routes", j), r, s.name or sid)
        for j, p in enumerate(s.plugins):
            add_plugin((*loc, "plugins", j), p, s.name or sid, None)
    for i, r in enumerate(config.routes):
        add_route(("routes", i), r, None)
    for i, p in enumerate(config.plugins):
        add_plugin(("plugins", i), p, None, None)
    return flat


def _index(
    items: list[Any], keys: Any, kind: str, problems: list[tuple[Loc, str]]
) -> dict[str, Any]:
    """Map every name/id to its item; report duplicates."""
    index: dict[str, Any] = {}
    for item in items:
        for attr, value in keys(item):
            if value is None:
                continue
            if value in index and index[value] is not item:
                problems.append(((*item.loc, attr), f"duplicate {kind} {attr} {value!r}"))
            index[value] = item
    return index


def resolve_references(flat: _Flat) -> tuple[dict[str, _FlatService], dict[str, _FlatRoute]]:
    services = _index(
        flat.services, lambda s: (("name", s.model.name), ("id", s.id)), "service", flat.problems
    )
    routes = _index(
        flat.routes, lambda r: (("name", r.model.name), ("id", r.id)), "route", flat.problems
    )
    for r in flat.routes:
        if r.service_ref is not None and r.service_ref not in services:
            flat.problems.append(((*r.loc, "service"), f"no service {r.service_ref!r}"))
    scopes: dict[tuple[str | None, str | None, str], _FlatPlugin] = {}
    for p in flat.plugins:
        if p.service_ref is not None and p.service_ref not in services:
            flat.problems.append(((*p.loc, "service"), f"no service {p.service_ref!r}"))
            continue
        if p.route_ref is not None and p.route_ref not in routes:
            flat.problems.append(((*p.loc, "route"), f"no route {p.route_ref!r}"))
            continue
        scope = (
            services[p.service_ref].id if p.service_ref else None,
            routes[p.route_ref].id if p.route_ref else None,
            p.model.name,
        )
        if scope in scopes:
            flat.problems.append(
                (p.loc, f"a second {p.model.name} plugin on the same scope as "
                 f"{format_loc(scopes[scope].loc)} (one per service, route or global, as "
                 "in Kong)")
            )
        scopes[scope] = p
    # as Kong (and the Admin API, which answers 409): plugin ids and
    # instance_name are unique across all plugins
    _index(flat.plugins, lambda p: (("id", p.model.id), ("instance_name", p.model.instance_name)),
           "plugin", flat.problems)
    return services, routes


def _consumer_problems(consumers: list[Consumer]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for i, c in enumerate(consumers):
        for attr, value in (("id", c.stable_id()), ("username", c.username),
                            ("custom_id", c.custom_id)):
            if value is None:
                continue
            if (attr, value) in seen:
                problems.append((("consumers", i, attr), f"duplicate consumer {attr} {value!r}"))
            seen[(attr, value)] = i
    return problems


def check_references(config: DeclarativeConfig) -> list[tuple[Loc, str]]:
    """Cross-entity problems (unknown references, duplicates), with their paths."""
    flat = flatten(config)
    resolve_references(flat)
    return flat.problems + _consumer_problems(config.consumers)


# -- the compiled policy ---------------------------------------------------------


@dataclass(frozen=True)
class PluginRuntime:
    id: str
    label: str  # "global", "service 'echo'", "route 'api'"
    config: OAuth2IntrospectionConfig
    #: hash of endpoint + credentials + hint + custom headers: the cache key prefix
    key_prefix: bytes
    #: introspection client key in the ClientPool
    client_key: tuple[str, int]
    #: custom headers with Kong's underscore-to-dash rule applied, once
    introspection_headers: Mapping[str, str]
    #: names this plugin, as compiled with one policy, in the per-answer memo
    #: of derived values (decision.identity_for)
    memo_key: object = field(default_factory=object, compare=False, repr=False)


@dataclass(frozen=True)
class CompiledService:
    id: str
    name: str | None
    #: (scheme, host, port, path); None sends to the reverse-mode target
    upstream: tuple[str, str, int, str] | None
    #: the upstream's Host header value (worked out once, not per request)
    upstream_host: str | None = None


@dataclass(frozen=True)
class CompiledRoute:
    id: str
    name: str | None
    service: CompiledService | None
    plugin: PluginRuntime | None
    strip_path: bool
    preserve_host: bool
    path_handling: str

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Resolution:
    """What applies to one request."""

    match: RouteMatch[CompiledRoute] | None
    plugin: PluginRuntime | None

    @property
    def route(self) -> CompiledRoute | None:
        return self.match.target if self.match else None


#: remembered route resolutions per policy (all dropped when full)
RESOLUTION_MEMO_SIZE = 4096


class Policy:
    def __init__(
        self,
        router: Router[CompiledRoute],
        global_plugin: PluginRuntime | None,
        consumers: ConsumerStore,
        plugins: list[PluginRuntime],
        source: str,
    ) -> None:
        self.router = router
        self.global_plugin = global_plugin
        self.consumers = consumers
        self.plugins = plugins
        self.source = source
        # Resolutions by (host, path without query, method): the same few
        # requests repeat, and a policy never changes (a new one is compiled).
        # Not when a route matches on headers: they are not in the key.
        self._resolved: dict[tuple[str, str, str], Resolution] | None = (
            None if router.matches_headers else {})
        #: the cached-token lane's own memo, by raw (Host, path, method): what
        #: it needs of each resolution as one flat tuple (fastlane.py)
        self.lane_routes: dict[tuple[bytes, bytes, bytes], tuple[Any, ...]] | None = (
            None if router.matches_headers else {})

    def resolve(
        self, host: str, path: str, method: str, headers: Mapping[str, str] | None = None
    ) -> Resolution:
        memo = self._resolved
        if memo is not None:
            key = (host, path.partition("?")[0], method)
            known = memo.get(key)
            if known is not None:
                return known
        match = self.router.match(host, path, method, headers)
        resolution = (Resolution(None, self.global_plugin) if match is None
                      else Resolution(match, match.target.plugin))
        if memo is not None:
            if len(memo) >= RESOLUTION_MEMO_SIZE:
                memo.clear()
            memo[key] = resolution
        return resolution


def _key_prefix(cfg: OAuth2IntrospectionConfig, headers: Mapping[str, str]) -> bytes:
    h = hashlib.sha256()
    for part in (cfg.introspection_url, cfg.authorization_value, cfg.token_type_hint or ""):
        h.update(part.encode())
        h.update(b"\x00")
    for name, value in sorted(headers.items()):
        h.update(f"{name.lower()}:{value}\x00".encode())
    return h.digest()


def _compile_service(s: _FlatService) -> CompiledService:
    upstream = s.model.upstream()
    host = hostport(*upstream[:3]) if upstream else None
    return CompiledService(s.id, s.model.name, upstream, host)


def compile_policy(
    config: DeclarativeConfig,
    prepare_client: Any,
    source: str = "<config>",
) -> Policy:
    """Compile a config that passed check_references() (the loader and
    PolicyState.apply() ensure it). `prepare_client(url, keepalive_ms) -> key`
    registers an introspection client."""
    flat = flatten(config)
    services_idx, routes_idx = resolve_references(flat)
    if flat.problems:
        raise ValueError("compile_policy() needs a config that passed check_references()")

    def runtime(p: _FlatPlugin, label: str) -> PluginRuntime:
        cfg = p.model.config
        headers = {k.replace("_", "-"): v for k, v in cfg.custom_introspection_headers.items()}
        return PluginRuntime(
            id=p.id,
            label=label,
            config=cfg,
            key_prefix=_key_prefix(cfg, headers),
            client_key=prepare_client(cfg.introspection_url, cfg.keepalive),
            introspection_headers=headers,
        )

    by_route: dict[str, PluginRuntime] = {}
    by_service: dict[str, PluginRuntime] = {}
    by_both: dict[tuple[str, str], PluginRuntime] = {}
    global_plugin: PluginRuntime | None = None
    plugins: list[PluginRuntime] = []
    for p in flat.plugins:
        if not p.model.enabled:
            continue
        svc = services_idx[p.service_ref] if p.service_ref else None
        rte = routes_idx[p.route_ref] if p.route_ref else None
        if svc and rte:
            rt = runtime(p, f"route {rte.model.name or rte.id!r} + service "
                            f"{svc.model.name or svc.id!r}")
            by_both[(rte.id, svc.id)] = rt
        elif rte:
            rt = runtime(p, f"route {rte.model.name or rte.id!r}")
            by_route[rte.id] = rt
        elif svc:
            rt = runtime(p, f"service {svc.model.name or svc.id!r}")
            by_service[svc.id] = rt
        else:
            rt = runtime(p, "global")
            global_plugin = rt
        plugins.append(rt)

    compiled_services = {s.id: _compile_service(s) for s in flat.services}
    specs: list[RouteSpec[CompiledRoute]] = []
    for r in flat.routes:
        svc_flat = services_idx[r.service_ref] if r.service_ref else None
        if svc_flat is not None and not svc_flat.model.enabled:
            continue  # Kong: routes of a disabled service do not exist
        svc = compiled_services[svc_flat.id] if svc_flat else None
        plugin = (
            (by_both.get((r.id, svc.id)) if svc else None)
            or by_route.get(r.id)
            or (by_service.get(svc.id) if svc else None)
            or global_plugin
        )
        m = r.model
        compiled = CompiledRoute(
            id=r.id,
            name=m.name,
            service=svc,
            plugin=plugin,
            strip_path=m.strip_path,
            preserve_host=m.preserve_host,
            path_handling=m.path_handling,
        )
        specs.append(
            RouteSpec(
                target=compiled,
                hosts=m.hosts or (),
                paths=m.paths or (),
                methods=m.methods or (),
                headers=m.headers or {},
                regex_priority=m.regex_priority,
            )
        )

    routed = {spec.target.service.id for spec in specs if spec.target.service is not None}
    for service_id, rt in by_service.items():
        if service_id not in routed:
            # Kong would answer 404 for this service's traffic (no route); here a
            # request no route matches goes to the reverse-mode target unchecked
            logger.warning(
                "%s: oauth2-introspection plugin (%s) is on a service without (enabled) "
                "routes: it applies to no request", source, rt.label,
            )
    catch_all = any(
        (not spec.paths or "/" in spec.paths) and not (spec.hosts or spec.methods or spec.headers)
        for spec in specs)
    if not plugins:
        logger.warning("%s: no enabled oauth2-introspection plugin: every request is forwarded "
                       "without authentication", source)
    elif global_plugin is None and not catch_all:
        # documented design (configuration.md); Kong would answer 404 instead
        logger.warning(
            "%s: requests that match none of its routes go to the reverse-mode target without "
            "authentication (Kong answers 404): add a global plugin, or a route for / with "
            "one, to cover them", source)
    consumers = ConsumerStore(
        ConsumerRecord(c.stable_id(), c.username, c.custom_id) for c in config.consumers
    )
    for rt in plugins:
        anon = rt.config.anonymous
        if anon and consumers.anonymous(anon) is None:
            logger.warning(
                "%s: oauth2-introspection plugin (%s) names anonymous consumer %r, which does "
                "not exist: failed authentications on it will answer 500",
                source, rt.label, anon,
            )
    return Policy(Router(specs), global_plugin, consumers, plugins, source)

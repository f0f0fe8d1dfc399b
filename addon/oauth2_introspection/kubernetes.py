"""Kubernetes manifests (Kong Ingress Controller style) -> the declarative config.

`introspection_config` (and the CLI, and `POST /config`) also accept a
multi-document YAML of Kubernetes objects:

- `KongPlugin` (namespaced) / `KongClusterPlugin` with `plugin:
  oauth2-introspection` and `config:`; `disabled: true` disables it. A
  `KongClusterPlugin` labelled `global: "true"` is a global plugin.
- `Service` (v1): becomes a service named after it (`name`, or
  `namespace.name` outside the `default` namespace); `konghq.com/plugins`
  attaches plugins to it.
- `Ingress` (networking.k8s.io/v1): each rule host + path becomes a route of
  the backend Service, with Kong Ingress Controller's defaults
  (`strip_path: false`, `preserve_host: true`; the `konghq.com/strip-path`,
  `konghq.com/preserve-host` and `konghq.com/methods` annotations change them);
  `konghq.com/plugins` attaches plugins to its routes.
- `KongConsumer`: a consumer (`username`, `custom_id`).
- `ConfigMap` named `oauth2-introspection-services`: where Service names go
  on this machine (`data: {echo: http://127.0.0.1:9000}`). A Service not
  listed goes to the reverse-mode target. This is the one place to map them.

Any other kind is skipped with a warning naming it. A plugin named in an
annotation that no KongPlugin/KongClusterPlugin defines is an error naming the
annotation. Errors carry the manifest's file and line, like the loader's.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from .config import PLUGIN_NAME, DeclarativeConfig
from .errors import ConfigError
from .loader import UniqueKeyLoader, format_loc, number_problem

logger = logging.getLogger("oauth2_introspection.kubernetes")

SERVICE_MAP = "oauth2-introspection-services"
PLUGINS_ANNOTATION = "konghq.com/plugins"
#: the konghq.com/ annotations applied; any other one is reported as ignored
_SERVICE_ANNOTATIONS = frozenset({PLUGINS_ANNOTATION})
_INGRESS_ANNOTATIONS = frozenset({PLUGINS_ANNOTATION, "konghq.com/strip-path",
                                  "konghq.com/preserve-host", "konghq.com/methods",
                                  "konghq.com/host-aliases"})
_PLUGINS_PATH = ("metadata", "annotations", PLUGINS_ANNOTATION)
_SUPPORTED = {"KongPlugin", "KongClusterPlugin", "Service", "Ingress", "KongConsumer",
              "ConfigMap"}


def looks_like_kubernetes(text: str) -> bool:
    """Is this a (multi-document) Kubernetes manifest rather than a decK file?"""
    if "apiVersion" not in text or "kind" not in text:
        return False
    try:
        docs = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except (yaml.YAMLError, ValueError):  # ValueError: an integer too long to read
        return False
    return bool(docs) and all(
        isinstance(d, dict) and "apiVersion" in d and "kind" in d and "_format_version" not in d
        for d in docs
    )


def incomplete_manifest(text: str, source: str) -> list[str]:
    """For a multi-document file that is not quite a Kubernetes manifest
    (some documents have `apiVersion` and `kind`, some not: a typo such as
    `apiversion:`), one line per document that lacks them; [] otherwise.
    Read as one decK document, such a file would only say "found another
    document"."""
    if "apiVersion" not in text or "kind" not in text:
        return []
    try:
        nodes = [n for n in yaml.compose_all(text) if n is not None and n.tag != _NULL_TAG]
    except yaml.YAMLError:
        return []
    if len(nodes) < 2:
        return []

    def keys(node: yaml.Node) -> set[str]:
        if not isinstance(node, yaml.MappingNode):
            return set()
        return {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}

    complete = [{"apiVersion", "kind"} <= keys(n) for n in nodes]
    if not any(complete):
        return []
    return [f"{source}:{n.start_mark.line + 1}: document {i + 1} has no "
            f"{' and no '.join(sorted({'apiVersion', 'kind'} - keys(n)))}: every document "
            "of a Kubernetes manifest needs apiVersion and kind"
            for i, (n, ok) in enumerate(zip(nodes, complete, strict=True)) if not ok]


@dataclass
class _Doc:
    index: int
    data: dict[str, Any]
    node: yaml.Node

    @property
    def kind(self) -> str:
        return str(self.data.get("kind"))

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") or {}
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def namespace(self) -> str:
        meta = self.data.get("metadata") or {}
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        return str(ns) if ns else "default"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def annotations(self) -> dict[str, Any]:
        meta = self.data.get("metadata") or {}
        ann = meta.get("annotations") if isinstance(meta, dict) else None
        return ann if isinstance(ann, dict) else {}

    def line(self, path: tuple[Any, ...]) -> int:
        """1-based line of `path` inside this document (or of its deepest part found)."""
        node = self.node
        line = node.start_mark.line + 1
        for part in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(
                    node.value):
                node = node.value[part]
            else:
                node = None
            if node is None:
                break
            line = node.start_mark.line + 1
        return line


@dataclass
class _Origin:
    doc: _Doc
    path: tuple[Any, ...]
    #: where an entity-level problem (e.g. a duplicate) is best reported
    attach: tuple[_Doc, tuple[Any, ...]] | None = None


@dataclass
class Conversion:
    data: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    origins: dict[tuple[Any, ...], _Origin] = field(default_factory=dict)


def kong_name(name: str, namespace: str, others: frozenset[str] = frozenset()) -> str:
    """`name` in the default namespace, else `namespace.name`. A default
    name that would read as one of `others` (the other namespaces of the
    file: `shop.web` beside namespace `shop`) is `default.shop.web`, so that
    it cannot collide with `web` of namespace `shop`."""
    if namespace != "default":
        return f"{namespace}.{name}"
    return f"default.{name}" if name.split(".", 1)[0] in others else name


def _truthy(value: Any) -> bool:
    # The seed writes `global: \"true\"` (escaped quotes survive as characters).
    return str(value).strip().strip("\\\"'").strip().lower() == "true"


_NULL_TAG = "tag:yaml.org,2002:null"


def convert(text: str, source: str) -> Conversion:
    """Kubernetes manifests -> decK data (not validated yet); ConfigError on problems."""
    try:
        # an empty document (a trailing `---`, as helm and kustomize write) is
        # a null scalar node here and None below: skipped in both, as kubectl does
        nodes = [n for n in yaml.compose_all(text) if n is not None and n.tag != _NULL_TAG]
        datas = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(source, [f"{where}: invalid YAML: {getattr(e, 'problem', e)}"]) from None
    except ValueError as e:  # an integer past Python's 4,300-digit conversion limit
        raise ConfigError(source, [f"{source}: {number_problem(e)}"]) from None
    docs = [_Doc(i, d, n) for i, (d, n) in enumerate(zip(datas, nodes, strict=True))]
    problems: list[str] = []
    conv = Conversion({"_format_version": "3.0"})

    def problem(doc: _Doc, path: tuple[Any, ...], msg: str) -> None:
        where = ".".join(str(p) for p in path)
        problems.append(f"{source}:{doc.line(path)}: {doc.label}"
                        f"{' ' + where if where else ''}: {msg}")

    namespaced_plugins: dict[tuple[str, str], _Doc] = {}
    cluster_plugins: dict[str, _Doc] = {}
    k8s_services: list[_Doc] = []
    ingresses: list[_Doc] = []
    consumers: list[_Doc] = []
    service_map: _Doc | None = None
    for doc in docs:
        kind = doc.kind
        if kind not in _SUPPORTED or (kind == "ConfigMap" and doc.name != SERVICE_MAP):
            conv.warnings.append(
                f"{source}:{doc.line(())}: skipped {doc.label} (kind {kind!r} is not used "
                "by oauth2-introspection)"
            )
            continue
        if kind in ("Ingress",) and not str(doc.data.get("apiVersion", "")).startswith(
                "networking.k8s.io/"):
            problem(doc, ("apiVersion",), "only networking.k8s.io/v1 Ingress is supported")
            continue
        if kind == "KongPlugin":
            namespaced_plugins[(doc.namespace, doc.name)] = doc
        elif kind == "KongClusterPlugin":
            cluster_plugins[doc.name] = doc
        elif kind == "Service":
            k8s_services.append(doc)
        elif kind == "Ingress":
            ingress_class = doc.annotations().get("kubernetes.io/ingress.class") or (
                (doc.data.get("spec") or {}).get("ingressClassName"))
            if ingress_class not in (None, "kong"):
                conv.warnings.append(
                    f"{source}:{doc.line(())}: skipped {doc.label} (ingress class "
                    f"{ingress_class!r}, not 'kong')"
                )
                continue
            ingresses.append(doc)
        elif kind == "KongConsumer":
            consumers.append(doc)
        elif kind == "ConfigMap":
            service_map = doc

    others = frozenset(d.namespace for d in docs) - {"default"}
    services: dict[str, dict[str, Any]] = {}
    service_docs: dict[str, _Doc] = {}
    plugins: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []

    def find_plugin(owner: _Doc, name: str) -> _Doc | None:
        return namespaced_plugins.get((owner.namespace, name)) or cluster_plugins.get(name)

    used_plugins: set[int] = set()

    def attach(owner: _Doc, scope: dict[str, str]) -> None:
        raw = owner.annotations().get(PLUGINS_ANNOTATION)
        if raw is None:
            return
        for name in (n.strip() for n in str(raw).split(",")):
            if not name:
                continue
            pdoc = find_plugin(owner, name)
            if pdoc is None:
                problem(owner, _PLUGINS_PATH,
                        f"annotation {PLUGINS_ANNOTATION} names {name!r}, but no KongPlugin "
                        f"(namespace {owner.namespace!r}) or KongClusterPlugin has that name")
                continue
            entry = plugin_entry(pdoc)
            if entry is None:
                continue
            used_plugins.add(pdoc.index)
            conv.origins[("plugins", len(plugins))] = _Origin(pdoc, (), (owner, _PLUGINS_PATH))
            plugins.append({**entry, **scope})

    def plugin_entry(pdoc: _Doc) -> dict[str, Any] | None:
        data = pdoc.data
        if data.get("plugin") != PLUGIN_NAME:
            problem(pdoc, ("plugin",), f"plugin {data.get('plugin')!r} is not supported: only "
                    f"{PLUGIN_NAME} (attach it nowhere, or remove it)")
            return None
        for unsupported in ("configFrom", "configPatches"):
            if unsupported in data:
                problem(pdoc, (unsupported,), "not supported: write the values under config:")
                return None
        entry: dict[str, Any] = {"name": PLUGIN_NAME, "config": copy.deepcopy(
            data.get("config") or {})}
        if data.get("disabled") is True:
            entry["enabled"] = False
        return entry

    def ensure_service(name: str, doc: _Doc | None) -> str:
        if name not in services:
            services[name] = {"name": name}
        if doc is not None:
            service_docs[name] = doc
        return name

    def unapplied(doc: _Doc, applied: frozenset[str]) -> None:
        # the Ingress Controller reads many more konghq.com/ annotations; one
        # that changes routing (konghq.com/path, protocols, headers.*) and is
        # dropped without a word would make this proxy route otherwise
        for key in doc.annotations():
            if str(key).startswith("konghq.com/") and key not in applied:
                conv.warnings.append(
                    f"{source}:{doc.line(('metadata', 'annotations', key))}: {doc.label}: "
                    f"annotation {key} is not applied here (ignored)")

    for doc in k8s_services:
        unapplied(doc, _SERVICE_ANNOTATIONS)
        name = ensure_service(kong_name(doc.name, doc.namespace, others), doc)
        attach(doc, {"service": name})

    for doc in ingresses:
        spec = doc.data.get("spec") or {}
        ann = doc.annotations()
        strip = _truthy(ann.get("konghq.com/strip-path", "false"))
        preserve = _truthy(ann.get("konghq.com/preserve-host", "true"))
        methods = [m.strip().upper() for m in str(ann.get("konghq.com/methods", "")).split(",")
                   if m.strip()]
        aliases = [h.strip() for h in str(ann.get("konghq.com/host-aliases", "")).split(",")
                   if h.strip()]
        unapplied(doc, _INGRESS_ANNOTATIONS)
        pending: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
        for ri, rule in enumerate(spec.get("rules") or []):
            http = (rule or {}).get("http") or {}
            for pj, p in enumerate(http.get("paths") or []):
                path = ("spec", "rules", ri, "http", "paths", pj)
                backend = ((p or {}).get("backend") or {}).get("service") or {}
                if not backend.get("name"):
                    problem(doc, (*path, "backend"), "needs backend.service.name")
                    continue
                route: dict[str, Any] = {
                    "paths": _kong_paths(str(p.get("path") or "/"), p.get("pathType")),
                    "strip_path": strip,
                    "preserve_host": preserve,
                    "service": ensure_service(
                        kong_name(backend["name"], doc.namespace, others), None),
                }
                if rule.get("host"):
                    # konghq.com/host-aliases: more hosts for the same routes
                    route["hosts"] = [str(rule["host"]), *aliases]
                if methods:
                    route["methods"] = methods
                pending.append((route, path))
        default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
        if default:
            service = ensure_service(kong_name(default, doc.namespace, others), None)
            route = {"paths": ["/"], "strip_path": strip, "preserve_host": preserve,
                     "service": service}
            if methods:
                route["methods"] = methods
            pending.append((route, ("spec", "defaultBackend")))
        base = kong_name(doc.name, doc.namespace, others)
        for k, (route, path) in enumerate(pending):
            route = {"name": base if len(pending) == 1 else f"{base}.{k}", **route}
            conv.origins[("routes", len(routes))] = _Origin(doc, path)
            routes.append(route)
            attach(doc, {"route": route["name"]})

    for pdoc in cluster_plugins.values():
        labels = (pdoc.data.get("metadata") or {}).get("labels") or {}
        if isinstance(labels, dict) and _truthy(labels.get("global", "false")):
            entry = plugin_entry(pdoc)
            if entry is not None:
                used_plugins.add(pdoc.index)
                conv.origins[("plugins", len(plugins))] = _Origin(pdoc, ())
                plugins.append(entry)
    for pdoc in [*namespaced_plugins.values(), *cluster_plugins.values()]:
        if pdoc.index not in used_plugins and pdoc.data.get("plugin") == PLUGIN_NAME:
            conv.warnings.append(f"{source}:{pdoc.line(())}: {pdoc.label} is not attached to "
                                 f"anything (no {PLUGINS_ANNOTATION} annotation names it)")

    out_consumers = []
    for cdoc in consumers:
        if PLUGINS_ANNOTATION in cdoc.annotations():
            problem(cdoc, _PLUGINS_PATH, "oauth2-introspection cannot be scoped to a consumer")
            continue
        entry = {k: cdoc.data[k] for k in ("username", "custom_id") if k in cdoc.data}
        conv.origins[("consumers", len(out_consumers))] = _Origin(cdoc, ())
        out_consumers.append(entry)

    if service_map is not None:
        data = service_map.data.get("data") or {}
        if not isinstance(data, dict):
            problem(service_map, ("data",), "must map Service names to URLs")
            data = {}
        for key, url in data.items():
            if key not in services:
                problem(service_map, ("data", key),
                        f"no Service {key!r} in these manifests (known: "
                        f"{', '.join(sorted(services)) or 'none'})")
                continue
            services[key]["url"] = url
    names = list(services)
    for i, name in enumerate(names):
        if "url" in services[name] and service_map is not None:
            conv.origins[("services", i)] = _Origin(service_map, ("data", name))
        elif name in service_docs:
            conv.origins[("services", i)] = _Origin(service_docs[name], ())
    if problems:
        raise ConfigError(source, problems)
    if names:
        conv.data["services"] = [services[n] for n in names]
    if routes:
        conv.data["routes"] = routes
    if out_consumers:
        conv.data["consumers"] = out_consumers
    if plugins:
        conv.data["plugins"] = plugins
    return conv


def _kong_paths(path: str, path_type: Any) -> list[str]:
    """Kubernetes path semantics in Kong route paths (as the Ingress Controller does)."""
    if not path.startswith("/"):
        path = "/" + path
    if path_type == "Exact":
        return [f"~{re.escape(path)}$"]
    if path_type == "Prefix":
        if path == "/":
            return ["/"]
        bare = path.rstrip("/")
        return [f"~{re.escape(bare)}$", f"{bare}/"]
    if path.startswith("/~"):
        # the Ingress Controller's regex prefix: `/~/v[0-9]+` is Kong's `~/v[0-9]+`
        return ["~" + path[2:]]
    return [path]  # ImplementationSpecific, or absent: Kong's own prefix match


def load_kubernetes(text: str, source: str) -> DeclarativeConfig:
    """Convert and validate; ConfigError lines point into the manifest."""
    conv = convert(text, source)
    for warning in conv.warnings:
        logger.warning("oauth2-introspection: %s", warning)
    from .policy import check_references

    try:
        config = DeclarativeConfig.model_validate(conv.data)
    except ValidationError as e:
        raise ConfigError(source, [
            _locate(conv, source, err["loc"], _msg(err))
            for err in e.errors(include_input=False, include_url=False)
        ]) from None
    problems = check_references(config)
    if problems:
        raise ConfigError(source, [_locate(conv, source, loc, msg, entity_level=True)
                                   for loc, msg in problems])
    return config


def _msg(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field missing"
    return str(err["msg"]).removeprefix("Value error, ")


def _locate(conv: Conversion, source: str, loc: tuple[Any, ...], msg: str,
            entity_level: bool = False) -> str:
    loc = tuple(loc)
    origin = conv.origins.get(loc[:2])
    if origin is None:
        return f"{source}: {format_loc(loc)}: {msg}"
    doc, path = origin.doc, (*origin.path, *loc[2:])
    if entity_level and origin.attach is not None and len(loc) <= 2:
        doc, path = origin.attach
    if loc[0] == "routes":
        path = origin.path  # route fields are derived, not written: point at the rule
    where = ".".join(str(p) for p in path)
    return f"{source}:{doc.line(path)}: {doc.label}{' ' + where if where else ''}: {msg}"

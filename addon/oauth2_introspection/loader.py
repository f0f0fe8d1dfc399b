"""Read a declarative file (YAML or JSON) into the config model.

Every problem becomes one line naming the file, the line (YAML), the field
path and the entity it belongs to, e.g.::

    configs/bad.yaml:12: services[0].plugins[0].config.ttl (service 'echo' >
    plugin 'oauth2-introspection'): Input should be greater than or equal to 0

Values are never echoed: they may be secrets (`authorization_value`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import DeclarativeConfig
from .errors import ConfigError

Loc = Sequence[str | int]

_ENTITY_KINDS = {
    "services": "service",
    "routes": "route",
    "plugins": "plugin",
    "consumers": "consumer",
}


def load_file(path: str | Path) -> DeclarativeConfig:
    """Load and validate a declarative file; raise ConfigError on any problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM is not content
    except UnicodeDecodeError as e:
        byte = e.object[e.start]
        raise ConfigError(source, [f"{source}: cannot read file: not UTF-8 text "
                                   f"(byte 0x{byte:02x} at offset {e.start})"]) from None
    except OSError as e:
        raise ConfigError(source, [f"{source}: cannot read file: {e.strerror or e}"]) from None
    return load_text(text, source)


def load_text(text: str, source: str = "<config>") -> DeclarativeConfig:
    # Kubernetes manifests (KongPlugin, Service, Ingress, ...): see kubernetes.py
    from .kubernetes import incomplete_manifest, load_kubernetes, looks_like_kubernetes

    if looks_like_kubernetes(text):
        return load_kubernetes(text, source)
    problems = incomplete_manifest(text, source)
    if problems:
        raise ConfigError(source, problems)
    data = parse_document(text, source)
    return validate_data(data, source, text)


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that repeats a key: PyYAML keeps
    the last one silently, so a second `plugins:` would drop the first
    one's plugins (a global plugin lost, its routes open) with no error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: keys written beside it override it, as meant
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads' object_pairs_hook: an object that repeats a key is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def parse_document(text: str, source: str) -> Any:
    try:
        if source.endswith(".json"):
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=UniqueKeyLoader)
    except json.JSONDecodeError as e:
        raise ConfigError(source, [f"{source}:{e.lineno}: invalid JSON: {e.msg}"]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(source, [f"{where}: invalid YAML: {problem}"]) from None
    except _DuplicateKey as e:
        raise ConfigError(source, [f"{source}: invalid JSON: found duplicate key "
                                   f"{str(e)!r}"]) from None
    except ValueError as e:  # an integer past Python's 4,300-digit conversion limit
        raise ConfigError(source, [f"{source}: {number_problem(e)}"]) from None


def number_problem(e: ValueError) -> str:
    """The message for a number no configuration field could hold."""
    if "integer string conversion" in str(e):
        return "a number has more digits than any field can hold"
    return f"unreadable value: {str(e).splitlines()[0]}"


def validate_data(data: Any, source: str, text: str | None = None) -> DeclarativeConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            source, [f"{source}: the document must be a mapping with '_format_version'"]
        )
    try:
        config = DeclarativeConfig.model_validate(data)
    except ValidationError as e:
        lines = _line_finder(text)
        problems = [
            format_problem(source, err["loc"], _message(err), data, lines(err["loc"]))
            for err in e.errors(include_input=False, include_url=False)
        ]
        raise ConfigError(source, problems) from None
    # Cross-entity checks (references, uniqueness) live with the compiler, which
    # raises ConfigError in the same format.
    from .policy import check_references

    problems = check_references(config)
    if problems:
        lines = _line_finder(text)
        raise ConfigError(
            source, [format_problem(source, loc, msg, data, lines(loc)) for loc, msg in problems]
        )
    return config


def _message(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field missing"
    return msg.removeprefix("Value error, ")


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def summary(config: DeclarativeConfig) -> str:
    """The entities of a configuration, counted as written (disabled plugins
    and routes with several paths count once): what validate and every
    load and reload line say."""
    services = config.services
    routes = len(config.routes) + sum(len(s.routes) for s in services)
    plugins = len(config.plugins) + sum(
        len(s.plugins) + sum(len(r.plugins) for r in s.routes) for s in services
    ) + sum(len(r.plugins) for r in config.routes)
    return (f"{len(services)} service(s), {routes} route(s), {plugins} plugin(s), "
            f"{len(config.consumers)} consumer(s)")


def describe_entities(data: Any, loc: Loc) -> str:
    """'service 'echo' > plugin 'oauth2-introspection'' for the entities on loc."""
    names: list[str] = []
    node = data
    parent_key: str | int | None = None
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if isinstance(part, int) and isinstance(parent_key, str) and parent_key in _ENTITY_KINDS:
            kind = _ENTITY_KINDS[parent_key]
            label = ""
            if isinstance(node, dict):
                label = next(
                    (str(node[k]) for k in ("name", "username", "custom_id", "id")
                     if isinstance(node.get(k), str)),
                    "",
                )
            names.append(f"{kind} {label!r}" if label else f"{kind} #{part}")
        parent_key = part
    return " > ".join(names)


def format_problem(source: str, loc: Loc, message: str, data: Any, line: int | None) -> str:
    where = f"{source}:{line}" if line else source
    entity = describe_entities(data, loc)
    entity_part = f" ({entity})" if entity else ""
    return f"{where}: {format_loc(loc)}{entity_part}: {message}"


def _line_finder(text: str | None):
    """Map a field path to its 1-based line in the YAML/JSON text, if known."""
    root = None
    # JSON indented with tabs is not YAML: tabs as spaces keep every line
    # where it is (JSON allows no raw tab inside a string)
    for candidate in (text, text.replace("\t", " ") if text else None):
        if not candidate:
            continue
        try:
            root = yaml.compose(candidate)
            break
        except yaml.YAMLError:
            root = None

    def find(loc: Loc) -> int | None:
        node = root
        line = None
        for part in loc:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                node = None
        if node is not None:
            line = node.start_mark.line + 1
        return line

    return find

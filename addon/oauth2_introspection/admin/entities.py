"""Kong entities (services, routes, plugins, consumers) as the Admin API sees them.

`Entities` is a flat, mutable copy of a DeclarativeConfig: every entity has
an id and refers to others by id, as in Kong's database. The Admin API makes
one, changes it, and turns it back into a DeclarativeConfig with
`to_config()`, which validates the whole document as any file is validated;
only then is it applied (`PolicyState.apply`). Ids of entities that had none
in the file are the ids the policy compiler derives (the `plugin_id` shown on
flows), written out explicitly so that they survive later changes.

Errors are `AdminError`s carrying Kong's status and body: 400 schema
violation (`{"message", "name", "code", "fields"}`), 400 foreign key
violation, 400 invalid primary key, 404 not found, 409 primary key and unique
violations.

A null value (JSON `null`, an empty form value) means "unset": the field goes
back to its default, as in Kong; a required field set to null is missing.
"""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from ..config import PLUGIN_NAME, Consumer, DeclarativeConfig, Plugin, Route, Service
from ..export import config_to_data
from ..loader import format_loc
from ..policy import check_references, flatten, resolve_references
from .forms import coerce_form

KINDS = ("services", "routes", "consumers", "plugins")
_MODELS: dict[str, type[BaseModel]] = {
    "services": Service, "routes": Route, "consumers": Consumer, "plugins": Plugin,
}
# Kong's names for "what identifies this entity in a URL" besides the id.
_ENDPOINT_KEY = {"services": "name", "routes": "name", "consumers": "username", "plugins": None}
_UNIQUE = {
    "services": ("id", "name"),
    "routes": ("id", "name"),
    "consumers": ("id", "username", "custom_id"),
    "plugins": ("id", "instance_name"),
}
# references that are not stored on the entity itself (nested lists)
_NESTED = {"services": ("routes", "plugins"), "routes": ("plugins",)}
# Kong's defaults for fields the model leaves at None (they have no effect
# here, docs/configuration.md), shown so that entities look as Kong's do
_SHOWN_DEFAULTS: dict[str, dict[str, Any]] = {
    "services": {"connect_timeout": 60000, "read_timeout": 60000, "write_timeout": 60000,
                 "retries": 5},
    "routes": {"protocols": ["http", "https"], "https_redirect_status_code": 426,
               "request_buffering": True, "response_buffering": True},
    "plugins": {"protocols": ["grpc", "grpcs", "http", "https"]},
}
# what `url` is shorthand for on a service
_URL_PARTS = ("protocol", "host", "port", "path")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


class AdminError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def not_found() -> AdminError:
    return AdminError(404, {"message": "Not found"})


def schema_violation(fields: dict[str, Any], messages: list[str]) -> AdminError:
    n = len(messages)
    head = "schema violation" if n == 1 else f"{n} schema violations"
    return AdminError(400, {
        "code": 2,
        "name": "schema violation",
        "message": f"{head} ({'; '.join(messages)})",
        "fields": fields,
    })


def unique_violation(fields: dict[str, Any]) -> AdminError:
    desc = ",".join(f"{k}={_lua(v)}" for k, v in sorted(fields.items()))
    return AdminError(409, {
        "code": 5,
        "name": "unique constraint violation",
        "message": f"UNIQUE violation detected on '{{{desc}}}'",
        "fields": fields,
    })


def primary_key_violation(value: str) -> AdminError:
    """Kong's answer to a create with an `id` that is taken."""
    return AdminError(409, {
        "code": 3,
        "name": "primary key violation",
        "message": f"primary key violation on key '{{id={_lua(value)}}}'",
        "fields": {"id": value},
    })


def foreign_key_violation(field: str, ref: dict[str, Any], kind: str) -> AdminError:
    desc = ",".join(f"{k}={_lua(v)}" for k, v in sorted(ref.items()))
    message = (f"the foreign key '{{{desc}}}' does not reference an existing '{kind}' entity.")
    return AdminError(400, {
        "code": 4,
        "name": "foreign key violation",
        "message": message,
        "fields": {field: ref},
    })


def invalid_primary_key() -> AdminError:
    """Kong's answer to a plugin id in a URL that is not a UUID (PUT /plugins/x)."""
    return AdminError(400, {
        "code": 1,
        "name": "invalid primary key",
        "message": "invalid primary key: '{id=\"expected a valid UUID\"}'",
        "fields": {"id": "expected a valid UUID"},
    })


def _id_change() -> AdminError:
    return schema_violation({"id": "cannot change the id"}, ["id: cannot change the id"])


def _lua(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}={_lua(v)}" for k, v in sorted(value.items())) + "}"
    return f'"{value}"'


def _kong_message(err: dict[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field missing"
    return str(err["msg"]).removeprefix("Value error, ")


def errors_to_fields(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> tuple[
        dict[str, Any], list[str]]:
    """Pydantic errors -> Kong's nested `fields` and `path: message` lines.

    Entity-level problems go under `@entity`, as Kong puts them."""
    fields: dict[str, Any] = {}
    messages: list[str] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = (*prefix, *err["loc"])
        msg = _kong_message(err)
        # list indexes are not field names: "paths[1]" belongs to "paths"
        names = [p for p in loc if isinstance(p, str)]
        if not names:
            fields.setdefault("@entity", []).append(msg)
            messages.append(msg)
            continue
        node = fields
        for name in names[:-1]:
            child = node.get(name)
            if not isinstance(child, dict):
                child = node[name] = {}
            node = child
        node[names[-1]] = msg
        messages.append(f"{format_loc(loc)}: {msg}")
    return fields, messages


class Entities:
    """A flat copy of a configuration, every entity with an id."""

    def __init__(self, config: DeclarativeConfig | None) -> None:
        self.top: dict[str, Any] = {"_format_version": "3.0"}
        self.items: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        if config is not None:
            self._load(config)

    # -- from and to a DeclarativeConfig ------------------------------------------------

    def _load(self, config: DeclarativeConfig) -> None:
        data = config_to_data(config)
        self.top = {k: v for k, v in data.items() if k not in KINDS}
        flat = flatten(config)
        services_idx, routes_idx = resolve_references(flat)
        for s in flat.services:
            entity = _dump(s.model, exclude=set(_NESTED["services"]))
            entity["id"] = s.id
            self.items["services"].append(entity)
        for r in flat.routes:
            entity = _dump(r.model, exclude={"plugins", "service"})
            entity["id"] = r.id
            if r.service_ref is not None:
                entity["service"] = {"id": services_idx[r.service_ref].id}
            self.items["routes"].append(entity)
        for p in flat.plugins:
            entity = _dump(p.model, exclude={"service", "route"})
            entity["id"] = p.id
            if p.service_ref is not None:
                entity["service"] = {"id": services_idx[p.service_ref].id}
            if p.route_ref is not None:
                entity["route"] = {"id": routes_idx[p.route_ref].id}
            self.items["plugins"].append(entity)
        for c in config.consumers:
            entity = _dump(c)
            entity["id"] = c.stable_id()
            self.items["consumers"].append(entity)

    def to_data(self) -> dict[str, Any]:
        data = dict(self.top)
        for kind in KINDS:
            if self.items[kind]:
                data[kind] = copy.deepcopy(self.items[kind])
        return data

    def to_config(self) -> DeclarativeConfig:
        """Validate the whole document; AdminError 400 on any problem."""
        data = self.to_data()
        try:
            config = DeclarativeConfig.model_validate(data)
        except ValidationError as e:
            fields, messages = errors_to_fields(e)
            raise schema_violation(fields, messages) from None
        problems = check_references(config)
        if problems:
            raise schema_violation(
                {"@entity": [msg for _, msg in problems]},
                [f"{format_loc(loc)}: {msg}" for loc, msg in problems],
            )
        return config

    # -- lookups ------------------------------------------------------------------------

    def find(self, kind: str, key: str) -> dict[str, Any] | None:
        alt = _ENDPOINT_KEY[kind]
        for entity in self.items[kind]:
            if entity.get("id") == key:
                return entity
        if alt:
            for entity in self.items[kind]:
                if entity.get(alt) == key:
                    return entity
        if kind == "consumers":  # Kong also finds a consumer by custom_id
            for entity in self.items[kind]:
                if entity.get("custom_id") == key:
                    return entity
        return None

    def get(self, kind: str, key: str) -> dict[str, Any]:
        entity = self.find(kind, key)
        if entity is None:
            raise not_found()
        return entity

    def list(self, kind: str, service: str | None = None, route: str | None = None) -> list[
            dict[str, Any]]:
        out = []
        for entity in self.items[kind]:
            if service is not None and (entity.get("service") or {}).get("id") != service:
                continue
            if route is not None and (entity.get("route") or {}).get("id") != route:
                continue
            out.append(entity)
        return out

    def find_strict(self, kind: str, key: str) -> dict[str, Any] | None:
        """By id, else by the endpoint key (name, username): what PUT replaces."""
        alt = _ENDPOINT_KEY[kind]
        for entity in self.items[kind]:
            if entity.get("id") == key:
                return entity
        if alt and not is_uuid(key):
            for entity in self.items[kind]:
                if entity.get(alt) == key:
                    return entity
        return None

    # -- changes ------------------------------------------------------------------------

    def create(self, kind: str, body: dict[str, Any], is_form: bool,
               scope: dict[str, Any] | None = None) -> dict[str, Any]:
        entity = strip_none(self._prepare(kind, body, is_form))
        entity.update(scope or {})
        entity.setdefault("id", str(uuid.uuid4()))
        self._store(kind, entity, None)
        return entity

    def update(self, kind: str, key: str, body: dict[str, Any], is_form: bool,
               scope: dict[str, Any] | None = None) -> dict[str, Any]:
        current = self.get(kind, key)
        patch = self._prepare(kind, body, is_form)
        patch.update(scope or {})
        if patch.get("id") not in (None, current["id"]):
            raise _id_change()
        base = _service_base(current, patch) if kind == "services" else current
        merged = strip_none(_merge(base, patch))
        merged["id"] = current["id"]
        self._store(kind, merged, current)
        return merged

    def upsert(self, kind: str, key: str, body: dict[str, Any], is_form: bool,
               scope: dict[str, Any] | None = None) -> dict[str, Any]:
        """PUT: the body is the whole entity (what it leaves out gets its
        default); the URL's key is its id (a UUID) or its name/username."""
        current = self.find_strict(kind, key)
        entity = strip_none(self._prepare(kind, body, is_form))
        entity.update(scope or {})
        alt = _ENDPOINT_KEY[kind]
        if current is not None:
            entity_id = current["id"]
            if alt and current.get("id") != key:
                entity[alt] = key
        elif is_uuid(key):
            entity_id = key
        elif alt:
            entity[alt] = key
            entity_id = entity.get("id") or str(uuid.uuid4())
        else:
            raise invalid_primary_key()
        if entity.get("id") not in (None, entity_id):
            raise _id_change()
        entity["id"] = entity_id
        self._store(kind, entity, current)
        return entity

    def _store(self, kind: str, entity: dict[str, Any],
               current: dict[str, Any] | None) -> None:
        """Check `entity` and put it in place of `current` (None: add it)."""
        self._resolve_refs(kind, entity)
        self._check_entity(kind, entity)
        self._check_unique(kind, entity, current)
        if current is None:
            self.items[kind].append(entity)
            return
        index = next(i for i, e in enumerate(self.items[kind]) if e is current)
        self.items[kind][index] = entity

    def delete(self, kind: str, key: str) -> bool:
        entity = self.find(kind, key)
        if entity is None:
            return False  # Kong answers 204 anyway
        eid = entity["id"]
        if kind == "services":
            if self.list("routes", service=eid):
                raise AdminError(400, {
                    "code": 4,
                    "name": "foreign key violation",
                    "message": "an existing 'routes' entity references this 'services' entity",
                    "fields": {"@referenced_by": "routes"},
                })
            self.items["plugins"] = [p for p in self.items["plugins"]
                                     if (p.get("service") or {}).get("id") != eid]
        if kind == "routes":
            self.items["plugins"] = [p for p in self.items["plugins"]
                                     if (p.get("route") or {}).get("id") != eid]
        self.items[kind] = [e for e in self.items[kind] if e is not entity]
        return True

    # -- helpers ------------------------------------------------------------------------

    def _prepare(self, kind: str, body: dict[str, Any], is_form: bool) -> dict[str, Any]:
        """The body in the model's types; nulls stay (PATCH: they unset a field)."""
        model = _MODELS[kind]
        data = coerce_form(model, body) if is_form else copy.deepcopy(body)
        for nested in _NESTED.get(kind, ()):
            if data.get(nested) is not None:
                raise schema_violation(
                    {nested: "nested entities are not accepted here; create them "
                              f"through /{nested}"},
                    [f"{nested}: not accepted"],
                )
        if kind == "plugins" and data.get("name") not in (None, PLUGIN_NAME):
            msg = f"plugin '{data['name']}' not enabled; this gateway only has {PLUGIN_NAME}"
            raise schema_violation({"name": msg}, [f"name: {msg}"])
        return data

    def _resolve_refs(self, kind: str, entity: dict[str, Any]) -> None:
        """`service: {name: x}` -> `service: {id: ...}`; unknown -> foreign key violation."""
        for field, target in (("service", "services"), ("route", "routes")):
            ref = entity.get(field)
            if ref is None or (kind, field) not in {("routes", "service"),
                                                    ("plugins", "service"),
                                                    ("plugins", "route")}:
                continue
            if isinstance(ref, str):
                ref = {"name": ref}
            if not isinstance(ref, dict):
                continue  # the model reports the type
            key = ref.get("id") or ref.get("name")
            found = self.find(target, key) if isinstance(key, str) else None
            if found is None or (ref.get("name") and found.get("name") != ref["name"]
                                 and found.get("id") != ref.get("name")):
                raise foreign_key_violation(field, ref, target)
            entity[field] = {"id": found["id"]}

    def _check_entity(self, kind: str, entity: dict[str, Any]) -> None:
        try:
            _MODELS[kind].model_validate(entity)
        except ValidationError as e:
            fields, messages = errors_to_fields(e)
            raise schema_violation(fields, messages) from None

    def _check_unique(self, kind: str, entity: dict[str, Any],
                      current: dict[str, Any] | None) -> None:
        for other in self.items[kind]:
            if other is current:
                continue
            for field in _UNIQUE[kind]:
                value = entity.get(field)
                if value is not None and other.get(field) == value:
                    if field == "id":
                        raise primary_key_violation(value)
                    raise unique_violation({field: value})
            if kind == "plugins" and other.get("name") == entity.get("name") and (
                (other.get("service") or None) == (entity.get("service") or None)
                and (other.get("route") or None) == (entity.get("route") or None)
            ):
                raise unique_violation({
                    "name": entity.get("name"),
                    "service": entity.get("service"),
                    "route": entity.get("route"),
                    "consumer": None,
                })


def _dump(model: BaseModel, exclude: set[str] | None = None) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True,
                            exclude=exclude or set())


def strip_none(data: dict[str, Any]) -> dict[str, Any]:
    """Null means "unset" (Kong): drop it, so the model's default applies and a
    required field set to null is reported missing."""
    return {k: strip_none(v) if isinstance(v, dict) else v
            for k, v in data.items() if v is not None}


def _url_parts(url: str) -> dict[str, Any]:
    """`url` as the parts it is shorthand for (Kong stores only those)."""
    parts = urlsplit(url)
    out: dict[str, Any] = {
        "protocol": parts.scheme,
        "host": parts.hostname,
        "port": parts.port or (443 if parts.scheme == "https" else 80),
    }
    if parts.path:
        out["path"] = parts.path
    return out


def _service_base(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What a service PATCH applies to: a new `url` replaces the parts; a part
    changes that part of the current `url` and keeps the others, as in Kong."""
    if patch.get("url") is not None:
        return {k: v for k, v in current.items() if k not in _URL_PARTS}
    if current.get("url") and any(p in patch for p in _URL_PARTS):
        base = {k: v for k, v in current.items() if k != "url"}
        base.update(_url_parts(current["url"]))
        return base
    return current


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH: nested objects (`config`) merge key by key; other values replace."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k == "config":
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# -- Kong-shaped answers ----------------------------------------------------------------


def present(kind: str, entity: dict[str, Any]) -> dict[str, Any]:
    """The entity as Kong's Admin API shows it: every field, defaults filled in."""
    try:
        model = _MODELS[kind].model_validate(entity)
    except ValidationError:
        return dict(entity)
    exclude = set(_NESTED.get(kind, ()))
    if kind in ("routes", "plugins"):
        exclude |= {"service", "route"}
    if kind == "consumers":
        exclude.add("plugins")  # only there to refuse consumer-scoped plugins
    out = model.model_dump(mode="json", by_alias=True, exclude=exclude)
    out["id"] = entity["id"]
    for name, default in _SHOWN_DEFAULTS.get(kind, {}).items():
        if out.get(name) is None:
            out[name] = copy.deepcopy(default)
    if kind == "services":
        # `url` is input only in Kong: it is stored, and shown, as its parts
        url = out.pop("url", None)
        if url:
            out.update({"path": None, **_url_parts(url)})
        if out.get("host"):  # no host: the reverse-mode target (shown as null)
            out["protocol"] = out.get("protocol") or "http"
            if out.get("port") is None:
                out["port"] = 443 if out["protocol"] == "https" else 80
    if kind == "routes":
        out["service"] = entity.get("service")
    if kind == "plugins":
        out["service"] = entity.get("service")
        out["route"] = entity.get("route")
        out["consumer"] = None
    return out

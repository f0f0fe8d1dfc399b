"""The Admin API's routes, as a plain function of (method, path, query, body).

No HTTP server here: `AdminAPI.handle()` returns status, headers and body,
so every endpoint is unit-tested without sockets; `server.py` is the thin
tornado glue. Every change builds a new configuration from the one in force
(`Entities`), validates it whole, and hands it to `commit`, which persists it
and applies it through `PolicyState.apply()`: the same validation and the same
atomic swap as a file load.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from pydantic import ValidationError

from ..config import PLUGIN_NAME, DeclarativeConfig, Plugin
from ..errors import ConfigError
from ..export import config_hash, config_to_data, config_to_yaml, plugin_schema
from ..loader import load_text
from ..state import PolicyState
from .entities import (
    AdminError,
    Entities,
    errors_to_fields,
    is_uuid,
    not_found,
    present,
    schema_violation,
    strip_none,
)
from .forms import BodyError, coerce_form, parse_body

logger = logging.getLogger("oauth2_introspection.admin")

Commit = Callable[[DeclarativeConfig, str], None]

VERSION = "3.0.0-mitmproxy-oauth2-introspection"

# /parent/{key}/child collections and items, as in Kong
_NESTED = {("services", "routes"), ("services", "plugins"), ("routes", "plugins")}
# the fields of Kong's POST /config besides the document
_CONFIG_FORM_FIELDS = {"config", "check_hash", "flatten_errors"}
# Kong's page sizes
PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


@dataclass
class AdminResponse:
    status: int
    body: Any = None
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def _json(status: int, body: Any) -> AdminResponse:
    return AdminResponse(status, body)


class AdminAPI:
    def __init__(self, state: PolicyState, commit: Commit) -> None:
        self.state = state
        self.commit = commit

    # -- entry point ----------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, content_type: str,
               body: bytes) -> AdminResponse:
        method = method.upper()
        try:
            if method == "HEAD":  # GET's status and headers; the server sends no body
                return self._route("GET", path, query, content_type, body)
            return self._route(method, path, query, content_type, body)
        except AdminError as e:
            return _json(e.status, e.body)
        except BodyError as e:
            return _json(400, {"message": str(e)})
        except Exception:
            logger.exception("oauth2-introspection: Admin API %s %s failed", method, path)
            return _json(500, {"message": "An unexpected error occurred"})

    def _route(self, method: str, path: str, query: str, ctype: str,
               body: bytes) -> AdminResponse:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        n = len(parts)
        if n == 0:
            return self._only(method, {"GET": self._root})
        head = parts[0]
        if head == "status" and n == 1:
            return self._only(method, {"GET": self._status})
        if head == "config" and n == 1:
            return self._only(method, {
                "GET": lambda: self._get_config(q),
                "POST": lambda: self._post_config(q, ctype, body),
            })
        if head == "schemas":
            if parts[1:] == ["plugins", "validate"]:
                return self._only(method, {"POST": lambda: self._validate_plugin(ctype, body)})
            if parts[1:] == ["plugins", PLUGIN_NAME]:
                return self._only(method, {"GET": lambda: _json(200, plugin_schema())})
            raise not_found()
        if parts == ["plugins", "enabled"]:
            return self._only(method, {
                "GET": lambda: _json(200, {"enabled_plugins": [PLUGIN_NAME]})})
        if head not in ("services", "routes", "consumers", "plugins"):
            raise not_found()
        kind = head
        if n == 1:
            return self._only(method, {
                "GET": lambda: self._list(kind, q, parts),
                "POST": lambda: self._create(kind, ctype, body),
            })
        key = parts[1]
        if n == 2:
            return self._only(method, {
                "GET": lambda: self._get(kind, key),
                "PUT": lambda: self._upsert(kind, key, ctype, body),
                "PATCH": lambda: self._update(kind, key, ctype, body),
                "DELETE": lambda: self._delete(kind, key),
            })
        if (kind, parts[2]) not in _NESTED or n > 4:
            raise not_found()
        child = parts[2]
        if n == 3:  # /services/{s}/routes, /services/{s}/plugins, /routes/{r}/plugins
            return self._only(method, {
                "GET": lambda: self._list_scoped(kind, key, child, q, parts),
                "POST": lambda: self._create_scoped(kind, key, child, ctype, body),
            })
        ckey = parts[3]  # /services/{s}/plugins/{p}, ...: the child must be the parent's
        return self._only(method, {
            "GET": lambda: self._get_scoped(kind, key, child, ckey),
            "PUT": lambda: self._upsert_scoped(kind, key, child, ckey, ctype, body),
            "PATCH": lambda: self._update_scoped(kind, key, child, ckey, ctype, body),
            "DELETE": lambda: self._delete_scoped(kind, key, child, ckey),
        })

    @staticmethod
    def _only(method: str, handlers: dict[str, Callable[[], AdminResponse]]) -> AdminResponse:
        handler = handlers.get(method)
        if handler is None:
            return _json(405, {"message": "Method not allowed"})
        return handler()

    # -- information ----------------------------------------------------------------

    def _root(self) -> AdminResponse:
        return _json(200, {
            "tagline": "Welcome to mitmproxy-oauth2-introspection (a Kong Admin API subset)",
            "version": VERSION,
            "plugins": {"available_on_server": {PLUGIN_NAME: True},
                        "enabled_in_cluster": self._enabled_plugins()},
            "configuration": {"database": "off", "source": self.state.source},
        })

    def _status(self) -> AdminResponse:
        return _json(200, {"database": {"reachable": True},
                           "configuration_hash": self._hash(), "generation":
                           self.state.generation})

    def _enabled_plugins(self) -> list[str]:
        return [PLUGIN_NAME] if self.state.policy and self.state.policy.plugins else []

    def _hash(self) -> str:
        return config_hash(self.state.config) if self.state.config else "0" * 64

    # -- entities -------------------------------------------------------------------

    def _entities(self) -> Entities:
        return Entities(self.state.config)

    def _save(self, entities: Entities, what: str) -> None:
        self.commit(entities.to_config(), what)

    def _list(self, kind: str, q: dict[str, str], parts: list[str]) -> AdminResponse:
        ents = self._entities()
        if kind == "consumers" and "custom_id" in q:
            # Kong: a lookup by custom_id, one consumer or none, never paged
            found = [c for c in ents.list(kind) if c.get("custom_id") == q["custom_id"]]
            return _json(200, {"data": [present(kind, c) for c in found], "next": None})
        return _page(kind, ents.list(kind), q, parts)

    def _get(self, kind: str, key: str) -> AdminResponse:
        return _json(200, present(kind, self._entities().get(kind, key)))

    def _create(self, kind: str, ctype: str, body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        entity = ents.create(kind, data, is_form)
        self._save(ents, f"Admin API: created {kind[:-1]} {entity['id']}")
        return _json(201, present(kind, entity))

    def _upsert(self, kind: str, key: str, ctype: str, body: bytes,
                scope: dict[str, Any] | None = None) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        entity = ents.upsert(kind, key, data, is_form, scope)
        self._save(ents, f"Admin API: put {kind[:-1]} {entity['id']}")
        return _json(200, present(kind, entity))  # Kong: 200, created or replaced

    def _update(self, kind: str, key: str, ctype: str, body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        entity = ents.update(kind, key, data, is_form)
        self._save(ents, f"Admin API: updated {kind[:-1]} {entity['id']}")
        return _json(200, present(kind, entity))

    def _delete(self, kind: str, key: str) -> AdminResponse:
        ents = self._entities()
        entity = ents.find(kind, key)
        if ents.delete(kind, key):
            self._save(ents, f"Admin API: deleted {kind[:-1]} {entity['id'] if entity else key}")
        return AdminResponse(204)

    # -- nested: /services/{s}/routes, /services/{s}/plugins, /routes/{r}/plugins -----

    def _list_scoped(self, parent: str, key: str, child: str, q: dict[str, str],
                     parts: list[str]) -> AdminResponse:
        ents = self._entities()
        pid = ents.get(parent, key)["id"]
        return _page(child, ents.list(child, **{parent[:-1]: pid}), q, parts)

    def _create_scoped(self, parent: str, key: str, child: str, ctype: str,
                       body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        pid = ents.get(parent, key)["id"]
        entity = ents.create(child, data, is_form, scope={parent[:-1]: {"id": pid}})
        self._save(ents, f"Admin API: created {child[:-1]} {entity['id']} on {parent[:-1]} "
                         f"{key}")
        return _json(201, present(child, entity))

    @staticmethod
    def _child_of(ents: Entities, parent: str, key: str, child: str,
                  ckey: str) -> dict[str, Any]:
        """The child entity, if it belongs to that parent; 404 otherwise (Kong)."""
        pid = ents.get(parent, key)["id"]
        entity = ents.get(child, ckey)
        if (entity.get(parent[:-1]) or {}).get("id") != pid:
            raise not_found()
        return entity

    def _get_scoped(self, parent: str, key: str, child: str, ckey: str) -> AdminResponse:
        return _json(200, present(child, self._child_of(self._entities(), parent, key, child,
                                                        ckey)))

    def _upsert_scoped(self, parent: str, key: str, child: str, ckey: str, ctype: str,
                       body: bytes) -> AdminResponse:
        # Kong: the parent must exist; the entity is created or replaced under it
        pid = self._entities().get(parent, key)["id"]
        return self._upsert(child, ckey, ctype, body, scope={parent[:-1]: {"id": pid}})

    def _update_scoped(self, parent: str, key: str, child: str, ckey: str, ctype: str,
                       body: bytes) -> AdminResponse:
        cid = self._child_of(self._entities(), parent, key, child, ckey)["id"]
        return self._update(child, cid, ctype, body)

    def _delete_scoped(self, parent: str, key: str, child: str, ckey: str) -> AdminResponse:
        cid = self._child_of(self._entities(), parent, key, child, ckey)["id"]
        return self._delete(child, cid)

    # -- schemas --------------------------------------------------------------------

    def _validate_plugin(self, ctype: str, body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        if is_form:
            data = coerce_form(Plugin, data)
        data = strip_none(data)  # null: unset, as in a change
        data = {k: v for k, v in data.items() if k not in ("service", "route", "consumer")}
        if data.get("name", PLUGIN_NAME) != PLUGIN_NAME:
            msg = f"plugin '{data['name']}' not enabled; this gateway only has {PLUGIN_NAME}"
            raise schema_violation({"name": msg}, [f"name: {msg}"])
        try:
            Plugin.model_validate(data)
        except ValidationError as e:
            fields, messages = errors_to_fields(e)
            raise schema_violation(fields, messages) from None
        return _json(200, {"message": "schema validation successful"})

    # -- DB-less configuration ------------------------------------------------------

    def _get_config(self, q: dict[str, str]) -> AdminResponse:
        config = self.state.config
        if config is None:
            config = DeclarativeConfig.model_validate({"_format_version": "3.0"})
        if q.get("format") == "json":
            return _json(200, config_to_data(config))
        return AdminResponse(200, config_to_yaml(config), "application/yaml; charset=utf-8")

    def _post_config(self, q: dict[str, str], ctype: str, body: bytes) -> AdminResponse:
        # As Kong: the document is the `config` field of a form or JSON body
        # (`-F config=@kong.yml`, httpie's `config=@kong.yml`), else the body
        # itself (`--data-binary @kong.yml`, which curl labels as a form).
        base = ctype.split(";", 1)[0].strip().lower()
        text: Any = None
        as_json = False
        if base == "multipart/form-data":
            text = parse_body(ctype, body)[0].get("config")
            if not isinstance(text, str):
                raise schema_violation({"config": "required field missing"},
                                       ["config: required field missing"])
        elif base == "application/x-www-form-urlencoded":
            # a form only if it has nothing but Kong's /config fields: a document
            # sent with --data-binary (labelled a form by curl) may well hold
            # `&config=` in a URL, which must not make it a form
            with contextlib.suppress(BodyError):
                form = parse_body(ctype, body)[0]
                if isinstance(form.get("config"), str) and set(form) <= _CONFIG_FORM_FIELDS:
                    text = form["config"]
        if text is None:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BodyError("Cannot parse body: not UTF-8") from None
            if base.endswith("json"):
                text, as_json = _config_field(text)
        source = "POST /config" + (".json" if as_json else "")
        try:
            config = load_text(text, source)
        except ConfigError as e:
            return _json(400, {
                "code": 14,
                "name": "invalid declarative configuration",
                "message": "declarative config is invalid: " + "; ".join(e.problems),
                "fields": _config_fields(text, source),
                "errors": e.problems,
            })
        if q.get("check_hash") in ("1", "true") and self.state.config is not None and (
                config_hash(config) == self._hash()):
            return AdminResponse(304)
        self.commit(config, "Admin API: POST /config")
        return _json(201, config_to_data(config))


# -- paging ---------------------------------------------------------------------------


def _page(kind: str, items: list[dict[str, Any]], q: dict[str, str],
          parts: list[str]) -> AdminResponse:
    """Kong's paging: `size` (1..1000, default 100) and an opaque `offset`
    token; `next` is the path of the following page, null on the last one."""
    size = _page_size(q.get("size"))
    start = _decode_offset(q["offset"], items) if "offset" in q else 0
    body: dict[str, Any] = {
        "data": [present(kind, e) for e in items[start:start + size]],
        "next": None,
    }
    if start + size < len(items):
        token = _encode_offset(start + size, items[start + size])
        path = "/" + "/".join(quote(p, safe="") for p in parts)
        more = f"&size={size}" if "size" in q else ""
        body["offset"] = token
        body["next"] = f"{path}?offset={token}{more}"
    return _json(200, body)


def _page_size(value: str | None) -> int:
    if value is None:
        return PAGE_SIZE
    try:
        size = float(value)
    except ValueError:
        raise _invalid_size("size must be a number") from None
    if not size.is_integer() or not 1 <= size <= MAX_PAGE_SIZE:
        raise _invalid_size(f"size must be an integer between 1 and {MAX_PAGE_SIZE}")
    return int(size)


def _invalid_size(message: str) -> AdminError:
    return AdminError(400, {"code": 9, "name": "invalid size", "message": message})


def _encode_offset(index: int, first: dict[str, Any]) -> str:
    """The next page's first entity and its position: the page starts at that
    entity wherever it is by then (creates and deletes before it do not shift
    the page, as with Kong's keyed offsets), at the position if it is gone."""
    text = f"{index}:{first.get('id', '')}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_offset(token: str, items: list[dict[str, Any]]) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    index, _, key = text.partition(":")
    if not (index.isascii() and index.isdigit() and len(index) <= 9 and is_uuid(key)):
        raise AdminError(400, {
            "code": 7, "name": "invalid offset",
            "message": f"'{token}' is not a valid offset: bad base64 encoding",
        })
    for position, entity in enumerate(items):
        if entity.get("id") == key:
            return position
    return min(int(index), len(items))


def _config_field(text: str) -> tuple[str, bool]:
    """A JSON body `{"config": <document as a string or object>}` -> the
    document; any other JSON text is the document itself. With whether the
    document is JSON (a string may hold YAML)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text, True  # reported as the document's own error
    if isinstance(data, dict) and "config" in data and "_format_version" not in data:
        inner = data["config"]
        return (inner, False) if isinstance(inner, str) else (json.dumps(inner), True)
    return text, True


def _config_fields(text: str, source: str) -> dict[str, Any]:
    """Kong-style nested `fields` for a declarative document's schema errors."""
    from ..loader import parse_document

    try:
        data = parse_document(text, source)
        DeclarativeConfig.model_validate(data)
    except ValidationError as e:
        return errors_to_fields(e)[0]
    except Exception:
        return {}
    return {}


"""The Admin API's routes, as a plain function of (method, path, query, body).

No HTTP server here: `AdminAPI.handle()` returns status, headers and body,
so every endpoint is unit-tested without sockets; `server.py` is the thin
tornado glue. Every change builds a new configuration from the one in force
(`Entities`), validates it whole, and hands it to `commit`, which persists it
and applies it through `PolicyState.apply()`: the same validation and the same
atomic swap as a file load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

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
    not_found,
    present,
    schema_violation,
)
from .forms import BodyError, coerce_form, parse_body

logger = logging.getLogger("oauth2_introspection.admin")

Commit = Callable[[DeclarativeConfig, str], None]

VERSION = "3.0.0-mitmproxy-oauth2-introspection"


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
        try:
            return self._route(method.upper(), path, query, content_type, body)
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
        if head not in ("services", "routes", "consumers", "plugins"):
            raise not_found()
        kind = head
        if n == 1:
            return self._only(method, {
                "GET": lambda: self._list(kind),
                "POST": lambda: self._create(kind, ctype, body),
            })
        key = parts[1]
        if n == 2:
            return self._only(method, {
                "GET": lambda: self._get(kind, key),
                "PATCH": lambda: self._update(kind, key, ctype, body),
                "DELETE": lambda: self._delete(kind, key),
            })
        # /services/{s}/routes, /services/{s}/plugins, /routes/{r}/plugins
        if n == 3 and (kind, parts[2]) in {("services", "routes"), ("services", "plugins"),
                                           ("routes", "plugins")}:
            child = parts[2]
            return self._only(method, {
                "GET": lambda: self._list_scoped(kind, key, child),
                "POST": lambda: self._create_scoped(kind, key, child, ctype, body),
            })
        raise not_found()

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

    def _list(self, kind: str) -> AdminResponse:
        ents = self._entities()
        return _json(200, {"data": [present(kind, e) for e in ents.list(kind)], "next": None})

    def _get(self, kind: str, key: str) -> AdminResponse:
        return _json(200, present(kind, self._entities().get(kind, key)))

    def _create(self, kind: str, ctype: str, body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        entity = ents.create(kind, data, is_form)
        self._save(ents, f"Admin API: created {kind[:-1]} {entity['id']}")
        return _json(201, present(kind, entity))

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

    def _list_scoped(self, parent: str, key: str, child: str) -> AdminResponse:
        ents = self._entities()
        pid = ents.get(parent, key)["id"]
        items = ents.list(child, **{parent[:-1]: pid})
        return _json(200, {"data": [present(child, e) for e in items], "next": None})

    def _create_scoped(self, parent: str, key: str, child: str, ctype: str,
                       body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        ents = self._entities()
        pid = ents.get(parent, key)["id"]
        entity = ents.create(child, data, is_form, scope={parent[:-1]: {"id": pid}})
        self._save(ents, f"Admin API: created {child[:-1]} {entity['id']} on {parent[:-1]} "
                         f"{key}")
        return _json(201, present(child, entity))

    # -- schemas --------------------------------------------------------------------

    def _validate_plugin(self, ctype: str, body: bytes) -> AdminResponse:
        data, is_form = parse_body(ctype, body)
        if is_form:
            data = coerce_form(Plugin, data)
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
        base = ctype.split(";", 1)[0].strip().lower()
        if base in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form, _ = parse_body(ctype, body)  # Kong: `config=<document>` as a form field
            text = form.get("config")
            if not isinstance(text, str):
                raise schema_violation({"config": "required field missing"},
                                       ["config: required field missing"])
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BodyError("Cannot parse body: not UTF-8") from None
        source = "POST /config" + (".json" if base.endswith("json") else "")
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


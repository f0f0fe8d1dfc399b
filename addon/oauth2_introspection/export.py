"""The config model back out: decK YAML/JSON documents and JSON schemas.

One place for every surface that writes a configuration (`GET /config`, the
state file, `oauth2-introspection convert`) or describes it (`GET
/schemas/plugins/oauth2-introspection`, `oauth2-introspection schema`). The
schemas are generated from the pydantic model, never written by hand.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from .config import DeclarativeConfig, OAuth2IntrospectionConfig


def config_to_data(config: DeclarativeConfig) -> dict[str, Any]:
    """The document as the user would write it: only the fields that were set."""
    return config.model_dump(mode="json", by_alias=True, exclude_unset=True)


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def data_to_yaml(data: dict[str, Any]) -> str:
    if "_format_version" in data:  # keep it first, quoted, as decK writes it
        data = {"_format_version": data["_format_version"],
                **{k: v for k, v in data.items() if k != "_format_version"}}
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)


def config_to_yaml(config: DeclarativeConfig) -> str:
    return data_to_yaml(config_to_data(config))


def config_to_json(config: DeclarativeConfig) -> str:
    return json.dumps(config_to_data(config), indent=2) + "\n"


def config_hash(config: DeclarativeConfig) -> str:
    """A hash of the configuration's content (not its formatting), as Kong's
    `POST /config?check_hash=1` compares."""
    canonical = json.dumps(config_to_data(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plugin_schema() -> dict[str, Any]:
    """JSON schema of the plugin's `config`, from the model."""
    schema = OAuth2IntrospectionConfig.model_json_schema(by_alias=True)
    schema.setdefault("title", "oauth2-introspection config")
    return schema


def declarative_schema() -> dict[str, Any]:
    """JSON schema of a whole declarative file, from the model."""
    return DeclarativeConfig.model_json_schema(by_alias=True)

"""Request bodies as Kong's Admin API reads them.

Form bodies (`application/x-www-form-urlencoded`, `multipart/form-data`) use
dotted keys for nesting and repeated keys or `[]` for arrays, exactly as
Kong accepts them::

    name=oauth2-introspection
    config.introspection_url=https://idp/introspect
    config.custom_claims_forward=email          (repeated: a set)
    config.custom_claims_forward[]=groups       (the same, with brackets)
    config.custom_claims_forward[2]=tenant      (by 1-based index)
    config.custom_introspection_headers.X-Tenant=acme
    service.name=echo

Form values are strings: `coerce_form()` turns them into the types of the
config model (numbers, booleans, lists; an empty value is "unset"), guided by
the model itself. JSON bodies are taken as they are (the model is strict).
"""

from __future__ import annotations

import json
import re
import types
import typing
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel


class BodyError(ValueError):
    """The body cannot be read (bad JSON, bad encoding)."""


_KEY = re.compile(r"^(?P<path>[^\[\]]+?)(?:\[(?P<index>[0-9]{0,6})\])?$")


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, Any], bool]:
    """(data, is_form). Form data is nested but untyped (see coerce_form)."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        return {}, ctype != "application/json"
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise BodyError(f"Cannot parse JSON body: {e}") from None
        if not isinstance(data, dict):
            raise BodyError("Cannot parse JSON body: expected an object")
        return data, False
    if ctype == "multipart/form-data":
        return nest_pairs(multipart_pairs(content_type, body)), True
    # curl --data sends application/x-www-form-urlencoded; so does a body without a type
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("Cannot parse form body: not UTF-8") from None
    return nest_pairs(parse_qsl(text, keep_blank_values=True)), True


def multipart_pairs(content_type: str, body: bytes) -> list[tuple[str, str]]:
    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    pairs: list[tuple[str, str]] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        pairs.append((str(name), payload.decode("utf-8", errors="replace")))
    return pairs


def nest_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Dotted/bracketed keys -> nested dicts and lists."""
    out: dict[str, Any] = {}
    indexed: dict[tuple[int, str], dict[int, str]] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            out[key] = value  # the model will call it an unknown field
            continue
        *parents, leaf = m["path"].split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        index = m["index"]
        if index is None:  # plain key: repeated means a list
            if leaf in node:
                prev = node[leaf]
                node[leaf] = [*prev, value] if isinstance(prev, list) else [prev, value]
            else:
                node[leaf] = value
        elif index == "":  # key[]=value
            prev = node.get(leaf)
            node[leaf] = [*prev, value] if isinstance(prev, list) else (
                [value] if prev is None else [prev, value])
        else:  # key[n]=value
            slots = indexed.setdefault((id(node), leaf), {})
            slots[int(index)] = value
            node[leaf] = [slots[i] for i in sorted(slots)]
    return out


# -- coercion guided by the model --------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional/Annotated, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation, optional


_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def _coerce_scalar(tp: Any, value: str) -> Any:
    if tp is bool:
        low = value.lower()
        return True if low in _TRUE else False if low in _FALSE else value
    if tp is int:
        # ASCII digits only (\d takes any script's), and ValueError past
        # Python's 4,300-digit limit: left a string, the model refuses it
        try:
            return int(value) if re.fullmatch(r"[+-]?[0-9]+", value) else value
        except ValueError:
            return value
    if tp is float:
        try:
            return float(value) if re.fullmatch(r"[+-]?[0-9.eE+-]+", value) else value
        except ValueError:
            return value
    return value


def coerce_form(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Turn a nested form (strings) into the types of `model`'s fields."""
    fields = {}
    for name, info in model.model_fields.items():
        fields[name] = info
        if info.alias:
            fields[info.alias] = info
    out: dict[str, Any] = {}
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            out[key] = value
            continue
        out[key] = _coerce_value(info.annotation, value)
    return out


def _coerce_value(annotation: Any, value: Any) -> Any:
    tp, _ = _unwrap(annotation)
    if isinstance(value, str) and value == "":
        # Kong: an empty form value means "no value" (null)
        return None
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return coerce_form(tp, value) if isinstance(value, dict) else value
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (str,)
        items = value if isinstance(value, list) else [value]
        return [_coerce_value(item_tp, v) for v in items if not (isinstance(v, str) and v == "")]
    if origin is dict:
        return value
    if origin is Literal:
        return value
    if isinstance(value, str):
        return _coerce_scalar(tp, value)
    if isinstance(value, dict):
        # a reference given as `service.name=...`: a union with a model
        for arg in typing.get_args(annotation) or ():
            inner, _ = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return coerce_form(inner, value)
    return value

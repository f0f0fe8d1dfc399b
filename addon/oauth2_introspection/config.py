"""Pydantic models of Kong's declarative format (`_format_version: "3.0"`).

This is the one config model: the loader validates files into it, the policy
compiler reads it, and later surfaces (Admin API, Kubernetes) produce it.
Models are strict (YAML `ttl: "30"` is an error, as in Kong) and reject
unknown fields. Fields Kong knows but this addon does not act on are accepted
so that `deck dump` output loads; docs/configuration.md lists them.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from .routing import kong_regex, normalize_path

PLUGIN_NAME = "oauth2-introspection"

# A stable namespace so generated ids are the same on every load.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mitmproxy-oauth2-introspection")

# RFC 9110 token characters: what may appear in a header name.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# what a header value sent to the endpoint may hold: visible ASCII, with
# spaces and tabs only between visible characters (RFC 9110 field-value; the
# HTTP client refuses anything else, so every introspection call would fail:
# refused when the file loads)
_HEADER_VALUE = re.compile(r"^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$")

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]

# a route's plain path: RFC 3986 path characters and well-formed escapes
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# a route's host: a name or IPv4 address (a `*` label allowed, checked
# below), or an IPv6 literal, with an optional port
_ROUTE_HOST = re.compile(
    r"(?:[A-Za-z0-9*](?:[A-Za-z0-9\-*]*[A-Za-z0-9*])?"
    r"(?:\.[A-Za-z0-9*](?:[A-Za-z0-9\-*]*[A-Za-z0-9*])?)*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
    r"|[1-9][0-9]{0,3}))?")


def _whole_number(value: Any) -> Any:
    # Kong's integer fields take any number equal to an integer (JSON and Lua
    # have one number type): `timeout: 1000.0` is 1000; `10.5` still fails
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_whole_number)]


def _uuid(value: str | None) -> str | None:
    # Kong's primary keys are UUIDs; refused here as Kong refuses them
    if value is not None:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid UUID") from None
    return value


def _entity_name(value: str | None) -> str | None:
    # Kong's `utf8_name`: letters and digits (any script), `.`, `-`, `_`, `~`
    if value is not None and not re.fullmatch(r"[\w.~-]+", value):
        raise ValueError(f"invalid name {value!r}: the only ASCII characters allowed "
                         "are letters, digits, '.', '-', '_' and '~'")
    return value


EntityId = Annotated[str | None, AfterValidator(_uuid)]
EntityName = Annotated[str | None, AfterValidator(_entity_name)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class Entity(StrictModel):
    """Fields Kong adds to every entity it exports (`deck dump`, the Admin
    API): accepted, with no effect here."""

    created_at: int | float | None = None
    updated_at: int | float | None = None
    ws_id: str | None = None


class EntityRef(StrictModel):
    """`service: {name: ...}` / `{id: ...}` as decK writes references."""

    id: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> EntityRef:
        if not (self.id or self.name):
            raise ValueError("a reference needs 'id' or 'name'")
        return self

    @property
    def key(self) -> str:
        return self.id or self.name or ""


def _coerce_ref(value: Any) -> Any:
    # decK and Kong accept both `service: echo` and `service: {name: echo}`.
    if isinstance(value, str):
        return {"name": value}
    return value


# the JSON schema says what is accepted (a name, or the object), not what it becomes
Ref = Annotated[EntityRef | None,
                BeforeValidator(_coerce_ref, json_schema_input_type=str | EntityRef | None)]


class OAuth2IntrospectionConfig(StrictModel):
    """`config:` of the oauth2-introspection plugin, with Kong's defaults."""

    introspection_url: NonEmptyStr
    authorization_value: NonEmptyStr = Field(repr=False)
    token_type_hint: str | None = None
    ttl: float = Field(30, ge=0, allow_inf_nan=False)
    hide_credentials: bool = False
    timeout: Integer = Field(10000, gt=0)
    keepalive: Integer = Field(60000, ge=0)
    anonymous: str | None = None
    run_on_preflight: bool = True
    consumer_by: Literal["username", "client_id"] = "username"
    introspect_request: bool = False
    custom_introspection_headers: dict[str, str] = Field(default_factory=dict)
    custom_claims_forward: list[NonEmptyStr] = Field(default_factory=list)

    @field_serializer("ttl")
    def _whole_ttl(self, ttl: float) -> float | int:
        # written back (convert, the Admin API, the state file) as it was
        # given, and as Kong shows it: `ttl: 30`, not 30.0
        return int(ttl) if float(ttl).is_integer() else ttl

    @field_validator("introspection_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if re.search(r"[\x00-\x20\x7f]", value):
            raise ValueError("must not contain spaces or control characters")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if "@" in parts.netloc:
            # the HTTP client would send them as Basic credentials instead of
            # authorization_value, and every log line naming the URL would show them
            raise ValueError("must not contain credentials (user:password@): "
                             "put them in authorization_value")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise ValueError(f"invalid port: {e}") from None
        return value

    @field_validator("authorization_value", "token_type_hint")
    @classmethod
    def _header_safe(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError("must not contain control characters (CR, LF, NUL, ...)")
        if (value is not None and info.field_name == "authorization_value"
                and value.startswith("{vault://")):
            raise ValueError("Kong vault references are not resolved here: give the value "
                             "itself (e.g. from an environment variable when writing the file)")
        if (value is not None and info.field_name == "authorization_value"
                and not _HEADER_VALUE.match(value)):
            raise ValueError("must be ASCII with no leading or trailing space: it is sent "
                             "as a header value")
        return value

    @field_validator("anonymous")
    @classmethod
    def _empty_anonymous_is_none(cls, value: str | None) -> str | None:
        if value and _FORBIDDEN_IN_VALUE.search(value):
            # it names a consumer, whose username is sent as a header value
            raise ValueError("must not contain control characters (CR, LF, NUL, ...)")
        # Kong's Admin API sends `anonymous=` for "no anonymous consumer".
        return value or None

    @field_validator("custom_introspection_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if _FORBIDDEN_IN_VALUE.search(header_value):
                raise ValueError(f"the value of {name!r} contains control characters")
            if not _HEADER_VALUE.match(header_value):
                raise ValueError(f"the value of {name!r} must be ASCII with no leading or "
                                 "trailing space (a header value)")
        return value

    @field_validator("custom_claims_forward")
    @classmethod
    def _valid_claims(cls, value: list[str]) -> list[str]:
        for claim in value:
            if not _HEADER_NAME.match(claim):
                raise ValueError(f"claim {claim!r} cannot become a header name")
        # A Kong "set": keep the first occurrence, in order.
        claims = list(dict.fromkeys(value))
        headers: dict[str, str] = {}
        for claim in claims:
            header = claim.replace("_", "-").lower()
            if header in headers:
                raise ValueError(f"claims {headers[header]!r} and {claim!r} would both be sent "
                                 f"as X-Credential-{claim.replace('_', '-')}: keep one")
            headers[header] = claim
        return claims


class Plugin(Entity):
    name: Literal["oauth2-introspection"]
    id: EntityId = None
    instance_name: EntityName = None
    enabled: bool = True
    config: OAuth2IntrospectionConfig
    service: Ref = None
    route: Ref = None
    consumer: Ref = None
    protocols: list[str] | None = None
    tags: list[str] | None = None


    @field_validator("consumer")
    @classmethod
    def _no_consumer_scope(cls, value: EntityRef | None) -> EntityRef | None:
        if value is not None:
            raise ValueError(
                "oauth2-introspection cannot be scoped to a consumer "
                "(it is the plugin that identifies the consumer)"
            )
        return value


class Route(Entity):
    id: EntityId = None
    name: EntityName = None
    hosts: list[NonEmptyStr] | None = None
    paths: list[NonEmptyStr] | None = None
    methods: list[NonEmptyStr] | None = None
    headers: dict[str, list[str]] | None = None
    strip_path: bool = True
    preserve_host: bool = False
    regex_priority: Integer = 0
    path_handling: Literal["v0", "v1"] = "v0"
    protocols: list[str] | None = None
    service: Ref = None
    plugins: list[Plugin] = Field(default_factory=list)
    tags: list[str] | None = None
    # Accepted for `deck dump` compatibility; no effect here (docs/configuration.md).
    https_redirect_status_code: int | None = None
    request_buffering: bool | None = None
    response_buffering: bool | None = None
    snis: list[str] | None = None
    sources: list[dict[str, Any]] | None = None
    destinations: list[dict[str, Any]] | None = None


    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str] | None) -> list[str] | None:
        # As Kong 3 validates them: requests are matched on their normalised
        # path, so a path that is not normalised could never match, and its
        # plugin would never run.
        for path in value or []:
            if path.startswith("~"):
                if not path.startswith("~/"):
                    raise ValueError(f"invalid regex path {path!r}: must start with '~/'")
                try:
                    re.compile(kong_regex(path[1:]))
                except re.error as e:
                    raise ValueError(f"invalid regex path {path!r}: {e}") from None
                continue
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must start with '/' (or '~/' for a regex)")
            if not _PATH.fullmatch(path):
                raise ValueError(f"invalid path {path!r}: only ASCII letters, digits, "
                                 "'/' and -._~!$&'()*+,;=:@ and %XX escapes are allowed")
            normalised = normalize_path(path)
            if normalised != path:
                raise ValueError(f"non-normalized path {path!r}, consider use "
                                 f"{normalised!r} instead")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str] | None) -> list[str] | None:
        for method in value or []:
            if not re.fullmatch(r"[A-Z]+", method):
                raise ValueError(f"method {method!r} must be upper-case letters")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        for host in value or []:
            if not _ROUTE_HOST.fullmatch(host):
                shown = re.sub(r"//[^/@]*@", "//***@", host)  # never echo a URL's credentials
                raise ValueError(f"invalid host {shown!r}: a host name (or IP address), "
                                 "optionally with a wildcard label and a :port")
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            if name.count("*") > 1 or (
                # As Kong: "example.*:8080" is rejected (the router never matched it).
                "*" in name and not (name.startswith("*.") or host.endswith(".*"))
            ):
                raise ValueError(
                    f"host {host!r}: a wildcard must be the leftmost or rightmost label"
                )
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for name, values in (value or {}).items():
            if name.lower() == "host":
                raise ValueError("cannot contain 'host' header, which must be specified in "
                                 "the 'hosts' attribute")
            for v in values:
                if v.startswith("~*"):
                    try:
                        re.compile(v[2:])
                    except re.error as e:
                        raise ValueError(f"invalid regex {v!r} for header {name!r}: {e}"
                                         ) from None
        return value

    @model_validator(mode="after")
    def _has_matcher(self) -> Route:
        if not (self.hosts or self.paths or self.methods or self.headers):
            raise ValueError("a route needs at least one of 'hosts', 'paths', 'methods', 'headers'")
        return self


class Service(Entity):
    id: EntityId = None
    name: EntityName = None
    url: str | None = None
    protocol: Literal["http", "https"] | None = None
    host: str | None = None
    # bounds inside, on the int (outside the validator, under the Optional,
    # they would reach the JSON schema as unknown `ge`/`le` keywords)
    port: Annotated[int, Field(ge=1, le=65535), BeforeValidator(_whole_number)] | None = None
    path: str | None = None
    enabled: bool = True
    routes: list[Route] = Field(default_factory=list)
    plugins: list[Plugin] = Field(default_factory=list)
    tags: list[str] | None = None
    # Accepted for `deck dump` compatibility; no effect here (docs/configuration.md).
    connect_timeout: int | None = None
    read_timeout: int | None = None
    write_timeout: int | None = None
    retries: int | None = None
    tls_verify: bool | None = None
    tls_verify_depth: int | None = None
    ca_certificates: list[str] | None = None
    client_certificate: EntityRef | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if re.search(r"[\x00-\x20\x7f]", value):
            raise ValueError("must not contain spaces or control characters")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if "@" in parts.netloc:
            # the HTTP client would send them as Basic credentials instead of
            # authorization_value, and every log line naming the URL would show them
            raise ValueError("must not contain credentials (user:password@): "
                             "put them in authorization_value")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise ValueError(f"invalid port: {e}") from None
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @model_validator(mode="after")
    def _url_or_parts(self) -> Service:
        if self.url and (self.host or self.protocol or self.port or self.path):
            raise ValueError("set either 'url' or 'protocol'/'host'/'port'/'path', not both")
        if (self.protocol or self.port or self.path) and not self.host and not self.url:
            raise ValueError("'protocol', 'port' and 'path' need 'host'")
        return self

    def upstream(self) -> tuple[str, str, int, str] | None:
        """(scheme, host, port, path) this service sends to, or None for the
        reverse-mode target."""
        if self.url:
            parts = urlsplit(self.url)
            scheme = parts.scheme
            port = parts.port or (443 if scheme == "https" else 80)
            return scheme, parts.hostname or "", port, parts.path or ""
        if self.host:
            scheme = self.protocol or "http"
            port = self.port or (443 if scheme == "https" else 80)
            return scheme, self.host, port, self.path or ""
        return None


class Consumer(Entity):
    id: EntityId = None
    username: str | None = None
    custom_id: str | None = None
    tags: list[str] | None = None
    plugins: list[dict[str, Any]] | None = None

    @field_validator("plugins")
    @classmethod
    def _no_plugins(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError(
                "oauth2-introspection cannot be scoped to a consumer "
                "(it is the plugin that identifies the consumer)"
            )
        return value

    @field_validator("username", "custom_id")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        if value is not None and _FORBIDDEN_IN_VALUE.search(value):
            # sent upstream as X-Consumer-Username / X-Consumer-Custom-ID
            raise ValueError("must not contain control characters (CR, LF, NUL, ...): it is "
                             "sent as a header value")
        return value

    @model_validator(mode="after")
    def _identified(self) -> Consumer:
        if not (self.username or self.custom_id):
            raise ValueError("a consumer needs 'username' or 'custom_id'")
        return self

    def stable_id(self) -> str:
        """`id`, or a UUID derived from username and custom_id (same on every load)."""
        if self.id:
            return self.id
        seed = f"consumer\x00{self.username or ''}\x00{self.custom_id or ''}"
        return str(uuid.uuid5(ID_NAMESPACE, seed))


class DeclarativeConfig(StrictModel):
    format_version: Literal["3.0"] = Field(alias="_format_version")
    transform: bool = Field(True, alias="_transform")
    workspace: str | None = Field(None, alias="_workspace")
    info: dict[str, Any] | None = Field(None, alias="_info")

    @field_validator("info")
    @classmethod
    def _no_defaults(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and value.get("defaults"):
            # decK fills entities' missing fields from it; ignoring it would
            # route differently from what decK syncs to Kong
            raise ValueError("decK's defaults are not applied here: write those fields on "
                             "each entity (or run `deck file render` first)")
        return value
    services: list[Service] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    consumers: list[Consumer] = Field(default_factory=list)
    plugins: list[Plugin] = Field(default_factory=list)

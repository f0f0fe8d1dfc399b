"""The pydantic config model: every plugin key with Kong's default, strictness,
and the entity-level rules (services, routes, consumers)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oauth2_introspection.config import (
    Consumer,
    DeclarativeConfig,
    OAuth2IntrospectionConfig,
    Plugin,
    Route,
    Service,
)

REQUIRED = {"introspection_url": "https://idp.example/introspect", "authorization_value": "Basic x"}


def plugin_config(**overrides: Any) -> OAuth2IntrospectionConfig:
    return OAuth2IntrospectionConfig.model_validate({**REQUIRED, **overrides})


@pytest.mark.parametrize(
    ("key", "default"),
    [
        ("token_type_hint", None),
        ("ttl", 30),
        ("hide_credentials", False),
        ("timeout", 10000),
        ("keepalive", 60000),
        ("anonymous", None),
        ("run_on_preflight", True),
        ("consumer_by", "username"),
        ("introspect_request", False),
        ("custom_introspection_headers", {}),
        ("custom_claims_forward", []),
    ],
)
def test_every_optional_plugin_key_has_kongs_default(key: str, default: Any) -> None:
    assert getattr(plugin_config(), key) == default


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("token_type_hint", "access_token"),
        ("ttl", 5),
        ("ttl", 0.5),
        ("hide_credentials", True),
        ("timeout", 250),
        ("keepalive", 0),
        ("anonymous", "guest"),
        ("run_on_preflight", False),
        ("consumer_by", "client_id"),
        ("introspect_request", True),
        ("custom_introspection_headers", {"X-Tenant": "acme"}),
        ("custom_claims_forward", ["groups", "email_verified"]),
    ],
)
def test_every_plugin_key_can_be_set(key: str, value: Any) -> None:
    assert getattr(plugin_config(**{key: value}), key) == value


@pytest.mark.parametrize("missing", ["introspection_url", "authorization_value"])
def test_introspection_url_and_authorization_value_are_required(missing: str) -> None:
    data = dict(REQUIRED)
    del data[missing]
    with pytest.raises(ValidationError) as e:
        OAuth2IntrospectionConfig.model_validate(data)
    assert e.value.errors()[0]["loc"] == (missing,)
    assert e.value.errors()[0]["type"] == "missing"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ttl", "30"),
        ("ttl", True),
        ("ttl", -1),
        ("timeout", "10000"),
        ("timeout", 10.5),
        ("timeout", 0),
        ("keepalive", -1),
        ("hide_credentials", "true"),
        ("hide_credentials", 1),
        ("run_on_preflight", "no"),
        ("introspect_request", 0),
        ("consumer_by", "sub"),
        ("consumer_by", "custom_id"),
        ("custom_claims_forward", "groups"),
        ("custom_claims_forward", ["bad claim"]),
        ("custom_claims_forward", [""]),
        ("custom_introspection_headers", {"Bad Header": "x"}),
        ("custom_introspection_headers", {"X-Ok": "a\r\nInjected: 1"}),
        ("custom_introspection_headers", {"X-Num": 1}),
        ("token_type_hint", 1),
        ("token_type_hint", "a\nb"),
        ("authorization_value", "Basic x\r\nX-Evil: 1"),
        ("authorization_value", ""),
        ("introspection_url", "idp.example/introspect"),
        ("introspection_url", "ftp://idp.example/introspect"),
        ("introspection_url", "http://idp.example:99999/introspect"),
        ("introspection_url", "http:///introspect"),
        # every introspection call would fail or misbehave with these
        ("authorization_value", "Basic \u00e9\u2603"),
        ("custom_introspection_headers", {"X-Tenant": "Z\u00fcrich"}),
        # the HTTP client refuses a header value with space around it
        ("authorization_value", "Basic c2VjcmV0 "),
        ("authorization_value", "\tBasic c2VjcmV0"),
        ("authorization_value", " "),
        ("custom_introspection_headers", {"X-Api-Key": " k-123"}),
        ("custom_introspection_headers", {"X-Api-Key": "k-123\t"}),
        ("introspection_url", " http://idp.example/introspect"),
        ("introspection_url", "http://idp.example/intro spect"),
        ("introspection_url", "http://user:secret@idp.example/introspect"),
        # not representable in JSON (Admin API, /config, state file)
        ("ttl", float("inf")),
        ("ttl", float("nan")),
        ("unknown_key", 1),
    ],
)
def test_wrong_plugin_values_are_rejected(key: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        plugin_config(**{key: value})


def test_empty_anonymous_means_no_anonymous_consumer() -> None:
    assert plugin_config(anonymous="").anonymous is None


def test_custom_claims_forward_is_a_set_keeping_first_occurrences_in_order() -> None:
    cfg = plugin_config(custom_claims_forward=["b", "a", "b", "c", "a"])
    assert cfg.custom_claims_forward == ["b", "a", "c"]


def test_authorization_value_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(plugin_config(authorization_value="Bearer s3cret"))


def test_plugin_name_must_be_oauth2_introspection() -> None:
    with pytest.raises(ValidationError):
        Plugin.model_validate({"name": "key-auth", "config": REQUIRED})


def test_plugin_is_enabled_by_default_and_can_be_disabled() -> None:
    assert Plugin.model_validate({"name": "oauth2-introspection", "config": REQUIRED}).enabled
    disabled = Plugin.model_validate(
        {"name": "oauth2-introspection", "config": REQUIRED, "enabled": False}
    )
    assert disabled.enabled is False


@pytest.mark.parametrize("ref", ["echo", {"name": "echo"}])
def test_plugin_service_reference_accepts_a_name_or_a_decK_object(ref: Any) -> None:
    p = Plugin.model_validate({"name": "oauth2-introspection", "config": REQUIRED, "service": ref})
    assert p.service is not None
    assert p.service.key == "echo"


def test_a_reference_needs_id_or_name() -> None:
    with pytest.raises(ValidationError):
        Plugin.model_validate({"name": "oauth2-introspection", "config": REQUIRED, "service": {}})


def test_plugin_scoped_to_a_consumer_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cannot be scoped to a consumer"):
        Plugin.model_validate(
            {"name": "oauth2-introspection", "config": REQUIRED, "consumer": "bob"}
        )


def test_route_strip_path_defaults_to_true_as_in_kong() -> None:
    route = Route.model_validate({"paths": ["/a"]})
    assert route.strip_path is True
    assert route.preserve_host is False
    assert route.path_handling == "v0"
    assert route.regex_priority == 0


@pytest.mark.parametrize(
    "route",
    [
        {},
        {"name": "nothing-to-match"},
        {"paths": ["no-slash"]},
        {"paths": ["~/(unclosed"]},
        {"methods": ["get"]},
        {"hosts": ["a.*.example.com"]},
        {"hosts": ["*.*.example.com"]},
        {"hosts": ["ex*ample.com"]},
        {"hosts": ["example.*:8080"]},
        {"paths": ["/a"], "strip_path": "false"},
        {"paths": "/a"},
        {"paths": ["/a"], "path_handling": "v2"},
        # what Kong refuses: requests match on their normalised path, so these
        # could never match, and their plugin would never run
        {"paths": ["/%7Euser"]},
        {"paths": ["/docs%2fprivate"]},
        {"paths": ["/x//y"]},
        {"paths": ["/p/./q"]},
        {"paths": ["/a/../admin"]},
        {"paths": ["/caf\u00e9"]},
        {"paths": ["/%zz"]},
        {"paths": ["/a b"]},
        {"paths": ["~admin"]},
        {"hosts": ["https://admin.example.com"]},
        {"hosts": ["api.example.com/"]},
        {"hosts": ["a b.com"]},
        {"hosts": ["example.com:99999"]},
        {"headers": {"Host": ["admin.example.com"]}},
        {"headers": {"x-v": ["~*(unclosed"]}},
    ],
)
def test_invalid_routes_are_rejected(route: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Route.model_validate(route)


@pytest.mark.parametrize(
    "hosts",
    [["example.com"], ["*.example.com"], ["example.*"], ["example.com:8080"],
     ["*.example.com:8443"], ["127.0.0.1"], ["[::1]:8080"], ["my-host"]],
)
def test_valid_route_hosts_are_accepted(hosts: list[str]) -> None:
    assert Route.model_validate({"hosts": hosts}).hosts == hosts


@pytest.mark.parametrize("path", ["/", "/api/", "/docs%2Fprivate", "/a:b@c;d=e", "/~user",
                                  "~/files/(?P<id>\\d+)$"])
def test_valid_route_paths_are_accepted(path: str) -> None:
    assert Route.model_validate({"paths": [path]}).paths == [path]


def test_a_non_normalised_path_is_refused_with_its_normal_form() -> None:
    with pytest.raises(ValidationError, match="non-normalized path '/x//y', consider use "
                                              "'/x/y' instead"):
        Route.model_validate({"paths": ["/x//y"]})


@pytest.mark.parametrize(
    ("service", "upstream"),
    [
        ({"url": "http://echo.local"}, ("http", "echo.local", 80, "")),
        ({"url": "https://echo.local"}, ("https", "echo.local", 443, "")),
        ({"url": "http://echo.local:9000/base"}, ("http", "echo.local", 9000, "/base")),
        ({"host": "echo.local"}, ("http", "echo.local", 80, "")),
        ({"host": "echo.local", "protocol": "https"}, ("https", "echo.local", 443, "")),
        ({"host": "echo.local", "port": 8080, "path": "/s"}, ("http", "echo.local", 8080, "/s")),
        ({"name": "target-only"}, None),
    ],
)
def test_service_upstream_comes_from_url_or_parts(
    service: dict[str, Any], upstream: tuple[str, str, int, str] | None
) -> None:
    assert Service.model_validate(service).upstream() == upstream


@pytest.mark.parametrize(
    "service",
    [
        {"url": "http://a", "host": "b"},
        {"url": "http://a", "path": "/x"},
        {"port": 80},
        {"path": "/x"},
        {"host": "a", "path": "x"},
        {"host": "a", "port": 0},
        {"host": "a", "port": 65536},
        {"host": "a", "protocol": "grpc"},
        {"url": "echo.local"},
        {"url": "http://a:notaport"},
    ],
)
def test_invalid_services_are_rejected(service: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Service.model_validate(service)


def test_consumer_needs_username_or_custom_id() -> None:
    with pytest.raises(ValidationError, match="needs 'username' or 'custom_id'"):
        Consumer.model_validate({"id": "5d3a2c1e-0000-4000-8000-00000000a001"})


def test_consumer_stable_id_is_the_same_on_every_load() -> None:
    a = Consumer.model_validate({"username": "alice"}).stable_id()
    b = Consumer.model_validate({"username": "alice"}).stable_id()
    assert a == b
    assert len(a) == 36  # a UUID


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"username": "alice"}, {"username": "bob"}),
        ({"username": "alice"}, {"custom_id": "alice"}),
        ({"username": "alice"}, {"username": "alice", "custom_id": "a-1"}),
        ({"custom_id": "a"}, {"custom_id": "b"}),
    ],
)
def test_consumer_stable_id_differs_per_consumer(
    one: dict[str, Any], other: dict[str, Any]
) -> None:
    assert (
        Consumer.model_validate(one).stable_id() != Consumer.model_validate(other).stable_id()
    )


def test_consumer_explicit_id_wins_over_the_derived_one() -> None:
    fixed = "5d3a2c1e-0000-4000-8000-00000000a001"
    assert Consumer.model_validate({"username": "a", "id": fixed}).stable_id() == fixed


@pytest.mark.parametrize("entity", [
    {"id": "not-a-uuid", "username": "a"},
], ids=["consumer"])
def test_ids_must_be_uuids_as_in_kong(entity: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="not a valid UUID"):
        Consumer.model_validate(entity)


@pytest.mark.parametrize("name", ["my service", "a/b", "x:y", ""])
def test_service_and_route_names_are_kongs_utf8_names(name: str) -> None:
    with pytest.raises(ValidationError, match="invalid name"):
        Service.model_validate({"name": name})
    with pytest.raises(ValidationError, match="invalid name"):
        Route.model_validate({"name": name, "paths": ["/"]})


@pytest.mark.parametrize("name", ["echo", "api.v2", "a-b_c~d", "überweisung"])
def test_valid_names_are_accepted(name: str) -> None:
    assert Service.model_validate({"name": name}).name == name


def test_consumer_with_plugins_is_rejected() -> None:
    with pytest.raises(ValidationError, match="cannot be scoped to a consumer"):
        Consumer.model_validate(
            {"username": "a", "plugins": [{"name": "oauth2-introspection"}]}
        )


def test_declarative_config_requires_format_version_3_0() -> None:
    with pytest.raises(ValidationError):
        DeclarativeConfig.model_validate({"services": []})
    with pytest.raises(ValidationError):
        DeclarativeConfig.model_validate({"_format_version": "2.1"})
    assert DeclarativeConfig.model_validate({"_format_version": "3.0"}).services == []


def test_declarative_config_accepts_deck_metadata_keys() -> None:
    config = DeclarativeConfig.model_validate(
        {"_format_version": "3.0", "_transform": False, "_workspace": "default",
         "_info": {"select_tags": ["x"]}}
    )
    assert config.transform is False
    assert config.workspace == "default"


def test_integer_keys_take_whole_numbers_written_as_floats() -> None:
    # as Kong's integer type does (one number type in JSON and Lua)
    cfg = plugin_config(timeout=1000.0, keepalive=60000.0)
    assert (cfg.timeout, cfg.keepalive) == (1000, 60000)
    assert type(cfg.timeout) is int


def test_inner_spaces_in_header_values_are_kept() -> None:
    cfg = plugin_config(authorization_value="Basic  c2VjcmV0",
                        custom_introspection_headers={"X-Note": "a b\tc", "X-Empty": ""})
    assert cfg.authorization_value == "Basic  c2VjcmV0"
    assert cfg.custom_introspection_headers == {"X-Note": "a b\tc", "X-Empty": ""}


def test_a_refused_authorization_value_is_not_echoed() -> None:
    with pytest.raises(ValidationError) as e:
        plugin_config(authorization_value="Basic TRAILINGSECRET42 ")
    assert "no leading or trailing space" in str(e.value)

"""Compiling a declarative config into a Policy: Kong plugin precedence,
disabled entities, consumers and the introspection client registrations."""

from __future__ import annotations

import logging
import textwrap
from typing import Any

import pytest

from oauth2_introspection.config import DeclarativeConfig
from oauth2_introspection.consumers import ConsumerRecord, ConsumerStore
from oauth2_introspection.loader import load_text
from oauth2_introspection.policy import Policy, check_references, compile_policy


def plugin(url: str, **config: Any) -> dict[str, Any]:
    return {"name": "oauth2-introspection",
            "config": {"introspection_url": url, "authorization_value": "Basic x", **config}}


class Registry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, url: str, keepalive: int) -> tuple[str, int]:
        self.calls.append((url, keepalive))
        return (url, keepalive)


def compile_data(data: dict[str, Any], registry: Registry | None = None) -> Policy:
    config = DeclarativeConfig.model_validate({"_format_version": "3.0", **data})
    assert check_references(config) == []
    return compile_policy(config, registry or Registry(), source="test.yaml")


def plugin_url(policy: Policy, path: str, host: str = "h", method: str = "GET") -> str | None:
    resolution = policy.resolve(host, path, method)
    return resolution.plugin.config.introspection_url if resolution.plugin else None


PRECEDENCE = {
    "services": [
        {
            "name": "svc",
            "routes": [
                {"name": "route-plugin", "paths": ["/route"]},
                {"name": "both-plugin", "paths": ["/both"]},
                {"name": "service-plugin", "paths": ["/service"]},
            ],
            "plugins": [plugin("http://service/")],
        },
        {"name": "bare", "routes": [{"name": "global-plugin", "paths": ["/global"]}]},
    ],
    "routes": [{"name": "top-route", "paths": ["/top"], "plugins": [plugin("http://top/")]}],
    "plugins": [
        plugin("http://global/"),
        {**plugin("http://route/"), "route": "route-plugin"},
        {**plugin("http://both/"), "route": "both-plugin", "service": "svc"},
        {**plugin("http://route-only-on-both/"), "route": "both-plugin"},
    ],
}


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/route", "http://route/"),
        ("/both", "http://both/"),
        ("/service", "http://service/"),
        ("/global", "http://global/"),
        ("/top", "http://top/"),
        ("/nowhere", "http://global/"),
    ],
)
def test_plugin_precedence_is_route_and_service_then_route_then_service_then_global(
    path: str, url: str
) -> None:
    assert plugin_url(compile_data(PRECEDENCE), path) == url


def test_a_request_matching_no_route_gets_only_the_global_plugin() -> None:
    resolution = compile_data(PRECEDENCE).resolve("h", "/nowhere", "GET")
    assert resolution.route is None
    assert resolution.match is None
    assert resolution.plugin is not None
    assert resolution.plugin.label == "global"


def test_without_a_global_plugin_an_unmatched_request_gets_none() -> None:
    policy = compile_data({"routes": [{"name": "r", "paths": ["/r"],
                                       "plugins": [plugin("http://r/")]}]})
    assert policy.resolve("h", "/other", "GET").plugin is None
    assert policy.global_plugin is None


def test_a_disabled_plugin_does_not_apply_and_the_next_scope_does() -> None:
    policy = compile_data({
        "services": [{"name": "svc", "routes": [{"name": "r", "paths": ["/r"]}],
                      "plugins": [plugin("http://service/")]}],
        "plugins": [{**plugin("http://route/"), "route": "r", "enabled": False}],
    })
    assert plugin_url(policy, "/r") == "http://service/"
    assert len(policy.plugins) == 1


def test_a_disabled_global_plugin_leaves_unmatched_requests_without_plugin() -> None:
    policy = compile_data({"plugins": [{**plugin("http://g/"), "enabled": False}]})
    assert policy.resolve("h", "/", "GET").plugin is None


def test_routes_of_a_disabled_service_do_not_exist() -> None:
    policy = compile_data({
        "services": [{"name": "off", "enabled": False,
                      "routes": [{"name": "r", "paths": ["/r"]}]}],
    })
    assert policy.resolve("h", "/r", "GET").route is None
    assert len(policy.router) == 0


def test_a_route_without_plugin_has_none_when_there_is_no_global() -> None:
    policy = compile_data({"routes": [{"name": "open", "paths": ["/open"]}]})
    resolution = policy.resolve("h", "/open", "GET")
    assert resolution.route is not None
    assert resolution.route.label == "open"
    assert resolution.plugin is None


def test_plugin_labels_name_their_scope() -> None:
    policy = compile_data(PRECEDENCE)
    labels = {p.config.introspection_url: p.label for p in policy.plugins}
    assert labels["http://global/"] == "global"
    assert labels["http://service/"] == "service 'svc'"
    assert labels["http://route/"] == "route 'route-plugin'"
    assert labels["http://both/"] == "route 'both-plugin' + service 'svc'"


def test_compiled_routes_carry_service_upstream_and_path_settings() -> None:
    policy = compile_data({
        "services": [{"name": "api", "url": "https://api.internal:8443/v2",
                      "routes": [{"name": "r", "paths": ["/r"], "strip_path": False,
                                  "preserve_host": True, "path_handling": "v1"}]}],
    })
    route = policy.resolve("h", "/r", "GET").route
    assert route is not None
    assert route.service is not None
    assert route.service.name == "api"
    assert route.service.upstream == ("https", "api.internal", 8443, "/v2")
    assert (route.strip_path, route.preserve_host, route.path_handling) == (False, True, "v1")


def test_a_service_without_url_sends_to_the_reverse_mode_target() -> None:
    policy = compile_data({"services": [{"name": "t", "routes": [{"paths": ["/"]}]}]})
    route = policy.resolve("h", "/", "GET").route
    assert route is not None
    assert route.service is not None
    assert route.service.upstream is None


def test_ids_are_stable_across_compilations() -> None:
    a, b = compile_data(PRECEDENCE), compile_data(PRECEDENCE)
    assert [p.id for p in a.plugins] == [p.id for p in b.plugins]
    assert len({p.id for p in a.plugins}) == len(a.plugins)
    route_a = a.resolve("h", "/route", "GET").route
    route_b = b.resolve("h", "/route", "GET").route
    assert route_a is not None
    assert route_b is not None
    assert route_a.id == route_b.id


def test_explicit_plugin_ids_are_kept() -> None:
    fixed = "5d3a2c1e-0000-4000-8000-00000000a0ff"
    policy = compile_data({"plugins": [{**plugin("http://g/"), "id": fixed}]})
    assert policy.plugins[0].id == fixed


def test_one_client_is_registered_per_plugin_with_its_keepalive() -> None:
    registry = Registry()
    policy = compile_data({"plugins": [plugin("http://idp/i", keepalive=1234)]}, registry)
    assert registry.calls == [("http://idp/i", 1234)]
    assert policy.plugins[0].client_key == ("http://idp/i", 1234)


def test_custom_introspection_header_names_turn_underscores_into_dashes() -> None:
    policy = compile_data({"plugins": [plugin("http://idp/i", custom_introspection_headers={
        "X_Tenant_Id": "acme", "X-Plain": "p"})]})
    assert dict(policy.plugins[0].introspection_headers) == {
        "X-Tenant-Id": "acme", "X-Plain": "p"
    }


def test_plugins_differing_only_in_behaviour_share_a_cache_key_prefix() -> None:
    policy = compile_data({
        "routes": [{"name": "a", "paths": ["/a"], "plugins": [plugin("http://idp/i", ttl=5)]},
                   {"name": "b", "paths": ["/b"],
                    "plugins": [plugin("http://idp/i", hide_credentials=True)]},
                   {"name": "c", "paths": ["/c"],
                    "plugins": [plugin("http://idp/i", token_type_hint="access_token")]}],
    })
    prefixes = [p.key_prefix for p in policy.plugins]
    assert prefixes[0] == prefixes[1]
    assert prefixes[0] != prefixes[2]


def test_consumers_are_compiled_into_the_store_with_stable_ids() -> None:
    data = {"consumers": [{"username": "alice", "custom_id": "a-1"},
                          {"custom_id": "app-42"},
                          {"username": "guest", "id": "5d3a2c1e-0000-4000-8000-00000000a0ff"}]}
    first, second = compile_data(data), compile_data(data)
    assert isinstance(first.consumers, ConsumerStore)
    assert len(first.consumers) == 3
    alice = first.consumers.for_claims("username", {"username": "alice"})
    app = first.consumers.for_claims("client_id", {"client_id": "app-42"})
    assert alice is not None
    assert app is not None
    assert alice.id != app.id
    again = second.consumers.for_claims("username", {"username": "alice"})
    assert again is not None
    assert again.id == alice.id
    assert first.consumers.anonymous("5d3a2c1e-0000-4000-8000-00000000a0ff") is not None
    assert first.consumers.anonymous("guest") is not None


def test_an_anonymous_consumer_that_does_not_exist_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="oauth2_introspection.policy"):
        compile_data({"routes": [{"name": "r", "paths": ["/r"],
                                  "plugins": [plugin("http://i/", anonymous="ghost")]}]})
    assert "test.yaml" in caplog.text
    assert "route 'r'" in caplog.text
    assert "'ghost'" in caplog.text


def test_an_existing_anonymous_consumer_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="oauth2_introspection.policy"):
        compile_data({"plugins": [plugin("http://i/", anonymous="guest")],
                      "consumers": [{"username": "guest"}]})
    assert caplog.text == ""


def test_compile_policy_refuses_a_config_with_reference_problems() -> None:
    config = DeclarativeConfig.model_validate(
        {"_format_version": "3.0", "routes": [{"paths": ["/"], "service": "ghost"}]}
    )
    with pytest.raises(ValueError):
        compile_policy(config, Registry())


def test_a_loaded_file_compiles_and_routes_by_host() -> None:
    config = load_text(textwrap.dedent("""\
        _format_version: "3.0"
        services:
          - name: api
            routes:
              - name: api-host
                hosts: ["api.example.com"]
              - name: any-sub
                hosts: ["*.example.com"]
                plugins:
                  - name: oauth2-introspection
                    config: {introspection_url: "http://sub/", authorization_value: x}
            plugins:
              - name: oauth2-introspection
                config: {introspection_url: "http://api/", authorization_value: x}
        """))
    policy = compile_policy(config, Registry())
    assert plugin_url(policy, "/", host="api.example.com:8080") == "http://api/"
    assert plugin_url(policy, "/", host="www.example.com") == "http://sub/"
    assert plugin_url(policy, "/", host="example.org") is None


STORE = ConsumerStore([
    ConsumerRecord("id-a", "alice", "a-1"),
    ConsumerRecord("id-b", None, "app-42"),
])


@pytest.mark.parametrize(
    ("consumer_by", "claims", "expected"),
    [
        ("username", {"username": "alice"}, "id-a"),
        ("username", {"username": "alice", "client_id": "app-42"}, "id-a"),
        ("username", {"client_id": "app-42"}, None),
        ("username", {"username": "a-1"}, None),
        ("username", {"username": ["alice"]}, None),
        ("username", {"sub": "alice"}, None),
        ("client_id", {"client_id": "app-42"}, "id-b"),
        ("client_id", {"client_id": "a-1", "username": "bob"}, "id-a"),
        ("client_id", {"username": "alice"}, None),
        ("client_id", {"client_id": 42}, None),
    ],
)
def test_consumer_lookup_by_username_claim_or_client_id_claim(
    consumer_by: str, claims: dict[str, Any], expected: str | None
) -> None:
    found = STORE.for_claims(consumer_by, claims)
    assert (found.id if found else None) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("id-a", "id-a"), ("alice", "id-a"), ("id-b", "id-b"), ("app-42", None), ("nobody", None)],
)
def test_anonymous_is_found_by_consumer_id_or_username(ref: str, expected: str | None) -> None:
    found = STORE.anonymous(ref)
    assert (found.id if found else None) == expected


def test_a_consumer_label_prefers_username_then_custom_id_then_id() -> None:
    assert ConsumerRecord("i", "u", "c").label == "u"
    assert ConsumerRecord("i", None, "c").label == "c"
    assert ConsumerRecord("i", None, None).label == "i"


def test_resolutions_are_remembered_per_host_path_and_method(monkeypatch) -> None:
    policy = compile_data(PRECEDENCE)
    calls: list[str] = []
    match = policy.router.match

    def counting(host: str, path: str, *args: Any) -> Any:
        calls.append(path)
        return match(host, path, *args)

    monkeypatch.setattr(policy.router, "match", counting)
    first = policy.resolve("h", "/route?access_token=a", "GET")
    assert policy.resolve("h", "/route?other=b", "GET") is first  # the query is not routed on
    assert plugin_url(policy, "/route", method="POST") == "http://route/"
    assert plugin_url(policy, "/top") == "http://top/"
    assert calls == ["/route?access_token=a", "/route", "/top"]


def test_the_resolution_memo_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr("oauth2_introspection.policy.RESOLUTION_MEMO_SIZE", 3)
    policy = compile_data(PRECEDENCE)
    for i in range(10):
        assert plugin_url(policy, f"/route/{i}") == "http://route/"
        assert len(policy._resolved or {}) <= 3


def test_routes_matching_headers_are_resolved_every_time() -> None:
    policy = compile_data({"services": [{
        "name": "svc", "url": "http://up.test",
        "routes": [{"name": "v2", "paths": ["/"], "headers": {"x-version": ["2"]},
                    "plugins": [plugin("http://v2/")]},
                   {"name": "any", "paths": ["/"], "plugins": [plugin("http://any/")]}]}]})
    v2 = policy.resolve("h", "/x", "GET", {"x-version": "2"})
    other = policy.resolve("h", "/x", "GET", {"x-version": "1"})
    assert v2.plugin is not None and v2.plugin.config.introspection_url == "http://v2/"
    assert other.plugin is not None and other.plugin.config.introspection_url == "http://any/"


def test_a_plugin_on_a_service_without_routes_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Kong's Kubernetes "enable on a service" example alone: no Ingress, no route
    with caplog.at_level(logging.WARNING, logger="oauth2_introspection.policy"):
        compile_data({"services": [{"name": "lonely", "url": "http://u:1",
                                    "plugins": [plugin("http://i/")]},
                                   {"name": "routed", "url": "http://u:2",
                                    "routes": [{"name": "r", "paths": ["/r"]}],
                                    "plugins": [plugin("http://i/")]}]})
    assert "service 'lonely'" in caplog.text
    assert "applies to no request" in caplog.text
    assert "'routed'" not in caplog.text


async def test_clients_no_configuration_uses_are_closed_after_the_calls_could_end() -> None:
    import asyncio

    from oauth2_introspection.introspection import ClientPool
    from oauth2_introspection.loader import load_text
    from oauth2_introspection.state import PolicyState

    def config(url: str, keepalive: int) -> str:
        return ('_format_version: "3.0"\nplugins:\n- name: oauth2-introspection\n  config:\n'
                f"    introspection_url: {url}\n    authorization_value: b\n"
                f"    timeout: 100\n    keepalive: {keepalive}\n")

    pool = ClientPool()
    state = PolicyState(pool)
    state.apply(load_text(config("http://a.test/i", 1000), "a.yaml"), "a.yaml")
    old = pool.get(state.policy.plugins[0].client_key)
    state.apply(load_text(config("http://a.test/i", 2000), "b.yaml"), "b.yaml")
    assert len(pool._clients) == 2  # the old one still serves calls under way
    await asyncio.sleep(1.3)  # the previous policy's longest timeout, plus a second
    assert list(pool._clients) == [state.policy.plugins[0].client_key]
    assert old.is_closed
    await pool.aclose()


@pytest.mark.parametrize(("routes", "global_plugin", "warned"), [
    ("[{name: r, paths: [/api]}]", False, "match none of its routes"),
    ("[{name: r, paths: [/]}]", False, None),  # a catch-all route: nothing unmatched
    ("[{name: r, paths: [/api]}]", True, None),  # a global plugin covers the rest
])
def test_unmatched_traffic_forwarded_unchecked_is_warned_about(
    caplog, routes: str, global_plugin: bool, warned: str | None,
) -> None:
    import logging

    from oauth2_introspection.loader import load_text

    plugin = ("  - name: oauth2-introspection\n    config: {introspection_url: 'http://i/x', "
              "authorization_value: b}\n")
    text = ('_format_version: "3.0"\nservices:\n- name: s\n  url: http://u\n'
            f"  routes: {routes}\n  plugins:\n" + plugin.replace("  - ", "  - ", 1)
            + ("plugins:\n" + plugin if global_plugin else ""))
    with caplog.at_level(logging.WARNING):
        compile_policy(load_text(text, "kong.yaml"), lambda url, keepalive: (url, keepalive))
    if warned:
        assert warned in caplog.text
    else:
        assert "without authentication" not in caplog.text

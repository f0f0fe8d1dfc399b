"""Kong routing with its own mitmdump: host (the client's Host, exact and
wildcard) and path matching, plugin precedence, service urls with strip_path,
unmatched requests, and the Host the upstream receives.

Every plugin sends a distinct `X-Plugin` custom introspection header, so the
IdP's record of each call tells which plugin handled a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from oauth2_introspection.devtools.echo import EchoServer

from .harness import Mitmdump, echoed, plugin, raw_request


def tagged(idp_url: str, tag: str, **config: Any) -> dict[str, Any]:
    return plugin(idp_url, custom_introspection_headers={"X-Plugin": tag}, **config)


def routing_config(idp_url: str, other_port: int) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "guarded",
                "plugins": [tagged(idp_url, "service")],
                "routes": [
                    {"name": "with-route-plugin", "paths": ["/prec/route"],
                     "plugins": [tagged(idp_url, "route")]},
                    {"name": "service-only", "paths": ["/prec/service"], "strip_path": False},
                    {"name": "disabled-route-plugin", "paths": ["/prec/disabled"],
                     "plugins": [{**tagged(idp_url, "disabled"), "enabled": False}]},
                ],
            },
            {
                "name": "bare",
                "routes": [
                    {"name": "global-only", "paths": ["/prec/global"], "strip_path": False},
                    {"name": "exact-host", "hosts": ["api.example.test"],
                     "plugins": [tagged(idp_url, "exact-host")]},
                    {"name": "wild-host", "hosts": ["*.wild.test"],
                     "plugins": [tagged(idp_url, "wild-host")]},
                    {"name": "kept-host", "hosts": ["keep.example.test"], "preserve_host": True,
                     "plugins": [tagged(idp_url, "kept-host")]},
                    {"name": "short-prefix", "paths": ["/pre"], "strip_path": False,
                     "plugins": [tagged(idp_url, "short-prefix")]},
                    {"name": "long-prefix", "paths": ["/pre/longer"], "strip_path": False,
                     "plugins": [tagged(idp_url, "long-prefix")]},
                    {"name": "host-and-path", "hosts": ["api.example.test"],
                     "paths": ["/special"], "strip_path": False,
                     "plugins": [tagged(idp_url, "host-and-path")]},
                ],
            },
            {
                "name": "elsewhere",
                "url": f"http://127.0.0.1:{other_port}/base",
                "routes": [
                    {"name": "strip", "paths": ["/svc"]},
                    {"name": "nostrip", "paths": ["/keep"], "strip_path": False},
                ],
            },
        ],
        "plugins": [
            tagged(idp_url, "global"),
            {**tagged(idp_url, "top-level-service"), "service": "elsewhere"},
        ],
    }


@pytest.fixture(scope="module")
def other_echo() -> Iterator[EchoServer]:
    server = EchoServer().start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def routed(echo, idp, other_echo) -> Iterator[Mitmdump]:
    m = Mitmdump(routing_config(idp.url, other_echo.port), echo.port).start()
    yield m
    m.stop()


@pytest.fixture
def rclient(routed) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=routed.url, trust_env=False, timeout=15) as c:
        yield c


def which_plugin(idp, token: str) -> str:
    [call] = idp.calls_for(token)
    return {k.lower(): v for k, v in call["headers"].items()}["x-plugin"]


def call(rclient, make_token, path: str, host: str | None = None):
    token = make_token(username="alice")
    headers = {"Authorization": f"Bearer {token}"}
    if host:
        headers["Host"] = host
    return echoed(rclient.get(path, headers=headers)), token


# -- precedence --------------------------------------------------------------------


def test_route_plugin_wins_over_service_and_global_plugins(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/prec/route/x")
    assert which_plugin(idp, token) == "route"


def test_service_plugin_wins_over_global_plugin(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/prec/service/x")
    assert which_plugin(idp, token) == "service"


def test_disabled_route_plugin_falls_back_to_service_plugin(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/prec/disabled/x")
    assert which_plugin(idp, token) == "service"


def test_route_without_route_or_service_plugin_gets_the_global_plugin(
    rclient, idp, make_token
):
    _, token = call(rclient, make_token, "/prec/global/x")
    assert which_plugin(idp, token) == "global"
    assert rclient.get("/prec/global/x").status_code == 401


def test_top_level_plugin_scoped_to_a_service_applies_to_its_routes(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/svc/x")
    assert which_plugin(idp, token) == "top-level-service"


# -- host and path matching ----------------------------------------------------------


def test_route_is_chosen_by_the_clients_exact_host(rclient, idp, make_token):
    data, token = call(rclient, make_token, "/any/path", host="api.example.test")
    assert which_plugin(idp, token) == "exact-host"
    assert data["path"] == "/any/path"


def test_exact_host_matches_with_a_port(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/any", host="api.example.test:8080")
    assert which_plugin(idp, token) == "exact-host"


def test_route_is_chosen_by_wildcard_host(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/any", host="tenant1.wild.test")
    assert which_plugin(idp, token) == "wild-host"


def test_wildcard_host_does_not_match_the_bare_domain(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/any", host="wild.test")
    assert which_plugin(idp, token) == "global"


def test_other_host_gets_no_host_route(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/any", host="unrelated.test")
    assert which_plugin(idp, token) == "global"


def test_route_with_host_and_path_wins_over_host_only_route(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/special/x", host="api.example.test")
    assert which_plugin(idp, token) == "host-and-path"


def test_longest_matching_path_prefix_wins(rclient, idp, make_token):
    _, long_token = call(rclient, make_token, "/pre/longer/x")
    _, short_token = call(rclient, make_token, "/pre/other")
    assert which_plugin(idp, long_token) == "long-prefix"
    assert which_plugin(idp, short_token) == "short-prefix"


def test_path_is_matched_after_normalisation(rclient, idp, make_token):
    _, token = call(rclient, make_token, "/pre/x/../longer/%79")
    assert which_plugin(idp, token) == "long-prefix"


# -- where requests go --------------------------------------------------------------


def test_unmatched_request_gets_only_the_global_plugin_and_goes_to_reverse_target(
    rclient, idp, make_token, echo, other_echo
):
    before = other_echo.request_count
    data, token = call(rclient, make_token, "/nowhere/x?y=1")
    assert which_plugin(idp, token) == "global"
    assert data["path"] == "/nowhere/x?y=1"
    assert data["h"]["host"] == f"127.0.0.1:{echo.port}"
    assert other_echo.request_count == before
    assert rclient.get("/nowhere/x").status_code == 401


def test_service_url_with_strip_path_rewrites_the_path(rclient, make_token, other_echo):
    data, _ = call(rclient, make_token, "/svc/items/7?q=a%20b&r=1")
    assert data["path"] == "/base/items/7?q=a%20b&r=1"
    assert data["h"]["host"] == f"127.0.0.1:{other_echo.port}"


def test_service_url_without_strip_path_appends_the_whole_path(rclient, make_token):
    data, _ = call(rclient, make_token, "/keep/items?q=1")
    assert data["path"] == "/base/keep/items?q=1"


def test_strip_path_on_a_service_without_url_strips_the_route_prefix(
    rclient, make_token, echo
):
    data, _ = call(rclient, make_token, "/prec/route/deep/x?z=9")
    assert data["path"] == "/deep/x?z=9"
    assert data["h"]["host"] == f"127.0.0.1:{echo.port}"


def test_upstream_receives_the_target_host_not_the_clients(rclient, make_token, echo):
    data, _ = call(rclient, make_token, "/any", host="api.example.test")
    assert data["h"]["host"] == f"127.0.0.1:{echo.port}"
    assert [k.lower() for k, _ in data["headers"]].count("host") == 1


def test_preserve_host_route_sends_the_clients_host(rclient, idp, make_token):
    data, token = call(rclient, make_token, "/any", host="keep.example.test")
    assert which_plugin(idp, token) == "kept-host"
    assert data["h"]["host"] == "keep.example.test"


def test_unmatched_request_without_global_plugin_goes_to_reverse_target_unauthenticated(
    client, idp, echo
):
    # the session proxy has no global plugin and no route for this path
    calls = len(idp.calls)
    data = echoed(client.get("/unrouted/x?access_token=tok-not-checked&b=1",
                             headers={"Host": "whatever.test"}))
    assert data["path"] == "/unrouted/x?access_token=tok-not-checked&b=1"
    assert data["h"]["host"] == f"127.0.0.1:{echo.port}"
    assert len(idp.calls) == calls


def test_methods_and_header_regexes_route_as_in_kong(echo: EchoServer, idp):
    # a GET-only open route beside a guarded catch-all: `get` is not `GET`
    # (Kong compares methods exactly), so it is guarded; `~*` header values
    # are case-insensitive regexes (Kong 3), not literal strings
    cfg = {"_format_version": "3.0", "services": [{"name": "s", "routes": [
        {"name": "read-only", "methods": ["GET"], "paths": ["/m"], "strip_path": False},
        {"name": "v2", "headers": {"x-api-version": ["~*^v2"]}, "paths": ["/h"],
         "strip_path": False, "plugins": [plugin(idp.url)]},
        {"name": "guarded", "paths": ["/"], "strip_path": False, "plugins": [plugin(idp.url)]},
        {"name": "open-h", "paths": ["/h"], "strip_path": False},
    ]}]}
    m = Mitmdump(cfg, echo.port).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            assert c.get("/m/x").status_code == 200
            # httpx upper-cases methods: sent raw
            status, _ = raw_request(m.port, b"get /m/x HTTP/1.1\r\nHost: x\r\n"
                                    b"Connection: close\r\n\r\n")
            assert status == 401
            assert c.get("/h/x", headers={"X-Api-Version": "V2.1"}).status_code == 401
            assert c.get("/h/x", headers={"X-Api-Version": "v1"}).status_code == 200
    finally:
        m.stop()

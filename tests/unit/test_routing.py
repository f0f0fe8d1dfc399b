"""Kong-style route matching and upstream path rewriting."""

from __future__ import annotations

from typing import Any

import pytest

from oauth2_introspection.routing import (
    RouteMatch,
    Router,
    RouteSpec,
    normalize_path,
    upstream_path,
)


def spec(name: str, **kwargs: Any) -> RouteSpec[str]:
    return RouteSpec(target=name, **kwargs)


def winner(
    routes: list[RouteSpec[str]],
    host: str = "example.com",
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> str | None:
    match = Router(routes).match(host, path, method, headers)
    return match.target if match else None


# -- priority --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "request_", "expected"),
    [
        pytest.param(
            [spec("path-only", paths=["/"]),
             spec("host-and-path", hosts=["example.com"], paths=["/"])],
            {"host": "example.com", "path": "/x"}, "host-and-path",
            id="more matcher kinds wins over declaration order",
        ),
        pytest.param(
            [spec("path-only", paths=["/api/v1/users"]),
             spec("method-and-path", methods=["GET"], paths=["/"])],
            {"path": "/api/v1/users"}, "method-and-path",
            id="more matcher kinds wins over a longer path",
        ),
        pytest.param(
            [spec("wildcard", hosts=["*.example.com"], paths=["/"]),
             spec("plain", hosts=["api.example.com"], paths=["/"])],
            {"host": "api.example.com"}, "plain",
            id="plain host beats wildcard host",
        ),
        pytest.param(
            [spec("wildcard", hosts=["*.example.com"], paths=["/"]),
             spec("plain", hosts=["api.example.com"], paths=["/"])],
            {"host": "www.example.com"}, "wildcard",
            id="wildcard host still matches other hosts",
        ),
        pytest.param(
            [spec("short", paths=["/api"]), spec("long", paths=["/api/private"])],
            {"path": "/api/private/x"}, "long",
            id="longer prefix wins",
        ),
        pytest.param(
            [spec("short", paths=["/api"]), spec("long", paths=["/api/private"])],
            {"path": "/api/public"}, "short",
            id="shorter prefix matches what the longer does not",
        ),
        pytest.param(
            [spec("prefix", paths=["/users/admin"]), spec("regex", paths=[r"~/users/\w+$"])],
            {"path": "/users/admin"}, "regex",
            id="regex path is tried before a prefix path",
        ),
        pytest.param(
            [spec("low", paths=[r"~/items/\d+"], regex_priority=1),
             spec("high", paths=[r"~/items/.*"], regex_priority=5)],
            {"path": "/items/42"}, "high",
            id="higher regex_priority wins",
        ),
        pytest.param(
            [spec("first", paths=[r"~/items/\d+"]), spec("second", paths=[r"~/items/.*"])],
            {"path": "/items/42"}, "first",
            id="equal regex_priority keeps declaration order",
        ),
        pytest.param(
            [spec("first", paths=["/same"]), spec("second", paths=["/same"])],
            {"path": "/same"}, "first",
            id="full tie keeps declaration order",
        ),
        pytest.param(
            [spec("no-headers", hosts=["example.com"], paths=["/"]),
             spec("headers", headers={"x-version": ["v2"]}, paths=["/"])],
            {"path": "/", "headers": {"x-version": "v2"}}, "no-headers",
            id="plain host bit outranks the header count at equal kinds",
        ),
        pytest.param(
            [spec("one-header", headers={"x-a": ["1"]}, paths=["/"]),
             spec("two-headers", headers={"x-a": ["1"], "x-b": ["2"]}, paths=["/"])],
            {"path": "/", "headers": {"x-a": "1", "x-b": "2"}}, "two-headers",
            id="more headers wins",
        ),
    ],
)
def test_kong_route_priority(
    routes: list[RouteSpec[str]], request_: dict[str, Any], expected: str
) -> None:
    assert winner(routes, **request_) == expected


def test_a_route_with_several_paths_matches_each() -> None:
    routes = [spec("multi", paths=["/a", "/b"])]
    assert winner(routes, path="/a/x") == "multi"
    assert winner(routes, path="/b") == "multi"
    assert winner(routes, path="/c") is None


def test_no_route_matches_gives_none() -> None:
    assert winner([spec("api", paths=["/api"])], path="/other") is None


def test_prefix_is_a_plain_string_prefix_as_in_kong() -> None:
    assert winner([spec("api", paths=["/api"])], path="/apiv2") == "api"


def test_the_query_string_is_not_part_of_the_matched_path() -> None:
    assert winner([spec("a", paths=[r"~/a$"])], path="/a?x=/b") == "a"


# -- hosts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route_host", "request_host", "matches"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com", True),
        ("Example.COM", "example.com", True),
        ("example.com", "example.com:8080", True),
        ("example.com", "other.com", False),
        ("example.com", "sub.example.com", False),
        ("example.com:8080", "example.com:8080", True),
        ("example.com:8080", "example.com:9090", False),
        ("example.com:8080", "example.com", False),
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "api.example.com:8443", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "api.example.org", False),
        ("*.example.com", "evilexample.com", False),
        ("*.example.com:8443", "api.example.com:8443", True),
        ("*.example.com:8443", "api.example.com:80", False),
        ("example.*", "example.com", True),
        ("example.*", "example.org:8080", True),
        ("example.*", "example.", False),
        ("example.*", "www.example.com", False),
        ("example.*", "examples.com", False),
        ("[::1]", "[::1]:8080", True),
    ],
)
def test_host_matching(route_host: str, request_host: str, matches: bool) -> None:
    assert (winner([spec("r", hosts=[route_host])], host=request_host) == "r") is matches


# -- methods and headers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("methods", "method", "matches"),
    [
        (["GET"], "GET", True),
        # as Kong: methods compare exactly (a `get` is not a GET route's)
        (["GET"], "get", False),
        (["GET"], "Get", False),
        (["GET", "POST"], "POST", True),
        (["GET"], "POST", False),
        (["POST"], "OPTIONS", False),
    ],
)
def test_method_matching(methods: list[str], method: str, matches: bool) -> None:
    routes = [spec("r", methods=methods, paths=["/"])]
    assert (winner(routes, method=method) == "r") is matches


@pytest.mark.parametrize(
    ("route_headers", "request_headers", "matches"),
    [
        ({"x-version": ["v1"]}, {"x-version": "v1"}, True),
        ({"X-Version": ["V1"]}, {"x-version": "v1"}, True),
        ({"x-version": ["v1", "v2"]}, {"x-version": "v2"}, True),
        ({"x-version": ["v1"]}, {"x-version": "v3"}, False),
        ({"x-version": ["v1"]}, {}, False),
        ({"x-version": ["v1"]}, None, False),
        ({"x-a": ["1"], "x-b": ["2"]}, {"x-a": "1"}, False),
        # a value is compared whole, as Kong does: `v1, v2` is not `v2`
        ({"x-version": ["v2"]}, {"x-version": "v1, v2"}, False),
        ({"x-version": ["a,b"]}, {"x-version": "a,b"}, True),
        # `~*`: a case-insensitive regular expression, searched (Kong 3)
        ({"x-version": ["~*^v2"]}, {"x-version": "V2.1"}, True),
        ({"x-version": ["~*^v2"]}, {"x-version": "v1"}, False),
        ({"x-version": ["v1", "~*beta"]}, {"x-version": "2-BETA"}, True),
    ],
)
def test_header_matching(
    route_headers: dict[str, list[str]], request_headers: dict[str, str] | None, matches: bool
) -> None:
    routes = [spec("r", headers=route_headers)]
    assert (winner(routes, headers=request_headers) == "r") is matches


def test_a_repeated_header_matches_when_any_of_its_lines_does() -> None:
    from mitmproxy.http import Headers

    routes = [spec("r", headers={"x-version": ["v2"]})]
    repeated = Headers([(b"X-Version", b"v1"), (b"X-Version", b"v2")])
    assert winner(routes, headers=repeated) == "r"
    assert winner(routes, headers=Headers([(b"X-Version", b"v1")])) is None


def test_a_route_needs_every_matcher_kind_to_match() -> None:
    routes = [spec("r", hosts=["example.com"], paths=["/api"], methods=["GET"])]
    assert winner(routes, host="example.com", path="/api", method="GET") == "r"
    assert winner(routes, host="other.com", path="/api", method="GET") is None
    assert winner(routes, host="example.com", path="/web", method="GET") is None
    assert winner(routes, host="example.com", path="/api", method="PUT") is None


# -- path normalisation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("/private", "/private"),
        ("/a/../private", "/private"),
        ("/a/b/../../private", "/private"),
        ("/../private", "/private"),
        ("/%70rivate", "/private"),
        ("/a/%2e%2e/private", "/private"),
        ("//private", "/private"),
        ("/private//x", "/private/x"),
        ("/./private", "/private"),
        ("/a/b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("", "/"),
        ("/", "/"),
        # Only unreserved characters are decoded: an escaped slash stays one segment.
        ("/a%2fb", "/a%2Fb"),
        ("/caf%c3%a9", "/caf%C3%A9"),
    ],
)
def test_normalize_path(raw: str, normalised: str) -> None:
    assert normalize_path(raw) == normalised


@pytest.mark.parametrize("path", ["/a/../private/x", "/%70rivate/x", "//private/x",
                                  "/./private/x", "/public/../private"])
def test_path_tricks_do_not_slip_past_a_path_scoped_route(path: str) -> None:
    routes = [spec("open", paths=["/"]), spec("private", paths=["/private"])]
    assert winner(routes, path=path) == "private"


def test_path_tricks_match_regex_routes_on_the_normalised_path() -> None:
    routes = [spec("open", paths=["/"]), spec("private", paths=[r"~/private$"])]
    assert winner(routes, path="/x/../%70rivate") == "private"


def test_the_match_records_the_matched_prefix_and_normalised_path() -> None:
    match = Router([spec("r", paths=["/api"])]).match("h", "/x/../api/v1?q=1", "GET")
    assert match is not None
    assert match.matched_prefix == "/api"
    assert match.path == "/api/v1"


def test_a_regex_match_records_the_matched_part() -> None:
    match = Router([spec("r", paths=[r"~/items/\d+"])]).match("h", "/items/42/detail", "GET")
    assert match is not None
    assert match.matched_prefix == "/items/42"


def test_router_length_counts_route_path_pairs() -> None:
    assert len(Router([spec("a", paths=["/a", "/b"]), spec("c", hosts=["h"])])) == 3


# -- upstream path ---------------------------------------------------------------


def routed(route_path: str, request_path: str) -> RouteMatch[object]:
    match = Router([RouteSpec(target=object(), paths=[route_path])]).match(
        "h", request_path, "GET"
    )
    assert match is not None
    return match


@pytest.mark.parametrize(
    ("service_path", "route_path", "strip_path", "raw", "expected"),
    [
        # Kong's documented path_handling v0 table (service.path /s).
        ("/s", "/fv0", False, "/fv0req", "/s/fv0req"),
        ("/s", "/tv0", True, "/tv0req", "/s/req"),
        ("/s", "/fv0/", False, "/fv0/req", "/s/fv0/req"),
        ("/s", "/tv0/", True, "/tv0/req", "/s/req"),
        ("/s", "/tv0", True, "/tv0", "/s"),
        ("/s", "/tv0", True, "/tv0/", "/s/"),
        ("/s", "/tv0/", True, "/tv0/", "/s/"),
        ("/s/", "/tv0", True, "/tv0/req", "/s/req"),
        ("/s/", "/tv0", True, "/tv0req", "/s/req"),
        ("/s/", "/tv0", True, "/tv0", "/s"),
        ("/s/", "/tv0", True, "/tv0/", "/s/"),
        ("/s/", "/fv0", False, "/fv0/req", "/s/fv0/req"),
        # No service path.
        ("", "/api", True, "/api/users", "/users"),
        ("", "/api", True, "/api", "/"),
        ("", "/api", False, "/api/users", "/api/users"),
        ("", "/", True, "/users", "/users"),
        # Regex routes strip the whole matched part.
        ("", r"~/items/\d+", True, "/items/42/detail", "/detail"),
        ("/s", r"~/items/\d+", True, "/items/42/detail", "/s/detail"),
    ],
)
def test_upstream_path_follows_kong_path_handling_v0(
    service_path: str, route_path: str, strip_path: bool, raw: str, expected: str
) -> None:
    match = routed(route_path, raw)
    assert upstream_path(service_path, match, raw, strip_path=strip_path) == expected


@pytest.mark.parametrize(
    ("service_path", "route_path", "strip_path", "raw", "expected"),
    [
        # Kong's documented path_handling v1 table (service.path /s).
        ("/s", "/fv1", False, "/fv1req", "/sfv1req"),
        ("/s", "/tv1", True, "/tv1req", "/sreq"),
        ("/s", "/fv1/", False, "/fv1/req", "/sfv1/req"),
        ("/s", "/tv1/", True, "/tv1/req", "/sreq"),
        ("/s/", "/tv1", True, "/tv1/req", "/s/req"),
    ],
)
def test_upstream_path_follows_kong_path_handling_v1(
    service_path: str, route_path: str, strip_path: bool, raw: str, expected: str
) -> None:
    match = routed(route_path, raw)
    assert (
        upstream_path(service_path, match, raw, strip_path=strip_path, path_handling="v1")
        == expected
    )


@pytest.mark.parametrize(
    ("service_path", "strip_path", "raw", "expected"),
    [
        ("", False, "/api/x?b=2&a=1&b=3", "/api/x?b=2&a=1&b=3"),
        ("", True, "/api/x?b=2&a=1", "/x?b=2&a=1"),
        ("/s", True, "/api/x?q=%2F", "/s/x?q=%2F"),
        ("/s", False, "/api?", "/s/api?"),
    ],
)
def test_upstream_path_keeps_the_query_string(
    service_path: str, strip_path: bool, raw: str, expected: str
) -> None:
    match = routed("/api", raw)
    assert upstream_path(service_path, match, raw, strip_path=strip_path) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("/x/y?q=1", "/s/x/y?q=1"), ("/", "/s"), ("/x/", "/s/x/")]
)
def test_upstream_path_of_a_host_only_route_appends_the_request_path(
    raw: str, expected: str
) -> None:
    match = Router([RouteSpec(target=object(), hosts=["h"])]).match("h", raw, "GET")
    assert match is not None
    assert upstream_path("/s", match, raw, strip_path=True) == expected


def test_upstream_path_without_a_route_is_the_raw_path() -> None:
    assert upstream_path("/s", None, "/x/../y?q", strip_path=True) == "/x/../y?q"


def test_upstream_path_without_service_path_or_stripping_is_sent_unchanged() -> None:
    raw = "/api/%7Euser/a b?q=1"
    assert upstream_path("", routed("/api", raw), raw, strip_path=False) == raw


def test_upstream_path_re_encodes_the_decoded_remainder() -> None:
    raw = "/api/a%20b/%7Euser"
    assert upstream_path("/s", routed("/api", raw), raw, strip_path=True) == "/s/a%20b/~user"


def test_kongs_named_groups_are_read_as_pythons() -> None:
    routes = [spec("files", paths=["~/files/(?<id>[0-9]+)$"]),
              spec("behind", paths=["~/x(?<=x)y"])]
    assert winner(routes, path="/files/42") == "files"
    assert winner(routes, path="/files/4x") is None
    assert winner(routes, path="/xy") == "behind"  # a lookbehind stays one

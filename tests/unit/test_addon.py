"""The mitmproxy addon through mitmproxy.test.taddons/tflow: options, the
request hook, reverse-mode Host handling, fail-closed behaviour and the
annotations written onto each flow."""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from oauth2_introspection import addon as addon_module
from oauth2_introspection.addon import METADATA_KEY, OAuth2Introspection, safe_url

from .hooking import hooked

IDP = "http://idp.test/introspect"
TOKEN = "raw-token-abcdef-0123456789"
TARGET = "reverse:http://127.0.0.1:9000"


def plugin(**config: Any) -> dict[str, Any]:
    return {"name": "oauth2-introspection",
            "config": {"introspection_url": IDP, "authorization_value": "Basic eDp5",
                       **config}}


CONFIG: dict[str, Any] = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "target",
            "routes": [
                {"name": "basic", "paths": ["/basic"], "strip_path": False},
                {"name": "hide", "paths": ["/hide"], "strip_path": False,
                 "plugins": [plugin(hide_credentials=True)]},
                {"name": "anon", "paths": ["/anon"], "strip_path": False,
                 "plugins": [plugin(anonymous="guest")]},
                {"name": "hosted", "hosts": ["api.example.test"], "paths": ["/"],
                 "strip_path": False, "plugins": [plugin()]},
                {"name": "kept-host", "hosts": ["keep.example.test"],
                 "preserve_host": True, "plugins": [plugin()]},
                {"name": "open", "paths": ["/open"], "strip_path": False},
            ],
            "plugins": [plugin()],
        },
        {
            "name": "elsewhere",
            "url": "http://echo.internal:8080/base",
            "routes": [{"name": "strip", "paths": ["/svc"]}],
            "plugins": [plugin()],
        },
    ],
    "consumers": [{"username": "alice", "custom_id": "alice-1"}, {"username": "guest"}],
}


class Idp:
    """MockTransport introspection endpoint: `answers` maps token -> JSON."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {
            TOKEN: {"active": True, "username": "alice", "scope": "read"},
        }
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        token = dict(httpx.QueryParams(request.content.decode()))["token"]
        return httpx.Response(200, json=self.answers.get(token, {"active": False}))


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "kong.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def context(addon: OAuth2Introspection) -> taddons.context:
    """A test context with mitmproxy's proxy options (keep_host_header, ...)."""
    return taddons.context(Proxyserver(), addon)


def mock_clients(addon: OAuth2Introspection, idp: Callable[[httpx.Request], httpx.Response]):
    assert addon.policy is not None
    for p in addon.policy.plugins:
        addon.clients._clients[p.client_key] = httpx.AsyncClient(
            transport=httpx.MockTransport(idp)
        )


@pytest.fixture(autouse=True)
def user_keep_host_header_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module remembers the user's keep_host_header across script reloads.
    monkeypatch.setattr(addon_module, "_user_keep_host_header", None)


@pytest.fixture
def idp() -> Idp:
    return Idp()


@pytest.fixture
async def loaded(tmp_path: Path, idp: Idp) -> Iterator[OAuth2Introspection]:
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        mock_clients(addon, idp)
        yield addon
    await addon.done()


def reverse_flow(
    path: str,
    *,
    host: str = "127.0.0.1:8080",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes = b"",
) -> http.HTTPFlow:
    """A flow as mitmproxy's reverse mode hands it over with keep_host_header
    on: addressed to the target, carrying the client's own Host."""
    request = http.Request.make(method, f"http://127.0.0.1:9000{path}", content, headers or {})
    request.headers["Host"] = host
    flow = tflow.tflow(req=request)
    flow.client_conn.proxy_mode = ProxyMode.parse(TARGET)
    return flow


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- options ---------------------------------------------------------------------


async def test_the_addon_registers_the_introspection_config_option() -> None:
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        assert tctx.options.introspection_config == ""
        assert "introspection_config" in tctx.options


async def test_loading_the_addon_turns_keep_host_header_on() -> None:
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        assert tctx.options.keep_host_header is True


async def test_a_valid_file_loads_a_policy(tmp_path: Path) -> None:
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        assert addon.policy is not None
        assert len(addon.policy.consumers) == 2


async def test_a_json_file_loads_a_policy(tmp_path: Path) -> None:
    path = tmp_path / "kong.json"
    path.write_text(json.dumps(CONFIG))
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(path))
        assert addon.policy is not None


async def test_an_invalid_file_is_an_options_error_naming_file_entity_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        _format_version: "3.0"
        services:
          - name: echo
            plugins:
              - name: oauth2-introspection
                config:
                  introspection_url: http://idp/i
                  authorization_value: Basic c2VjcmV0
                  ttl: "30"
        """))
    addon = OAuth2Introspection()
    with context(addon) as tctx, pytest.raises(exceptions.OptionsError) as e:
        tctx.configure(addon, introspection_config=str(path))
    message = str(e.value)
    assert f"{path}:9" in message
    assert "service 'echo'" in message
    assert "services[0].plugins[0].config.ttl" in message
    assert "c2VjcmV0" not in message
    assert "\n" not in message
    assert addon.policy is None


async def test_a_missing_file_is_an_options_error(tmp_path: Path) -> None:
    addon = OAuth2Introspection()
    with context(addon) as tctx, pytest.raises(exceptions.OptionsError) as e:
        tctx.configure(addon, introspection_config=str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in str(e.value)


async def test_an_invalid_reload_keeps_the_previous_policy(tmp_path: Path) -> None:
    addon = OAuth2Introspection()
    bad = tmp_path / "bad.yaml"
    bad.write_text('_format_version: "3.0"\nservices: [{name: a, colour: red}]\n')
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(addon, introspection_config=str(bad))
        # mitmproxy rolls the option back, which re-applies the previous file.
        assert tctx.options.introspection_config.endswith("kong.yaml")
        assert addon.policy is not None
        assert addon.policy.resolve("h", "/basic", "GET").route is not None


async def test_clearing_the_option_drops_the_policy(tmp_path: Path) -> None:
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        tctx.configure(addon, introspection_config="")
        assert addon.policy is None


async def test_running_without_a_config_warns_that_everything_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    addon = OAuth2Introspection()
    with context(addon), caplog.at_level(logging.WARNING):
        addon.running()
    assert "503" in caplog.text


# -- the request hook: no policy, failures ---------------------------------------


async def test_without_a_policy_every_request_is_refused_with_503() -> None:
    addon = OAuth2Introspection()
    with context(addon):
        flow = reverse_flow("/basic", headers=bearer())
        await hooked(addon.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 503
    assert flow.comment == "oauth2-introspection: 503 no policy loaded"


async def test_an_exception_inside_the_hook_answers_500_and_does_not_forward(
    loaded: OAuth2Introspection, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, idp: Idp,
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(addon_module, "decide", broken)
    flow = reverse_flow("/basic?access_token=" + TOKEN)
    with caplog.at_level(logging.ERROR):
        await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 500
    assert json.loads(flow.response.content or b"") == {
        "error": "server_error", "message": "An unexpected error occurred"
    }
    assert b"boom" not in (flow.response.content or b"")
    assert "500 internal error" in flow.comment
    assert "RuntimeError: boom" in caplog.text
    assert TOKEN not in caplog.text
    assert idp.calls == []


async def test_an_exception_while_forwarding_also_answers_500(
    loaded: OAuth2Introspection, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any, **__: Any) -> str:
        raise ValueError("bad path")

    monkeypatch.setattr(addon_module, "upstream_path", broken)
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 500


@pytest.mark.parametrize(
    "flow_factory",
    [
        lambda: tflow.tflow(resp=True),
        lambda: tflow.tflow(err=True),
        lambda: tflow.tflow(live=False),
    ],
)
async def test_finished_errored_or_replayed_flows_are_left_alone(
    loaded: OAuth2Introspection, flow_factory: Callable[[], http.HTTPFlow], idp: Idp
) -> None:
    flow = flow_factory()
    before = flow.response
    await hooked(loaded.request(flow))
    assert flow.response is before
    assert METADATA_KEY not in flow.metadata
    assert idp.calls == []


# -- the request hook: decisions -------------------------------------------------


async def test_a_missing_token_is_answered_401_and_not_forwarded(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/basic")
    await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 401
    assert flow.response.headers["WWW-Authenticate"] == 'Bearer realm="service"'
    meta = flow.metadata[METADATA_KEY]
    assert meta["outcome"] == "refused"
    assert meta["route"] == "basic"
    assert meta["service"] == "target"


async def test_an_inactive_token_is_answered_401_invalid_token(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/basic", headers=bearer("expired"))
    await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 401
    assert json.loads(flow.response.content or b"")["error"] == "invalid_token"


async def test_an_active_token_is_forwarded_with_identity_headers(
    loaded: OAuth2Introspection, idp: Idp
) -> None:
    flow = reverse_flow("/basic/x", headers=bearer())
    await hooked(loaded.request(flow))
    assert flow.response is None
    headers = flow.request.headers
    assert headers["X-Credential-Identifier"] == "alice"
    assert headers["X-Credential-Scope"] == "read"
    assert headers["X-Consumer-Username"] == "alice"
    assert headers["X-Consumer-Custom-ID"] == "alice-1"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert flow.request.path == "/basic/x"
    assert len(idp.calls) == 1
    meta = flow.metadata[METADATA_KEY]
    assert meta["outcome"] == "allowed"
    assert "X-Consumer-ID" in meta["added_headers"]


async def test_spoofed_identity_headers_are_removed_before_ours_are_set(
    loaded: OAuth2Introspection, idp: Idp
) -> None:
    idp.answers["nobody"] = {"active": True, "username": "mallory"}
    flow = reverse_flow("/basic", headers={
        **bearer("nobody"),
        "X-Consumer-Username": "admin",
        "X-Credential-Scope": "admin",
        "X-Credential-Groups": "root",
        "X-Anonymous-Consumer": "false",
    })
    await hooked(loaded.request(flow))
    assert flow.response is None
    headers = flow.request.headers
    assert "X-Consumer-Username" not in headers
    assert "X-Credential-Scope" not in headers
    assert "X-Credential-Groups" not in headers
    assert "X-Anonymous-Consumer" not in headers
    assert headers["X-Credential-Identifier"] == "mallory"
    assert len(flow.metadata[METADATA_KEY]["removed_headers"]) == 4


async def test_spoofed_headers_are_stripped_on_the_anonymous_path(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/anon", headers={"X-Credential-Scope": "admin"})
    await hooked(loaded.request(flow))
    assert flow.response is None
    assert flow.request.headers["X-Anonymous-Consumer"] == "true"
    assert flow.request.headers["X-Consumer-Username"] == "guest"
    assert "X-Credential-Scope" not in flow.request.headers
    assert flow.metadata[METADATA_KEY]["outcome"] == "anonymous"


async def test_hide_credentials_removes_the_token_before_forwarding(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow(f"/hide?a=1&access_token={TOKEN}&b=2")
    await hooked(loaded.request(flow))
    assert flow.response is None
    assert flow.request.path == "/hide?a=1&b=2"
    assert flow.metadata[METADATA_KEY]["hidden_credentials"] == ("query:access_token",)


async def test_hide_credentials_removes_a_json_field_keeping_the_rest(
    loaded: OAuth2Introspection,
) -> None:
    body = b'{"x": 1.50, "access_token": "' + TOKEN.encode() + b'", "y": [1,2]}'
    flow = reverse_flow("/hide", method="POST", content=body,
                        headers={"Content-Type": "application/json"})
    await hooked(loaded.request(flow))
    assert flow.response is None
    assert flow.request.content == b'{"x": 1.50, "y": [1,2]}'


async def test_a_route_without_its_own_plugin_gets_its_services_plugin(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/open")
    await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 401


async def test_a_request_with_no_plugin_anywhere_passes_with_its_headers(
    tmp_path: Path, idp: Idp
) -> None:
    config = {"_format_version": "3.0",
              "routes": [{"name": "public", "paths": ["/public"]}]}
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, config)))
        flow = reverse_flow("/public/x", headers={"X-Consumer-ID": "client-sent"})
        await hooked(addon.request(flow))
    assert flow.response is None
    assert flow.request.headers["X-Consumer-ID"] == "client-sent"
    assert flow.request.path == "/x"  # strip_path defaults to true
    assert flow.request.host_header == "127.0.0.1:9000"
    assert flow.metadata[METADATA_KEY]["outcome"] == "no plugin"
    assert flow.comment == ""
    assert idp.calls == []


async def test_a_request_matching_no_route_gets_only_the_global_plugin(
    tmp_path: Path, idp: Idp
) -> None:
    config = {"_format_version": "3.0",
              "routes": [{"name": "public", "paths": ["/public"]}],
              "plugins": [plugin()]}
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, config)))
        mock_clients(addon, idp)
        refused = reverse_flow("/private")
        await hooked(addon.request(refused))
        allowed = reverse_flow("/private?q=1", headers=bearer())
        await hooked(addon.request(allowed))
    await addon.done()
    assert refused.response is not None
    assert refused.response.status_code == 401
    assert refused.metadata[METADATA_KEY]["route"] is None
    assert "no route" in refused.comment
    assert allowed.response is None
    assert allowed.request.path == "/private?q=1"
    assert allowed.request.host_header == "127.0.0.1:9000"


# -- reverse mode, Host and upstream ---------------------------------------------


async def test_the_clients_host_is_used_for_routing_and_the_target_host_is_sent(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/anything", host="api.example.test", headers=bearer())
    await hooked(loaded.request(flow))
    assert flow.response is None
    assert flow.metadata[METADATA_KEY]["route"] == "hosted"
    assert flow.request.host_header == "127.0.0.1:9000"
    assert (flow.request.host, flow.request.port) == ("127.0.0.1", 9000)


async def test_the_clients_host_with_a_port_still_routes_by_host(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/anything", host="API.example.test:8080")
    await hooked(loaded.request(flow))
    assert flow.metadata[METADATA_KEY]["route"] == "hosted"


async def test_preserve_host_keeps_the_clients_host_upstream(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/x", host="keep.example.test", headers=bearer())
    await hooked(loaded.request(flow))
    assert flow.response is None
    assert flow.metadata[METADATA_KEY]["route"] == "kept-host"
    assert flow.request.host_header == "keep.example.test"


async def test_a_service_url_sends_the_request_there_with_its_host_and_path(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/svc/items?x=1", headers=bearer())
    await hooked(loaded.request(flow))
    assert flow.response is None
    request = flow.request
    assert (request.scheme, request.host, request.port) == ("http", "echo.internal", 8080)
    assert request.host_header == "echo.internal:8080"
    assert request.path == "/base/items?x=1"
    assert flow.metadata[METADATA_KEY]["service"] == "elsewhere"


async def test_a_refused_request_is_not_rewritten_for_upstream(
    loaded: OAuth2Introspection,
) -> None:
    flow = reverse_flow("/svc/items")
    await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.request.host == "127.0.0.1"
    assert flow.request.path == "/svc/items"


async def test_path_tricks_cannot_escape_a_protected_route(
    loaded: OAuth2Introspection,
) -> None:
    for path in ("/open/../hide", "/%68ide", "//hide"):
        flow = reverse_flow(path)
        await hooked(loaded.request(flow))
        assert flow.metadata[METADATA_KEY]["route"] == "hide", path


# -- annotations -----------------------------------------------------------------


async def test_the_decision_is_written_onto_the_flow_without_the_raw_token(
    loaded: OAuth2Introspection, caplog: pytest.LogCaptureFixture
) -> None:
    flows = [
        reverse_flow("/basic", headers=bearer()),
        reverse_flow(f"/basic?access_token={TOKEN}"),
        reverse_flow("/basic", headers=bearer(TOKEN + "-inactive")),
        reverse_flow(f"/hide?access_token={TOKEN}"),
    ]
    with caplog.at_level(logging.DEBUG, logger="oauth2_introspection"):
        for flow in flows:
            await hooked(loaded.request(flow))
    for flow in flows:
        meta = flow.metadata[METADATA_KEY]
        assert flow.comment.startswith("oauth2-introspection [route ")
        assert TOKEN not in flow.comment
        assert TOKEN not in json.dumps(meta)
        assert len(meta["token_id"]) == 12
    assert "allowed alice" in flows[0].comment
    assert "401 invalid token" in flows[2].comment
    assert caplog.text
    assert TOKEN not in caplog.text


async def test_the_comment_names_route_plugin_and_cache_state(
    loaded: OAuth2Introspection,
) -> None:
    first = reverse_flow("/basic", headers=bearer())
    second = reverse_flow("/basic", headers=bearer())
    await hooked(loaded.request(first))
    await hooked(loaded.request(second))
    assert first.comment.startswith("oauth2-introspection [route basic, service 'target']")
    assert "introspected" in first.comment
    assert "cache hit" in second.comment
    assert second.metadata[METADATA_KEY]["cache"] == "hit"


async def test_a_502_is_logged_as_a_warning_with_the_reason_on_the_flow(
    loaded: OAuth2Introspection, caplog: pytest.LogCaptureFixture
) -> None:
    assert loaded.policy is not None
    for p in loaded.policy.plugins:
        loaded.clients._clients[p.client_key] = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _: httpx.Response(500, text="idp secret"))
        )
    flow = reverse_flow("/basic", headers=bearer())
    with caplog.at_level(logging.INFO, logger="oauth2_introspection"):
        await hooked(loaded.request(flow))
    assert flow.response is not None
    assert flow.response.status_code == 502
    assert b"idp secret" not in (flow.response.content or b"")
    assert flow.metadata[METADATA_KEY]["introspection_error"] == (
        "introspection endpoint answered non-200"
    )
    assert any(r.levelno == logging.WARNING and "502" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://h/p", "http://h/p"),
        (f"http://h/p?access_token={TOKEN}", "http://h/p?access_token=***"),
        (f"http://h/p?a=1&access_token={TOKEN}&b=2", "http://h/p?a=1&b=2&access_token=***"),
    ],
)
def test_safe_url_masks_the_access_token(url: str, shown: str) -> None:
    assert safe_url(http.Request.make("GET", url)) == shown


def test_the_entry_script_names_every_other_hook_as_none() -> None:
    """mitmproxy looks every hook name up on the entry module for every event;
    a missing module attribute costs an exception each time."""
    import importlib.util

    from mitmproxy import hooks

    path = Path(__file__).resolve().parents[2] / "addon" / "introspect.py"
    spec = importlib.util.spec_from_file_location("introspect_entry_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("requestheaders", "request", "responseheaders", "response", "update",
                 "client_connected"):
        assert name in hooks.all_hooks
        assert getattr(module, name) is None
    # mitmproxy warns at load about an addon that has a deprecated hook's name
    assert "add_log" in hooks.all_hooks
    assert not hasattr(module, "add_log")
    # one addon object (bundle.py), whose request hook is the core's own method
    assert [type(a).__name__ for a in module.addons] == ["IntrospectionAddon"]
    assert module.addons[0].request.__func__.__qualname__ == "OAuth2Introspection.request"


async def test_keep_host_header_cannot_be_turned_off_while_the_addon_routes_by_host() -> None:
    # off, reverse mode would replace the client's Host before routing, and a
    # plugin scoped to a host would no longer run
    addon = OAuth2Introspection()
    with context(addon) as tctx:
        assert tctx.options.keep_host_header
        with pytest.raises(exceptions.OptionsError, match="keep_host_header stays on"):
            tctx.configure(addon, keep_host_header=False)
        assert tctx.options.keep_host_header

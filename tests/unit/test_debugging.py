"""Issue 6 through taddons: markers, report mode, introspection sub-flows, the
commands, and the policy diff's pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.addons.view import View
from mitmproxy.test import taddons

from oauth2_introspection import annotations
from oauth2_introspection.addon import METADATA_KEY, OAuth2Introspection
from oauth2_introspection.commands import IntrospectionCommands
from oauth2_introspection.diff import Verdict, compare
from oauth2_introspection.masking import mask_authorization, mask_secret_params, mask_token
from oauth2_introspection.subflows import build_flow, token_fingerprint

from .hooking import hooked
from .test_addon import (  # noqa: F401 - an autouse fixture
    CONFIG,
    TOKEN,
    Idp,
    bearer,
    mock_clients,
    reverse_flow,
    user_keep_host_header_is_off,
    write_config,
)

Web = tuple[OAuth2Introspection, View, Any]


@pytest.fixture
def idp() -> Idp:
    return Idp()


@pytest.fixture
async def web(tmp_path: Path, idp: Idp) -> AsyncIterator[Web]:
    """The addon and its commands in a context with a view, as under mitmweb."""
    addon = OAuth2Introspection()
    view = View()
    commands = IntrospectionCommands(addon)
    with taddons.context(Proxyserver(), view, addon, commands) as tctx:
        tctx.configure(addon, introspection_config=str(write_config(tmp_path, CONFIG)))
        tctx.configure(addon, introspection_subflows="true")
        mock_clients(addon, idp)
        yield addon, view, tctx
    await addon.done()


# -- options -------------------------------------------------------------------------


def test_parse_mode() -> None:
    assert annotations.parse_mode(" Report ") == "report"
    assert annotations.parse_mode("enforce") == "enforce"
    with pytest.raises(ValueError):
        annotations.parse_mode("audit")


@pytest.mark.parametrize(("option", "value"), [("introspection_mode", "audit"),
                                               ("introspection_subflows", "maybe")])
async def test_bad_option_values_are_options_errors(option: str, value: str) -> None:
    addon = OAuth2Introspection()
    with taddons.context(Proxyserver(), addon) as tctx, pytest.raises(exceptions.OptionsError):
        tctx.configure(addon, **{option: value})


# -- markers and report mode ------------------------------------------------------------


async def test_each_outcome_class_has_its_marker(web: Web, idp: Idp) -> None:
    addon, _, _ = web
    idp.answers["bad"] = {"nope": 1}
    cases = [
        (reverse_flow("/basic", headers=bearer()), ":green_circle:"),
        (reverse_flow("/basic"), ":red_circle:"),
        (reverse_flow("/basic", headers=bearer("bad")), ":orange_circle:"),
        (reverse_flow("/anon"), ":large_blue_circle:"),
    ]
    for flow, marker in cases:
        await hooked(addon.request(flow))
        assert flow.marked == marker, flow.comment
    unrouted = reverse_flow("/unrouted")  # no route, no global plugin: not decided
    await hooked(addon.request(unrouted))
    assert unrouted.marked == "" and unrouted.comment == ""


async def test_report_mode_forwards_unchanged_and_records_what_enforce_would_do(web: Web) -> None:
    addon, _, tctx = web
    tctx.configure(addon, introspection_mode="report")
    spoofed = reverse_flow("/basic", headers={"X-Consumer-ID": "forged"})
    await hooked(addon.request(spoofed))
    assert spoofed.response is None
    assert spoofed.request.headers["X-Consumer-ID"] == "forged"
    assert spoofed.marked == ":yellow_circle:"
    assert spoofed.comment.endswith("report only: would refuse 401 missing token "
                                    "(forwarded unchanged)")
    meta = spoofed.metadata[METADATA_KEY]
    assert meta["mode"] == "report" and meta["would_answer"] == 401
    assert meta["would_remove_headers"] == ["X-Consumer-ID"]

    hidden = reverse_flow("/hide", headers=bearer())
    before = hidden.request.headers.copy()
    await hooked(addon.request(hidden))
    assert hidden.response is None
    assert hidden.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert not any(k.lower().startswith("x-consumer") for k in hidden.request.headers)
    # only routing changed it: the upstream's Host, as without any plugin
    assert [f for f in hidden.request.headers.fields if f[0] != b"Host"] == [
        f for f in before.fields if f[0] != b"Host"]
    meta = hidden.metadata[METADATA_KEY]
    assert meta["would_set_headers"]["X-Consumer-Username"] == "alice"
    assert meta["would_hide_credentials"] == ["header:Authorization"]
    assert hidden.marked == ":green_circle:"
    assert "report only: would forward allowed alice" in hidden.comment

    tctx.configure(addon, introspection_mode="enforce")
    refused = reverse_flow("/basic")
    await hooked(addon.request(refused))
    assert refused.response is not None and refused.response.status_code == 401


async def test_report_mode_without_policy_forwards(tmp_path: Path) -> None:
    addon = OAuth2Introspection()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, introspection_mode="report")
        flow = reverse_flow("/basic")
        await hooked(addon.request(flow))
        assert flow.response is None and flow.marked == ":yellow_circle:"
        assert "503 no policy loaded" in flow.comment


# -- introspection sub-flows ---------------------------------------------------------------


async def test_an_introspection_call_becomes_a_linked_masked_flow_in_the_view(web: Web) -> None:
    addon, view, _ = web
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))
    meta = flow.metadata[METADATA_KEY]
    assert len(view) == 1
    sub = view[0]
    assert meta["introspection_flows"] == [sub.id]
    sub_meta = sub.metadata[METADATA_KEY]
    assert sub_meta["parent_flow"] == flow.id and sub_meta["token_id"] == meta["token_id"]
    assert sub_meta["token_fp"] == meta["token_fp"] == token_fingerprint(TOKEN)
    assert flow.id[:8] in sub.comment and meta["token_id"] in sub.comment
    assert sub.marked == ":mag:"
    assert sub.request.headers["Authorization"] == "Basic ***"
    assert TOKEN not in sub.request.get_text() and sub.request.urlencoded_form["token"] == "raw-***"
    assert sub.response is not None and sub.response.json()["username"] == "alice"

    hit = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(hit))
    assert len(view) == 1  # a cache hit makes no call


async def test_a_failed_call_becomes_a_flow_with_an_error(web: Web, idp: Idp) -> None:
    addon, view, _ = web

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    mock_clients(addon, down)
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))
    assert flow.response is not None and flow.response.status_code == 502
    assert flow.marked == ":orange_circle:"
    assert view[0].error is not None and view[0].response is None


async def test_sub_flows_can_be_turned_off(web: Web) -> None:
    addon, view, tctx = web
    tctx.configure(addon, introspection_subflows="false")
    await hooked(addon.request(reverse_flow("/basic", headers=bearer())))
    assert len(view) == 0


def test_masking() -> None:
    assert mask_token("abcdefghijklmnop") == "abcd***"
    assert mask_token("short") == "***"
    assert mask_authorization("Basic dXNlcjpwYXNz") == "Basic ***"
    assert mask_authorization("secret") == "***"


def test_the_shown_call_masks_credential_like_custom_headers_and_url_parameters() -> None:
    from oauth2_introspection.introspection import IntrospectionRequest
    from oauth2_introspection.subflows import Call

    req = IntrospectionRequest("http://idp/i?client_secret=s3", "raw-token-123456", "Basic abc")
    call = Call(req, 1.0, 2.0, 200, "OK", [("Authorization", "Basic abc"),
                                           ("X-Api-Key", "k-123"), ("X-Tenant", "acme")])
    shown = build_flow(call, reverse_flow("/basic"), {}).request
    assert shown.headers["X-Api-Key"] == "***"
    assert shown.headers["X-Tenant"] == "acme"
    assert "s3" not in shown.url and "client_secret=***" in shown.url


def test_the_shown_call_hides_the_token_an_error_answer_or_message_echoes() -> None:
    from oauth2_introspection.introspection import IntrospectionRequest
    from oauth2_introspection.subflows import Recording

    token = "echo-secret-token-ABCDEF987"
    req = IntrospectionRequest("http://idp/i", token, "Basic abc",
                               headers={"X-Api-Key": "k-123"})
    rec = Recording()
    rec(req, None, b"", RuntimeError(f"refused {token} with Basic abc and k-123"))
    assert rec.calls[0].error == "refused *** with *** and ***"
    call = rec.calls[0]
    call.status, call.body = 400, f'{{"error_description":"malformed token {token}"}}'.encode()
    shown = build_flow(call, reverse_flow("/basic"), {})
    assert shown.response is not None
    assert shown.response.content == b'{"error_description":"malformed token echo***"}'


@pytest.mark.parametrize(("url", "shown"), [
    ("http://idp/i", "http://idp/i"),
    ("http://idp/i?tenant=acme", "http://idp/i?tenant=acme"),
    ("http://idp/i?client_secret=s3&tenant=acme", "http://idp/i?client_secret=***&tenant=acme"),
    ("http://idp/i?api%5Fkey=k&x", "http://idp/i?api%5Fkey=***&x"),
])
def test_credential_like_query_values_of_the_endpoint_url_are_masked(url: str, shown: str) -> None:
    assert mask_secret_params(url) == shown


# -- commands ------------------------------------------------------------------------------


async def test_cache_commands(web: Web) -> None:
    addon, _, tctx = web
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))
    token_id = flow.metadata[METADATA_KEY]["token_id"]
    call = tctx.master.commands.call
    shown = call("introspection.cache.show")
    assert shown.startswith("1 cached") and token_id in shown and TOKEN not in shown

    def flush(*args: str) -> str:
        return call("introspection.cache.flush", *args)

    assert flush("not-a-token") == "flushed 0 cached answer(s)"
    assert flush(TOKEN) == "flushed 1 cached answer(s)"
    await hooked(addon.request(reverse_flow("/basic", headers=bearer())))
    assert flush(token_id) == "flushed 1 cached answer(s)"
    await hooked(addon.request(reverse_flow("/basic", headers=bearer())))
    # an empty argument is not "everything": refused, nothing flushed
    with pytest.raises(exceptions.CommandError, match="empty token"):
        flush("")
    assert flush("not-a-token", TOKEN) == "flushed 1 cached answer(s)"  # several at once
    await hooked(addon.request(reverse_flow("/basic", headers=bearer())))
    assert flush() == "flushed 1 cached answer(s)"


async def test_explain_and_reload(web: Web, tmp_path: Path) -> None:
    addon, _, tctx = web
    flow = reverse_flow("/basic")
    await hooked(addon.request(flow))

    def explain(flows: list[Any]) -> str:
        return tctx.master.commands.call("introspection.explain", flows)

    text = explain([flow])
    assert "decision: refused: authentication failed: missing token" in text
    assert "token: none found" in text
    with pytest.raises(exceptions.CommandError):
        explain([])
    assert "not handled" in explain([reverse_flow("/x")])


    def reload() -> str:
        return tctx.master.commands.call("introspection.reload")

    assert reload().startswith("reloaded ")
    Path(tctx.options.introspection_config).write_text("_format_version: '3.0'\nbogus: 1\n")
    with pytest.raises(exceptions.CommandError, match="invalid introspection_config"):
        reload()
    assert addon.policy is not None and len(addon.policy.plugins) > 0


# -- policy diff pieces --------------------------------------------------------------------


def test_compare_names_each_change() -> None:
    before = Verdict("allowed", "alice", frozenset({"X-Consumer-ID", "X-Credential-Sub"}),
                     frozenset({"header:Authorization"}))
    after = Verdict("401", None, frozenset({"X-Credential-Sub", "X-Credential-Scope"}),
                    frozenset(), "missing token")
    assert compare(before, after) == [
        "allowed → 401",
        "consumer alice → -",
        "headers added: +X-Credential-Scope -X-Consumer-ID",
        "headers removed: -header:Authorization",
    ]
    assert compare(before, before) == []
    assert after.text() == "401 missing token"


def test_received_request_puts_hidden_credentials_back_as_placeholders() -> None:
    from oauth2_introspection.diff import PLACEHOLDER, received_request

    cases = {
        "header": (b"", "application/json", lambda r: r.headers["Authorization"]),
        "query": (b"", "", lambda r: r.query["access_token"]),
        "form": (b"a=1", "application/x-www-form-urlencoded",
                 lambda r: r.urlencoded_form["access_token"]),
        "json": (b'{"a": 1}', "application/json", lambda r: r.json()["access_token"]),
    }
    for source, (body, ctype, read) in cases.items():
        flow = reverse_flow("/upstream/x?b=2", headers={"Content-Type": ctype,
                                                        "X-Consumer-ID": "ours"},
                            content=body)
        meta = {"client_host": "api.example.test", "client_path": "/api/x",
                "added_headers": ["X-Consumer-ID"], "removed_headers": ["X-Credential-Sub"],
                "hidden_credentials": [f"{source}:access_token"], "token_source": source,
                "token_id": "abc"}
        req = received_request(flow, meta, {"abc": "f" * 16})
        assert req.host_header == "api.example.test"
        assert req.path.startswith("/api/x?b=2")
        assert "X-Consumer-ID" not in req.headers and "X-Credential-Sub" in req.headers
        assert PLACEHOLDER + "f" * 16 in read(req), source


async def test_replay_pool_answers_from_the_recording_only() -> None:
    from oauth2_introspection.diff import Answer, NoRecordedAnswer, _ReplayPool

    fp = token_fingerprint("tok-recorded-0000")
    pool = _ReplayPool({fp: Answer(200, b'{"active": true, "username": "bob"}')}, live=False)
    try:
        resp = await pool.client.post("http://idp.test/i", data={"token": "tok-recorded-0000"})
        assert resp.json()["username"] == "bob"
        with pytest.raises(NoRecordedAnswer):
            await pool.client.post("http://idp.test/i", data={"token": "unknown-token"})
    finally:
        await pool.aclose()


# -- hostile claims, unreadable configs, credentials in two places ---------------------------


async def test_cache_show_escapes_control_characters_of_a_claim(web: Web, idp: Idp) -> None:
    addon, _, tctx = web
    idp.answers[TOKEN] = {"active": True, "username": "eve\r\nforged line\x85"}
    flow = reverse_flow("/basic", headers=bearer())
    await hooked(addon.request(flow))
    shown = tctx.master.commands.call("introspection.cache.show")
    assert "eve\\r\\nforged line\\x85" in shown
    assert len(shown.splitlines()) == 2 and "\x85" not in shown
    assert "\r" not in (flow.comment or "") and "\n" not in (flow.comment or "")


async def test_diff_against_the_recorded_config_finds_no_change_with_two_hidden_credentials(
    web: Web, idp: Idp
) -> None:
    from oauth2_introspection.diff import diff_flows

    addon, view, tctx = web
    flow = reverse_flow(f"/hide/x?access_token={TOKEN}", method="POST",
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                        content=f"access_token={TOKEN}&a=1".encode())
    await hooked(addon.request(flow))
    meta = flow.metadata[METADATA_KEY]
    assert set(meta["hidden_credentials"]) == {"query:access_token", "form:access_token"}
    report = await diff_flows([flow, *view], tctx.options.introspection_config)
    assert report.evaluated == 1
    assert report.rows == []


def test_diff_cli_exits_2_on_a_config_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mitmproxy import io

    from oauth2_introspection.diff_cli import main

    flows = tmp_path / "flows.mitm"
    with open(flows, "wb") as f:
        io.FlowWriter(f).add(reverse_flow("/x"))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"_format_version: '3.0'\n# caf\xe9\n")
    assert main([str(flows), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("cannot read file: not UTF-8 text (byte 0xe9 at offset 28)")
    assert len(err.strip().splitlines()) == 1


def test_the_shown_answer_hides_secrets_echoed_in_any_spelling() -> None:
    from oauth2_introspection.introspection import IntrospectionRequest
    from oauth2_introspection.subflows import Recording

    token = "tleak2+SECRET/TOKEN="  # base64 characters: percent-encoded in the call's form
    req = IntrospectionRequest("http://idp/i", token, "Basic QUTHVALUE-SECRET-111")
    rec = Recording()
    rec(req, None, b"", None)
    call = rec.calls[0]
    call.status = 500
    call.body = b"form was token=tleak2%2BSECRET%2FTOKEN%3D, auth Basic QUTHVALUE-SECRET-111"
    shown = build_flow(call, reverse_flow("/basic"), {})
    assert shown.response is not None
    text = shown.response.content.decode()
    assert "SECRET" not in text and "tlea***" in text, text


def test_the_shown_answer_hides_json_escaped_echoes_and_echoing_headers() -> None:
    from oauth2_introspection.introspection import IntrospectionRequest
    from oauth2_introspection.subflows import Recording

    token = "esc/token/secret/value"
    req = IntrospectionRequest("http://idp/i", token, "Basic QUTHVALUE-SECRET-111",
                               headers={"X-Api-Key": "KEY-SECRET-9"})
    rec = Recording()
    rec(req, None, b"", None)
    call = rec.calls[0]
    call.status = 400
    call.body = b'{"token":"esc\\/token\\/secret\\/value"}'
    call.response_headers = [("X-Echo-Auth", "Basic QUTHVALUE-SECRET-111"),
                             ("X-Echo-Key", "KEY-SECRET-9"), ("X-Other", "kept")]
    shown = build_flow(call, reverse_flow("/basic"), {})
    assert shown.response is not None
    assert b"secret" not in shown.response.content
    assert "SECRET" not in str(shown.response.headers)
    assert shown.response.headers["X-Other"] == "kept"


def test_explain_a_flow_refused_before_any_plugin() -> None:
    from mitmproxy.test import tflow

    from oauth2_introspection.commands import explain_flow

    f = tflow.tflow()
    f.comment = "oauth2-introspection: 503 no policy loaded"
    f.metadata[METADATA_KEY] = {"outcome": "refused", "failure": "no policy loaded",
                                "client_host": "h", "client_path": "/"}
    text = explain_flow(f)
    assert "decision: refused: no policy loaded" in text
    assert "plugin: None" not in text and "authentication failed" not in text
    bare = tflow.tflow()
    bare.metadata[METADATA_KEY] = {"outcome": "no plugin", "route": "r"}
    assert explain_flow(bare).splitlines()[0].endswith("(no comment)")

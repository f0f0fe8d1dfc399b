"""RFC 7662 calls through httpx.MockTransport: what is sent, and how every
kind of answer or failure is typed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs

import httpx
import pytest

from oauth2_introspection import introspection as introspection_module
from oauth2_introspection.errors import (
    IntrospectionBadBody,
    IntrospectionBadStatus,
    IntrospectionError,
    IntrospectionTimeout,
    IntrospectionUnreachable,
)
from oauth2_introspection.introspection import (
    ClientPool,
    IntrospectionRequest,
    introspect,
    parse_answer,
    pool_key,
)

URL = "https://idp.test/oauth2/introspect"
SECRET_BODY = "internal stack trace: db password hunter2"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def req(**overrides: object) -> IntrospectionRequest:
    base: dict[str, object] = {
        "url": URL, "token": "tok-123", "authorization": "Basic Y2xpZW50OnNlY3JldA==",
    }
    base.update(overrides)
    return IntrospectionRequest(**base)  # type: ignore[arg-type]


def answer(status: int = 200, body: object = None, raw: bytes | None = None) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        if raw is not None:
            return httpx.Response(status, content=raw)
        return httpx.Response(status, json=body)

    return handle


async def call(handler: Handler, **overrides: object):
    async with client(handler) as c:
        return await introspect(c, req(**overrides))


# -- what is sent ----------------------------------------------------------------


async def test_the_call_is_a_form_post_with_the_token_and_the_configured_headers() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"active": True})

    await call(handle, token_type_hint="access_token",
               headers={"X-Tenant": "acme", "X-Request-Path": "/api"})
    (sent,) = seen
    assert sent.method == "POST"
    assert str(sent.url) == URL
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["authorization"] == "Basic Y2xpZW50OnNlY3JldA=="
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["x-tenant"] == "acme"
    assert sent.headers["x-request-path"] == "/api"
    assert parse_qs(sent.content.decode()) == {
        "token": ["tok-123"], "token_type_hint": ["access_token"]
    }


async def test_without_a_hint_only_the_token_is_sent() -> None:
    seen: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json={"active": False})

    await call(handle, token="a+b&c=d")
    assert parse_qs(seen[0].decode()) == {"token": ["a+b&c=d"]}


async def test_the_pool_client_sends_its_user_agent_and_ignores_proxy_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
    pool = ClientPool()
    key = pool.prepare(URL, 60000)
    assert pool.get(key).headers["user-agent"] == introspection_module.USER_AGENT
    assert pool.get(key).trust_env is False
    await pool.aclose()


# -- answers ---------------------------------------------------------------------


async def test_an_active_answer_carries_its_claims() -> None:
    result = await call(answer(body={"active": True, "username": "alice", "exp": 1}))
    assert result.active is True
    assert result.claims["username"] == "alice"
    assert result.claims["exp"] == 1
    assert result.latency_ms >= 0


async def test_an_inactive_answer_is_a_result_not_an_error() -> None:
    result = await call(answer(body={"active": False}))
    assert result.active is False


@pytest.mark.parametrize("status", [201, 204, 301, 400, 401, 403, 404, 500, 503])
async def test_any_status_other_than_200_is_bad_status_without_the_body(status: int) -> None:
    with pytest.raises(IntrospectionBadStatus) as e:
        await call(answer(status, raw=SECRET_BODY.encode()))
    assert e.value.status == status
    assert str(status) in str(e.value)
    assert "hunter2" not in str(e.value)


@pytest.mark.parametrize(
    "raw",
    [
        SECRET_BODY.encode(),
        b"<html>hunter2</html>",
        b"",
        b"\xff\xfe hunter2",
        json.dumps(["active", True, "hunter2"]).encode(),
        json.dumps({"active": "true", "note": "hunter2"}).encode(),
        json.dumps({"active": 1, "note": "hunter2"}).encode(),
        json.dumps({"active": None, "note": "hunter2"}).encode(),
        json.dumps({"note": "hunter2"}).encode(),
        b'"hunter2"',
    ],
)
async def test_a_200_without_a_json_object_with_boolean_active_is_bad_body(raw: bytes) -> None:
    with pytest.raises(IntrospectionBadBody) as e:
        await call(answer(200, raw=raw))
    assert "hunter2" not in str(e.value)


async def test_an_oversized_answer_is_bad_body_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(introspection_module, "MAX_ANSWER_BYTES", 16)
    with pytest.raises(IntrospectionBadBody):
        await call(answer(body={"active": True, "padding": "x" * 64}))
    assert "answer larger than 16 bytes" in caplog.text


# -- failures --------------------------------------------------------------------


async def test_a_slow_answer_is_a_timeout() -> None:
    async def handle(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={"active": True})

    started = asyncio.get_running_loop().time()
    with pytest.raises(IntrospectionTimeout) as e:
        await call(handle, timeout_ms=50)
    assert asyncio.get_running_loop().time() - started < 2
    assert "50 ms" in str(e.value)


async def test_the_timeout_bounds_the_whole_call_including_a_trickling_body() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"active": '
        for _ in range(50):
            await asyncio.sleep(0.02)
            yield b" "
        yield b"true}"

    def handle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    with pytest.raises(IntrospectionTimeout):
        await call(handle, timeout_ms=150)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectTimeout("connect timed out"), httpx.ReadTimeout("read timed out"),
     httpx.PoolTimeout("no connection")],
)
async def test_httpx_timeouts_are_timeouts(error: httpx.TimeoutException) -> None:
    def handle(_: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(IntrospectionTimeout):
        await call(handle)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("[Errno 111] Connection refused"), httpx.ReadError("reset"),
     httpx.RemoteProtocolError("garbage"), httpx.WriteError("broken pipe")],
)
async def test_transport_failures_are_unreachable(error: httpx.HTTPError) -> None:
    def handle(_: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(IntrospectionUnreachable) as e:
        await call(handle)
    assert type(error).__name__ in str(e.value)


def test_every_failure_is_an_introspection_error_with_a_reason() -> None:
    reasons = set()
    for cls in (IntrospectionUnreachable, IntrospectionTimeout, IntrospectionBadBody):
        assert issubclass(cls, IntrospectionError)
        reasons.add(cls("x").reason)
    reasons.add(IntrospectionBadStatus(500).reason)
    assert len(reasons) == 4


async def test_a_slow_endpoint_does_not_hold_up_other_calls() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        if b"slow" in request.content:
            await asyncio.sleep(1)
        return httpx.Response(200, json={"active": True})

    async with client(handle) as c:
        slow = asyncio.create_task(introspect(c, req(token="slow", timeout_ms=5000)))
        started = asyncio.get_running_loop().time()
        fast = await introspect(c, req(token="fast"))
        assert fast.active
        assert asyncio.get_running_loop().time() - started < 0.5
        assert not slow.done()
        slow.cancel()


# -- parsing, requests and the pool ----------------------------------------------


def test_parse_answer_keeps_every_claim() -> None:
    result = parse_answer(b'{"active": true, "scope": "a b", "ext": {"k": 1}}')
    assert result.active
    assert dict(result.claims) == {"active": True, "scope": "a b", "ext": {"k": 1}}


def test_the_authorization_value_is_not_in_the_request_repr() -> None:
    assert "Y2xpZW50OnNlY3JldA" not in repr(req())


@pytest.mark.parametrize(
    ("url", "keepalive", "key"),
    [
        ("https://idp.test/a", 60000, ("https://idp.test", 60000)),
        ("https://idp.test:8443/a?x=1", 0, ("https://idp.test:8443", 0)),
        ("http://user:pw@idp.test/a", 5, ("http://user:pw@idp.test", 5)),
    ],
)
def test_pool_key_is_the_origin_and_keepalive(
    url: str, keepalive: int, key: tuple[str, int]
) -> None:
    assert pool_key(url, keepalive) == key


async def test_the_pool_shares_one_client_per_origin_and_keepalive() -> None:
    pool = ClientPool()
    a = pool.prepare("https://idp.test/introspect", 60000)
    b = pool.prepare("https://idp.test/other", 60000)
    c = pool.prepare("https://idp.test/introspect", 1000)
    d = pool.prepare("https://other.test/introspect", 60000)
    assert a == b
    assert pool.get(a) is pool.get(b)
    assert len({a, c, d}) == 3
    await pool.aclose()


async def test_retain_only_closes_clients_no_configuration_uses() -> None:
    pool = ClientPool()
    keep = pool.prepare("https://keep.test/i", 1)
    drop = pool.prepare("https://drop.test/i", 1)
    dropped = pool.get(drop)
    await pool.retain_only({keep})
    assert dropped.is_closed
    assert not pool.get(keep).is_closed
    assert drop not in pool._clients  # a later get() makes a new one
    await pool.aclose()
    assert not pool._clients


async def test_new_tls_settings_make_new_clients() -> None:
    import ssl

    from oauth2_introspection.introspection import tls_verify

    pool = ClientPool()
    key = pool.prepare("https://idp.test/i", 1)
    first = pool.get(key)
    pool.set_verify(tls_verify(True, None, None))
    assert pool.get(key) is not first and pool.verify is False
    assert tls_verify(False, None, None) is True
    with pytest.raises(ValueError, match="cannot load trusted CA"):
        tls_verify(False, "/nonexistent/ca.pem", None)
    assert isinstance(tls_verify(False, None, "/"), ssl.SSLContext)
    await pool.aclose()
    await first.aclose()


# -- hostile answers: malformed (502), never an exception elsewhere ------------------------


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        # exp past float range: the cache computes exp - now in floats
        (b'{"active": true, "exp": ' + b"9" * 401 + b', "note": "hunter2"}', "'exp' out of range"),
        # a lone surrogate cannot be encoded for the cache or a header
        (b'{"active": true, "username": "a\\ud800", "note": "hunter2"}', "lone surrogate"),
        (b'{"active": true, "\\udfff": 1, "note": "hunter2"}', "lone surrogate"),
        # nested past the recursion limit, and past MAX_ANSWER_DEPTH below it
        (b'{"active": true, "note": "hunter2", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
         "nested deeper"),
        (b'{"active": true, "note": "hunter2", "x": ' + b'{"a":' * 100 + b"1" + b"}" * 100
         + b"}", "nested deeper"),
    ],
)
async def test_an_answer_the_addon_cannot_handle_is_bad_body(raw: bytes, detail: str) -> None:
    with pytest.raises(IntrospectionBadBody) as e:
        await call(answer(200, raw=raw))
    assert detail in str(e.value)
    assert "hunter2" not in str(e.value)


def test_ordinary_nesting_large_numbers_and_non_ascii_claims_are_usable() -> None:
    raw = json.dumps({"active": True, "exp": 10**300, "iat": 10**400, "name": "Zoë 😀",
                      "x": [[[{"a": [1]}]]]}).encode()
    assert parse_answer(raw).claims["name"] == "Zoë 😀"
    nested = b'{"active": true, "x": ' + b"[" * 62 + b"]" * 62 + b"}"
    assert parse_answer(nested).active


async def test_an_illegal_header_value_is_unreachable_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # what config validation refuses, should it ever get through: httpx's
    # message quotes the header value, the error and the log must not
    def refuse(request: httpx.Request) -> httpx.Response:
        # as h11 words it, with the header value it refuses
        raise httpx.LocalProtocolError(
            f"Illegal header value {request.headers.raw[-1][1]!r} "
            f"(authorization {request.headers['authorization'].encode()!r})")

    with pytest.raises(IntrospectionUnreachable) as e:
        await call(refuse, authorization="Basic TRAILINGSECRET42 ",
                   headers={"X-Api-Key": "KEY-SECRET-9 "})
    shown = str(e.value) + caplog.text
    assert "LocalProtocolError" in shown
    assert "TRAILINGSECRET42" not in shown and "KEY-SECRET-9" not in shown


async def test_a_refusal_that_echoes_the_token_is_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "echo-secret-token-ABCDEF987"
    with pytest.raises(IntrospectionBadStatus):
        await call(answer(400, {"error_description": f"malformed token {token}"}), token=token)
    assert "malformed token ***" in caplog.text
    assert token not in caplog.text


async def test_credential_query_values_of_the_endpoint_url_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "https://idp.test/introspect?client_secret=SUPERSECRETQ&tenant=t1"
    with pytest.raises(IntrospectionBadStatus):
        await call(answer(500, {}), url=url)
    assert "client_secret=***&tenant=t1" in caplog.text
    assert "SUPERSECRETQ" not in caplog.text


@pytest.mark.parametrize("raw", [
    # each unusable 200 answer is quoted in the log: none may carry the token
    b"<html>bad token %s</html>",
    b'{"token": "%s"}',
    b'{"active": "yes", "token": "%s"}',
    b'{"active": true, "token": "%s", "exp": 1' + b"0" * 400 + b"}",
])
async def test_an_unusable_answer_that_echoes_the_token_is_logged_without_it(
    caplog: pytest.LogCaptureFixture, raw: bytes,
) -> None:
    token = "echo-secret-token-ABCDEF987"
    with pytest.raises(IntrospectionBadBody):
        await call(answer(raw=raw % token.encode()), token=token)
    assert "***" in caplog.text
    assert token not in caplog.text


async def test_a_token_cut_by_the_quoted_length_leaves_no_part_of_it_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the token straddles the 200th character of the answer
    token = "straddling-secret-TOKEN-1234567890"
    body = {"error": "x" * 170 + token}
    with pytest.raises(IntrospectionBadStatus):
        await call(answer(400, body), token=token)
    assert "straddling" not in caplog.text


async def test_a_percent_encoded_echo_of_the_token_is_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = "tleak2+SECRET/TOKEN="
    with pytest.raises(IntrospectionBadStatus):
        await call(answer(500, raw=b"form was token=tleak2%2BSECRET%2FTOKEN%3D"), token=token)
    assert "SECRET" not in caplog.text and "***" in caplog.text


def test_an_answer_with_a_number_too_long_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(IntrospectionBadBody, match="number too long"):
        parse_answer(b'{"active": true, "n": ' + b"1" * 5000 + b"}")
    assert "non-JSON" not in caplog.text

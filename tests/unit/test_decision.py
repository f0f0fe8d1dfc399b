"""decide(): one plugin, one request, against a MockTransport introspection
endpoint: allowed, refused, anonymous, preflight, 500 and 502."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from mitmproxy import http

from oauth2_introspection.cache import IntrospectionCache
from oauth2_introspection.config import DeclarativeConfig
from oauth2_introspection.consumers import ConsumerRecord, ConsumerStore
from oauth2_introspection.decision import Decision, decide
from oauth2_introspection.introspection import ClientPool
from oauth2_introspection.policy import PluginRuntime, compile_policy
from oauth2_introspection.token import TokenSource

IDP = "http://idp.test/introspect"
TOKEN = "the-raw-token-0123456789"
ANON_ID = "5d3a2c1e-0000-4000-8000-00000000a001"
CONSUMERS = [
    {"username": "alice", "custom_id": "alice-0001"},
    {"username": "anonymous-user", "id": ANON_ID},
    {"custom_id": "app-42"},
]

Handler = Callable[[httpx.Request], httpx.Response]


def active_answer(**claims: Any) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"active": True, **claims})

    return handle


def raising(error: Exception) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        raise error

    return handle


@dataclass
class Setup:
    plugin: PluginRuntime
    consumers: ConsumerStore
    clients: ClientPool
    cache: IntrospectionCache = field(default_factory=IntrospectionCache)
    handler: Handler = field(default_factory=lambda: active_answer(username="alice"))
    calls: list[httpx.Request] = field(default_factory=list)

    async def decide(self, request: http.Request) -> Decision:
        return await decide(self.plugin, request, self.consumers, self.cache, self.clients)


@pytest.fixture
async def make():
    pools: list[ClientPool] = []

    def build(**config: Any) -> Setup:
        data = {
            "_format_version": "3.0",
            "plugins": [{"name": "oauth2-introspection",
                         "config": {"introspection_url": IDP,
                                    "authorization_value": "Basic aWRwOnNlY3JldA==",
                                    **config}}],
            "consumers": CONSUMERS,
        }
        pool = ClientPool()
        pools.append(pool)
        policy = compile_policy(DeclarativeConfig.model_validate(data), pool.prepare)
        plugin = policy.plugins[0]
        setup = Setup(plugin, policy.consumers, pool)

        def route(request: httpx.Request) -> httpx.Response:
            setup.calls.append(request)
            return setup.handler(request)

        # Swap the pool's real client for one on a MockTransport: no sockets.
        pool._clients[plugin.client_key] = httpx.AsyncClient(
            transport=httpx.MockTransport(route)
        )
        return setup

    yield build
    for pool in pools:
        await pool.aclose()


def bearer(path: str = "/api/x", method: str = "GET", token: str = TOKEN, **kw: Any):
    return http.Request.make(method, f"http://service.test{path}", b"",
                             {"Authorization": f"Bearer {token}", **kw})


def no_token(path: str = "/api/x", method: str = "GET") -> http.Request:
    return http.Request.make(method, f"http://service.test{path}")


def body_of(decision: Decision) -> dict[str, Any]:
    assert decision.refusal is not None
    return json.loads(decision.refusal.to_response().content or b"")


# -- allowed ---------------------------------------------------------------------


async def test_an_active_token_is_allowed_with_credential_and_consumer_headers(make) -> None:
    s = make()
    s.handler = active_answer(username="alice", scope="read", client_id="web", exp=4102444800)
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert d.forwards
    assert d.set_headers["X-Credential-Identifier"] == "alice"
    assert d.set_headers["X-Credential-Scope"] == "read"
    assert d.set_headers["X-Credential-Client-ID"] == "web"
    assert d.set_headers["X-Credential-Exp"] == "4102444800"
    alice = s.consumers.for_claims("username", {"username": "alice"})
    assert alice is not None
    assert d.set_headers["X-Consumer-ID"] == alice.id
    assert d.set_headers["X-Consumer-Username"] == "alice"
    assert d.set_headers["X-Consumer-Custom-ID"] == "alice-0001"
    assert "X-Anonymous-Consumer" not in d.set_headers
    assert d.hide is None
    assert d.summary.startswith("allowed alice (introspected")
    assert d.details["consumer"]["username"] == "alice"
    assert d.details["token_source"] == "header"
    assert d.details["cache"] == "miss"
    assert d.details["active"] is True


async def test_the_introspection_call_carries_the_plugin_settings(make) -> None:
    s = make(token_type_hint="access_token",
             custom_introspection_headers={"X_Tenant": "acme"})
    await s.decide(bearer())
    (call,) = s.calls
    assert call.method == "POST"
    assert str(call.url) == IDP
    assert call.headers["authorization"] == "Basic aWRwOnNlY3JldA=="
    assert call.headers["accept"] == "application/json"
    assert call.headers["x-tenant"] == "acme"
    assert "x-request-path" not in call.headers
    assert parse_qs(call.content.decode()) == {
        "token": [TOKEN], "token_type_hint": ["access_token"]
    }


async def test_introspect_request_sends_the_request_path_and_method(make) -> None:
    s = make(introspect_request=True)
    await s.decide(bearer("/api/items?secret=1", method="DELETE"))
    (call,) = s.calls
    assert call.headers["x-request-path"] == "/api/items"
    assert call.headers["x-request-http-method"] == "DELETE"


async def test_introspect_request_answers_are_cached_per_path_and_method(make) -> None:
    s = make(introspect_request=True)
    await s.decide(bearer("/a"))
    await s.decide(bearer("/a?other=query"))
    await s.decide(bearer("/b"))
    await s.decide(bearer("/a", method="POST"))
    assert len(s.calls) == 3


async def test_a_second_request_with_the_same_token_is_a_cache_hit(make) -> None:
    s = make()
    await s.decide(bearer())
    d = await s.decide(bearer())
    assert len(s.calls) == 1
    assert d.details["cache"] == "hit"
    assert d.details["introspection_latency_ms"] is None
    assert "cache hit" in d.summary


async def test_consumer_by_client_id_matches_custom_id(make) -> None:
    s = make(consumer_by="client_id")
    s.handler = active_answer(client_id="app-42", username="alice")
    d = await s.decide(bearer())
    assert d.set_headers["X-Consumer-Custom-ID"] == "app-42"
    assert "X-Consumer-Username" not in d.set_headers
    assert d.set_headers["X-Credential-Identifier"] == "alice"


async def test_an_active_token_of_an_unknown_user_passes_without_consumer_headers(make) -> None:
    s = make()
    s.handler = active_answer(username="mallory", sub="u-9")
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert not any(h.startswith("X-Consumer-") for h in d.set_headers)
    assert "consumer" not in d.details
    assert d.summary.startswith("allowed mallory")


async def test_the_consumer_lookup_is_not_frozen_in_the_token_cache(make) -> None:
    s = make()
    s.handler = active_answer(username="newcomer")
    first = await s.decide(bearer())
    assert "X-Consumer-ID" not in first.set_headers
    s.consumers = ConsumerStore([ConsumerRecord("new-id", "newcomer", None)])
    second = await s.decide(bearer())
    assert second.details["cache"] == "hit"
    assert second.set_headers["X-Consumer-ID"] == "new-id"
    assert (await s.decide(bearer())).fields is second.fields  # worked out once per answer
    s.consumers = ConsumerStore([ConsumerRecord("other-id", "newcomer", None)])
    third = await s.decide(bearer())
    assert third.set_headers["X-Consumer-ID"] == "other-id"
    assert (b"X-Consumer-ID", b"other-id") in third.fields


async def test_the_identity_headers_come_ready_to_append(make) -> None:
    s = make()
    d = await s.decide(bearer())
    assert d.fields == tuple((k.encode(), v.encode()) for k, v in d.set_headers.items())


async def test_custom_claims_are_forwarded(make) -> None:
    s = make(custom_claims_forward=["email_verified", "groups"])
    s.handler = active_answer(username="alice", email_verified=True, groups=["a", "b"])
    d = await s.decide(bearer())
    assert d.set_headers["X-Credential-email-verified"] == "true"
    assert d.set_headers["X-Credential-groups"] == "a,b"


async def test_an_unsafe_claim_is_dropped_and_recorded(make) -> None:
    s = make()
    s.handler = active_answer(username="alice", sub="x\r\nX-Consumer-Username: admin")
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert "X-Credential-Sub" not in d.set_headers
    assert d.details["dropped_claims"] == ("sub",)


async def test_hide_credentials_marks_the_token_for_removal(make) -> None:
    s = make(hide_credentials=True)
    d = await s.decide(bearer())
    assert d.hide is not None
    assert d.hide.source is TokenSource.HEADER


async def test_decide_never_changes_the_request(make) -> None:
    s = make(hide_credentials=True)
    request = bearer("/api/x?access_token=q", **{"X-Consumer-ID": "forged"})
    before = (request.path, list(request.headers.fields))
    await s.decide(request)
    assert (request.path, list(request.headers.fields)) == before


async def test_details_never_hold_the_raw_token(make) -> None:
    s = make()
    for handler in (active_answer(username="alice"),
                    lambda _: httpx.Response(200, json={"active": False}),
                    lambda _: httpx.Response(500, text=TOKEN)):
        s.cache = IntrospectionCache()
        s.handler = handler
        d = await s.decide(bearer())
        assert TOKEN not in json.dumps(d.details)
        assert TOKEN not in d.summary
        assert len(d.details["token_id"]) == 12


# -- refused ---------------------------------------------------------------------


async def test_a_missing_token_is_refused_with_401_invalid_request(make) -> None:
    s = make()
    d = await s.decide(no_token())
    assert d.outcome == "refused"
    assert d.refusal is not None
    assert d.refusal.status == 401
    assert body_of(d) == {"error": "invalid_request",
                          "error_description": "The access token is missing"}
    assert d.refusal.headers["WWW-Authenticate"] == 'Bearer realm="service"'
    assert s.calls == []
    assert d.details["token_source"] is None
    assert d.details["failure"] == "missing token"


async def test_an_inactive_token_is_refused_with_401_invalid_token(make) -> None:
    s = make()
    s.handler = lambda _: httpx.Response(200, json={"active": False})
    d = await s.decide(bearer())
    assert d.refusal is not None
    assert d.refusal.status == 401
    assert body_of(d)["error"] == "invalid_token"
    assert d.refusal.headers["WWW-Authenticate"] == (
        'Bearer realm="service", error="invalid_token", '
        'error_description="The access token is invalid or has expired"'
    )
    assert d.details["active"] is False


async def test_an_inactive_answer_is_cached_briefly(make) -> None:
    s = make()
    s.handler = lambda _: httpx.Response(200, json={"active": False})
    await s.decide(bearer())
    d = await s.decide(bearer())
    assert len(s.calls) == 1
    assert d.details["cache"] == "hit"
    assert d.details["cache_remaining_s"] <= 5


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda _: httpx.Response(503, text="idp is down: secret-detail"),
         "introspection endpoint answered non-200"),
        (lambda _: httpx.Response(200, text="<html>secret-detail</html>"),
         "introspection answer malformed"),
        (lambda _: httpx.Response(200, json={"active": "yes", "x": "secret-detail"}),
         "introspection answer malformed"),
        (raising(httpx.ConnectError("secret-detail refused")),
         "introspection endpoint unreachable"),
        (raising(httpx.ReadTimeout("secret-detail")), "introspection timeout"),
    ],
)
async def test_an_unusable_introspection_answer_is_a_502_that_echoes_nothing(
    make, handler: Handler, reason: str
) -> None:
    s = make()
    s.handler = handler
    d = await s.decide(bearer())
    assert d.outcome == "refused"
    assert d.refusal is not None
    assert d.refusal.status == 502
    response = d.refusal.to_response()
    assert b"secret-detail" not in (response.content or b"")
    assert "secret-detail" not in str(response.headers)
    assert d.details["introspection_error"] == reason
    assert d.summary == f"502 {reason}"


async def test_introspection_errors_are_not_cached(make) -> None:
    s = make()
    s.handler = lambda _: httpx.Response(500)
    await s.decide(bearer())
    s.handler = active_answer(username="alice")
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert len(s.calls) == 2


# -- anonymous -------------------------------------------------------------------


@pytest.mark.parametrize("anonymous", ["anonymous-user", ANON_ID])
@pytest.mark.parametrize(
    ("make_request", "handler", "failure"),
    [
        (no_token, active_answer(), "missing token"),
        (bearer, lambda _: httpx.Response(200, json={"active": False}), "invalid token"),
        (bearer, lambda _: httpx.Response(500), "introspection endpoint answered non-200"),
        (bearer, raising(httpx.ConnectError("down")), "introspection endpoint unreachable"),
    ],
)
async def test_any_authentication_failure_forwards_as_the_anonymous_consumer(
    make,
    anonymous: str,
    make_request: Callable[[], http.Request],
    handler: Handler,
    failure: str,
) -> None:
    s = make(anonymous=anonymous)
    s.handler = handler
    d = await s.decide(make_request())
    assert d.outcome == "anonymous"
    assert d.forwards
    assert d.set_headers == {
        "X-Consumer-ID": ANON_ID,
        "X-Consumer-Username": "anonymous-user",
        "X-Anonymous-Consumer": "true",
    }
    assert d.details["failure"] == failure
    assert d.summary == f"anonymous anonymous-user ({failure})"


async def test_an_anonymous_fallback_still_hides_a_present_credential(make) -> None:
    s = make(anonymous="anonymous-user", hide_credentials=True)
    s.handler = lambda _: httpx.Response(200, json={"active": False})
    d = await s.decide(bearer())
    assert d.outcome == "anonymous"
    assert d.hide is not None


async def test_an_active_token_is_not_anonymous_even_with_anonymous_set(make) -> None:
    s = make(anonymous="anonymous-user")
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert "X-Anonymous-Consumer" not in d.set_headers


async def test_an_anonymous_consumer_that_does_not_exist_answers_500(
    make, caplog: pytest.LogCaptureFixture
) -> None:
    s = make(anonymous="ghost")
    d = await s.decide(no_token())
    assert d.outcome == "refused"
    assert d.refusal is not None
    assert d.refusal.status == 500
    body = body_of(d)
    assert body["error"] == "server_error"
    assert "'ghost'" in body["message"]
    assert "does not exist" in body["message"]
    assert "anonymous consumer 'ghost' does not exist" in caplog.text
    assert s.plugin.id in caplog.text


# -- preflight -------------------------------------------------------------------


async def test_options_passes_without_authentication_when_run_on_preflight_is_false(
    make,
) -> None:
    s = make(run_on_preflight=False)
    d = await s.decide(no_token(method="OPTIONS"))
    assert d.outcome == "preflight"
    assert d.forwards
    assert d.set_headers == {}
    assert s.calls == []


async def test_options_is_authenticated_by_default(make) -> None:
    s = make()
    d = await s.decide(no_token(method="OPTIONS"))
    assert d.outcome == "refused"
    assert d.refusal is not None
    assert d.refusal.status == 401


async def test_run_on_preflight_false_still_authenticates_other_methods(make) -> None:
    s = make(run_on_preflight=False)
    d = await s.decide(no_token(method="GET"))
    assert d.refusal is not None
    assert d.refusal.status == 401


# -- hostile input ---------------------------------------------------------------


HOSTILE_ANSWERS = {
    "huge exp": b'{"active": true, "username": "alice", "exp": ' + b"9" * 401 + b"}",
    "lone surrogate": b'{"active": true, "username": "alice", "sub": "\\ud800"}',
    "deep nesting": b'{"active": true, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}


@pytest.mark.parametrize("raw", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_a_hostile_answer_is_a_502_malformed_answer(make, raw: bytes) -> None:
    s = make()
    s.handler = lambda _: httpx.Response(200, content=raw)
    d = await s.decide(bearer())
    assert d.refusal is not None and d.refusal.status == 502
    assert d.details["introspection_error"] == "introspection answer malformed"
    assert len(s.cache) == 0  # never cached


@pytest.mark.parametrize("raw", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
async def test_a_hostile_answer_falls_back_to_the_anonymous_consumer(make, raw: bytes) -> None:
    s = make(anonymous="anonymous-user")
    s.handler = lambda _: httpx.Response(200, content=raw)
    d = await s.decide(bearer())
    assert d.outcome == "anonymous"
    assert d.details["failure"] == "introspection answer malformed"


@pytest.mark.parametrize(
    "request_",
    [
        bearer(token="ok-SECRET\udcff"),  # a raw 0xFF byte in the header
        http.Request.make("GET", "http://service.test/api/x?access_token=ok-SECRET%FF"),
        http.Request.make("POST", "http://service.test/api/x", b"access_token=ok-SECRET\xff",
                          {"Content-Type": "application/x-www-form-urlencoded"}),
        http.Request.make("POST", "http://service.test/api/x", b'{"access_token": "\\ud800"}',
                          {"Content-Type": "application/json"}),
    ],
    ids=["header", "query", "form", "json-surrogate"],
)
async def test_a_token_that_is_not_utf8_text_is_invalid_without_a_call(
    make, request_: http.Request
) -> None:
    s = make()
    d = await s.decide(request_)
    assert d.refusal is not None and d.refusal.status == 401
    assert body_of(d)["error"] == "invalid_token"
    assert d.details["failure"] == "invalid token (not UTF-8 text)"
    assert s.calls == []
    anonymous = await make(anonymous="anonymous-user", hide_credentials=True).decide(request_)
    assert anonymous.outcome == "anonymous" and anonymous.hide is not None


async def test_a_utf8_form_token_is_sent_as_utf8(make) -> None:
    s = make()
    await s.decide(http.Request.make("POST", "http://service.test/api/x",
                                     "access_token=é".encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded"}))
    assert s.calls[0].content == b"token=%C3%A9"


@pytest.mark.parametrize("claim", ["username", "sub"])
async def test_a_claim_with_control_characters_is_escaped_in_the_summary(make, claim) -> None:
    s = make()
    s.handler = active_answer(**{claim: "alice\r\nX-Evil: 1\x85\u2028"})
    d = await s.decide(bearer())
    assert d.outcome == "allowed"
    assert d.summary.startswith("allowed alice\\r\\nX-Evil: 1\\x85\\u2028 (")
    assert not any(c in d.summary for c in "\r\n\x85\u2028")


async def test_a_claim_with_a_c1_control_is_dropped_from_the_headers(make) -> None:
    s = make()
    s.handler = active_answer(username="alice", sub="x\x85X-Consumer-Username: admin")
    d = await s.decide(bearer())
    assert "X-Credential-Sub" not in d.set_headers
    assert d.details["dropped_claims"] == ("sub",)

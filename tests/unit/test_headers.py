"""Identity headers: what a client could forge is stripped, what we vouch for
is rendered safely."""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy import http

from oauth2_introspection.consumers import ConsumerRecord
from oauth2_introspection.headers import (
    STANDARD_CLAIM_HEADERS,
    consumer_headers,
    credential_headers,
    custom_claim_header,
    format_claim,
    is_spoofable,
    strip_spoofable,
)


def test_strip_spoofable_removes_every_identity_header_in_any_case() -> None:
    headers = http.Headers(
        [
            (b"X-Consumer-ID", b"forged"),
            (b"x-consumer-username", b"admin"),
            (b"X-CONSUMER-CUSTOM-ID", b"c"),
            (b"X-Credential-Scope", b"admin"),
            (b"x-credential-anything-else", b"x"),
            (b"X-Anonymous-Consumer", b"false"),
            (b"X-Consumer-ID", b"second copy"),
            (b"Accept", b"*/*"),
            (b"X-Consumers", b"kept: no dash after consumer"),
            (b"X-Anonymous-Consumer-Extra", b"kept"),
            (b"Authorization", b"Bearer t"),
        ]
    )
    removed = strip_spoofable(headers)
    assert {h.lower() for h in removed} == {
        "x-consumer-id",
        "x-consumer-username",
        "x-consumer-custom-id",
        "x-credential-scope",
        "x-credential-anything-else",
        "x-anonymous-consumer",
    }
    assert list(headers.keys()) == [
        "Accept", "X-Consumers", "X-Anonymous-Consumer-Extra", "Authorization"
    ]


def test_strip_spoofable_on_clean_headers_removes_nothing() -> None:
    headers = http.Headers(host="example.com")
    assert strip_spoofable(headers) == []
    assert headers["host"] == "example.com"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("read write", "read write"),
        ("", ""),
        (0, "0"),
        (1700000000, "1700000000"),
        (-5, "-5"),
        (2**70, str(2**70)),
        (1700000000.0, "1700000000"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e-7, "0.0000001"),
        (1e22, "10000000000000000000000"),
        (True, "true"),
        (False, "false"),
        (["a", "b", "c"], "a,b,c"),
        ([], ""),
        ([1, 2.5, True], "1,2.5,true"),
        (["a", None, "b"], "a,b"),
        ({"b": 1, "a": [1, 2]}, '{"b":1,"a":[1,2]}'),
        ({"name": "Zoë"}, '{"name":"Zo\\u00eb"}'),
        ([{"k": "v"}, "x"], '{"k":"v"},x'),
    ],
)
def test_claim_formatting(value: Any, text: str) -> None:
    assert format_claim(value) == text


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), float("-inf")])
def test_claims_without_a_sensible_text_are_skipped(value: Any) -> None:
    assert format_claim(value) is None


def test_every_standard_claim_gets_its_kong_header() -> None:
    claims = {
        "scope": "read write",
        "client_id": "app-1",
        "username": "alice",
        "token_type": "Bearer",
        "exp": 1700003600,
        "iat": 1700000000,
        "nbf": 1700000000,
        "sub": "u-1",
        "aud": ["api", "web"],
        "iss": "https://idp.example",
        "jti": "j-1",
        "active": True,
        "unlisted": "not forwarded",
    }
    headers, dropped = credential_headers(claims, [])
    assert dropped == []
    assert headers == {
        "X-Credential-Scope": "read write",
        "X-Credential-Client-ID": "app-1",
        "X-Credential-Identifier": "alice",
        "X-Credential-Token-Type": "Bearer",
        "X-Credential-Exp": "1700003600",
        "X-Credential-Iat": "1700000000",
        "X-Credential-Nbf": "1700000000",
        "X-Credential-Sub": "u-1",
        "X-Credential-Aud": "api,web",
        "X-Credential-Iss": "https://idp.example",
        "X-Credential-Jti": "j-1",
    }


def test_kong_3_dropped_x_credential_username() -> None:
    assert "X-Credential-Username" not in dict(STANDARD_CLAIM_HEADERS).values()
    headers, _ = credential_headers({"username": "alice"}, [])
    assert headers == {"X-Credential-Identifier": "alice"}


def test_absent_and_null_claims_give_no_header() -> None:
    headers, dropped = credential_headers({"sub": None, "scope": "s"}, ["groups", "missing"])
    assert headers == {"X-Credential-Scope": "s"}
    assert dropped == []


@pytest.mark.parametrize(
    ("claim", "header"),
    [
        ("groups", "X-Credential-groups"),
        ("email_verified", "X-Credential-email-verified"),
        ("a_b_c", "X-Credential-a-b-c"),
        ("Tenant-ID", "X-Credential-Tenant-ID"),
    ],
)
def test_custom_claim_header_names_turn_underscores_into_dashes(claim: str, header: str) -> None:
    assert custom_claim_header(claim) == header


def test_custom_claims_are_forwarded_with_formatting() -> None:
    claims = {
        "email_verified": True,
        "groups": ["admins", "ops"],
        "profile": {"tier": "gold", "seats": 3},
        "account_id": 12345,
        "ratio": 0.25,
    }
    headers, dropped = credential_headers(
        claims, ["email_verified", "groups", "profile", "account_id", "ratio"]
    )
    assert dropped == []
    assert headers == {
        "X-Credential-email-verified": "true",
        "X-Credential-groups": "admins,ops",
        "X-Credential-profile": '{"tier":"gold","seats":3}',
        "X-Credential-account-id": "12345",
        "X-Credential-ratio": "0.25",
    }


@pytest.mark.parametrize(
    "value",
    [
        "alice\r\nX-Consumer-Username: admin",
        "alice\nX-Evil: 1",
        "alice\rX-Evil: 1",
        "alice\x00",
        "bell\x07",
        "del\x7f",
        ["ok", "bad\r\nX-Evil: 1"],
    ],
)
def test_values_with_cr_lf_nul_or_control_characters_are_dropped(value: Any) -> None:
    headers, dropped = credential_headers({"username": value, "scope": "s"}, ["weird"])
    assert headers["X-Credential-Scope"] == "s"
    assert "X-Credential-Identifier" not in headers
    assert dropped == ["username"]


def test_a_json_object_with_a_newline_is_escaped_not_dropped() -> None:
    headers, dropped = credential_headers({"weird": {"k": "a\r\nb"}}, ["weird"])
    assert dropped == []
    assert headers == {"X-Credential-weird": '{"k":"a\\r\\nb"}'}


def test_a_tab_is_allowed_in_a_claim_value() -> None:
    headers, dropped = credential_headers({"scope": "a\tb"}, [])
    assert headers == {"X-Credential-Scope": "a\tb"}
    assert dropped == []


def test_unsafe_custom_claims_are_reported_by_name() -> None:
    _, dropped = credential_headers({"weird": "x\ny", "fine": "ok"}, ["weird", "fine"])
    assert dropped == ["weird"]


def test_consumer_headers_include_only_what_the_consumer_has() -> None:
    full = ConsumerRecord("id-1", "alice", "a-1")
    assert consumer_headers(full) == {
        "X-Consumer-ID": "id-1",
        "X-Consumer-Custom-ID": "a-1",
        "X-Consumer-Username": "alice",
    }
    assert consumer_headers(ConsumerRecord("id-2", "bob", None)) == {
        "X-Consumer-ID": "id-2",
        "X-Consumer-Username": "bob",
    }
    assert consumer_headers(ConsumerRecord("id-3", None, "app-3")) == {
        "X-Consumer-ID": "id-3",
        "X-Consumer-Custom-ID": "app-3",
    }


def test_anonymous_consumer_headers_add_x_anonymous_consumer() -> None:
    headers = consumer_headers(ConsumerRecord("id-9", "guest", None), anonymous=True)
    assert headers == {
        "X-Consumer-ID": "id-9",
        "X-Consumer-Username": "guest",
        "X-Anonymous-Consumer": "true",
    }
    assert not any(h.startswith("X-Credential-") for h in headers)


@pytest.mark.parametrize("name", [
    b"x-consumer_username", b"x_consumer-id", b"x_consumer_custom_id", b"x-credential_scope",
    b"x_credential_identifier", b"x_anonymous_consumer", b"x-anonymous_consumer",
])
def test_identity_headers_spelled_with_underscores_are_spoofable(name: bytes) -> None:
    # CGI-style upstreams read `X-Consumer_Username` as `X-Consumer-Username`
    assert is_spoofable(name)


def test_other_headers_are_not_spoofable() -> None:
    assert not is_spoofable(b"x-consumerish")
    assert not is_spoofable(b"x-anonymous-consumers")


def test_c1_control_characters_in_claims_are_dropped() -> None:
    out, dropped = credential_headers({"username": "alice\u0085bob", "sub": "s"}, ())
    assert dropped == ["username"]
    assert out == {"X-Credential-Sub": "s"}

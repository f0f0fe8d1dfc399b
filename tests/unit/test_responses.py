"""The plugin's own answers: Kong's bodies, RFC 6750 challenges, fixed texts."""

from __future__ import annotations

import json

import pytest

from oauth2_introspection import responses
from oauth2_introspection.responses import Refusal


def test_missing_token_is_kongs_401_with_a_bare_challenge() -> None:
    response = responses.missing_token().to_response()
    assert response.status_code == 401
    assert response.content == (
        b'{"error":"invalid_request","error_description":"The access token is missing"}'
    )
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="service"'
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"


def test_invalid_token_is_kongs_401_with_an_rfc6750_challenge_with_commas() -> None:
    response = responses.invalid_token().to_response()
    assert response.status_code == 401
    assert json.loads(response.content or b"") == {
        "error": "invalid_token",
        "error_description": "The access token is invalid or has expired",
    }
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="service", error="invalid_token", '
        'error_description="The access token is invalid or has expired"'
    )


def test_introspection_failure_is_a_generic_502() -> None:
    response = responses.introspection_failed().to_response()
    assert response.status_code == 502
    body = json.loads(response.content or b"")
    assert body["error"] == "bad_gateway"
    assert "WWW-Authenticate" not in response.headers


def test_a_missing_anonymous_consumer_is_a_500_naming_it() -> None:
    refusal = responses.anonymous_not_found("ghost")
    assert refusal.status == 500
    assert "'ghost'" in refusal.body["message"]
    assert "oauth2-introspection" in refusal.body["message"]


def test_an_internal_error_is_a_generic_500() -> None:
    response = responses.internal_error().to_response()
    assert response.status_code == 500
    assert json.loads(response.content or b"") == {
        "error": "server_error", "message": "An unexpected error occurred"
    }


def test_no_policy_is_a_503_pointing_at_the_option() -> None:
    response = responses.no_policy().to_response()
    assert response.status_code == 503
    assert "introspection_config" in json.loads(response.content or b"")["message"]


@pytest.mark.parametrize(
    "make",
    [responses.missing_token, responses.invalid_token, responses.introspection_failed,
     responses.internal_error, responses.no_policy],
)
def test_every_refusal_is_compact_json(make) -> None:
    refusal: Refusal = make()
    response = refusal.to_response()
    assert response.content == json.dumps(refusal.body, separators=(",", ":")).encode()
    assert response.headers["Content-Length"] == str(len(response.content or b""))


def test_refusals_are_fresh_values() -> None:
    a = responses.missing_token()
    a.headers["X-Extra"] = "mutated"
    assert "X-Extra" not in responses.missing_token().headers

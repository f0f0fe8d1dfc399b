"""Where the token is read from, and what the introspection call carries."""

from __future__ import annotations

import json

import pytest

from .harness import CLIENT_AUTH, echoed, raw_request


def test_token_in_access_token_query_parameter_is_introspected(client, idp, make_token):
    token = make_token(username="alice")
    data = echoed(client.get("/basic/q", params={"access_token": token, "x": "1"}))
    assert data["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 1


def test_token_in_form_body_field_is_introspected(client, idp, make_token):
    token = make_token(username="alice")
    data = echoed(client.post("/basic/form", data={"access_token": token, "other": "v"}))
    assert data["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 1


def test_token_in_multipart_body_field_is_introspected(client, idp, make_token):
    token = make_token(username="alice")
    resp = client.post(
        "/basic/multipart",
        data={"access_token": token},
        files={"upload": ("a.txt", b"hello", "text/plain")},
    )
    assert echoed(resp)["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 1


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.api+json"])
def test_token_in_json_body_field_is_introspected(client, idp, make_token, content_type):
    token = make_token(username="alice")
    resp = client.post("/basic/json", content=json.dumps({"n": 1, "access_token": token}),
                       headers={"Content-Type": content_type})
    assert echoed(resp)["h"]["x-credential-identifier"] == "alice"
    assert len(idp.calls_for(token)) == 1


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "Token", "token"])
def test_authorization_header_scheme_is_case_insensitive_and_token_is_accepted(
    client, idp, make_token, scheme
):
    token = make_token(username="alice")
    data = echoed(client.get("/basic/h", headers={"Authorization": f"{scheme} {token}"}))
    assert data["h"]["x-credential-identifier"] == "alice"
    assert [c["form"]["token"] for c in idp.calls_for(token)] == [token]


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b"])
def test_authorization_header_that_is_not_a_bearer_token_counts_as_missing(client, value):
    resp = client.get("/basic/h", headers={"Authorization": value})
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_request"


def test_body_field_wins_over_query_parameter(client, idp, make_token):
    body_token = make_token(username="alice")
    query_token = make_token(active=False)
    resp = client.post(f"/basic/both?access_token={query_token}",
                       data={"access_token": body_token})
    assert echoed(resp)["h"]["x-credential-identifier"] == "alice"
    assert idp.calls_for(query_token) == []
    assert len(idp.calls_for(body_token)) == 1


def test_request_parameter_wins_over_authorization_header(client, idp, make_token):
    query_token = make_token(username="alice")
    header_token = make_token(active=False)
    resp = client.get("/basic/both", params={"access_token": query_token},
                      headers={"Authorization": f"Bearer {header_token}"})
    assert echoed(resp)["h"]["x-credential-identifier"] == "alice"
    assert idp.calls_for(header_token) == []


def test_introspection_call_is_a_form_post_with_client_credentials(client, idp, make_token):
    token = make_token(username="alice")
    echoed(client.get("/basic/call?x=1", headers={"Authorization": f"Bearer {token}"}))
    [call] = idp.calls_for(token)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert call["path"] == "/introspect"
    assert call["form"] == {"token": token}
    assert headers["authorization"] == CLIENT_AUTH
    assert headers["accept"] == "application/json"
    assert headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert "x-request-path" not in headers
    assert "x-request-http-method" not in headers


def test_introspection_call_carries_hint_custom_headers_and_request_details(
    client, idp, make_token
):
    token = make_token(username="alice")
    resp = client.post("/ir/some/path?secret=1", json={"a": 1},
                       headers={"Authorization": f"Bearer {token}"})
    echoed(resp)
    [call] = idp.calls_for(token)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert call["form"] == {"token": token, "token_type_hint": "access_token"}
    assert headers["authorization"] == CLIENT_AUTH
    assert headers["accept"] == "application/json"
    # custom_introspection_headers: Kong turns underscores in names into dashes
    assert headers["x-tenant"] == "acme"
    assert "x_tenant" not in headers
    assert headers["x-request-path"] == "/ir/some/path"
    assert headers["x-request-http-method"] == "POST"


@pytest.mark.parametrize(("path", "sent"), [
    ("/ir/caf\u00e9".encode(), "/ir/caf%C3%A9"),  # raw UTF-8 in the request line
    (b"/ir/\xff", "/ir/%FF"),  # not UTF-8 either
])
def test_a_non_ascii_request_path_reaches_the_endpoint_percent_encoded(
    proxy, idp, make_token, path, sent
):
    # raw bytes in the path made the call fail with a 500 (the HTTP client
    # refuses non-ASCII header values): they are sent percent-encoded
    token = make_token(username="alice")
    status, _ = raw_request(proxy.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n"
                            b"Authorization: Bearer " + token.encode() + b"\r\n"
                            b"Connection: close\r\n\r\n")
    assert status == 200
    [call] = idp.calls_for(token)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert headers["x-request-path"] == sent
    assert headers["x-request-http-method"] == "GET"

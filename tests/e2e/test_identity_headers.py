"""What an active token sends upstream: X-Credential-* from its claims,
X-Consumer-* from the matched consumer; unsafe values and client-forged
identity headers never get through."""

from __future__ import annotations

import pytest

from oauth2_introspection.config import Consumer

from .harness import addon_lines, echoed, wait_until

STANDARD = {
    "scope": ("x-credential-scope", "read write"),
    "client_id": ("x-credential-client-id", "app-1"),
    "username": ("x-credential-identifier", "alice"),
    "token_type": ("x-credential-token-type", "Bearer"),
    "exp": ("x-credential-exp", "4102444800"),
    "iat": ("x-credential-iat", "1700000000"),
    "nbf": ("x-credential-nbf", "1700000001"),
    "sub": ("x-credential-sub", "user-1"),
    "aud": ("x-credential-aud", "api"),
    "iss": ("x-credential-iss", "https://idp.example"),
    "jti": ("x-credential-jti", "jti-1"),
}


def _headers(data):
    return [(k.lower(), v) for k, v in data["headers"]]


def test_every_standard_claim_becomes_its_credential_header(client, make_token):
    claims = {claim: value for claim, (_, value) in STANDARD.items()}
    claims.update(exp=4102444800, iat=1700000000, nbf=1700000001)
    token = make_token(**claims)
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    for header, value in STANDARD.values():
        assert data["h"].get(header) == value, header
    # Kong 3.0 dropped X-Credential-Username
    assert "x-credential-username" not in data["h"]


def test_absent_claims_send_no_credential_header(client, make_token):
    token = make_token(username="nobody-in-particular")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    credential = {k for k, _ in _headers(data) if k.startswith("x-credential-")}
    assert credential == {"x-credential-identifier"}


def test_claim_values_are_formatted_as_decimal_text_joined_arrays_and_compact_json(
    client, make_token
):
    token = make_token(
        username="alice",
        exp=4102444800.0,          # a float that is an integer: no ".0"
        iat=1700000000,
        aud=["api", "web", "admin"],
        scope="openid profile",
        email_verified=True,
        groups=["admins", "dev ops"],
        profile={"name": "Ann", "roles": ["a", "b"], "level": 2},
        account_id=12345678901234567890,
        weird=0.25,
    )
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    h = data["h"]
    assert h["x-credential-exp"] == "4102444800"
    assert h["x-credential-iat"] == "1700000000"
    assert h["x-credential-aud"] == "api,web,admin"
    assert h["x-credential-email-verified"] == "true"
    assert h["x-credential-groups"] == "admins,dev ops"
    assert h["x-credential-profile"] == '{"name":"Ann","roles":["a","b"],"level":2}'
    assert h["x-credential-account-id"] == "12345678901234567890"
    assert h["x-credential-weird"] == "0.25"
    # one header line per claim, arrays included
    names = [k for k, _ in _headers(data)]
    assert names.count("x-credential-aud") == 1
    assert names.count("x-credential-groups") == 1


def test_custom_claims_are_forwarded_only_when_listed(client, make_token):
    token = make_token(username="alice", department="sales", groups=["g"])
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    assert data["h"]["x-credential-groups"] == "g"
    assert "x-credential-department" not in data["h"]


@pytest.mark.parametrize("bad", ["ok\r\nX-Injected: yes", "ok\nX-Injected: yes", "ok\rX",
                                 "ok\x00X"], ids=["crlf", "lf", "cr", "nul"])
def test_claim_value_with_cr_lf_or_nul_is_dropped_and_logged(client, proxy, make_token, bad):
    token = make_token(username="alice", sub=bad, weird=bad, iss="https://idp.example")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    h = data["h"]
    assert "x-credential-sub" not in h
    assert "x-credential-weird" not in h
    assert "x-injected" not in h
    assert all("X-Injected" not in v and "\x00" not in v for _, v in data["headers"])
    # the safe claims still go through, and the request is not refused
    assert h["x-credential-iss"] == "https://idp.example"
    assert h["x-credential-identifier"] == "alice"
    assert h["x-consumer-username"] == "alice"
    assert wait_until(lambda: any("dropped claim" in line and "sub" in line and "weird" in line
                                  for line in addon_lines(proxy.log())), 5)


def test_consumer_is_matched_by_username_claim(client, make_token):
    token = make_token(username="alice", client_id="app-42")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    h = data["h"]
    assert h["x-consumer-username"] == "alice"
    assert h["x-consumer-custom-id"] == "alice-0001"
    # no id in the file: a UUID derived from the consumer, the same on every load
    assert h["x-consumer-id"] == Consumer(username="alice", custom_id="alice-0001").stable_id()
    assert "x-anonymous-consumer" not in h


def test_unknown_username_passes_without_consumer_headers(client, make_token):
    token = make_token(username="mallory", client_id="app-42")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    assert data["h"]["x-credential-identifier"] == "mallory"
    assert not [k for k, _ in _headers(data) if k.startswith("x-consumer-")]


def test_consumer_is_matched_by_client_id_claim_against_custom_id(client, make_token):
    token = make_token(username="alice", client_id="app-42")
    data = echoed(client.get("/client-id/x", headers={"Authorization": f"Bearer {token}"}))
    h = data["h"]
    assert h["x-consumer-custom-id"] == "app-42"
    assert h["x-consumer-id"] == Consumer(custom_id="app-42").stable_id()
    assert "x-consumer-username" not in h  # that consumer has no username
    assert h["x-credential-client-id"] == "app-42"


def test_client_id_mapping_ignores_the_username_claim(client, make_token):
    token = make_token(username="alice", client_id="unknown-app")
    data = echoed(client.get("/client-id/x", headers={"Authorization": f"Bearer {token}"}))
    assert not [k for k, _ in _headers(data) if k.startswith("x-consumer-")]
    assert data["h"]["x-credential-identifier"] == "alice"


FORGED = {
    "X-Consumer-ID": "forged-id",
    "X-Consumer-Username": "admin",
    "X-Consumer-Custom-ID": "admin-0",
    "X-Consumer-Groups": "root",
    "X-Credential-Scope": "admin",
    "X-Credential-Identifier": "admin",
    "X-Credential-Groups": "root",
    "X-Credential-Anything": "x",
    "X-Anonymous-Consumer": "false",
}


def test_forged_identity_headers_are_removed_when_token_matches_no_consumer(client, make_token):
    token = make_token(username="mallory", scope="read")
    data = echoed(client.get("/basic/x", headers={**FORGED, "Authorization": f"Bearer {token}"}))
    got = _headers(data)
    assert not [k for k, _ in got if k.startswith("x-consumer-")]
    assert "x-anonymous-consumer" not in data["h"]
    credential = sorted((k, v) for k, v in got if k.startswith("x-credential-"))
    assert credential == [("x-credential-identifier", "mallory"), ("x-credential-scope", "read")]


def test_forged_identity_headers_are_replaced_by_ours_on_consumer_match(client, make_token):
    token = make_token(username="alice", scope="read")
    data = echoed(client.get("/basic/x", headers={**FORGED, "Authorization": f"Bearer {token}"}))
    got = _headers(data)
    assert [v for k, v in got if k == "x-consumer-username"] == ["alice"]
    assert [v for k, v in got if k == "x-credential-scope"] == ["read"]
    assert "x-consumer-groups" not in data["h"]
    assert "x-credential-groups" not in data["h"]
    assert "x-credential-anything" not in data["h"]


def test_forged_identity_headers_are_removed_on_anonymous_path(client):
    data = echoed(client.get("/anon/x", headers=FORGED))
    got = _headers(data)
    assert not [k for k, _ in got if k.startswith("x-credential-")]
    assert [v for k, v in got if k == "x-consumer-username"] == ["anonymous-user"]
    assert [v for k, v in got if k == "x-anonymous-consumer"] == ["true"]
    assert "x-consumer-custom-id" not in data["h"]
    assert "x-consumer-groups" not in data["h"]

from .harness import echoed


def test_live_token_is_forwarded_with_identity_headers(client, make_token):
    token = make_token(username="alice", scope="read write", client_id="app-1", sub="u-1")
    data = echoed(client.get("/basic/x", headers={"Authorization": f"Bearer {token}"}))
    assert data["path"] == "/basic/x"
    assert data["h"]["x-credential-identifier"] == "alice"
    assert data["h"]["x-credential-scope"] == "read write"
    assert data["h"]["x-consumer-username"] == "alice"
    assert data["h"]["x-consumer-custom-id"] == "alice-0001"


def test_missing_token_is_refused_with_401(client):
    resp = client.get("/basic/x")
    assert resp.status_code == 401
    assert resp.json() == {"error": "invalid_request",
                           "error_description": "The access token is missing"}
    assert resp.headers["www-authenticate"] == 'Bearer realm="service"'

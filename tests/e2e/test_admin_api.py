"""The Admin API over HTTP against a real mitmdump: the seed's curl lines
verbatim, every endpoint and Kong status code, changes effective on the next
request, consumers re-mapped for cached tokens, the token and loopback rules."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from .admin_helpers import (
    SEED_GLOBAL,
    SEED_ROUTE,
    SEED_SERVICE,
    AdminMitmdump,
    run_curl,
    seed_command,
)
from .harness import CLIENT_AUTH, Mitmdump, echoed, wait_until


def _config() -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [
            {"name": "svc", "routes": [{"name": "svc-route", "paths": ["/svc"],
                                        "strip_path": False}]},
            {"name": "other", "routes": [
                {"name": "rt", "paths": ["/rt"], "strip_path": False},
                {"name": "cached", "paths": ["/cached"], "strip_path": False},
                {"name": "open", "paths": ["/open"], "strip_path": False},
            ]},
        ],
    }


@pytest.fixture(scope="module")
def admin_proxy(echo, idp) -> Iterator[AdminMitmdump]:
    m = AdminMitmdump(_config(), echo.port).start()
    yield m
    m.stop()


@pytest.fixture
def proxied(admin_proxy):
    import httpx

    with httpx.Client(base_url=admin_proxy.url, trust_env=False, timeout=15) as c:
        yield c


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("template", "target", "path"), [
    (SEED_SERVICE, "svc", "/svc/x"),
    (SEED_ROUTE, "rt", "/rt/x"),
], ids=["service", "route"])
def test_seed_curl_line_enables_the_plugin_on_the_next_request(
        admin_proxy, proxied, idp, make_token, template, target, path):
    assert proxied.get(path).status_code == 200  # open before
    result = run_curl(seed_command(template, admin_proxy.admin_url, idp.url, target))
    assert result.status == 201, result.body
    assert proxied.get(path).status_code == 401
    token = make_token(username="alice", scope="read")
    assert echoed(proxied.get(path, headers=_bearer(token)))["h"]["x-credential-scope"] == "read"


def test_seed_global_curl_line_protects_every_route_until_deleted(
        admin_proxy, proxied, idp):
    assert proxied.get("/open/x").status_code == 200
    result = run_curl(seed_command(SEED_GLOBAL, admin_proxy.admin_url, idp.url))
    assert result.status == 201, result.body
    pid = yaml.safe_load(result.body)["id"]
    try:
        assert proxied.get("/open/x").status_code == 401
        assert proxied.get("/not-routed").status_code == 401
    finally:
        with admin_proxy.admin() as admin:
            assert admin.delete(f"/plugins/{pid}").status_code == 204
    assert proxied.get("/open/x").status_code == 200


def test_consumer_created_or_deleted_shows_on_the_next_request_with_a_cached_token(
        admin_proxy, proxied, idp, make_token):
    with admin_proxy.admin() as admin:
        assert admin.post("/routes/cached/plugins", data={
            "name": "oauth2-introspection", "config.introspection_url": idp.url,
            "config.authorization_value": CLIENT_AUTH}).status_code == 201
        token = make_token(username="dora")
        assert "x-consumer-username" not in echoed(
            proxied.get("/cached/1", headers=_bearer(token)))["h"]
        created = admin.post("/consumers", data={"username": "dora", "custom_id": "d-1"})
        assert created.status_code == 201
        h = echoed(proxied.get("/cached/2", headers=_bearer(token)))["h"]
        assert h["x-consumer-username"] == "dora"
        assert h["x-consumer-id"] == created.json()["id"]
        assert admin.delete("/consumers/dora").status_code == 204
        assert "x-consumer-username" not in echoed(
            proxied.get("/cached/3", headers=_bearer(token)))["h"]
    assert len(idp.calls_for(token)) == 1  # all three answered from the cache


def test_every_entity_endpoint_answers_with_kongs_status_codes(admin_proxy, idp):
    form = {"name": "oauth2-introspection", "config.introspection_url": idp.url,
            "config.authorization_value": CLIENT_AUTH}
    with admin_proxy.admin() as admin:
        # services
        svc = admin.post("/services", data={"name": "crud", "url": "http://127.0.0.1:9"})
        assert svc.status_code == 201
        assert admin.post("/services", data={"name": "crud"}).status_code == 409
        assert admin.get("/services/crud").json()["id"] == svc.json()["id"]
        assert admin.patch("/services/crud", json={"retries": 3}).status_code == 200
        assert "crud" in [s["name"] for s in admin.get("/services").json()["data"]]
        # routes
        route = admin.post("/services/crud/routes", data={"name": "crud-r", "paths[]": "/crud"})
        assert route.status_code == 201
        assert admin.get("/services/crud/routes").json()["data"][0]["name"] == "crud-r"
        assert admin.get("/routes/crud-r").status_code == 200
        assert admin.patch("/routes/crud-r", data={"methods": "GET"}).json()["methods"] == [
            "GET"]
        assert "crud-r" in [r["name"] for r in admin.get("/routes").json()["data"]]
        # plugins
        p = admin.post("/plugins", data={**form, "route.name": "crud-r",
                                         "config.custom_claims_forward[]": "email"})
        assert p.status_code == 201, p.text
        pid = p.json()["id"]
        assert p.json()["config"]["custom_claims_forward"] == ["email"]
        assert admin.post("/plugins", data={**form, "route.id": route.json()["id"]}
                          ).status_code == 409
        assert admin.get(f"/plugins/{pid}").status_code == 200
        assert admin.get("/routes/crud-r/plugins").json()["data"][0]["id"] == pid
        assert admin.get("/services/crud/plugins").json()["data"] == []
        assert admin.patch(f"/plugins/{pid}", data={"config.ttl": "3"}).json()["config"][
            "ttl"] == 3
        assert pid in [x["id"] for x in admin.get("/plugins").json()["data"]]
        bad = admin.post("/plugins", data={"name": "oauth2-introspection", "config.ttl": "-1"})
        assert bad.status_code == 400
        assert set(bad.json()["fields"]["config"]) >= {"introspection_url", "ttl"}
        assert admin.post("/services/none/plugins", data=form).status_code == 404
        assert admin.get("/plugins/00000000-0000-4000-8000-000000000000").status_code == 404
        assert admin.delete("/services/crud").status_code == 400  # it has a route
        assert admin.delete(f"/plugins/{pid}").status_code == 204
        assert admin.delete("/routes/crud-r").status_code == 204
        assert admin.delete("/services/crud").status_code == 204
        # consumers
        c = admin.post("/consumers", json={"username": "erin", "custom_id": "e-1"})
        assert c.status_code == 201
        assert admin.post("/consumers", json={"custom_id": "e-1"}).status_code == 409
        assert admin.get("/consumers/erin").json()["custom_id"] == "e-1"
        assert admin.patch("/consumers/erin", json={"custom_id": "e-2"}).status_code == 200
        assert "erin" in [x["username"] for x in admin.get("/consumers").json()["data"]]
        assert admin.delete(f"/consumers/{c.json()['id']}").status_code == 204
        assert admin.get("/consumers/erin").status_code == 404
        # the rest
        assert admin.patch("/consumers/nobody", data={"custom_id": "x"}).status_code == 404
        fk = admin.post("/routes", data={"name": "dangling", "paths": "/d",
                                         "service.name": "nobody"})
        assert fk.status_code == 400 and fk.json()["name"] == "foreign key violation"
        assert admin.get("/").json()["configuration"]["database"] == "off"
        assert admin.get("/status").json()["configuration_hash"]
        assert admin.get("/nothing-here").status_code == 404
        assert admin.put("/plugins").status_code == 405


def test_schema_endpoints_serve_and_check_the_plugin_schema(admin_proxy, idp):
    with admin_proxy.admin() as admin:
        schema = admin.get("/schemas/plugins/oauth2-introspection")
        assert schema.status_code == 200
        assert "authorization_value" in schema.json()["required"]
        ok = admin.post("/schemas/plugins/validate", data={
            "name": "oauth2-introspection", "config.introspection_url": idp.url,
            "config.authorization_value": CLIENT_AUTH})
        assert ok.status_code == 200
        bad = admin.post("/schemas/plugins/validate", json={
            "name": "oauth2-introspection", "config": {"introspection_url": "nope"}})
        assert bad.status_code == 400
        assert set(bad.json()["fields"]["config"]) == {"introspection_url",
                                                       "authorization_value"}


def test_db_less_config_upload_replaces_everything_and_get_returns_it(echo, idp, make_token):
    m = AdminMitmdump(_config(), echo.port).start()
    try:
        doc = {"_format_version": "3.0", "services": [{"name": "only", "routes": [
            {"name": "only-r", "paths": ["/only"], "strip_path": False,
             "plugins": [{"name": "oauth2-introspection", "config": {
                 "introspection_url": idp.url, "authorization_value": CLIENT_AUTH}}]}]}]}
        import httpx

        with m.admin() as admin, httpx.Client(base_url=m.url, trust_env=False,
                                              timeout=15) as proxied:
            up = admin.post("/config", content=yaml.safe_dump(doc),
                            headers={"Content-Type": "text/yaml"})
            assert up.status_code == 201, up.text
            assert proxied.get("/only/x").status_code == 401
            assert admin.get("/routes/svc-route").status_code == 404  # replaced, not merged
            assert yaml.safe_load(admin.get("/config").text) == doc
            assert admin.post("/config?check_hash=1", json=doc).status_code == 304
            bad = admin.post("/config", json={"_format_version": "3.0",
                                              "services": [{"name": 5}]})
            assert bad.status_code == 400
            assert "services[0].name" in bad.json()["message"]
            assert proxied.get("/only/x").status_code == 401  # the last good one
            token = make_token(username="alice")
            assert proxied.get("/only/x", headers=_bearer(token)).status_code == 200
    finally:
        m.stop()
    assert "Basic dGVzdC1jbGllbnQ6dGVzdC1zZWNyZXQ=" not in m.log_path.read_text()  # never logged


def test_admin_token_is_required_when_configured(echo):
    token = "an-admin-token-of-32-characters!"
    m = AdminMitmdump(_config(), echo.port, token=token).start()
    try:
        with m.admin() as admin:
            assert admin.get("/services").status_code == 401
            assert admin.get("/services", headers={"Kong-Admin-Token": "wrong"}
                             ).status_code == 401
            assert admin.get("/services", headers={"Kong-Admin-Token": token}
                             ).status_code == 200
    finally:
        m.stop()
    assert token not in m.log_path.read_text()


def test_cross_origin_browser_requests_are_refused_without_a_token(admin_proxy):
    with admin_proxy.admin() as admin:
        resp = admin.post("/consumers", data={"username": "mallory"},
                          headers={"Origin": "http://evil.example"})
        assert resp.status_code == 403
        assert admin.get("/consumers/mallory").status_code == 404
        rebound = admin.get("/consumers", headers={"Host": "evil.example:8001"})
        assert rebound.status_code == 403  # DNS rebinding: a foreign Host name
        same = admin.post("/consumers", data={"username": "page-user"},
                          headers={"Origin": admin_proxy.admin_url})
        assert same.status_code == 201  # a page served by the listener itself
        admin.delete("/consumers/page-user")


def test_admin_listener_on_a_non_loopback_address_without_token_stops_startup(echo):
    m = Mitmdump(_config(), echo.port, ["--set", "introspection_admin=0.0.0.0:0"])
    code, log = m.outcome()
    assert code != 0
    assert "introspection_admin" in log and "not loopback" in log


def test_put_creates_then_replaces_a_service_its_route_and_a_plugin(admin_proxy, proxied, idp,
                                                                    echo):
    pid = str(uuid.uuid4())
    plugin_form = {"name": "oauth2-introspection", "config.introspection_url": idp.url,
                   "config.authorization_value": CLIENT_AUTH}
    with admin_proxy.admin() as admin:
        svc = admin.put("/services/put-svc", data={"url": f"http://127.0.0.1:{echo.port}",
                                                   "retries": "2"})
        assert svc.status_code == 200, svc.text
        route = admin.put("/services/put-svc/routes/put-r", data={"paths": "/put",
                                                                 "strip_path": "false"})
        assert route.status_code == 200, route.text
        assert proxied.get("/put/x").status_code == 200  # in force on the next request
        plugin = admin.put(f"/routes/put-r/plugins/{pid}", data=plugin_form)
        assert plugin.status_code == 200 and plugin.json()["id"] == pid
        assert proxied.get("/put/x").status_code == 401
        # replace: the body is the whole entity, what it leaves out is back to default
        again = admin.put("/services/put-svc", json={"url": f"http://127.0.0.1:{echo.port}"})
        assert again.status_code == 200
        assert again.json()["id"] == svc.json()["id"] and again.json()["retries"] == 5
        moved = admin.put("/routes/put-r", data={"paths": "/put2", "service.name": "put-svc"})
        assert moved.json()["id"] == route.json()["id"] and moved.json()["strip_path"] is True
        assert proxied.get("/put2/x").status_code == 401  # its plugin stayed with it
        assert admin.delete(f"/routes/put-r/plugins/{pid}").status_code == 204
        assert admin.delete("/services/put-svc/routes/put-r").status_code == 204
        assert admin.delete("/services/put-svc").status_code == 204


def test_lists_are_paged_and_consumers_filtered_by_custom_id(admin_proxy):
    names = [f"page-{i}" for i in range(5)]
    with admin_proxy.admin() as admin:
        for i, name in enumerate(names):
            assert admin.post("/consumers", data={"username": name,
                                                  "custom_id": f"c-{i}"}).status_code == 201
        seen, path = [], "/consumers?size=2"
        while path:
            page = admin.get(path)
            assert page.status_code == 200, page.text
            assert len(page.json()["data"]) <= 2
            seen += [c["username"] for c in page.json()["data"]]
            path = page.json()["next"]
        assert [n for n in seen if n.startswith("page-")] == names
        assert len(seen) == len(admin.get("/consumers").json()["data"])
        found = admin.get("/consumers", params={"custom_id": "c-3"}).json()
        assert [c["username"] for c in found["data"]] == ["page-3"]
        bad = admin.get("/consumers?size=0")
        assert bad.status_code == 400 and bad.json()["name"] == "invalid size"
        for name in names:
            admin.delete(f"/consumers/{name}")


def _ipv6_port() -> int | None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


def test_admin_api_on_ipv6_loopback_answers_its_own_host_name(echo):
    port = _ipv6_port()
    if port is None:
        pytest.skip("no IPv6 loopback here")
    m = Mitmdump(_config(), echo.port, ["--set", f"introspection_admin=[::1]:{port}"]).start()
    try:
        url = f"http://[::1]:{port}"

        def status() -> int | None:
            try:
                return httpx.get(f"{url}/status", trust_env=False, timeout=5).status_code
            except httpx.TransportError:
                return None

        assert wait_until(lambda: status() is not None, 15), m.log()
        assert status() == 200  # Host: [::1]:PORT
        bare = httpx.get(f"{url}/status", headers={"Host": "[::1]"}, trust_env=False)
        assert bare.status_code == 200
        foreign = httpx.get(f"{url}/status", headers={"Host": "[2001:db8::1]"},
                            trust_env=False)
        assert foreign.status_code == 403
    finally:
        m.stop()

"""The Manager page in a real headless chromium: it lists the entities, shows
validation errors next to their fields, and a plugin created through its form
applies to the next proxied request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from oauth2_introspection.devtools.echo import EchoServer
from oauth2_introspection.devtools.idp import IdpServer

from . import browser
from .admin_helpers import AdminMitmdump
from .harness import CLIENT_AUTH


def config() -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{"name": "echo", "routes": [
            {"name": "api", "paths": ["/api"], "strip_path": False},
            {"name": "other", "paths": ["/other"], "strip_path": False},
        ]}],
        "consumers": [{"username": "alice", "custom_id": "alice-1"}],
    }


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[AdminMitmdump]:
    m = AdminMitmdump(config(), echo.port).start()
    yield m
    m.stop()


def test_api_clients_still_get_kongs_json_at_the_root(proxy: AdminMitmdump) -> None:
    with httpx.Client(base_url=proxy.admin_url, trust_env=False, timeout=10) as c:
        assert "tagline" in c.get("/", headers={"Accept": "application/json"}).json()
        assert "tagline" in c.get("/").json()  # curl's */*
        page = c.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 200 and "oauth2-introspection Manager" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # the page's same-origin calls pass; another origin's still do not
        assert c.post("/plugins", json={}, headers={"Origin": proxy.admin_url}).status_code == 400
        assert c.post("/plugins", json={},
                      headers={"Origin": "http://evil.example"}).status_code == 403


@pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))
def test_a_plugin_created_through_the_form_refuses_the_next_request_without_a_token(
    proxy: AdminMitmdump, idp: IdpServer, make_token: Callable[..., str]
) -> None:
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=10) as client:
        assert client.get("/api/before").status_code == 200  # no plugin yet

        with browser.browser_page() as page:
            page.goto(proxy.admin_url + "/")
            page.wait_for_selector("#routes tbody tr >> text=api")
            assert "echo" in page.inner_text("#services")
            assert "alice" in page.inner_text("#consumers")
            assert "none" in page.inner_text("#plugins")

            # invalid: no introspection_url, ttl not a number -> errors by the fields
            page.select_option("#scope", label="route api")
            page.fill("#authorization_value", CLIENT_AUTH)
            page.fill("#ttl", "soon")
            page.click("#save")
            url_error = page.locator('[data-error="config.introspection_url"]')
            url_error.wait_for(state="visible")
            assert "required" in url_error.inner_text()
            assert page.locator('[data-error="config.ttl"]').inner_text() != ""
            assert page.get_attribute("#ttl", "aria-invalid") == "true"
            assert client.get("/api/still-open").status_code == 200  # nothing applied

            page.fill("#introspection_url", idp.url)
            page.fill("#ttl", "30")
            page.click("#save")
            page.wait_for_selector("#status.ok >> text=created plugin")
            page.wait_for_selector("#plugins tbody tr >> text=route api")
            assert page.locator('[data-error="config.introspection_url"]').inner_text() == ""

            # the next proxied request is refused without a token, allowed with one
            assert client.get("/api/after").status_code == 401
            assert client.get("/other/after").status_code == 200
            token = make_token(username="alice")
            ok = client.get("/api/after", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and ok.json()["path"] == "/api/after"

            # edit it: hide_credentials on
            page.check("#hide_credentials")
            page.click("#save")
            page.wait_for_selector("#status.ok >> text=saved")
        with httpx.Client(base_url=proxy.admin_url, trust_env=False, timeout=10) as admin:
            plugins = admin.get("/plugins").json()["data"]
        assert len(plugins) == 1 and plugins[0]["config"]["hide_credentials"] is True
        assert plugins[0]["config"]["ttl"] == 30

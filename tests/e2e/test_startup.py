"""Start-up: an invalid configuration stops mitmdump with one line naming the
file, the entity and the field; without a configuration every request is
refused (fail closed) and nothing reaches the upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Mitmdump, plugin


def _base(idp_url: str) -> dict[str, Any]:
    return {
        "_format_version": "3.0",
        "services": [{
            "name": "billing",
            "routes": [{"name": "invoices", "paths": ["/invoices"],
                        "plugins": [plugin(idp_url)]}],
        }],
        "consumers": [{"username": "alice"}],
    }


def _bad_ttl(cfg: dict[str, Any]) -> None:
    cfg["services"][0]["routes"][0]["plugins"][0]["config"]["ttl"] = -5


def _unknown_field(cfg: dict[str, Any]) -> None:
    cfg["services"][0]["routes"][0]["plugins"][0]["config"]["introspection_urll"] = "x"


def _string_timeout(cfg: dict[str, Any]) -> None:
    cfg["services"][0]["routes"][0]["plugins"][0]["config"]["timeout"] = "1000"


def _bad_consumer_by(cfg: dict[str, Any]) -> None:
    cfg["services"][0]["routes"][0]["plugins"][0]["config"]["consumer_by"] = "email"


def _route_strip_path_type(cfg: dict[str, Any]) -> None:
    cfg["services"][0]["routes"][0]["strip_path"] = "yes"


PLUGIN_ENTITY = "service 'billing' > route 'invoices' > plugin 'oauth2-introspection'"


@pytest.mark.parametrize(("breakage", "entity", "field"), [
    (_bad_ttl, PLUGIN_ENTITY, "config.ttl"),
    (_unknown_field, PLUGIN_ENTITY, "config.introspection_urll"),
    (_string_timeout, PLUGIN_ENTITY, "config.timeout"),
    (_bad_consumer_by, PLUGIN_ENTITY, "config.consumer_by"),
    (_route_strip_path_type, "service 'billing' > route 'invoices'", "strip_path"),
], ids=["ttl-negative", "unknown-field", "wrong-type", "bad-enum", "route-field"])
def test_invalid_config_stops_mitmdump_with_a_line_naming_file_entity_and_field(
    echo, idp, breakage, entity, field
):
    cfg = _base(idp.url)
    breakage(cfg)
    m = Mitmdump(cfg, echo.port)
    code, log = m.outcome()
    assert code != 0, log
    lines = [line for line in log.splitlines()
             if str(m.config_path) in line and entity in line and field in line]
    assert lines, f"no line names {m.config_path}, {entity!r} and {field!r}:\n{log}"
    assert "Traceback" not in log, log  # one line, not mitmproxy's script traceback
    # the authorization value is a secret: never echoed
    assert all(plugin(idp.url)["config"]["authorization_value"] not in line
               for line in log.splitlines())


def test_unreadable_config_file_stops_mitmdump(echo, tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    m = Mitmdump(missing, echo.port)
    code, log = m.outcome()
    assert code != 0
    assert any(str(missing) in line for line in log.splitlines()), log


def test_without_introspection_config_every_request_is_refused(echo, make_token):
    m = Mitmdump(None, echo.port).start()
    try:
        before = echo.request_count
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            no_token = c.get("/anything")
            with_token = c.get("/anything",
                               headers={"Authorization": f"Bearer {make_token(username='a')}"})
            options = c.options("/anything")
        for resp in (no_token, with_token, options):
            assert resp.status_code == 503
            assert resp.json()["error"] == "server_error"
        assert echo.request_count == before
        assert m.proc.poll() is None, "mitmdump should stay up and keep refusing"
        # loading the script warns about nothing but the missing configuration
        assert "deprecated" not in m.log().lower(), m.log()
    finally:
        m.stop()

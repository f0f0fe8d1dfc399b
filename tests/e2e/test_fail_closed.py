"""Fail closed: an exception inside the addon's hook answers 500 and the
request never reaches the upstream (mitmproxy itself would forward it)."""

from __future__ import annotations

from pathlib import Path

import httpx

from .harness import Mitmdump, plugin

BOOM = Path(__file__).parent / "scripts" / "raise_in_decide.py"


def test_an_exception_inside_the_addon_answers_500_and_forwards_nothing(echo, idp, make_token):
    config = {
        "_format_version": "3.0",
        "services": [{"name": "s", "routes": [{"name": "r", "paths": ["/"]}],
                      "plugins": [plugin(idp.url)]}],
    }
    m = Mitmdump(config, echo.port, extra_args=["-s", str(BOOM)]).start()
    try:
        token = make_token(username="alice")
        before = echo.request_count
        with httpx.Client(base_url=m.url, trust_env=False, timeout=10) as c:
            resp = c.get("/x", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 500
        assert resp.json() == {"error": "server_error", "message": "An unexpected error occurred"}
        assert "injected failure" not in resp.text
        assert echo.request_count == before
        log = m.log()
        assert "internal error" in log and "injected failure" in log  # traceback in the log
        assert token not in log
    finally:
        m.stop()

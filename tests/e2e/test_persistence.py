"""Nothing lost: a change accepted by the Admin API survives a SIGKILL right
after it, and the restarted mitmdump comes back with it."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from .admin_helpers import SEED_SERVICE, AdminMitmdump, run_curl, seed_command
from .harness import wait_until


def test_change_survives_sigkill_right_after_it_and_a_restart(echo, idp, tmp_path: Path):
    config = tmp_path / "kong.yaml"
    config.write_text(yaml.safe_dump({"_format_version": "3.0", "services": [
        {"name": "svc", "routes": [{"name": "r", "paths": ["/"]}]}]}))
    first = AdminMitmdump(config, echo.port).start()
    try:
        result = run_curl(seed_command(SEED_SERVICE, first.admin_url, idp.url, "svc"))
        assert result.status == 201, result.body
        first.proc.kill()  # SIGKILL: no shutdown hook runs
        first.proc.wait(10)
    finally:
        first.stop()
    assert config.read_text().count("oauth2-introspection") == 0  # the user's file untouched
    second = AdminMitmdump(config, echo.port).start()
    try:
        assert httpx.get(f"{second.url}/x", trust_env=False, timeout=15).status_code == 401
        plugins = httpx.get(f"{second.admin_url}/plugins", trust_env=False, timeout=15).json()
        assert [p["id"] for p in plugins["data"]] == [yaml.safe_load(result.body)["id"]]
        assert "restored the Admin API state" in second.log()
    finally:
        second.stop()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_changes_a_file_reload_dropped_do_not_come_back_after_a_restart(echo, tmp_path: Path):
    config = tmp_path / "kong.yaml"
    original = yaml.safe_dump({"_format_version": "3.0", "consumers": [{"username": "alice"}]})
    config.write_text(original)
    first = AdminMitmdump(config, echo.port).start()
    try:
        with first.admin() as admin:
            assert admin.post("/consumers", data={"username": "bob"}).status_code == 201
            config.write_text(original.replace("alice", "carol"))  # the watcher reloads it
            assert wait_until(lambda: admin.get("/consumers/bob").status_code == 404, 10,
                              interval=0.1)
            config.write_text(original)  # and back to what the state was built on
            assert wait_until(lambda: admin.get("/consumers/alice").status_code == 200, 10,
                              interval=0.1)
    finally:
        first.stop()
    assert not (tmp_path / "kong.state.yaml").exists()
    second = AdminMitmdump(config, echo.port).start()
    try:
        with second.admin() as admin:
            assert admin.get("/consumers/bob").status_code == 404
            assert [c["username"] for c in admin.get("/consumers").json()["data"]] == ["alice"]
    finally:
        second.stop()
    assert "restored the Admin API state" not in second.log_path.read_text()

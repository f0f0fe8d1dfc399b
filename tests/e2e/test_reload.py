"""Live reload of the watched config file in a real mitmdump: a valid change
takes effect without a restart; an invalid change keeps the last good
configuration, is logged with file, line and field, and the following flows
carry a warning (flow comment and metadata, as mitmweb shows them)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import yaml
from mitmproxy import io

from .harness import Mitmdump, plugin, wait_until


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)  # as editors do: never a half-written file


def test_valid_change_applies_and_invalid_change_keeps_the_last_good_config(
        echo, idp, tmp_path: Path):
    config = tmp_path / "kong.yaml"
    flows = tmp_path / "flows.mitm"
    open_doc = {"_format_version": "3.0", "services": [
        {"name": "svc", "routes": [{"name": "r", "paths": ["/"]}]}]}
    _write(config, open_doc)
    m = Mitmdump(config, echo.port, ["--set", f"save_stream_file={flows}"]).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            assert c.get("/a").status_code == 200
            protected = {**open_doc, "plugins": [plugin(idp.url)]}
            _write(config, protected)
            assert wait_until(lambda: c.get("/b").status_code == 401, 10, interval=0.1)
            broken = yaml.safe_dump(protected, sort_keys=False).replace(
                "authorization_value:", "ttl: -5\n    authorization_value:")
            config.write_text(broken)
            assert wait_until(lambda: "config.ttl" in m.log(), 10, interval=0.1), m.log()
            resp = c.get("/c")
            assert resp.status_code == 401  # the last good configuration is in force
    finally:
        m.stop()
    log = m.log_path.read_text()
    line_no = broken.splitlines().index("    ttl: -5") + 1
    assert f"{config}:{line_no}: plugins[0].config.ttl" in log
    with open(flows, "rb") as f:
        recorded = [fl for fl in io.FlowReader(f).stream() if hasattr(fl, "request")]
    last = recorded[-1]
    assert last.request.path == "/c"
    assert "config reload failed" in last.comment
    assert "config.ttl" in last.metadata["oauth2_introspection"]["config_warning"]
    assert not any("config reload failed" in (fl.comment or "") for fl in recorded[:-1])

"""The installed console script `oauth2-introspection`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import ROOT


def _cli() -> str:
    script = Path(sys.executable).parent / "oauth2-introspection"
    assert script.exists(), "pip install -e . declares the oauth2-introspection script"
    return str(script)


def test_console_script_validates_converts_and_prints_the_schema(tmp_path: Path):
    k8s = ROOT / "configs" / "k8s" / "global-plugin.yaml"
    ok = subprocess.run([_cli(), "validate", str(k8s)], capture_output=True, text=True,
                        timeout=60, check=False)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"_format_version": "3.0", "services": [{"name": "s", "port": "80"}]}')
    res = subprocess.run([_cli(), "validate", str(bad)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith(f"{bad}:1: services[0].port (service 's')")
    conv = subprocess.run([_cli(), "convert", str(k8s)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert conv.returncode == 0 and conv.stdout.startswith("_format_version:")
    schema = subprocess.run([_cli(), "schema", "--plugin"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert "introspection_url" in json.loads(schema.stdout)["properties"]

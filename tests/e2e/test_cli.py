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


def test_validate_warns_as_mitmproxy_would_and_stops_quietly_on_a_closed_pipe(
        tmp_path: Path):
    anon = tmp_path / "anon.yaml"
    anon.write_text('_format_version: "3.0"\nplugins:\n- name: oauth2-introspection\n'
                    "  config:\n    introspection_url: http://127.0.0.1:9/i\n"
                    "    authorization_value: Basic x\n    anonymous: nobody\n")
    res = subprocess.run([_cli(), "validate", str(anon)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0 and "OK" in res.stdout
    assert "names anonymous consumer 'nobody', which does not exist" in res.stderr
    # `validate many files | head -1`: no BrokenPipeError traceback
    files = [str(ROOT / "configs" / "example.yaml")] * 2000
    proc = subprocess.Popen([_cli(), "validate", *files], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().endswith(b": OK (1 service(s), 1 route(s), 1 plugin(s), "
                                           b"1 consumer(s))\n")
    proc.stdout.close()
    assert proc.wait(60) != 0
    assert b"Traceback" not in proc.stderr.read()

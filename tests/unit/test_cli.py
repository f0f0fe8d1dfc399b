"""`oauth2-introspection validate / convert / schema`, through main() (the
console script itself is run in tests/e2e/test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from oauth2_introspection.cli import main
from oauth2_introspection.export import declarative_schema, plugin_schema
from oauth2_introspection.loader import load_file, load_text

ROOT = Path(__file__).resolve().parents[2]


def test_validate_valid_files_exits_0_with_a_summary(capsys):
    assert main(["validate", str(ROOT / "configs" / "example.yaml"),
                 str(ROOT / "configs" / "k8s" / "route-plugin.yaml")]) == 0
    out = capsys.readouterr().out
    assert "example.yaml: OK" in out and "route-plugin.yaml: OK (1 service(s), 1 route(s)" in out


def test_validate_invalid_file_exits_1_with_one_line_per_problem(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_format_version: "3.0"\nconsumers:\n  - tags: [x]\nservices:\n'
                   '  - name: s\n    port: 0\n')
    assert main(["validate", str(bad)]) == 1
    err = sorted(capsys.readouterr().err.strip().splitlines())
    assert len(err) == 2
    assert err[0].startswith(f"{bad}:3: consumers[0]")
    assert err[1].startswith(f"{bad}:6: services[0].port (service 's')")


def test_convert_turns_kubernetes_manifests_into_equivalent_deck_yaml(capsys):
    source = ROOT / "configs" / "k8s" / "route-plugin.yaml"
    assert main(["convert", str(source)]) == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    assert data["_format_version"] == "3.0" and data["routes"][0]["name"] == "bar"
    assert load_text(out, "converted.yaml") == load_file(source)


def test_convert_turns_json_into_yaml(tmp_path: Path, capsys):
    src = tmp_path / "kong.json"
    src.write_text(json.dumps({"_format_version": "3.0", "consumers": [{"username": "a"}]}))
    assert main(["convert", str(src)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {
        "_format_version": "3.0", "consumers": [{"username": "a"}]}


def test_schema_prints_the_json_schema_generated_from_the_model(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == declarative_schema()
    assert main(["schema", "--plugin"]) == 0
    assert json.loads(capsys.readouterr().out) == plugin_schema()

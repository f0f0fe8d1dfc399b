"""`oauth2-introspection validate / convert / schema`, through main() (the
console script itself is run in tests/e2e/test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from oauth2_introspection.cli import main
from oauth2_introspection.export import declarative_schema, plugin_schema
from oauth2_introspection.loader import load_file, load_text

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


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


@pytest.mark.parametrize(("ttl", "shown"), [("30", "ttl: 30\n"), ("2.5", "ttl: 2.5\n")])
def test_convert_writes_ttl_as_given(tmp_path: Path, capsys, ttl: str, shown: str):
    src = tmp_path / "kong.json"
    src.write_text('{"_format_version": "3.0", "plugins": [{"name": "oauth2-introspection", '
                   '"config": {"introspection_url": "http://i/x", "authorization_value": "b", '
                   f'"ttl": {ttl}}}}}]}}')
    assert main(["convert", str(src)]) == 0
    assert shown in capsys.readouterr().out


def test_schema_prints_the_json_schema_generated_from_the_model(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == declarative_schema()
    assert main(["schema", "--plugin"]) == 0
    assert json.loads(capsys.readouterr().out) == plugin_schema()


DECK_EXAMPLES = sorted(
    p for p in [*CONFIGS.glob("*.yaml"), *CONFIGS.glob("k8s/*.deck.yaml")]
    if p.name != "dev-tokens.yaml")


@pytest.mark.parametrize("path", DECK_EXAMPLES, ids=lambda p: p.name)
def test_the_schema_accepts_every_shipped_decK_example(path):
    # string references (`service: echo`) included: editors use this schema
    jsonschema.validate(yaml.safe_load(path.read_text()), declarative_schema())


@pytest.mark.parametrize("doc", [
    {"_format_version": "3.0", "services": [{"name": "s", "host": "x", "port": 0}]},
    {"_format_version": "3.0", "services": [{"name": "s", "host": "x", "port": 65536}]},
    {"_format_version": "3.0", "plugins": [{"name": "oauth2-introspection", "service": 1,
                                            "config": {}}]},
])
def test_the_schema_refuses_what_validate_refuses(doc):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, declarative_schema())


def test_a_byte_order_mark_is_not_content(tmp_path: Path, capsys):
    for name in ("bom.json", "bom.yaml"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + b'{"_format_version": "3.0"}')
        assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_a_manifest_document_without_apiversion_is_named(tmp_path: Path, capsys):
    text = (CONFIGS / "k8s" / "route-plugin.yaml").read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("apiVersion: networking", "apiversion: networking"))
    assert main(["validate", str(typo)]) == 1
    err = capsys.readouterr().err
    assert "document 2 has no apiVersion" in err and "found another document" not in err


def test_tab_indented_json_errors_keep_their_line(tmp_path: Path, capsys):
    doc = {"_format_version": "3.0", "services": [{"name": "s", "port": 0, "host": "x"}]}
    for indent, name in (("\t", "tab.json"), ("  ", "spaces.json")):
        path = tmp_path / name
        path.write_text(json.dumps(doc, indent=indent))
        assert main(["validate", str(path)]) == 1
        assert capsys.readouterr().err.startswith(f"{path}:6: services[0].port")


def test_validate_and_the_load_line_count_entities_alike():
    # a route with two paths is one route; a disabled plugin is one plugin
    from oauth2_introspection.loader import summary

    config = load_text("""
_format_version: "3.0"
services:
  - name: s
    url: http://u
    routes:
      - name: r
        paths: [/a, /b]
        plugins:
          - name: oauth2-introspection
            enabled: false
            config: {introspection_url: "http://i/x", authorization_value: "b"}
""", "kong.yaml")
    assert summary(config) == "1 service(s), 1 route(s), 1 plugin(s), 0 consumer(s)"

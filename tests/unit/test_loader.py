"""Loading declarative files: one line per problem naming the file, the line,
the field path and the entity, never echoing a value (it may be a secret)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from oauth2_introspection.errors import ConfigError
from oauth2_introspection.loader import (
    describe_entities,
    format_loc,
    load_file,
    load_text,
)

SECRET = "Basic c2VjcmV0LXZhbHVlLTQy"

GOOD = f"""\
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:9000
    routes:
      - name: api
        paths: [/api]
    plugins:
      - name: oauth2-introspection
        config:
          introspection_url: http://127.0.0.1:9001/introspect
          authorization_value: {SECRET}
consumers:
  - username: alice
"""


def write(tmp_path: Path, text: str, name: str = "kong.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(text: str, source: str = "kong.yaml") -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_text(textwrap.dedent(text), source)
    return e.value.problems


def test_a_valid_yaml_file_loads(tmp_path: Path) -> None:
    config = load_file(write(tmp_path, GOOD))
    assert config.services[0].name == "echo"
    assert config.services[0].plugins[0].config.ttl == 30
    assert config.consumers[0].username == "alice"


def test_a_valid_json_file_loads(tmp_path: Path) -> None:
    doc = {
        "_format_version": "3.0",
        "plugins": [{"name": "oauth2-introspection",
                     "config": {"introspection_url": "http://idp/i",
                                "authorization_value": SECRET, "ttl": 5}}],
    }
    config = load_file(write(tmp_path, json.dumps(doc, indent=2), "kong.json"))
    assert config.plugins[0].config.ttl == 5


def test_wrong_type_names_file_line_field_and_entity_without_coercion(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace(f"authorization_value: {SECRET}",
                                        f"authorization_value: {SECRET}\n          ttl: \"30\""))
    with pytest.raises(ConfigError) as e:
        load_file(path)
    message = str(e.value)
    assert message.startswith(f"{path}:13: ")
    assert "services[0].plugins[0].config.ttl" in message
    assert "service 'echo'" in message
    assert "plugin 'oauth2-introspection'" in message
    assert "valid number" in message


@pytest.mark.parametrize(
    ("text", "line", "field", "entity"),
    [
        (
            """\
            _format_version: "3.0"
            routes:
              - name: r
                paths: [/a]
                bogus: 1
            """,
            5, "routes[0].bogus", "route 'r'",
        ),
        (
            """\
            _format_version: "3.0"
            services:
              - name: echo
                routes:
                  - name: inner
                    paths: [/a]
                    strip_path: "no"
            """,
            7, "services[0].routes[0].strip_path", "service 'echo' > route 'inner'",
        ),
        (
            """\
            _format_version: "3.0"
            consumers:
              - username: alice
              - username: bob
                colour: blue
            """,
            5, "consumers[1].colour", "consumer 'bob'",
        ),
        (
            """\
            _format_version: "3.0"
            plugins:
              - name: oauth2-introspection
                config:
                  introspection_url: http://idp/i
                  authorization_value: x
                  timeout: 1.5
            """,
            7, "plugins[0].config.timeout", "plugin 'oauth2-introspection'",
        ),
        (
            """\
            _format_version: "3.0"
            services:
              - url: http://echo
                plugins:
                  - name: oauth2-introspection
                    config:
                      introspection_url: http://idp/i
                      authorization_value: x
                      consumer_by: sub
            """,
            9, "services[0].plugins[0].config.consumer_by",
            "service #0 > plugin 'oauth2-introspection'",
        ),
    ],
)
def test_every_problem_names_file_line_field_and_entity(
    text: str, line: int, field: str, entity: str
) -> None:
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"kong.yaml:{line}: {field} ({entity}): ")


def test_unknown_field_is_reported_as_unknown_field() -> None:
    problems = problems_of("""\
        _format_version: "3.0"
        services:
          - name: echo
            colour: blue
        """)
    assert problems == ["kong.yaml:4: services[0].colour (service 'echo'): unknown field"]


def test_missing_required_field_is_reported_as_missing() -> None:
    problems = problems_of("""\
        _format_version: "3.0"
        plugins:
          - name: oauth2-introspection
            config:
              authorization_value: x
        """)
    assert problems == [
        "kong.yaml:5: plugins[0].config.introspection_url (plugin 'oauth2-introspection'): "
        "required field missing"
    ]


def test_missing_format_version_is_rejected() -> None:
    problems = problems_of("services: []\n")
    assert problems == ["kong.yaml:1: _format_version: required field missing"]


def test_an_old_format_version_is_rejected() -> None:
    problems = problems_of('_format_version: "1.1"\n')
    assert problems[0].startswith("kong.yaml:1: _format_version: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_a_document_that_is_not_a_mapping_is_rejected(text: str) -> None:
    assert "must be a mapping with '_format_version'" in problems_of(text)[0]


def test_invalid_yaml_names_file_and_line() -> None:
    problems = problems_of('_format_version: "3.0"\nservices:\n  - name: [unclosed\n')
    assert problems[0].startswith("kong.yaml:")
    assert "invalid YAML" in problems[0]


def test_invalid_json_names_file_and_line() -> None:
    problems = problems_of('{\n  "_format_version": "3.0",\n  "services": [,]\n}', "kong.json")
    assert problems == ["kong.json:3: invalid JSON: Expecting value"]


def test_json_file_problems_carry_their_line(tmp_path: Path) -> None:
    doc = {"_format_version": "3.0", "services": [{"name": "echo", "port": "80", "host": "h"}]}
    path = write(tmp_path, json.dumps(doc, indent=2), "kong.json")
    with pytest.raises(ConfigError) as e:
        load_file(path)
    assert str(e.value).startswith(f"{path}:6: services[0].port (service 'echo'): ")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_file(tmp_path / "missing.yaml")


def test_several_problems_are_all_kept_and_counted_in_the_message() -> None:
    with pytest.raises(ConfigError) as e:
        load_text('_format_version: "3.0"\nservices:\n  - name: a\n    x: 1\n    y: 2\n',
                  "kong.yaml")
    assert len(e.value.problems) == 2
    assert str(e.value).endswith("(and 1 more problem(s))")
    assert e.value.source == "kong.yaml"


@pytest.mark.parametrize(
    "bad",
    [
        f"authorization_value: [{SECRET}]",
        f"authorization_value: {{value: {SECRET}}}",
        f'authorization_value: "{SECRET}\\r\\nX-Evil: 1"',
        "authorization_value: 1234567890123",
    ],
)
def test_the_authorization_value_never_appears_in_error_messages(bad: str) -> None:
    text = (
        '_format_version: "3.0"\n'
        "plugins:\n"
        "  - name: oauth2-introspection\n"
        "    config:\n"
        "      introspection_url: http://idp/i\n"
        f"      {bad}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_text(text, "kong.yaml")
    everything = str(e.value) + "\n".join(e.value.problems)
    assert "plugins[0].config" in everything
    assert "c2VjcmV0" not in everything
    assert "1234567890123" not in everything


def test_a_secret_in_a_custom_header_value_is_not_echoed() -> None:
    problems = problems_of(f"""\
        _format_version: "3.0"
        plugins:
          - name: oauth2-introspection
            config:
              introspection_url: http://idp/i
              authorization_value: x
              custom_introspection_headers:
                X-Api-Key: "{SECRET}\\n"
        """)
    assert "X-Api-Key" in problems[0]
    assert SECRET not in problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """\
            _format_version: "3.0"
            routes:
              - name: r
                paths: [/a]
                service: nope
            """,
            "kong.yaml:5: routes[0].service (route 'r'): no service 'nope'",
        ),
        (
            """\
            _format_version: "3.0"
            plugins:
              - name: oauth2-introspection
                route: ghost
                config: {introspection_url: "http://i/", authorization_value: x}
            """,
            "kong.yaml:4: plugins[0].route (plugin 'oauth2-introspection'): no route 'ghost'",
        ),
        (
            """\
            _format_version: "3.0"
            plugins:
              - name: oauth2-introspection
                service: {name: ghost}
                config: {introspection_url: "http://i/", authorization_value: x}
            """,
            "kong.yaml:4: plugins[0].service (plugin 'oauth2-introspection'): "
            "no service 'ghost'",
        ),
    ],
)
def test_references_to_unknown_services_and_routes_are_rejected(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_references_by_id_resolve() -> None:
    config = load_text(textwrap.dedent("""\
        _format_version: "3.0"
        services:
          - id: 11111111-1111-4111-8111-111111111111
            name: echo
        routes:
          - name: r
            paths: [/a]
            service: {id: 11111111-1111-4111-8111-111111111111}
        plugins:
          - name: oauth2-introspection
            route: {name: r}
            config: {introspection_url: "http://i/", authorization_value: x}
        """))
    assert config.routes[0].service is not None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("""\
         _format_version: "3.0"
         services:
           - name: a
           - name: a
         """, "services[1].name (service 'a'): duplicate service name 'a'"),
        ("""\
         _format_version: "3.0"
         routes:
           - name: r
             paths: [/a]
           - name: r
             paths: [/b]
         """, "routes[1].name (route 'r'): duplicate route name 'r'"),
        ("""\
         _format_version: "3.0"
         consumers:
           - username: alice
           - username: alice
             custom_id: other
         """, "consumers[1].username (consumer 'alice'): duplicate consumer username 'alice'"),
        ("""\
         _format_version: "3.0"
         consumers:
           - username: a
             custom_id: c-1
           - username: b
             custom_id: c-1
         """, "consumers[1].custom_id (consumer 'b'): duplicate consumer custom_id 'c-1'"),
        ("""\
         _format_version: "3.0"
         consumers:
           - username: a
             id: 5d3a2c1e-0000-4000-8000-00000000a0ff
           - username: b
             id: 5d3a2c1e-0000-4000-8000-00000000a0ff
         """, "consumers[1].id (consumer 'b'): duplicate consumer id "
             "'5d3a2c1e-0000-4000-8000-00000000a0ff'"),
    ],
)
def test_duplicate_names_are_rejected(text: str, needle: str) -> None:
    assert any(needle in p for p in problems_of(text)), problems_of(text)


def test_two_plugins_on_the_same_scope_are_rejected() -> None:
    problems = problems_of("""\
        _format_version: "3.0"
        services:
          - name: echo
            plugins:
              - name: oauth2-introspection
                config: {introspection_url: "http://i/", authorization_value: x}
        plugins:
          - name: oauth2-introspection
            service: echo
            config: {introspection_url: "http://j/", authorization_value: y}
        """)
    assert len(problems) == 1
    assert problems[0].startswith("kong.yaml:8: plugins[0] (plugin 'oauth2-introspection'): ")
    assert "same scope as services[0].plugins[0]" in problems[0]


def test_consumer_without_username_or_custom_id_is_rejected() -> None:
    problems = problems_of("""\
        _format_version: "3.0"
        consumers:
          - tags: [orphan]
        """)
    assert problems == [
        "kong.yaml:3: consumers[0] (consumer #0): a consumer needs 'username' or 'custom_id'"
    ]


def test_consumer_stable_id_is_the_same_across_loads_and_differs_per_consumer() -> None:
    text = '_format_version: "3.0"\nconsumers:\n  - username: a\n  - custom_id: b\n'
    first, second = load_text(text), load_text(text)
    ids = [c.stable_id() for c in first.consumers]
    assert ids == [c.stable_id() for c in second.consumers]
    assert ids[0] != ids[1]


def test_plugin_scoped_to_a_consumer_is_rejected_with_its_path() -> None:
    problems = problems_of("""\
        _format_version: "3.0"
        consumers:
          - username: bob
        plugins:
          - name: oauth2-introspection
            consumer: bob
            config: {introspection_url: "http://i/", authorization_value: x}
        """)
    assert problems[0].startswith(
        "kong.yaml:6: plugins[0].consumer (plugin 'oauth2-introspection'): "
        "oauth2-introspection cannot be scoped to a consumer"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """\
            _format_version: "3.0"
            services:
              - name: a
                plugins:
                  - name: oauth2-introspection
                    service: b
                    config: {introspection_url: "http://i/", authorization_value: x}
              - name: b
            """,
            "kong.yaml:6: services[0].plugins[0].service (service 'a' > plugin "
            "'oauth2-introspection'): conflicts with the enclosing service",
        ),
        (
            """\
            _format_version: "3.0"
            routes:
              - name: r
                paths: [/r]
                plugins:
                  - name: oauth2-introspection
                    route: s
                    config: {introspection_url: "http://i/", authorization_value: x}
              - name: s
                paths: [/s]
            """,
            "kong.yaml:7: routes[0].plugins[0].route (route 'r' > plugin "
            "'oauth2-introspection'): conflicts with the enclosing route",
        ),
        (
            """\
            _format_version: "3.0"
            services:
              - name: a
                routes:
                  - name: r
                    paths: [/r]
                    service: b
              - name: b
            """,
            "kong.yaml:7: services[0].routes[0].service (service 'a' > route 'r'): "
            "conflicts with the enclosing service",
        ),
    ],
)
def test_nested_entity_with_a_conflicting_scope_is_rejected(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_nested_plugin_may_repeat_its_enclosing_scope() -> None:
    config = load_text(textwrap.dedent("""\
        _format_version: "3.0"
        services:
          - name: a
            plugins:
              - name: oauth2-introspection
                service: a
                config: {introspection_url: "http://i/", authorization_value: x}
        """))
    assert config.services[0].plugins[0].service is not None


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        ((), "(document)"),
        (("services",), "services"),
        (("services", 0, "plugins", 1, "config", "ttl"), "services[0].plugins[1].config.ttl"),
    ],
)
def test_field_paths_are_written_as_in_code(loc: tuple[str | int, ...], text: str) -> None:
    assert format_loc(loc) == text


def test_entities_are_described_by_name_username_custom_id_or_index() -> None:
    data = {
        "services": [{"url": "http://x", "routes": [{"name": "r"}]}],
        "consumers": [{"custom_id": "c-1"}],
    }
    assert describe_entities(data, ("services", 0, "routes", 0, "paths")) == (
        "service #0 > route 'r'"
    )
    assert describe_entities(data, ("consumers", 0)) == "consumer 'c-1'"


def test_a_file_that_is_not_utf8_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"_format_version: '3.0'\n# caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        load_file(path)
    assert str(e.value) == (f"{path}: cannot read file: not UTF-8 text "
                            "(byte 0xe9 at offset 28)")


@pytest.mark.parametrize("name", ["kong.yaml", "kong.json", "k8s.yaml"])
def test_a_number_too_long_to_read_is_a_config_error(tmp_path: Path, name: str) -> None:
    big = "1" * 5000  # past Python's 4,300-digit integer conversion limit
    if name == "kong.json":
        text = json.dumps({"_format_version": "3.0", "x": 0}).replace("0", big)
    elif name == "k8s.yaml":
        text = ("apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nmetadata:\n"
                "  name: p\nplugin: oauth2-introspection\nconfig:\n"
                f"  introspection_url: http://x/i\n  authorization_value: b\n  timeout: {big}\n")
    else:
        text = GOOD.replace("authorization_value", f"timeout: {big}\n          authorization_value")
    with pytest.raises(ConfigError) as e:
        load_file(write(tmp_path, text, name))
    assert "a number has more digits than any field can hold" in str(e.value)


def test_two_plugins_with_one_instance_name_are_refused(tmp_path: Path) -> None:
    # unique across all plugins, as in Kong and the Admin API (409)
    plugin = ("  - name: oauth2-introspection\n    instance_name: same\n"
              "    config: {introspection_url: 'http://i/x', authorization_value: 'Basic x'}\n")
    text = ("_format_version: '3.0'\nservices:\n- name: a\n  url: http://u\n  plugins:\n"
            + plugin.replace("  - ", "  - ", 1) + "- name: b\n  url: http://u\n  plugins:\n"
            + plugin)
    with pytest.raises(ConfigError) as e:
        load_file(write(tmp_path, text))
    assert "duplicate plugin instance_name 'same'" in str(e.value)


@pytest.mark.parametrize(("name", "text", "key"), [
    ("kong.yaml", '_format_version: "3.0"\nplugins: []\nconsumers: []\nplugins: []\n', "plugins"),
    ("kong.yaml", '_format_version: "3.0"\nplugins:\n- name: oauth2-introspection\n  config:\n'
                  "    introspection_url: http://i/x\n    authorization_value: b\n"
                  "    ttl: 10\n    ttl: 0\n", "ttl"),
    ("kong.json", '{"_format_version": "3.0", "consumers": [], "consumers": []}', "consumers"),
    ("k8s.yaml", "apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nkind: KongPlugin\n"
                 "metadata: {name: p}\nplugin: oauth2-introspection\n", "kind"),
], ids=["yaml-top-level", "yaml-plugin-config", "json", "kubernetes"])
def test_a_repeated_key_is_refused(tmp_path: Path, name: str, text: str, key: str) -> None:
    # YAML and JSON readers keep the last one silently: a second `plugins:`
    # would drop the first one's plugins with no error
    with pytest.raises(ConfigError) as e:
        load_file(write(tmp_path, text, name))
    assert f"duplicate key '{key}'" in str(e.value)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = ('_format_version: "3.0"\nconsumers:\n- &base {username: a, custom_id: c1}\n'
            "- <<: *base\n  username: b\n  custom_id: c2\n")
    config = load_file(write(tmp_path, text))
    assert [c.username for c in config.consumers] == ["a", "b"]


def test_fields_kong_adds_to_exported_entities_are_accepted() -> None:
    stamp = ("created_at: 1700000000\n    updated_at: 1700000001\n"
             "    ws_id: 0dc6f45b-8f8d-40d2-a504-473544ee190b\n")
    text = ('_format_version: "3.0"\nservices:\n  - name: s\n    url: http://u\n    '
            + stamp + "    routes:\n      - name: r\n        paths: [/]\n        "
            + stamp.replace("\n    ", "\n        ")
            + "consumers:\n  - username: a\n    " + stamp)
    config = load_text(text, "kong.yaml")
    assert config.services[0].routes[0].name == "r"


def test_deck_info_defaults_are_refused_not_ignored() -> None:
    text = ('_format_version: "3.0"\n_info:\n  defaults:\n    route:\n      strip_path: false\n'
            "  select_tags: [a]\n")
    with pytest.raises(ConfigError) as e:
        load_text(text, "kong.yaml")
    assert "_info" in str(e.value) and "defaults are not applied" in str(e.value)
    assert load_text('_format_version: "3.0"\n_info:\n  select_tags: [a]\n', "kong.yaml")


def test_a_vault_reference_is_refused_and_url_credentials_in_hosts_not_echoed() -> None:
    vault = ('_format_version: "3.0"\nplugins:\n- name: oauth2-introspection\n  config:\n'
             "    introspection_url: http://i/x\n    authorization_value: '{vault://env/idp}'\n")
    with pytest.raises(ConfigError) as e:
        load_text(vault, "kong.yaml")
    assert "vault references are not resolved" in str(e.value)
    host = ('_format_version: "3.0"\nroutes:\n- name: r\n'
            "  hosts: ['https://user:SECRETPW@api.example.com']\n")
    with pytest.raises(ConfigError) as e:
        load_text(host, "kong.yaml")
    assert "SECRETPW" not in str(e.value) and "invalid host" in str(e.value)

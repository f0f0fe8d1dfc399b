"""Admin API bodies read as Kong reads them: dotted keys, repeated and [] arrays,
form strings coerced to the model's types, JSON taken as is."""

from __future__ import annotations

import pytest

from oauth2_introspection.admin.forms import (
    BodyError,
    coerce_form,
    nest_pairs,
    parse_body,
)
from oauth2_introspection.config import Plugin, Route

FORM = "application/x-www-form-urlencoded"


def test_dotted_keys_become_nested_objects():
    assert nest_pairs([("name", "oauth2-introspection"), ("config.ttl", "5"),
                       ("config.custom_introspection_headers.X-Tenant", "acme")]) == {
        "name": "oauth2-introspection",
        "config": {"ttl": "5", "custom_introspection_headers": {"X-Tenant": "acme"}},
    }


def test_repeated_key_and_bracket_key_both_make_a_list():
    repeated = nest_pairs([("config.custom_claims_forward", "a"),
                           ("config.custom_claims_forward", "b")])
    brackets = nest_pairs([("config.custom_claims_forward[]", "a"),
                           ("config.custom_claims_forward[]", "b")])
    assert repeated == brackets == {"config": {"custom_claims_forward": ["a", "b"]}}


def test_indexed_keys_are_ordered_by_index():
    data = nest_pairs([("paths[2]", "/b"), ("paths[1]", "/a")])
    assert data == {"paths": ["/a", "/b"]}


def test_form_strings_are_coerced_to_the_plugin_models_types():
    data = coerce_form(Plugin, {
        "name": "oauth2-introspection", "enabled": "false",
        "config": {"ttl": "5", "timeout": "300", "hide_credentials": "true",
                   "custom_claims_forward": "email", "anonymous": ""},
        "service": {"name": "echo"},
    })
    assert data["enabled"] is False
    assert data["config"]["ttl"] == 5.0
    assert data["config"]["timeout"] == 300
    assert data["config"]["hide_credentials"] is True
    assert data["config"]["custom_claims_forward"] == ["email"]  # one value of a set
    assert data["config"]["anonymous"] is None  # empty form value: unset
    assert data["service"] == {"name": "echo"}


def test_a_single_form_value_for_a_route_list_field_becomes_a_list():
    assert coerce_form(Route, {"paths": "/api", "strip_path": "false"}) == {
        "paths": ["/api"], "strip_path": False}


def test_form_value_that_is_not_a_number_stays_a_string_for_the_model_to_refuse():
    assert coerce_form(Plugin, {"config": {"timeout": "soon"}})["config"]["timeout"] == "soon"


def test_curl_data_body_is_read_as_a_form():
    body = (b"name=oauth2-introspection&config.introspection_url=https%3A%2F%2Fexample-url.com"
            b"&config.authorization_value=Basic+MG9hNWlpbjpPcGVuU2VzYW1l")
    data, is_form = parse_body(FORM, body)
    assert is_form
    assert data["config"]["authorization_value"] == "Basic MG9hNWlpbjpPcGVuU2VzYW1l"


def test_multipart_body_is_read_as_a_form():
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\noauth2-introspection"
            b"\r\n--XX\r\nContent-Disposition: form-data; name=\"config.ttl\"\r\n\r\n7\r\n"
            b"--XX--\r\n")
    data, is_form = parse_body("multipart/form-data; boundary=XX", body)
    assert is_form and data == {"name": "oauth2-introspection", "config": {"ttl": "7"}}


def test_json_body_is_taken_as_is():
    data, is_form = parse_body("application/json", b'{"name": "x", "config": {"ttl": "5"}}')
    assert not is_form and data["config"]["ttl"] == "5"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_unreadable_json_body_is_a_body_error(body):
    with pytest.raises(BodyError):
        parse_body("application/json", body)

"""The Admin API's endpoints, called as a function (no sockets): Kong's status
codes and bodies, every change validated whole and applied through
PolicyState, the JSON schema from the model."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from oauth2_introspection.admin.api import AdminAPI
from oauth2_introspection.config import DeclarativeConfig
from oauth2_introspection.export import plugin_schema
from oauth2_introspection.introspection import ClientPool
from oauth2_introspection.loader import load_text
from oauth2_introspection.state import PolicyState

FORM = "application/x-www-form-urlencoded"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
AUTH = "Basic MG9hNWlpbjpPcGVuU2VzYW1l"
SEED_FORM = [
    ("name", "oauth2-introspection"),
    ("config.introspection_url", "https://example-url.com"),
    ("config.authorization_value", AUTH),
    ("config.consumer_by", "username"),
]

BASE = """
_format_version: "3.0"
services:
  - name: echo
    routes:
      - name: api
        paths: [/api]
consumers:
  - username: alice
"""


class Api:
    def __init__(self, text: str = BASE) -> None:
        self.state = PolicyState(ClientPool())
        self.state.apply(load_text(text, "base.yaml"), "base.yaml")
        self.commits: list[tuple[DeclarativeConfig, str]] = []

        def commit(config: DeclarativeConfig, what: str) -> None:
            self.commits.append((config, what))
            self.state.apply(config, source="admin")

        self.api = AdminAPI(self.state, commit)

    def call(self, method: str, path: str, form: Any = None, json_body: Any = None,
             query: str = "", ctype: str | None = None, raw: bytes | None = None):
        if raw is not None:
            body = raw
        elif json_body is not None:
            body, ctype = json.dumps(json_body).encode(), ctype or "application/json"
        elif form is not None:
            body, ctype = urlencode(form).encode(), ctype or FORM
        else:
            body = b""
        resp = self.api.handle(method, path, query, ctype or "", body)
        payload = resp.payload()
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = payload.decode()
        return resp.status, data


@pytest.fixture
def api() -> Api:
    return Api()


def _plugin_of(state: PolicyState, route_path: str = "/api"):
    return state.policy.resolve("x", route_path, "GET").plugin


@pytest.mark.parametrize("path", ["/services/echo/plugins", "/routes/api/plugins", "/plugins",
                                  "/plugins/"])
def test_the_seeds_form_creates_a_plugin_that_applies_to_the_next_request(api, path):
    status, body = api.call("POST", path, form=SEED_FORM)
    assert status == 201, body
    assert body["name"] == "oauth2-introspection"
    assert body["config"]["introspection_url"] == "https://example-url.com"
    assert body["config"]["ttl"] == 30  # Kong's defaults are filled in
    plugin = _plugin_of(api.state)
    assert plugin is not None and plugin.id == body["id"]


def test_plugin_on_a_service_by_id_is_scoped_to_that_service(api):
    _, svc = api.call("GET", "/services/echo")
    status, body = api.call("POST", f"/services/{svc['id']}/plugins", form=SEED_FORM)
    assert status == 201
    assert body["service"] == {"id": svc["id"]} and body["route"] is None


def test_top_level_plugins_endpoint_takes_service_name_and_route_id(api):
    _, route = api.call("GET", "/routes/api")
    status, body = api.call("POST", "/plugins", form=[*SEED_FORM, ("route.id", route["id"])])
    assert status == 201 and body["route"] == {"id": route["id"]}
    status, body = api.call("POST", "/plugins", form=[*SEED_FORM, ("service.name", "echo")])
    assert status == 201 and body["service"]["id"]


def test_repeated_and_bracketed_set_fields_and_json_bodies_are_accepted(api):
    status, body = api.call("POST", "/plugins", form=[
        *SEED_FORM, ("config.custom_claims_forward", "email"),
        ("config.custom_claims_forward[]", "groups"), ("config.ttl", "5")])
    assert status == 201
    assert body["config"]["custom_claims_forward"] == ["email", "groups"]
    assert body["config"]["ttl"] == 5
    api.call("DELETE", f"/plugins/{body['id']}")
    status, body = api.call("POST", "/plugins", json_body={
        "name": "oauth2-introspection",
        "config": {"introspection_url": "https://idp/i", "authorization_value": AUTH,
                   "custom_claims_forward": ["a"]}})
    assert status == 201 and body["config"]["custom_claims_forward"] == ["a"]


def test_missing_and_invalid_fields_answer_400_naming_each_field(api):
    status, body = api.call("POST", "/plugins", form=[
        ("name", "oauth2-introspection"), ("config.ttl", "-1"),
        ("config.consumer_by", "email"), ("config.authorization_value", AUTH)])
    assert status == 400
    assert body["name"] == "schema violation" and body["code"] == 2
    fields = body["fields"]["config"]
    assert fields["introspection_url"] == "required field missing"
    assert "ttl" in fields and "consumer_by" in fields
    assert "config.ttl" in body["message"]
    assert api.commits == []  # nothing applied


def test_json_field_of_the_wrong_type_answers_400(api):
    status, body = api.call("POST", "/plugins", json_body={
        "name": "oauth2-introspection",
        "config": {"introspection_url": "https://idp/i", "authorization_value": AUTH,
                   "ttl": "30"}})
    assert status == 400 and "ttl" in body["fields"]["config"]


def test_another_plugin_name_answers_400_on_the_name_field(api):
    status, body = api.call("POST", "/plugins", form=[("name", "key-auth")])
    assert status == 400 and "key-auth" in body["fields"]["name"]


def test_unknown_parent_answers_404_and_unknown_reference_answers_400(api):
    assert api.call("POST", "/services/nope/plugins", form=SEED_FORM)[0] == 404
    assert api.call("POST", "/routes/nope/plugins", form=SEED_FORM)[0] == 404
    status, body = api.call("POST", "/plugins", form=[*SEED_FORM, ("service.name", "nope")])
    assert status == 400 and body["name"] == "foreign key violation"
    assert body["fields"] == {"service": {"name": "nope"}}


def test_a_second_plugin_on_the_same_scope_answers_409(api):
    assert api.call("POST", "/services/echo/plugins", form=SEED_FORM)[0] == 201
    status, body = api.call("POST", "/services/echo/plugins", form=SEED_FORM)
    assert status == 409 and body["name"] == "unique constraint violation"


def test_plugin_get_patch_delete_by_id(api):
    _, created = api.call("POST", "/plugins", form=SEED_FORM)
    pid = created["id"]
    status, got = api.call("GET", f"/plugins/{pid}")
    assert status == 200 and got == created
    status, patched = api.call("PATCH", f"/plugins/{pid}", form=[("config.ttl", "9")])
    assert status == 200
    assert patched["config"]["ttl"] == 9
    assert patched["config"]["introspection_url"] == "https://example-url.com"  # merged
    assert api.state.policy.global_plugin.config.ttl == 9
    status, listed = api.call("GET", "/plugins")
    assert status == 200 and [p["id"] for p in listed["data"]] == [pid]
    assert listed["next"] is None
    assert api.call("DELETE", f"/plugins/{pid}") == (204, None)
    assert api.state.policy.global_plugin is None
    assert api.call("GET", f"/plugins/{pid}")[0] == 404
    assert api.call("PATCH", f"/plugins/{pid}", form=[("config.ttl", "1")])[0] == 404
    assert api.call("DELETE", f"/plugins/{pid}")[0] == 204  # Kong: idempotent


def test_invalid_patch_answers_400_and_keeps_the_plugin(api):
    _, created = api.call("POST", "/plugins", form=SEED_FORM)
    status, body = api.call("PATCH", f"/plugins/{created['id']}",
                            form=[("config.timeout", "soon")])
    assert status == 400 and "timeout" in body["fields"]["config"]
    assert api.state.policy.global_plugin.config.timeout == 10000


def test_services_crud_with_kong_codes(api):
    status, svc = api.call("POST", "/services", form=[("name", "billing"),
                                                      ("url", "http://127.0.0.1:9/x")])
    # shown as Kong shows it: `url` is input only, stored as its parts
    assert status == 201 and "url" not in svc
    assert (svc["protocol"], svc["host"], svc["port"], svc["path"]) == (
        "http", "127.0.0.1", 9, "/x")
    assert api.call("POST", "/services", form=[("name", "billing")])[0] == 409
    status, body = api.call("POST", "/services", form=[("name", "bad"), ("url", "ftp://x")])
    assert status == 400 and "url" in body["fields"]
    status, svc2 = api.call("PATCH", "/services/billing", form=[("host", "example.com")])
    assert status == 200 and "url" not in svc2
    assert (svc2["protocol"], svc2["host"], svc2["port"], svc2["path"]) == (
        "http", "example.com", 9, "/x")
    assert api.call("GET", f"/services/{svc['id']}")[1]["name"] == "billing"
    assert {s["name"] for s in api.call("GET", "/services")[1]["data"]} == {"echo", "billing"}
    assert api.call("DELETE", "/services/billing")[0] == 204
    assert api.call("GET", "/services/billing")[0] == 404


def test_deleting_a_service_that_has_routes_answers_400(api):
    status, body = api.call("DELETE", "/services/echo")
    assert status == 400 and body["fields"] == {"@referenced_by": "routes"}


def test_routes_crud_and_routes_of_a_service(api):
    status, route = api.call("POST", "/services/echo/routes",
                             form=[("name", "v2"), ("paths[]", "/v2"), ("hosts", "a.test")])
    assert status == 201 and route["paths"] == ["/v2"] and route["hosts"] == ["a.test"]
    assert api.state.policy.resolve("a.test", "/v2/x", "GET").route.name == "v2"
    assert api.call("POST", "/routes", form=[("name", "v2"), ("paths", "/z")])[0] == 409
    status, body = api.call("POST", "/routes", form=[("name", "empty")])
    assert status == 400 and body["fields"]["@entity"]
    names = [r["name"] for r in api.call("GET", "/services/echo/routes")[1]["data"]]
    assert names == ["api", "v2"]
    assert api.call("PATCH", "/routes/v2", json_body={"strip_path": False})[1][
        "strip_path"] is False
    api.call("POST", "/routes/v2/plugins", form=SEED_FORM)
    assert len(api.call("GET", "/routes/v2/plugins")[1]["data"]) == 1
    assert api.call("DELETE", "/routes/v2")[0] == 204
    assert api.call("GET", "/plugins")[1]["data"] == []  # the route's plugins went with it


def test_consumers_crud_with_unique_username_and_custom_id(api):
    status, bob = api.call("POST", "/consumers", form=[("username", "bob"),
                                                       ("custom_id", "b-1")])
    assert status == 201 and bob["username"] == "bob" and bob["id"]
    assert "plugins" not in bob  # a Kong consumer has no plugins field
    assert api.call("POST", "/consumers", form=[("username", "bob")])[0] == 409
    status, body = api.call("POST", "/consumers", form=[("custom_id", "b-1")])
    assert status == 409 and body["fields"] == {"custom_id": "b-1"}
    assert api.call("POST", "/consumers", form=[("tags", "x")])[0] == 400
    assert api.state.policy.consumers.for_claims("username", {"username": "bob"}).id == bob["id"]
    assert api.call("GET", "/consumers/bob")[1]["id"] == bob["id"]
    assert api.call("PATCH", f"/consumers/{bob['id']}", form=[("username", "robert")])[0] == 200
    assert api.state.policy.consumers.for_claims("username", {"username": "robert"})
    assert api.call("DELETE", "/consumers/robert")[0] == 204
    assert api.state.policy.consumers.for_claims("username", {"username": "robert"}) is None
    assert api.call("GET", "/consumers/robert")[0] == 404


def test_unknown_path_is_404_and_wrong_method_is_405(api):
    assert api.call("GET", "/upstreams") == (404, {"message": "Not found"})
    assert api.call("GET", "/services/echo/nothing")[0] == 404
    assert api.call("PUT", "/plugins")[0] == 405
    assert api.call("DELETE", "/config")[0] == 405


def test_ids_of_entities_without_ids_in_the_file_stay_the_same_across_changes(api):
    before = api.call("GET", "/routes/api")[1]["id"]
    api.call("POST", "/consumers", form=[("username", "carol")])
    assert api.call("GET", "/routes/api")[1]["id"] == before
    assert api.state.policy.resolve("x", "/api", "GET").route.id == before


def test_get_config_returns_the_configuration_in_force_as_yaml_and_json(api):
    status, text = api.call("GET", "/config")
    assert status == 200 and yaml.safe_load(text)["services"][0]["name"] == "echo"
    status, data = api.call("GET", "/config", query="format=json")
    assert data["consumers"] == [{"username": "alice"}]


def test_post_config_replaces_everything_atomically(api):
    doc = {"_format_version": "3.0", "consumers": [{"username": "zed"}],
           "plugins": [{"name": "oauth2-introspection",
                        "config": {"introspection_url": "https://i/x",
                                   "authorization_value": AUTH}}]}
    status, body = api.call("POST", "/config", raw=yaml.safe_dump(doc).encode(),
                            ctype="application/yaml")
    assert status == 201, body
    assert api.state.policy.resolve("x", "/api", "GET").route is None
    assert api.state.policy.global_plugin is not None
    status, _ = api.call("POST", "/config", json_body=doc)
    assert status == 201
    assert api.call("POST", "/config", json_body=doc, query="check_hash=1")[0] == 304
    status, _ = api.call("POST", "/config", form=[("config", yaml.safe_dump(doc))])
    assert status == 201


@pytest.mark.parametrize("example", sorted(p.name for p in CONFIGS.glob("*.yaml")
                                            if p.name != "dev-tokens.yaml"))
def test_post_config_takes_the_body_forms_kong_takes(api, example):
    # Kong reads the `config` field of a form or JSON body, else the body
    # itself: `curl --data-binary @kong.yml` (labelled a form by curl) and
    # `{"config": "<yaml>"}` (httpie's `config=@kong.yml`) load too
    text = (CONFIGS / example).read_text()
    for kw in ({"raw": text.encode(), "ctype": FORM},
               {"json_body": {"config": text}},
               {"json_body": {"config": yaml.safe_load(text)}},
               {"raw": text.encode(), "ctype": "text/yaml"}):
        status, body = api.call("POST", "/config", **kw)
        assert status == 201, (kw, body)
        assert api.state.config.model_dump() == load_text(text, example).model_dump()
    # a form without `config` is read as a document, and refused as one
    status, body = api.call("POST", "/config", form=[("other", "1")])
    assert status == 400 and body["name"] == "invalid declarative configuration"


def test_post_config_with_an_invalid_document_answers_400_and_changes_nothing(api):
    generation = api.state.generation
    doc = {"_format_version": "3.0", "plugins": [{"name": "oauth2-introspection",
                                                  "config": {"ttl": -1}}]}
    status, body = api.call("POST", "/config", json_body=doc)
    assert status == 400
    assert body["name"] == "invalid declarative configuration"
    assert "plugins[0].config.ttl" in body["message"]
    assert "ttl" in body["fields"]["plugins"]["config"]
    assert api.state.generation == generation


def test_plugin_schema_endpoint_serves_the_schema_generated_from_the_model(api):
    status, body = api.call("GET", "/schemas/plugins/oauth2-introspection")
    assert status == 200 and body == plugin_schema()
    assert "introspection_url" in body["required"]
    assert body["properties"]["ttl"]["default"] == 30


def test_plugin_validate_endpoint_checks_without_changing_anything(api):
    status, body = api.call("POST", "/schemas/plugins/validate", form=SEED_FORM)
    assert (status, body) == (200, {"message": "schema validation successful"})
    status, body = api.call("POST", "/schemas/plugins/validate",
                            form=[("name", "oauth2-introspection"), ("config.ttl", "x")])
    assert status == 400 and "ttl" in body["fields"]["config"]
    assert api.commits == []


def test_bad_json_body_answers_400(api):
    status, body = api.call("POST", "/consumers", raw=b"{", ctype="application/json")
    assert status == 400 and "JSON" in body["message"]


def test_root_answers_with_node_information(api):
    status, body = api.call("GET", "/")
    assert status == 200 and body["configuration"]["database"] == "off"


# -- null means "unset": empty form values, JSON null --------------------------------------


def _multipart(pairs: list[tuple[str, str]]) -> tuple[bytes, str]:
    body = b"".join(f'--XX\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in pairs)
    return body + b"--XX--\r\n", "multipart/form-data; boundary=XX"


def test_an_empty_form_value_on_patch_unsets_the_field(api):
    _, p = api.call("POST", "/plugins", form=[
        *SEED_FORM, ("config.anonymous", "alice"), ("config.token_type_hint", "access_token"),
        ("config.custom_claims_forward", "email"), ("config.ttl", "5")])
    status, body = api.call("PATCH", f"/plugins/{p['id']}", form=[
        ("config.anonymous", ""), ("config.token_type_hint", ""),
        ("config.custom_claims_forward", "")])
    assert status == 200, body
    assert body["config"]["anonymous"] is None
    assert body["config"]["token_type_hint"] is None
    assert body["config"]["custom_claims_forward"] == []
    assert body["config"]["ttl"] == 5  # what the body does not name stays
    assert api.state.policy.global_plugin.config.anonymous is None
    raw, ctype = _multipart([("config.ttl", "")])
    status, body = api.call("PATCH", f"/plugins/{p['id']}", raw=raw, ctype=ctype)
    assert status == 200 and body["config"]["ttl"] == 30  # null: back to the default


def test_an_empty_required_form_value_is_a_missing_field(api):
    _, p = api.call("POST", "/plugins", form=SEED_FORM)
    status, body = api.call("PATCH", f"/plugins/{p['id']}",
                            form=[("config.introspection_url", "")])
    assert status == 400
    assert body["fields"] == {"config": {"introspection_url": "required field missing"}}
    assert api.state.policy.global_plugin.config.introspection_url == "https://example-url.com"


def test_an_empty_form_value_unsets_a_route_field(api):
    api.call("POST", "/services/echo/routes", form=[("name", "h"), ("paths", "/h"),
                                                     ("hosts", "a.test")])
    status, body = api.call("PATCH", "/routes/h", form=[("hosts", "")])
    assert status == 200 and body["hosts"] is None and body["paths"] == ["/h"]


def test_json_null_on_patch_unsets_the_field(api):
    _, p = api.call("POST", "/plugins", form=[*SEED_FORM, ("config.anonymous", "alice"),
                                              ("config.ttl", "5")])
    status, body = api.call("PATCH", f"/plugins/{p['id']}",
                            json_body={"config": {"anonymous": None, "ttl": None}})
    assert status == 200, body
    assert body["config"]["anonymous"] is None and body["config"]["ttl"] == 30


# -- PUT: create or replace -------------------------------------------------------------------


def test_put_by_name_creates_then_replaces_the_whole_service(api):
    status, created = api.call("PUT", "/services/billing", form=[
        ("url", "http://127.0.0.1:9/x"), ("retries", "2"), ("tags", "a")])
    assert status == 200, created
    assert created["name"] == "billing" and created["retries"] == 2 and created["id"]
    status, replaced = api.call("PUT", "/services/billing", json_body={"host": "example.com"})
    assert status == 200, replaced
    assert replaced["id"] == created["id"]  # the same entity
    assert replaced["host"] == "example.com" and "url" not in replaced
    assert (replaced["protocol"], replaced["port"], replaced["path"]) == ("http", 80, None)
    assert replaced["retries"] == 5 and replaced["tags"] is None  # defaults, not the old values
    assert api.call("GET", "/services/billing")[1] == replaced
    assert [s["name"] for s in api.call("GET", "/services")[1]["data"]] == ["echo", "billing"]


def test_put_by_uuid_sets_the_id_and_the_body_sets_the_name(api):
    sid = "6f1b0a86-5c0e-4e55-9b4e-0d3c5c0b9a11"
    status, body = api.call("PUT", f"/services/{sid}", form=[("name", "by-id"),
                                                             ("host", "h.test")])
    assert status == 200 and body["id"] == sid and body["name"] == "by-id"
    status, body = api.call("PUT", f"/services/{sid}", form=[("name", "renamed"),
                                                             ("host", "h.test")])
    assert status == 200 and body["name"] == "renamed"
    assert api.call("GET", "/services/by-id")[0] == 404


def test_put_keeps_the_id_and_refuses_another_one(api):
    _, echo = api.call("GET", "/services/echo")
    status, body = api.call("PUT", "/services/echo", json_body={"id": str(uuid.uuid4())})
    assert status == 400 and "id" in body["fields"]
    status, body = api.call("PUT", "/services/echo", json_body={})
    assert status == 200 and body["id"] == echo["id"]  # its routes still point at it
    assert api.call("GET", "/services/echo/routes")[1]["data"][0]["name"] == "api"


def test_put_consumer_by_username_and_plugin_by_id(api):
    status, body = api.call("PUT", "/consumers/zoe", form=[("custom_id", "z-1")])
    assert status == 200 and body["username"] == "zoe" and body["custom_id"] == "z-1"
    status, body = api.call("PUT", "/consumers/zoe", form=[])
    assert status == 200 and body["custom_id"] is None
    assert api.call("PUT", "/consumers/zoe", form=[("custom_id", "")])[0] == 200
    pid = str(uuid.uuid4())
    status, body = api.call("PUT", f"/plugins/{pid}", form=[*SEED_FORM, ("config.ttl", "7")])
    assert status == 200 and body["id"] == pid and body["config"]["ttl"] == 7
    assert api.state.policy.global_plugin.id == pid
    status, body = api.call("PUT", f"/plugins/{pid}", form=SEED_FORM)
    assert status == 200 and body["config"]["ttl"] == 30
    status, body = api.call("PUT", f"/plugins/{pid}", form=[("name", "oauth2-introspection")])
    assert status == 400 and body["fields"]["config"] == "required field missing"
    status, body = api.call("PUT", "/plugins/not-a-uuid", form=SEED_FORM)
    assert status == 400 and body["name"] == "invalid primary key"


def test_put_under_a_service_creates_or_replaces_its_route_and_plugin(api):
    status, body = api.call("PUT", "/services/echo/routes/v3", form=[("paths", "/v3")])
    assert status == 200 and body["name"] == "v3"
    assert body["service"] == {"id": api.call("GET", "/services/echo")[1]["id"]}
    assert api.state.policy.resolve("x", "/v3/a", "GET").route.name == "v3"
    status, body = api.call("PUT", "/services/echo/routes/v3", form=[("paths", "/v4")])
    assert status == 200 and body["paths"] == ["/v4"]
    pid = str(uuid.uuid4())
    status, body = api.call("PUT", f"/routes/v3/plugins/{pid}", form=SEED_FORM)
    assert status == 200 and body["route"] == {"id": api.call("GET", "/routes/v3")[1]["id"]}
    assert api.call("PUT", "/services/nope/routes/v3", form=[("paths", "/v4")])[0] == 404


# -- paging and filters -----------------------------------------------------------------------


def _pages(api: Api, path: str) -> list[list[str]]:
    pages = []
    while path:
        p, _, query = path.partition("?")
        status, body = api.call("GET", p, query=query)
        assert status == 200, body
        pages.append([e.get("username") or e.get("name") or e["id"] for e in body["data"]])
        assert ("offset" in body) == (body["next"] is not None)
        path = body["next"]
    return pages


def test_lists_are_paged_with_size_and_an_opaque_offset(api):
    for name in "bcde":
        api.call("POST", "/consumers", form=[("username", name)])
    assert _pages(api, "/consumers?size=2") == [["alice", "b"], ["c", "d"], ["e"]]
    assert _pages(api, "/consumers") == [["alice", "b", "c", "d", "e"]]
    _, body = api.call("GET", "/consumers", query="size=2")
    assert body["next"] == f"/consumers?offset={body['offset']}&size=2"
    assert _pages(api, "/consumers?size=5") == [["alice", "b", "c", "d", "e"]]


@pytest.mark.parametrize(("size", "message"), [
    ("0", "size must be an integer between 1 and 1000"),
    ("1001", "size must be an integer between 1 and 1000"),
    ("2.5", "size must be an integer between 1 and 1000"),
    ("abc", "size must be a number"),
])
def test_a_bad_page_size_answers_kongs_400(api, size, message):
    status, body = api.call("GET", "/routes", query=f"size={size}")
    assert (status, body) == (400, {"code": 9, "name": "invalid size", "message": message})


def test_a_bad_offset_answers_kongs_400(api):
    status, body = api.call("GET", "/plugins", query="offset=%21%21")
    assert status == 400 and body["code"] == 7 and body["name"] == "invalid offset"


def test_nested_lists_are_paged_too(api):
    for i in range(3):
        api.call("POST", "/services/echo/routes", form=[("name", f"r{i}"), ("paths", f"/{i}")])
    assert _pages(api, "/services/echo/routes?size=3") == [["api", "r0", "r1"], ["r2"]]


def test_consumers_are_filtered_by_custom_id(api):
    api.call("POST", "/consumers", form=[("username", "demo"), ("custom_id", "demo-app")])
    status, body = api.call("GET", "/consumers", query="custom_id=demo-app")
    assert status == 200 and [c["username"] for c in body["data"]] == ["demo"]
    assert body["next"] is None
    assert api.call("GET", "/consumers", query="custom_id=nobody")[1]["data"] == []


# -- nested plugin endpoints ------------------------------------------------------------------


def test_a_plugin_is_reached_through_its_service_or_route_only(api):
    _, on_service = api.call("POST", "/services/echo/plugins", form=SEED_FORM)
    _, on_route = api.call("POST", "/routes/api/plugins", form=SEED_FORM)
    sp, rp = on_service["id"], on_route["id"]
    assert api.call("GET", f"/services/echo/plugins/{sp}")[1]["id"] == sp
    assert api.call("GET", f"/routes/api/plugins/{rp}")[1]["id"] == rp
    assert api.call("GET", f"/services/echo/plugins/{rp}")[0] == 404  # another scope
    assert api.call("GET", f"/routes/api/plugins/{sp}")[0] == 404
    assert api.call("PATCH", f"/routes/api/plugins/{sp}", form=[("config.ttl", "1")])[0] == 404
    assert api.call("DELETE", f"/routes/api/plugins/{sp}")[0] == 404
    status, body = api.call("PATCH", f"/services/echo/plugins/{sp}", form=[("config.ttl", "4")])
    assert status == 200 and body["config"]["ttl"] == 4
    assert api.call("DELETE", f"/services/echo/plugins/{sp}")[0] == 204
    assert api.call("GET", f"/plugins/{sp}")[0] == 404
    assert api.call("GET", "/services/echo/routes/api")[1]["name"] == "api"
    assert api.call("POST", f"/routes/api/plugins/{rp}", form=SEED_FORM)[0] == 405


# -- services: url and its parts, defaults ----------------------------------------------------


def test_a_service_created_with_url_is_patched_part_by_part(api):
    api.call("POST", "/services", form=[("name", "svc3"),
                                        ("url", "http://127.0.0.1:21101/_control")])
    status, body = api.call("PATCH", "/services/svc3", form=[("port", "21100")])
    assert status == 200, body
    assert (body["protocol"], body["host"], body["port"], body["path"]) == (
        "http", "127.0.0.1", 21100, "/_control")
    service = api.state.config.services[-1]
    assert service.upstream() == ("http", "127.0.0.1", 21100, "/_control")
    status, body = api.call("PATCH", "/services/svc3", form=[("url", "https://b.test")])
    assert status == 200 and "url" not in body
    assert (body["protocol"], body["host"], body["port"], body["path"]) == (
        "https", "b.test", 443, None)


def test_entities_show_kongs_defaults(api):
    _, svc = api.call("GET", "/services/echo")
    assert (svc["connect_timeout"], svc["read_timeout"], svc["write_timeout"],
            svc["retries"]) == (60000, 60000, 60000, 5)
    _, route = api.call("GET", "/routes/api")
    assert route["protocols"] == ["http", "https"]
    assert route["https_redirect_status_code"] == 426


def test_a_duplicate_plugin_instance_name_answers_409(api):
    assert api.call("POST", "/routes/api/plugins",
                    form=[*SEED_FORM, ("instance_name", "one")])[0] == 201
    status, body = api.call("POST", "/services/echo/plugins",
                            form=[*SEED_FORM, ("instance_name", "one")])
    assert status == 409 and body["fields"] == {"instance_name": "one"}
    assert body["message"] == "UNIQUE violation detected on '{instance_name=\"one\"}'"


# -- found by the third black-box review ----------------------------------------------

BIG = "1" * 5000  # past Python's 4,300-digit integer conversion limit


def test_numbers_too_long_to_read_answer_400_not_500(api):
    _, created = api.call("POST", "/plugins", form=SEED_FORM)
    generation = api.state.generation
    status, body = api.call("PATCH", f"/plugins/{created['id']}", form=[("config.timeout", BIG)])
    assert status == 400 and "timeout" in body["fields"]["config"], body
    status, body = api.call("PATCH", "/services/echo", form=[("port", BIG)])
    assert status == 400 and "port" in body["fields"], body
    doc = BASE + f"plugins:\n  - name: oauth2-introspection\n    config:\n      timeout: {BIG}\n"
    for kw in ({"raw": doc.encode(), "ctype": "text/yaml"},
               {"raw": doc.replace("timeout", "ttl").encode(), "ctype": FORM}):
        status, body = api.call("POST", "/config", **kw)
        assert status == 400 and body["name"] == "invalid declarative configuration", body
    assert api.state.generation == generation


def test_form_numbers_are_ascii_digits_only(api):
    _, created = api.call("POST", "/plugins", form=SEED_FORM)
    status, body = api.call("PATCH", f"/plugins/{created['id']}",
                            form=[("config.timeout", "\u0661\u0660\u0660\u0660")])
    assert status == 400 and "timeout" in body["fields"]["config"], body


@pytest.mark.parametrize("offset", [
    "OTk",  # "99": a position alone was never given out
    "MToxMjM",  # "1:123": not an entity id
    "",
])
def test_an_offset_that_was_not_given_out_answers_400(api, offset):
    status, body = api.call("GET", "/consumers", query=f"offset={offset}")
    assert status == 400 and body["code"] == 7, body
    status, body = api.call(
        "GET", "/consumers",
        query="offset=" + __import__("base64").urlsafe_b64encode(BIG.encode()).decode())
    assert status == 400 and body["code"] == 7, body


def test_a_page_starts_where_its_offset_said_after_deletes_before_it(api):
    for name in "bcdef":
        api.call("POST", "/consumers", form=[("username", name)])
    _, first = api.call("GET", "/consumers", query="size=2")  # alice, b; next starts at c
    assert api.call("DELETE", "/consumers/alice")[0] == 204
    p, _, query = first["next"].partition("?")
    _, second = api.call("GET", p, query=query)
    assert [c["username"] for c in second["data"]] == ["c", "d"]  # not d, e
    # the page's first entity deleted too: its old position
    api.call("DELETE", "/consumers/c")
    _, again = api.call("GET", p, query=query)
    assert [c["username"] for c in again["data"]] == ["e", "f"]


def test_a_taken_id_is_kongs_primary_key_violation(api):
    _, created = api.call("POST", "/consumers", form=[("username", "bob")])
    status, body = api.call("POST", "/consumers", form=[("username", "carol"),
                                                        ("id", created["id"])])
    assert status == 409 and body["code"] == 3 and body["name"] == "primary key violation"
    assert body["fields"] == {"id": created["id"]}


def test_head_answers_as_get_and_plugins_enabled_lists_the_plugin(api):
    for path in ("/status", "/services", "/plugins/enabled"):
        assert api.call("HEAD", path)[0] == 200, path
    assert api.call("GET", "/plugins/enabled") == (200, {"enabled_plugins":
                                                         ["oauth2-introspection"]})
    assert api.call("HEAD", "/services/nope")[0] == 404


def test_a_document_holding_config_in_a_url_is_not_read_as_a_form(api):
    # curl --data-binary labels the body a form; `&config=` in a URL must not
    # make Kong's `config` field out of it
    doc = BASE + ("plugins:\n  - name: oauth2-introspection\n    config:\n"
                  "      introspection_url: http://127.0.0.1:9/i?tenant=a&config=b\n"
                  f"      authorization_value: {AUTH}\n")
    status, body = api.call("POST", "/config", raw=doc.encode(), ctype=FORM)
    assert status == 201, body
    assert api.state.config.plugins[0].config.introspection_url.endswith("&config=b")

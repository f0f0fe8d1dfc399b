"""Kubernetes manifests: the seed's examples (configs/k8s/) give the same
effective configuration as their decK equivalents; annotations, global
KongClusterPlugins, Ingress paths, the Service-to-URL ConfigMap; unsupported
kinds skipped with a warning; errors name the annotation and the line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from oauth2_introspection.errors import ConfigError
from oauth2_introspection.kubernetes import looks_like_kubernetes
from oauth2_introspection.loader import load_file, load_text
from oauth2_introspection.policy import Policy, compile_policy

K8S = Path(__file__).resolve().parents[2] / "configs" / "k8s"

PROBE_HOSTS = ["examplehostname.com", "other.test"]
PROBE_PATHS = ["/", "/bar", "/bar/x", "/barx", "/foo"]


def _policy(config) -> Policy:
    return compile_policy(config, lambda url, keepalive: (url, keepalive))


def effective(policy: Policy) -> list[tuple[Any, ...]]:
    """What each probe request gets: the plugin's settings and where it goes."""
    out = []
    for host in PROBE_HOSTS:
        for path in PROBE_PATHS:
            for method in ("GET", "OPTIONS"):
                res = policy.resolve(host, path, method)
                route = res.route
                out.append((
                    host, path, method,
                    res.plugin.config.model_dump() if res.plugin else None,
                    route.service.upstream if route and route.service else None,
                    (route.strip_path, route.preserve_host) if route else None,
                ))
    return out


@pytest.mark.parametrize("name", ["service-plugin", "route-plugin", "global-plugin"])
def test_seed_kubernetes_example_behaves_like_its_deck_equivalent(name):
    manifest = load_file(K8S / f"{name}.yaml")
    deck = load_file(K8S / f"{name}.deck.yaml")
    assert effective(_policy(manifest)) == effective(_policy(deck))
    assert len(_policy(manifest).plugins) == len(_policy(deck).plugins) == 1


def test_ingress_example_protects_its_host_and_path_only():
    policy = _policy(load_file(K8S / "route-plugin.yaml"))
    assert policy.resolve("examplehostname.com", "/bar/x", "GET").plugin is not None
    assert policy.resolve("other.test", "/bar", "GET").plugin is None
    route = policy.resolve("examplehostname.com", "/bar", "GET").route
    assert route.service.upstream == ("http", "127.0.0.1", 9000, "")  # from the ConfigMap


def test_seed_global_label_with_escaped_quotes_makes_a_global_plugin():
    policy = _policy(load_file(K8S / "global-plugin.yaml"))
    assert policy.global_plugin is not None


def test_deck_and_kubernetes_files_are_told_apart():
    assert looks_like_kubernetes((K8S / "route-plugin.yaml").read_text())
    assert not looks_like_kubernetes((K8S / "route-plugin.deck.yaml").read_text())


PLUGIN = """
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata:
  name: auth
config:
  introspection_url: https://idp.test/introspect
  authorization_value: Basic eDp5
plugin: oauth2-introspection
"""


def _ingress(annotation: str = "auth", path_type: str | None = None,
             extra: str = "") -> str:
    pt = f"\n        pathType: {path_type}" if path_type else ""
    return PLUGIN + f"""---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    konghq.com/plugins: {annotation}
{extra}spec:
  rules:
  - host: app.test
    http:
      paths:
      - path: /api{pt}
        backend:
          service:
            name: api
            port:
              number: 80
"""


def test_prefix_path_type_matches_the_path_and_below_but_not_a_longer_name():
    policy = _policy(load_text(_ingress(path_type="Prefix"), "m.yaml"))
    assert policy.resolve("app.test", "/api", "GET").route is not None
    assert policy.resolve("app.test", "/api/v1", "GET").route is not None
    assert policy.resolve("app.test", "/apix", "GET").route is None


def test_exact_path_type_matches_only_that_path():
    policy = _policy(load_text(_ingress(path_type="Exact"), "m.yaml"))
    assert policy.resolve("app.test", "/api", "GET").route is not None
    assert policy.resolve("app.test", "/api/v1", "GET").route is None


def test_strip_path_annotation_changes_the_ingress_controller_default():
    default = _policy(load_text(_ingress(), "m.yaml")).resolve("app.test", "/api", "GET")
    assert default.route.strip_path is False
    text = _ingress().replace("konghq.com/plugins: auth",
                              "konghq.com/plugins: auth\n    konghq.com/strip-path: \"true\"")
    stripped = _policy(load_text(text, "m.yaml")).resolve("app.test", "/api", "GET")
    assert stripped.route.strip_path is True


def test_a_plugin_named_in_an_annotation_that_does_not_exist_is_an_error_naming_it():
    text = _ingress(annotation="auth, missing-one")
    with pytest.raises(ConfigError) as e:
        load_text(text, "m.yaml")
    line = e.value.problems[0]
    assert line.startswith("m.yaml:16: Ingress 'web'")
    assert "konghq.com/plugins" in line and "'missing-one'" in line


def test_unsupported_kinds_are_skipped_with_a_warning_naming_them(caplog):
    text = _ingress() + """---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec: {}
"""
    with caplog.at_level(logging.WARNING):
        config = load_text(text, "m.yaml")
    assert config.routes
    assert any("Deployment 'api'" in r.getMessage() and "skipped" in r.getMessage()
               for r in caplog.records)


def test_invalid_plugin_config_points_at_the_kongplugin_line():
    text = _ingress().replace("authorization_value: Basic eDp5",
                              "authorization_value: Basic eDp5\n  ttl: -3")
    with pytest.raises(ConfigError) as e:
        load_text(text, "m.yaml")
    assert e.value.problems[0].startswith("m.yaml:9: KongPlugin 'auth' config.ttl:")


def test_service_map_names_must_exist_and_urls_must_be_valid():
    cm = """---
apiVersion: v1
kind: ConfigMap
metadata:
  name: oauth2-introspection-services
data:
  {key}: {url}
"""
    ok = _policy(load_text(_ingress() + cm.format(key="api", url="http://127.0.0.1:7000"),
                           "m.yaml"))
    assert ok.resolve("app.test", "/api", "GET").route.service.upstream[2] == 7000
    with pytest.raises(ConfigError) as e:
        load_text(_ingress() + cm.format(key="nope", url="http://127.0.0.1:7000"), "m.yaml")
    assert "no Service 'nope'" in e.value.problems[0]
    with pytest.raises(ConfigError) as e:
        load_text(_ingress() + cm.format(key="api", url="ftp://x"), "m.yaml")
    assert "ConfigMap 'oauth2-introspection-services' data.api" in e.value.problems[0]


def test_kong_consumers_become_consumers_and_namespaces_prefix_service_names():
    text = _ingress(extra="  namespace: shop\n").replace(
        "metadata:\n  name: auth", "metadata:\n  name: auth\n  namespace: shop") + """---
apiVersion: configuration.konghq.com/v1
kind: KongConsumer
metadata:
  name: alice
username: alice
custom_id: a-1
"""
    config = load_text(text, "m.yaml")
    assert config.consumers[0].username == "alice"
    assert config.services[0].name == "shop.api"
    assert config.routes[0].name == "shop.web"


def test_a_dotted_default_name_does_not_collide_with_another_namespace():
    # Ingress `shop.web` in default and `web` in namespace shop: both valid
    shop = _ingress(extra="  namespace: shop\n").replace(
        "metadata:\n  name: auth", "metadata:\n  name: auth\n  namespace: shop")
    text = _ingress().replace("name: web", "name: shop.web") + "---\n" + shop
    config = load_text(text, "m.yaml")
    assert sorted(r.name for r in config.routes) == ["default.shop.web", "shop.web"]
    assert sorted(s.name for s in config.services) == ["api", "shop.api"]
    # without namespace shop in the file, the name stays as written
    assert [r.name for r in load_text(_ingress().replace("name: web", "name: shop.web"),
                                      "m.yaml").routes] == ["shop.web"]


@pytest.mark.parametrize("blank", ["---\n", "---\n---\n", "---\n~\n"])
def test_empty_documents_are_skipped_as_kubectl_does(blank: str) -> None:
    # helm and kustomize leave a trailing `---`; the loader crashed on it
    text = _ingress()
    config = load_text(blank + "---\n" + text + blank, "m.yaml")
    assert [r.name for r in config.routes] == ["web"]


def test_kongplugin_of_another_namespace_is_not_found():
    text = _ingress(extra="  namespace: shop\n")
    with pytest.raises(ConfigError) as e:
        load_text(text, "m.yaml")
    assert "namespace 'shop'" in e.value.problems[0]


def test_the_methods_annotation_applies_to_the_default_backend_route_too():
    text = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    konghq.com/methods: GET
spec:
  defaultBackend:
    service:
      name: echo
      port: {number: 80}
"""
    config = load_text(text, "k8s.yaml")
    assert [r.methods for r in config.routes] == [["GET"]]


INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  annotations:
{annotations}
spec:
  rules:
    - host: shop.example.com
      http:
        paths:
          - path: {path}
            pathType: ImplementationSpecific
            backend:
              service:
                name: echo
                port: {{number: 80}}
"""


def test_host_aliases_add_hosts_to_the_rule_routes():
    aliases = '    konghq.com/host-aliases: "www.shop.example, m.shop.example"'
    text = INGRESS.format(annotations=aliases, path="/cart")
    config = load_text(text, "k8s.yaml")
    assert config.routes[0].hosts == ["shop.example.com", "www.shop.example", "m.shop.example"]


def test_the_ingress_controllers_regex_prefix_is_a_kong_regex_path():
    text = INGRESS.format(annotations="    konghq.com/strip-path: 'false'", path="/~/v[0-9]+/users")
    config = load_text(text, "k8s.yaml")
    assert config.routes[0].paths == ["~/v[0-9]+/users"]


def test_annotations_not_applied_are_reported(caplog):
    text = INGRESS.format(annotations="    konghq.com/protocols: https\n"
                                      "    konghq.com/regex-priority: '10'", path="/cart")
    with caplog.at_level(logging.WARNING):
        load_text(text, "k8s.yaml")
    assert "annotation konghq.com/protocols is not applied here (ignored)" in caplog.text
    assert "konghq.com/regex-priority" in caplog.text

"""bundle.IntrospectionAddon: the parts seen by mitmproxy as one addon object,
with every hook and command of every part still reached, in the parts' order."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import hooks
from mitmproxy.addonmanager import traverse
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow

from oauth2_introspection.bundle import IntrospectionAddon

from .hooking import hooked

CONFIG = """\
_format_version: "3.0"
services:
  - name: svc
    url: http://upstream.test:9000
    routes: [{name: r, paths: ["/"]}]
    plugins:
      - name: oauth2-introspection
        config: {introspection_url: "http://idp.test/i", authorization_value: "Basic eA=="}
"""


def test_every_hook_of_every_part_is_the_bundles() -> None:
    bundle = IntrospectionAddon()
    for part in bundle.parts:
        for name in hooks.all_hooks:
            if callable(getattr(part, name, None)):
                assert callable(getattr(bundle, name, None)), (type(part).__name__, name)


def test_mitmproxy_walks_one_object() -> None:
    bundle = IntrospectionAddon()
    assert list(traverse([bundle])) == [bundle]


def test_options_and_commands_of_every_part_are_registered() -> None:
    bundle = IntrospectionAddon()
    with taddons.context(Proxyserver(), bundle) as tctx:
        for option in ("introspection_config", "introspection_cache_size",
                       "introspection_admin", "introspection_watch"):
            assert option in tctx.options, option
        for name in ("introspection.cache.show", "introspection.cache.flush",
                     "introspection.explain", "introspection.reload", "introspection.diff"):
            assert name in tctx.master.commands.commands, name
        assert tctx.master.commands.call("introspection.cache.show").startswith("0 ")


@pytest.mark.asyncio
async def test_configure_reaches_the_core_and_the_watcher(tmp_path: Path) -> None:
    config = tmp_path / "kong.yaml"
    config.write_text(CONFIG)
    bundle = IntrospectionAddon()
    with taddons.context(Proxyserver(), bundle) as tctx:
        tctx.configure(bundle, introspection_config=str(config))
        assert bundle.core.policy is not None  # the core loaded it
        watcher = bundle.parts[3]
        assert watcher.path == str(config)  # the watcher, after the core
        flow = tflow.tflow()
        flow.request.headers.pop("Authorization", None)
        await hooked(bundle.request(flow))
        assert flow.response is not None and flow.response.status_code == 401
        await bundle.done()

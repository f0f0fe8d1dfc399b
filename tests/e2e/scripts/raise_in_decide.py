"""Test-only mitmproxy script: makes the addon's decision step raise, to prove
that an exception inside the addon is answered with 500 and never forwarded."""

import oauth2_introspection.addon as addon_module


async def _boom(*args, **kwargs):
    raise RuntimeError("injected failure for the fail-closed test")


addon_module.decide = _boom
addons: list = []

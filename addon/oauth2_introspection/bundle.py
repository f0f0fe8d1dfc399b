"""The addon's parts as the one object mitmproxy sees.

The parts stay separate classes, one concern each: the policy core
(addon.py), its commands (commands.py), the Admin API (admin/) and the config
file watcher (reload.py). mitmproxy, though, walks every addon object it
knows, with a chain of nested generators, for every event of every flow, and
each flow event is followed by an `update` event: four objects behind a
script cost about 200 generator steps, getattr and hasattr calls per request
(counted with cProfile against plain mitmdump; docs/performance.md). One
object that forwards each lifecycle hook to the parts, in their order, and
whose per-flow hooks are the core's own bound methods, keeps that walk short.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions

from .addon import OAuth2Introspection
from .admin import AdminAPIAddon
from .commands import IntrospectionCommands
from .reload import ConfigWatcher

logger = logging.getLogger("oauth2_introspection")

#: whether mitmproxy has run: before, a bad option value is logged as one
#: error line (mitmproxy then exits, as on any error logged during startup)
#: rather than raised, which its script loader prints with a traceback. A
#: module global: the package is not re-imported when the script reloads.
_started = False


class IntrospectionAddon:
    """Everything `addon/introspect.py` registers, as one mitmproxy addon."""

    def __init__(self, core: OAuth2Introspection | None = None) -> None:
        self.core = core or OAuth2Introspection()
        self.parts: tuple[Any, ...] = (
            self.core,
            IntrospectionCommands(self.core),
            AdminAPIAddon(self.core),
            ConfigWatcher(self.core),
        )
        # per-flow and per-connection hooks: the core's methods themselves,
        # found by mitmproxy's getattr with no forwarding call in between
        self.request = self.core.request
        self.server_connect = self.core.server_connect

    def _hooks(self, name: str) -> list[Callable[..., Any]]:
        return [hook for part in self.parts if (hook := getattr(part, name, None))]

    def load(self, loader: Any) -> None:
        for hook in self._hooks("load"):
            hook(loader)
        # mitmproxy collects @command.command methods from the addon objects
        # it walks; the parts are not among them, so register theirs here
        for part in self.parts:
            for name in dir(type(part)):
                command_name = getattr(getattr(type(part), name), "command_name", None)
                if command_name:
                    loader.add_command(command_name, getattr(part, name))

    def configure(self, updated: set[str]) -> None:
        for hook in self._hooks("configure"):
            try:
                hook(updated)
            except exceptions.OptionsError as e:
                if _started:
                    raise  # a live change: mitmproxy refuses it and rolls it back
                logger.error("oauth2-introspection: %s", e)

    def running(self) -> None:
        global _started
        _started = True
        for hook in self._hooks("running"):
            hook()

    async def done(self) -> None:
        for hook in self._hooks("done"):
            result = hook()
            if inspect.isawaitable(result):
                await result

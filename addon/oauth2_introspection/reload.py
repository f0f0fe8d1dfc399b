"""Live reload: the `introspection_config` file is watched while mitmproxy runs.

A change that validates replaces the configuration through
`PolicyState.apply()` (one assignment between requests: a request sees the old
policy or the new one). A change that does not validate keeps the last good
configuration in force, logs every problem (file, line, field), and marks
every following flow with a warning (`flow.comment`, and
`flow.metadata["oauth2_introspection"]["config_warning"]`) until the file is
fixed, so that it shows in mitmweb next to the requests it affects.

Watching is polling (stat, then a hash when size or mtime moved): no extra
dependency, works the same on every platform and on network filesystems.
Option `introspection_watch` (`true`/`false`, default true) turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat as stat_module
import time
from typing import Any

from mitmproxy import ctx, exceptions, http

from .errors import ConfigError
from .loader import summary
from .state import PolicyState

logger = logging.getLogger("oauth2_introspection.reload")

METADATA_KEY = "oauth2_introspection"
POLL_INTERVAL = 0.25
#: seconds a changed file must stay unchanged before it is read: a save in
#: several writes is read once complete, not as a prefix (which may well be a
#: valid configuration with fewer plugins, or none)
SETTLE = 1.0


def parse_bool(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise exceptions.OptionsError(f"{name}: expected true or false, got {value!r}")


def _fingerprint(path: str) -> tuple[int, int, bool] | None:
    """(mtime, size, whether it is a regular file), None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, stat_module.S_ISREG(st.st_mode)


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class ConfigWatcher:
    def __init__(self, core: Any, interval: float = POLL_INTERVAL,
                 settle: float = SETTLE) -> None:
        self.state: PolicyState = core.state
        self.interval = interval
        self.settle = settle
        #: a change seen but not read yet: (fingerprint, when first seen)
        self._changing: tuple[tuple[int, int, bool], float] | None = None
        self.enabled = True
        self.path = ""
        self._stat: tuple[int, int, bool] | None = None
        self._digest: str | None = None
        #: the last failed reload, shown on flows until a good one
        self.warning: str | None = None
        self.problems: list[str] = []
        self._task: asyncio.Task[None] | None = None
        # Called by the core's request hook rather than being a hook of its
        # own: every hook mitmproxy calls costs on every request.
        core.annotators.append(self.annotate)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "introspection_watch", str, "true",
            "Reload introspection_config when the file changes (true/false). An invalid "
            "change keeps the last good configuration and marks the following flows.",
        )

    def configure(self, updated: set[str]) -> None:
        if "introspection_watch" in updated:
            self.enabled = parse_bool("introspection_watch", ctx.options.introspection_watch)
        if "introspection_config" in updated:
            # the core addon has just loaded it (or refused it): start from here
            self.path = ctx.options.introspection_config
            self._baseline()
            self.warning, self.problems = None, []

    def _baseline(self) -> None:
        self._stat = _fingerprint(self.path) if self.path else None
        self._digest = _digest(self.path) if self.path else None

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not (self.enabled and self.path):
                continue
            try:
                self.check()
            except Exception:  # never let the watcher die silently
                logger.exception("oauth2-introspection: error while checking %s", self.path)

    def check(self) -> bool:
        """Reload if the file changed; True when a reload was attempted."""
        stat = _fingerprint(self.path)
        if stat is None:
            if self._stat is not None:
                self._vanished()
            return False
        if stat == self._stat:
            self._changing = None
            return False
        if not stat[2]:
            # a FIFO or a device: reading it could block the proxy's event loop
            if self._stat is None or self._stat[2]:
                logger.error("oauth2-introspection: %s is no longer a regular file; keeping "
                             "the configuration in force", self.path)
            self._stat = stat
            return False
        if self.settle > 0:
            now = time.monotonic()
            if self._changing is None or self._changing[0] != stat:
                self._changing = (stat, now)  # maybe still being written
                return False
            if now - self._changing[1] < self.settle:
                return False
        self._changing = None
        digest = _digest(self.path)
        self._stat = stat
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        self.reload()
        return True

    def _vanished(self) -> None:
        """The file is gone (deleted, or a mount went away): the policy in
        force stays, and says so; it reloads when the file is back."""
        self._stat = self._digest = None
        self.problems = [f"{self.path}: the file no longer exists"]
        self.warning = ("config reload failed, previous configuration still in force: "
                        f"{self.problems[0]}")
        logger.error("oauth2-introspection: %s no longer exists; keeping the previous "
                     "configuration until it is back", self.path)

    def reload(self) -> None:
        previous_source = self.state.source
        before = bool(self.state.policy and self.state.policy.plugins)
        try:
            self.state.load_file(self.path)
        except ConfigError as e:
            self.problems = e.problems
            self.warning = (f"config reload failed, previous configuration still in force: "
                            f"{e.problems[0]}"
                            + (f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1
                               else ""))
            logger.error("oauth2-introspection: %s changed but is invalid; keeping the previous "
                         "configuration:", self.path)
            for line in e.problems:
                logger.error("oauth2-introspection:   %s", line)
            return
        self.warning, self.problems = None, []
        if before and not (self.state.policy and self.state.policy.plugins):
            logger.warning("oauth2-introspection: %s now has no enabled oauth2-introspection "
                           "plugin: requests are forwarded without authentication", self.path)
        if previous_source not in (None, self.path):
            logger.warning("oauth2-introspection: %s changed: it replaces the configuration "
                           "from %s (Admin API changes)", self.path, previous_source)
        logger.info("oauth2-introspection: reloaded %s (%s)", self.path, summary(self.state.config))

    # -- flows --------------------------------------------------------------------

    def annotate(self, flow: http.HTTPFlow) -> None:
        """Mark a flow with the last failed reload, if any."""
        if self.warning is None:
            return
        meta = flow.metadata.get(METADATA_KEY)
        if not isinstance(meta, dict):
            meta = flow.metadata[METADATA_KEY] = {}
        meta["config_warning"] = self.warning
        meta["config_problems"] = list(self.problems)
        note = f"⚠ oauth2-introspection: {self.warning}"
        flow.comment = f"{flow.comment}\n{note}" if flow.comment else note

"""mitmproxy glue for the Admin API: options, the listener's lifecycle, and
the state file (persistence of accepted changes, restored at start-up).

Options (all strings, parsed here: a typed option that fails to parse from
`--set` silently disables an addon):

- `introspection_admin`: listen address (`127.0.0.1:8001`); empty: no Admin API.
- `introspection_admin_token`: required as `Kong-Admin-Token` on every
  request when set; required to listen on anything but loopback.
- `introspection_state`: the state file; empty: next to `introspection_config`
  (`kong.yaml` -> `kong.state.yaml`).

When the configuration file replaces the Admin API's changes (edited before a
start-up, or reloaded while running), the state file is set aside
(`StateFile.discard`), so that those changes cannot come back later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import ctx, exceptions

from ..config import DeclarativeConfig
from ..errors import ConfigError
from ..persistence import StateFile, default_state_path
from ..policy import Policy
from ..state import PolicyState
from .api import AdminAPI
from .entities import AdminError
from .server import AdminServer, is_loopback, parse_listen

logger = logging.getLogger("oauth2_introspection.admin")

_ADMIN_OPTIONS = {"introspection_admin", "introspection_admin_token"}


class AdminAPIAddon:
    def __init__(self, core: Any) -> None:
        self.state: PolicyState = core.state
        self.api = AdminAPI(self.state, self.commit)
        self.server: AdminServer | None = None
        self.state_file: StateFile | None = None
        self._listen: tuple[str, int, str] | None = None
        self._running = False
        #: where the configuration in force came from, before the latest change
        self._source: str | None = self.state.source
        self.state.subscribe(self._policy_changed)

    def load(self, loader: Any) -> None:
        loader.add_option(
            "introspection_admin", str, "",
            "Listen address of the Kong-compatible Admin API (e.g. 127.0.0.1:8001); "
            "empty: off. Anything but loopback needs introspection_admin_token.",
        )
        loader.add_option(
            "introspection_admin_token", str, "",
            "Token the Admin API requires in the Kong-Admin-Token header (empty: none, "
            "loopback only).",
        )
        loader.add_option(
            "introspection_state", str, "",
            "State file where Admin API changes are persisted (atomically) and restored from "
            "at start-up; empty: <config>.state.yaml next to introspection_config.",
        )

    # -- options --------------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        if updated & {"introspection_config", "introspection_state"}:
            self._configure_state(
                ctx.options.introspection_config, ctx.options.introspection_state,
                restore="introspection_config" in updated or "introspection_state" in updated,
            )
        if updated & _ADMIN_OPTIONS:
            listen = parse_admin_options(ctx.options.introspection_admin,
                                         ctx.options.introspection_admin_token)
            if listen != self._listen:
                self._listen = listen
                if self._loop_running():
                    self._restart()

    def _configure_state(self, config_path: str, state_path: str, restore: bool) -> None:
        path = state_path or (default_state_path(config_path) if config_path else "")
        self.state_file = StateFile(path, config_path or None) if path else None
        sf = self.state_file
        if not (restore and sf and sf.exists()):
            return
        if not sf.matches_base():
            logger.warning(
                "oauth2-introspection: %s changed since the Admin API changes in %s were made: "
                "starting from %s", config_path, sf.path, config_path,
            )
            _discard(sf)
            return
        try:
            policy = self.state.load_file(sf.path)
        except ConfigError as e:
            raise exceptions.OptionsError(f"invalid state file: {e}") from None
        logger.info(
            "oauth2-introspection: restored the Admin API state from %s (%d route(s), "
            "%d plugin(s), %d consumer(s))",
            sf.path, len(policy.router), len(policy.plugins), len(policy.consumers),
        )

    def _policy_changed(self, _config: DeclarativeConfig, _policy: Policy) -> None:
        """A reload of the configuration file over the Admin API's state drops
        that state (docs/admin-api.md): drop it on disk too, or it would come
        back at the next start-up once the file has its old content again."""
        previous, self._source = self._source, self.state.source
        sf = self.state_file
        if sf is None or previous != sf.path or self.state.source != sf.base:
            return
        logger.warning("oauth2-introspection: %s replaced the Admin API changes", sf.base)
        _discard(sf)

    @staticmethod
    def _loop_running() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    # -- lifecycle ------------------------------------------------------------------

    def running(self) -> None:
        self._running = True
        if self.server is None and self._listen is not None:
            try:
                self._restart()
            except exceptions.OptionsError as e:
                logger.error("oauth2-introspection: %s", e)

    def _restart(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._listen is None:
            return
        host, port, token = self._listen
        server = AdminServer(self.api, host, port, token)
        try:
            server.start()
        except OSError as e:
            raise exceptions.OptionsError(
                f"introspection_admin: cannot listen on {host}:{port}: {e.strerror or e}"
            ) from None
        self.server = server
        if self.state_file is None:
            logger.warning(
                "oauth2-introspection: Admin API changes will not survive a restart: set "
                "introspection_config or introspection_state"
            )
        logger.info("oauth2-introspection: Admin API listening at %s%s", server.url,
                    " (Kong-Admin-Token required)" if token else "")

    def done(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- changes --------------------------------------------------------------------

    def commit(self, config: DeclarativeConfig, what: str) -> None:
        """Persist, then apply. Persisting first means an accepted change is on
        disk before anyone is told it was accepted."""
        if self.state_file is not None:
            try:
                self.state_file.save(config)
            except OSError as e:
                logger.error("oauth2-introspection: %s refused: cannot write the state file "
                             "%s: %s", what, self.state_file.path, e.strerror or e)
                raise AdminError(500, {"message": "An unexpected error occurred: the change "
                                       "could not be persisted, so it was not applied"}) from None
        policy = self.state.apply(config, source=self.state_file.path if self.state_file
                                  else "Admin API", checked=False)
        logger.info(
            "oauth2-introspection: %s (now %d route(s), %d plugin(s), %d consumer(s))",
            what, len(policy.router), len(policy.plugins), len(policy.consumers),
        )


def _discard(sf: StateFile) -> None:
    """Set the state file aside; a failure is logged, never raised: the file's
    configuration is in force already, whatever happens to the old state."""
    try:
        if sf.discard():
            logger.warning("oauth2-introspection: the Admin API changes are set aside in %s "
                           "(never loaded again)", sf.discarded_path)
    except OSError as e:  # a warning: an error logged at start-up stops mitmproxy
        logger.warning("oauth2-introspection: cannot set aside %s (%s): delete it, or its "
                       "changes come back once the configuration file has its old content",
                       sf.path, e.strerror or e)


def parse_admin_options(listen: str, token: str) -> tuple[str, int, str] | None:
    """Validate the admin options; raise OptionsError with a message for the user."""
    if not listen:
        return None
    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise exceptions.OptionsError(f"introspection_admin: {e}") from None
    if not token and not is_loopback(host):
        raise exceptions.OptionsError(
            f"introspection_admin: refusing to listen on {listen!r} (not loopback) without "
            "introspection_admin_token"
        )
    if token and len(token) < 16:
        raise exceptions.OptionsError(
            "introspection_admin_token: use at least 16 characters"
        )
    return host, port, token

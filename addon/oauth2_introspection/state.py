"""The configuration in force: its model, its compiled policy, its source.

Every surface that changes configuration (the `introspection_config` option,
file reloads, the Admin API) goes through `PolicyState.apply()`, which
validates and compiles first and swaps second, in one assignment: a request
sees the old policy or the new one, never a half-built one, and an invalid
change leaves the old one in force.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .config import DeclarativeConfig
from .errors import ConfigError
from .introspection import ClientPool
from .loader import load_file
from .policy import Policy, check_references, compile_policy

logger = logging.getLogger(__name__)

Listener = Callable[[DeclarativeConfig, Policy], None]


class PolicyState:
    def __init__(self, clients: ClientPool) -> None:
        self.clients = clients
        self.config: DeclarativeConfig | None = None
        self.policy: Policy | None = None
        self.source: str | None = None
        #: bumped on every successful change; lets caches and UIs notice
        self.generation = 0
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(config, policy)` after every successful change."""
        self._listeners.append(listener)

    def load_file(self, path: str) -> Policy:
        """Load, validate and apply a declarative file; raise ConfigError."""
        # load_file() has checked references already, reporting file lines.
        return self.apply(load_file(path), source=path, checked=True)

    def apply(self, config: DeclarativeConfig, source: str, checked: bool = False) -> Policy:
        """Validate cross-references, compile and swap in `config`."""
        problems = [] if checked else check_references(config)
        if problems:
            raise ConfigError(
                source, [f"{source}: {'.'.join(map(str, loc))}: {msg}" for loc, msg in problems]
            )
        policy = compile_policy(config, self.clients.prepare, source=source)
        previous = self.policy
        self.config, self.policy, self.source = config, policy, source
        self.generation += 1
        self._close_unused_clients_later(previous)
        for listener in self._listeners:
            listener(config, policy)
        return policy

    def clear(self) -> None:
        previous = self.policy
        self.config = self.policy = self.source = None
        self.generation += 1
        self._close_unused_clients_later(previous)

    def _close_unused_clients_later(self, previous: Policy | None) -> None:
        """Close the introspection clients (and their connections) that the
        configuration now in force no longer uses, once the calls the previous
        one started may have ended (its longest `timeout`); without it every
        change of endpoint or `keepalive` left a client and a socket open."""
        if previous is None:
            return
        grace = max((p.config.timeout for p in previous.plugins), default=0) / 1000 + 1

        async def close() -> None:
            policy = self.policy  # the one in force then
            await self.clients.retain_only(
                {p.client_key for p in policy.plugins} if policy is not None else set())

        self.clients.later(grace, close)

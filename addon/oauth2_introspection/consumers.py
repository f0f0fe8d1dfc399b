"""Consumer lookup: by username, by custom_id, and the anonymous consumer.

The store is rebuilt with every configuration and consulted on every request
(never frozen into the token cache), so a consumer created or deleted shows up
or disappears on the very next request, even for a cached token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConsumerRecord:
    id: str
    username: str | None
    custom_id: str | None

    @property
    def label(self) -> str:
        return self.username or self.custom_id or self.id


class ConsumerStore:
    def __init__(self, consumers: Iterable[ConsumerRecord]) -> None:
        #: names this consumer set in the per-answer memo of derived values (an
        #: object: the memo compares it by identity and the collector never
        #: tracks it)
        self.memo_key = object()
        self._by_id: dict[str, ConsumerRecord] = {}
        self._by_username: dict[str, ConsumerRecord] = {}
        self._by_custom_id: dict[str, ConsumerRecord] = {}
        for c in consumers:
            self._by_id[c.id] = c
            if c.username is not None:
                self._by_username[c.username] = c
            if c.custom_id is not None:
                self._by_custom_id[c.custom_id] = c

    def __len__(self) -> int:
        return len(self._by_id)

    def for_claims(self, consumer_by: str, claims: Mapping[str, Any]) -> ConsumerRecord | None:
        """`username` claim -> consumer.username; `client_id` claim -> consumer.custom_id."""
        if consumer_by == "client_id":
            value = claims.get("client_id")
            return self._by_custom_id.get(value) if isinstance(value, str) else None
        value = claims.get("username")
        return self._by_username.get(value) if isinstance(value, str) else None

    def anonymous(self, ref: str) -> ConsumerRecord | None:
        """Kong accepts a consumer id or a username for `anonymous`."""
        return self._by_id.get(ref) or self._by_username.get(ref)

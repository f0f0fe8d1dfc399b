"""Equal values kept once, for what the hot set remembers per answer.

Thousands of cached answers carry mostly the same identity header fields
(client id, scope, issuer, token type, consumer), the same header names and
the same flow-comment text. Storing one object per distinct value instead of
one per answer is what lets the hot set hold its 16,384 answers in a few tens
of MB (cache.HOT_MAXSIZE, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)
V = TypeVar("V")


class Shared:
    """`shared(value)`: an equal value seen before (the same object), else
    `value`, remembered. Bounded: when full it starts over (values that are
    never shared, like a subject per token, would otherwise fill it), and the
    records built so far keep the objects they hold."""

    __slots__ = ("_maxsize", "_table")

    def __init__(self, maxsize: int = 8192) -> None:
        self._maxsize = maxsize
        self._table: dict[Hashable, object] = {}

    def __call__(self, value: T) -> T:
        return self.get(value, value)

    def get(self, key: Hashable, value: V) -> V:
        """For values that cannot be keys (dicts): the one stored under `key`
        (an equal value's hashable form), else `value`, stored."""
        found = self._table.get(key)
        if found is None:
            if len(self._table) >= self._maxsize:
                self._table.clear()
            self._table[key] = found = value
        return found  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._table)

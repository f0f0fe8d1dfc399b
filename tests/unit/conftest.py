"""Unit tests never touch the network: the introspection endpoint is always an
httpx.MockTransport. A connection attempt is a test bug, so it fails loudly."""

from __future__ import annotations

import socket
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_sock: socket.socket, address: Any) -> None:
        raise RuntimeError(f"unit tests must not open network connections (to {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)

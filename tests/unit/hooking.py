"""Calling a hook as mitmproxy does."""

from __future__ import annotations

import inspect
from typing import Any


async def hooked(result: Any) -> None:
    """Await what a hook returned when it is awaitable, as mitmproxy's
    AddonManager does: the request hook decides a cached token in one pass and
    returns None, and returns a coroutine for everything else."""
    if result is not None and inspect.isawaitable(result):
        await result

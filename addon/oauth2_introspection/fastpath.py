"""Helpers that keep the per-request cost of the hook low (see docs/performance.md).

- `ClientURL`: the request URL as the client sent it, captured in a few
  attribute reads and rendered (`str()`) only when a log line is written.
  Rendering it for every request cost more than the cached-token decision.
- `append_headers`: adds the identity headers in one step (mitmproxy's
  `headers[name] = value` rebuilds the whole list once per header).
- `header`, `host_header`, `set_host_header`: the lookups the hook needs,
  without mitmproxy's generic multidict machinery.
- `decision_logging`: whether per-request debug lines (allowed requests) are
  worth building: mitmproxy turns every log record, whatever its level, into a
  formatted entry and an event sent through every addon, so a line nobody
  shows still costs a lot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mitmproxy import http


class ClientURL:
    """The client's URL for logs (without an access_token value), built lazily."""

    __slots__ = ("_args", "_text")

    def __init__(self, request: http.Request, host_header: str | None) -> None:
        d = request.data
        self._args = (d.host, d.port, d.method, d.scheme, d.authority, d.path, d.http_version,
                      host_header)
        self._text: str | None = None

    def __str__(self) -> str:
        if self._text is None:
            from .addon import safe_url  # addon imports this module

            host, port, method, scheme, authority, path, version, host_header = self._args
            headers = http.Headers(host=host_header) if host_header else http.Headers()
            request = http.Request(host, port, method, scheme, authority, path, version,
                                   headers, b"", None, 0, 0)
            self._text = safe_url(request)
        return self._text

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def append_headers(headers: http.Headers, new: Mapping[str, str]) -> None:
    """Append `new` to `headers` (for names known to be absent, e.g. the
    identity headers right after strip_spoofable())."""
    if new:
        headers.fields = (*headers.fields, *(
            (_encoded_name(name), value.encode("utf-8", "surrogateescape"))
            for name, value in new.items()))


_NAMES: dict[str, bytes] = {}


def _encoded_name(name: str) -> bytes:
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = name.encode("utf-8", "surrogateescape")
        if len(_NAMES) < 1024:  # header names come from a small, fixed set
            _NAMES[name] = encoded
    return encoded


def header(headers: http.Headers, name: bytes) -> str | None:
    """`headers.get(name)` for a lower-case `name`, in one pass over the raw
    fields (repeated fields joined with ", ", as mitmproxy does)."""
    values = [v for k, v in headers.fields if k.lower() == name]
    if not values:
        return None
    if len(values) == 1:
        return values[0].decode("utf-8", "surrogateescape")
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in values)


def host_header(request: http.Request) -> str | None:
    """`request.host_header`, without mitmproxy's generic header lookup."""
    if request.is_http2 or request.is_http3:
        return request.host_header
    return header(request.data.headers, b"host")


def set_host_header(request: http.Request, value: str) -> None:
    """`request.host_header = value` (HTTP/1: the first Host field keeps its
    place and name, others are dropped; none: appended)."""
    if request.is_http2 or request.is_http3:
        request.host_header = value
        return
    encoded = value.encode("utf-8", "surrogateescape")
    fields: list[tuple[bytes, bytes]] = []
    done = False
    for field in request.data.headers.fields:
        if field[0].lower() == b"host":
            if not done:
                fields.append((field[0], encoded))
                done = True
        else:
            fields.append(field)
    if not done:
        fields.append((b"Host", encoded))
    request.data.headers.fields = tuple(fields)


def decision_logging(options: Any) -> bool:
    """Whether debug-level decision lines are shown anywhere (termlog at debug)."""
    try:
        return str(options.termlog_verbosity).lower() == "debug"
    except (AttributeError, KeyError):
        return True  # no terminal log option (tests, embedding): keep every line

"""Helpers that keep the per-request cost of the hook low (see docs/performance.md).

- `ClientURL`: the request URL as the client sent it, captured in a few
  attribute reads and rendered (`str()`) only when a log line is written.
  Rendering it for every request cost more than the cached-token decision.
- `rewrite_headers`: every header change of a request (Host, identity
  headers out and in) in one rebuild of the header list (mitmproxy's
  `headers[name] = value` rebuilds the whole list once per header).
- `read_head`: the Host and Authorization headers and whether identity
  headers were sent, in one pass over the raw header fields; `header`,
  `host_header`: single lookups, without mitmproxy's generic multidict
  machinery.
- `decision_logging`: whether per-request debug lines (allowed requests) are
  worth building: mitmproxy turns every log record, whatever its level, into a
  formatted entry and an event sent through every addon, so a line nobody
  shows still costs a lot.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mitmproxy import http

from .headers import is_spoofable


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


class RequestHead(NamedTuple):
    """What the hook reads from a request's head, read in one pass."""

    #: the Host header (HTTP/2 and 3: the authority), as request.host_header
    host_header: str | None
    #: the Authorization header, as request.headers.get("authorization")
    authorization: str | None
    #: whether the client sent any identity header (headers.is_spoofable)
    spoofed: bool


def read_head(request: http.Request) -> RequestHead:
    host: list[bytes] | None = None
    auth: list[bytes] | None = None
    spoofed = False
    for name, value in request.data.headers.fields:
        lower = name.lower()
        if lower == b"host":
            host = [value] if host is None else [*host, value]
        elif lower == b"authorization":
            auth = [value] if auth is None else [*auth, value]
        elif not spoofed:
            spoofed = is_spoofable(lower)
    h2 = request.is_http2 or request.is_http3
    if h2:
        client_host = request.host_header
    elif request.data.authority:
        client_host = absolute_form_host(request)
    else:
        client_host = _joined(host)
    return RequestHead(client_host, _sole(auth), spoofed)


def absolute_form_host(request: http.Request) -> str:
    """The host of an HTTP/1 absolute-form request line (`GET http://a/x`):
    RFC 9112 section 3.2.2 has servers use it and ignore the Host header, so routing
    does too (and the request goes upstream in origin form, see
    addon._send_upstream): a Host header naming another route cannot steer it."""
    return request.data.authority.decode("utf-8", "surrogateescape")


def _joined(values: list[bytes] | None) -> str | None:
    # repeated fields joined with ", ", as mitmproxy's headers.get() does
    if values is None:
        return None
    if len(values) == 1:
        return values[0].decode("utf-8", "surrogateescape")
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in values)


def _sole(values: list[bytes] | None) -> str | None:
    # a repeated Authorization header carries no token (token.header_token):
    # its fields are not joined
    return values[0].decode("utf-8", "surrogateescape") if values and len(values) == 1 else None


def sole_header(headers: http.Headers, name: bytes) -> str | None:
    """The value of a lower-case header `name` sent once; None if absent or repeated."""
    return _sole([v for k, v in headers.fields if k.lower() == name])


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
    if request.data.authority:
        return absolute_form_host(request)
    return header(request.data.headers, b"host")


def rewrite_headers(request: http.Request, host: str | None, *, strip: bool = False,
                    add: tuple[tuple[bytes, bytes], ...] = (), drop: bytes | None = None) -> None:
    """Every header change the hook makes, in one rebuild of the header list:
    the Host set to `host` (as `request.host_header = host` does: on HTTP/1 the
    first Host field keeps its place and name and the others go, none: one is
    appended; None leaves it alone), the identity headers the client sent
    dropped (`strip`), every `drop` field (a lower-case name) removed, and
    `add` appended (raw fields)."""
    if host is not None and (request.is_http2 or request.is_http3):
        request.host_header = host  # the :authority pseudo-header
        host = None
    if host is None and not strip and not add and drop is None:
        return
    headers = request.data.headers
    encoded = host.encode("utf-8", "surrogateescape") if host is not None else None
    fields: list[tuple[bytes, bytes]] = []
    host_done = encoded is None
    for field in headers.fields:
        name = field[0].lower()
        if name == b"host" and encoded is not None:
            if not host_done:
                fields.append((field[0], encoded))
                host_done = True
        elif not (strip and is_spoofable(name)) and name != drop:
            fields.append(field)
    if not host_done:
        fields.append((b"Host", encoded))  # type: ignore[arg-type]
    fields.extend(add)
    headers.fields = tuple(fields)


def decision_logging(options: Any) -> bool:
    """Whether debug-level decision lines are shown anywhere (termlog at debug)."""
    try:
        return str(options.termlog_verbosity).lower() == "debug"
    except (AttributeError, KeyError):
        return True  # no terminal log option (tests, embedding): keep every line

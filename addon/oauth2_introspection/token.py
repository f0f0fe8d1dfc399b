"""Find the access token in a request, and remove it for `hide_credentials`.

Order, as Kong: the `access_token` request parameter (a body field wins over
the query string), else `Authorization: Bearer <t>` (or `Token <t>`, any case).
Unlike Kong, the body is parsed only when its content type can carry the
field and it is at most `MAX_BODY_BYTES`; and removal edits only the token's
own bytes, so JSON and multipart bodies reach the upstream intact.

Every source is read as UTF-8; bytes that are not UTF-8 are kept as
surrogate escapes (so removal stays byte-exact), and a token holding any is
not text: `text.is_utf8_text()` tells, and the caller refuses it (no endpoint could
have issued it, and it cannot be sent in a form).
"""

from __future__ import annotations

import email.parser
import itertools
import json
import re
from enum import StrEnum
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import NamedTuple
from urllib.parse import unquote_plus

from mitmproxy import http

from .fastpath import RequestHead, sole_header

PARAM = "access_token"
MAX_BODY_BYTES = 1024 * 1024
_JSON_WS = re.compile(r"[ \t\n\r]*")


class TokenSource(StrEnum):
    QUERY = "query"
    FORM = "form"
    MULTIPART = "multipart"
    JSON = "json"
    HEADER = "header"


class FoundToken(NamedTuple):
    value: str
    source: TokenSource


def find_token(request: http.Request, head: RequestHead | None = None) -> FoundToken | None:
    """`head`: the request's head, when the caller read it already."""
    # Most requests have neither a body nor a query: skip both lookups then.
    data = request.data
    if data.content or b"?" in data.path:
        found = _body_token(request) or _query_token(request.path)
        if found:
            return found
    auth = (head.authorization if head is not None
            else sole_header(request.data.headers, b"authorization"))
    token = header_token(auth) if auth else None
    return FoundToken(token, TokenSource.HEADER) if token is not None else None


_NOT_ASCII_SPACE = re.compile(r"[^ \t\n\v\f\r]+")


def header_token(value: str) -> str | None:
    """The token of an `Authorization` value (one header field: a repeated
    header has none), as Kong reads it: split on ASCII whitespace into
    exactly two parts, the first `bearer` or `token` in any case. A no-break
    or other Unicode space is part of a word, as in Kong."""
    parts = value.split() if value.isascii() else _NOT_ASCII_SPACE.findall(value)
    if len(parts) == 2 and parts[0].lower() in ("bearer", "token"):
        return parts[1]
    return None


def remove_token(request: http.Request, found: FoundToken) -> list[str]:
    """Remove the credential from where it came from; return what was removed
    (for the flow's metadata), e.g. ["header:Authorization"]."""
    if found.source is TokenSource.HEADER:
        request.headers.pop("authorization", None)
        return ["header:Authorization"]
    removed: list[str] = []
    # A parameter token: Kong clears the query argument and the body field both.
    path = request.path
    if "?" in path:
        base, query = path.split("?", 1)
        kept = drop_form_field(query, PARAM)
        if kept != query:
            request.path = f"{base}?{kept}" if kept else base
            removed.append("query:access_token")
    kind = _body_kind(request)
    if kind is not None:
        body = request.get_content(strict=False) or b""
        new_body = _remove_from_body(kind, body, request.headers.get("content-type", ""))
        if new_body is None and kind is found.source:
            # fail closed: the token came from this body, so it must not go
            # upstream in it (the caller answers 500)
            raise ValueError(f"cannot remove the access_token from the {kind.value} body")
        if new_body is not None and new_body != body:
            request.content = new_body
            removed.append(f"{kind.value}:access_token")
    return removed


# -- query strings and forms ---------------------------------------------------


def _unquote(text: str) -> str:
    # escapes of non-UTF-8 bytes become surrogate escapes, not U+FFFD: two
    # different tokens must never read as the same one
    return unquote_plus(text, errors="surrogateescape")


def _form_value(encoded: str, name: str) -> str | None:
    for pair in encoded.split("&"):
        key, _, value = pair.partition("=")
        if _unquote(key) == name:
            return _unquote(value)
    return None


def drop_form_field(encoded: str, name: str) -> str:
    """Remove every `name=...` pair; other pairs keep their bytes and order."""
    return "&".join(p for p in encoded.split("&") if _unquote(p.partition("=")[0]) != name)


def mask_url(url: str) -> str:
    """`url` for logs: every query parameter the token lookup reads as
    `access_token` (whatever its escapes, e.g. `access%5Ftoken`) cut out, and
    one `access_token=***` appended in their place."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    kept = drop_form_field(query, PARAM)
    if kept == query:
        return url
    return f"{base}?{kept}&{PARAM}=***" if kept else f"{base}?{PARAM}=***"


def _query_token(path: str) -> FoundToken | None:
    if "?" not in path:
        return None
    value = _form_value(path.split("?", 1)[1], PARAM)
    return FoundToken(value, TokenSource.QUERY) if value else None


# -- bodies --------------------------------------------------------------------


def _body_kind(request: http.Request) -> TokenSource | None:
    # Most requests have no body: decide that before any header lookup.
    raw = request.raw_content
    if not raw or len(raw) > MAX_BODY_BYTES:
        return None
    ctype = request.headers.get("content-type", "").lower()
    if not ctype:
        return None
    # Like Kong, read only bodies sent as they are: decompressing a gzip body
    # would let a small request inflate past MAX_BODY_BYTES.
    if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
        return None
    mime = ctype.split(";", 1)[0].strip()
    if mime == "application/x-www-form-urlencoded":
        return TokenSource.FORM
    if mime == "multipart/form-data":
        return TokenSource.MULTIPART
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        return TokenSource.JSON
    return None


def _body_token(request: http.Request) -> FoundToken | None:
    kind = _body_kind(request)
    if kind is None:
        return None
    body = request.get_content(strict=False) or b""
    if len(body) > MAX_BODY_BYTES:
        return None
    value: object = None
    if kind is TokenSource.FORM:
        value = _form_value(_form_text(body), PARAM)
    elif kind is TokenSource.JSON:
        try:
            # UTF-8 text only, as remove_json_member() reads it: a token found
            # in a BOM/UTF-16 body could not be removed for hide_credentials.
            doc = json.loads(body.decode("utf-8"), parse_int=_any_number)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # Kong: an unparsable JSON body has no parameters (nested past the
            # recursion limit counts as unparsable)
            return None
        value = doc.get(PARAM) if isinstance(doc, dict) else None
    else:
        for _, _, name, is_file, content in _multipart_parts(body, request.headers["content-type"]):
            if name == PARAM and not is_file:
                value = content.decode("utf-8", "surrogateescape")
                break
    return FoundToken(value, kind) if isinstance(value, str) and value else None


def _remove_from_body(kind: TokenSource, body: bytes, content_type: str) -> bytes | None:
    if kind is TokenSource.FORM:
        return drop_form_field(_form_text(body), PARAM).encode("utf-8", "surrogateescape")
    if kind is TokenSource.JSON:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        new = remove_json_member(text, PARAM)
        return None if new is None else new.encode("utf-8")
    parts = _multipart_parts(body, content_type)
    for start, end, name, is_file, _ in reversed(parts):
        if name == PARAM and not is_file:
            body = body[:start] + body[end:]
    return body


def _form_text(body: bytes) -> str:
    # UTF-8, as query strings are read; surrogateescape keeps any other byte,
    # so the body re-encodes byte for byte after a field is cut out
    return body.decode("utf-8", "surrogateescape")


def _boundary(content_type: str) -> bytes | None:
    msg = email.parser.Parser().parsestr(f"Content-Type: {content_type}\r\n\r\n", headersonly=True)
    boundary = msg.get_param("boundary")
    return boundary.encode("latin-1") if isinstance(boundary, str) and boundary else None


def _delimiters(body: bytes, delim: bytes) -> tuple[list[int], int | None]:
    """Where the delimiter lines of a multipart body start, and where its
    close delimiter does (None: missing). As RFC 2046 §5.1.1 has them: `--`
    and the boundary at the start of a line, then optional spaces or tabs and
    CRLF, or `--` (the close delimiter). A line that merely starts so
    (`--BB` for boundary `B`) is content, and so is everything after the
    close delimiter (the epilogue)."""
    starts: list[int] = []
    search = 0
    at: int | None = 0 if body.startswith(delim) else None
    while True:
        if at is None:
            found = body.find(b"\r\n" + delim, search)
            if found == -1:
                return starts, None
            at = found + 2
        after = at + len(delim)
        if body.startswith(b"--", after):
            return starts, at
        end = after
        while body[end:end + 1] in (b" ", b"\t"):
            end += 1
        if body.startswith(b"\r\n", end):
            starts.append(at)
        search, at = after, None


def _multipart_parts(
    body: bytes, content_type: str
) -> list[tuple[int, int, str | None, bool, bytes]]:
    """Split a multipart body without re-encoding it.

    Returns (start, end, field name, is a file, content) per part, where
    body[start:end] is the part with its opening delimiter line, so removing
    that slice leaves every other byte as it was.
    """
    boundary = _boundary(content_type)
    if boundary is None:
        return []
    starts, close = _delimiters(body, b"--" + boundary)
    if close is not None:
        starts.append(close)
    parts = []
    header_parser = email.parser.BytesHeaderParser()
    for start, end in itertools.pairwise(starts):
        line_end = body.find(b"\r\n", start)
        if line_end == -1 or line_end + 2 > end - 2:
            continue
        raw = body[line_end + 2 : end - 2]
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = header_parser.parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        name = name if isinstance(name, str) else None
        is_file = headers.get_param("filename", header="content-disposition") is not None
        parts.append((start, end, name, is_file, content))
    return parts


def remove_json_member(text: str, key: str) -> str | None:
    """Remove every top-level `key` member of a JSON object, keeping every
    other character (spacing, order, number formats) as it was.

    Returns None when the text is not a JSON object.
    """
    decoder = json.JSONDecoder(parse_int=_any_number)
    while True:
        members = _json_members(text, decoder)
        if members is None:
            return None
        idx = next((i for i, (k, _, _) in enumerate(members) if k == key), None)
        if idx is None:
            return text
        _, start, end = members[idx]
        if idx + 1 < len(members):
            text = text[:start] + text[members[idx + 1][1] :]
        elif idx > 0:
            text = text[: members[idx - 1][2]] + text[end:]
        else:
            text = text[:start] + text[end:]


class _Integer:
    """An integer of a JSON body, unconverted: only `access_token` is read,
    and JSON puts no limit on a number's length (Python refuses to convert
    one of over 4,300 digits, which would make a valid body unreadable)."""

    __slots__ = ()


_INTEGER = _Integer()


def _any_number(_text: str) -> _Integer:
    return _INTEGER


def _json_members(text: str, decoder: json.JSONDecoder) -> list[tuple[str, int, int]] | None:
    """(key, start, end) of each top-level member of a JSON object."""
    try:
        i = _JSON_WS.match(text, 0).end()  # type: ignore[union-attr]
        if text[i : i + 1] != "{":
            return None
        i = _JSON_WS.match(text, i + 1).end()  # type: ignore[union-attr]
        members: list[tuple[str, int, int]] = []
        if text[i : i + 1] == "}":
            return members
        while True:
            start = i
            if text[i] != '"':
                return None
            key, i = scanstring(text, i + 1)
            i = _JSON_WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i] != ":":
                return None
            i = _JSON_WS.match(text, i + 1).end()  # type: ignore[union-attr]
            _, i = decoder.raw_decode(text, i)
            members.append((key, start, i))
            i = _JSON_WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i] == ",":
                i = _JSON_WS.match(text, i + 1).end()  # type: ignore[union-attr]
            elif text[i] == "}":
                return members
            else:
                return None
    except (ValueError, IndexError, RecursionError):
        return None

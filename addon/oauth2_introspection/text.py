"""Text checks shared by the token, the introspection answer and the log
lines: whether a str is UTF-8 text, a str made safe for one log line, and
raw request bytes made safe for a header value."""

from __future__ import annotations

import re
from urllib.parse import quote


def is_utf8_text(text: str) -> bool:
    """False for a str holding surrogates: raw non-UTF-8 bytes kept as
    surrogate escapes, or a lone surrogate from a JSON escape (`\\ud800`)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: what must not reach a log line or flow comment raw: C0 and C1 controls,
#: DEL, Unicode line/paragraph separators, lone surrogates
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def log_safe(text: str) -> str:
    """`text` for a log line or flow comment, control characters escaped as
    Python does (`\\r`, `\\x85`): a claim such as "alice\\r\\nX-Evil: 1"
    cannot forge a line."""
    return _UNPRINTABLE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    return m.group().encode("unicode_escape").decode("ascii")


_VISIBLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))


def header_text(raw: bytes) -> str:
    """Raw request bytes (a path, a method) as a header value for the
    introspection call: visible ASCII kept as sent, any other byte
    percent-encoded (as RFC 3986 would have the client send it; the HTTP
    client refuses non-ASCII and control characters in header values)."""
    return quote(raw, safe=_VISIBLE_ASCII)


def storable(text: str) -> str:
    """`text` (a path or Host as the client sent it, decoded with surrogate
    escapes) as flow metadata mitmproxy can save: if it holds bytes that are
    not UTF-8, its non-ASCII bytes percent-encoded, as a client should have
    sent them."""
    if is_utf8_text(text):
        return text
    return quote(text.encode("utf-8", "surrogateescape"), safe=_VISIBLE_ASCII)

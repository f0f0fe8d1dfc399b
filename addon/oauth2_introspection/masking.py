"""How secrets are shown where they must be shown at all: in the sub-flows of
introspection calls, in log lines and in error texts. One place, so that a
log line and a sub-flow hide the same things the same way."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote

#: names of custom headers and URL query parameters whose values are hidden:
#: what reads as a credential (`X-Api-Key`, `client_secret`)
SECRET_NAME = re.compile(r"auth|key|token|secret|passw|cookie|credential|signature", re.I)


def mask_token(token: str) -> str:
    return f"{token[:4]}***" if len(token) >= 12 else "***"


def mask_authorization(value: str) -> str:
    scheme, sep, _ = value.strip().partition(" ")
    return f"{scheme} ***" if sep else "***"


def mask_secret_params(url: str) -> str:
    """`url` with the values of credential-like query parameters masked."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    pairs = [p.partition("=") for p in query.split("&")]
    return base + "?" + "&".join(
        f"{name}{eq}***" if eq and SECRET_NAME.search(unquote(name)) else f"{name}{eq}{value}"
        for name, eq, value in pairs)


def call_secrets(token: str, authorization: str, headers: Mapping[str, str]) -> list[str]:
    """What an introspection call sends that no error text may repeat: the
    token, the Authorization value and credential-like custom header values."""
    return [token, authorization,
            *(value for name, value in headers.items() if SECRET_NAME.search(name))]


def spellings(secret: str) -> set[str]:
    """A secret as an endpoint may echo it: as it is, as sent in the call's
    form (percent-encoded, `+` for space), and inside a JSON string (escaped,
    `/` as `\\/` too, as PHP writes it)."""
    in_json = json.dumps(secret)[1:-1]
    return {secret, quote_plus(secret, safe=""), quote(secret, safe=""), in_json,
            in_json.replace("/", "\\/")}


def scrub(text: str, secrets: Iterable[str], mask: str = "***") -> str:
    """`text` (an exception's message, an answer's first bytes) with every
    occurrence of each secret, in each of its spellings, replaced by `mask`,
    longest first (so that a secret inside another is not left half shown)."""
    found = {form for s in secrets if s and s.strip() for form in spellings(s.strip())}
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, mask)
    return text


def scrub_bytes(body: bytes, secrets: Iterable[str], mask: str = "***") -> bytes:
    """`scrub` for a body that need not be UTF-8 (its other bytes kept as they are)."""
    text = body.decode("utf-8", "surrogateescape")
    return scrub(text, secrets, mask).encode("utf-8", "surrogateescape")


def answer_snippet(body: bytes, secrets: Iterable[str], limit: int = 200) -> str:
    """The first `limit` characters of an endpoint's answer for a log line,
    scrubbed before it is cut (a cut through a token would leave its start)."""
    return scrub(body.decode("utf-8", "backslashreplace"), secrets)[:limit]

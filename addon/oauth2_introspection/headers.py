"""Identity headers: strip what a client could forge, build what we vouch for.

Kong overwrites only the headers it sets on a given path, so a client can
forge e.g. `X-Consumer-Username` when its token matches no consumer. We remove
every incoming `X-Consumer-*`, `X-Credential-*` and `X-Anonymous-Consumer`
(also spelled with underscores) on each request a plugin handles, then set ours.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from mitmproxy import http

from .consumers import ConsumerRecord

# claim -> header, in Kong's order (Kong 3.0 dropped X-Credential-Username).
STANDARD_CLAIM_HEADERS: tuple[tuple[str, str], ...] = (
    ("scope", "X-Credential-Scope"),
    ("client_id", "X-Credential-Client-ID"),
    ("username", "X-Credential-Identifier"),
    ("token_type", "X-Credential-Token-Type"),
    ("exp", "X-Credential-Exp"),
    ("iat", "X-Credential-Iat"),
    ("nbf", "X-Credential-Nbf"),
    ("sub", "X-Credential-Sub"),
    ("aud", "X-Credential-Aud"),
    ("iss", "X-Credential-Iss"),
    ("jti", "X-Credential-Jti"),
)

def _spellings(name: str) -> tuple[bytes, ...]:
    """`name` with each dash also written as an underscore: CGI-style
    upstreams (WSGI, PHP, ...) read `X-Consumer_ID` as `X-Consumer-ID`."""
    variants = [b""]
    for part in name.encode().split(b"-"):
        variants = ([v + b"-" + part for v in variants] + [v + b"_" + part for v in variants]
                    if variants != [b""] else [part])
    return tuple(variants)


#: lower-case identity header names a client may not send (any spelling)
SPOOFABLE_PREFIXES_B = (*_spellings("x-consumer-"), *_spellings("x-credential-"))
ANONYMOUS_NAMES_B = frozenset(_spellings("x-anonymous-consumer"))
# control characters, C1 ones included (U+0080-U+009F)
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def spoofable_names(headers: http.Headers) -> list[str]:
    """The identity headers a client sent, once each, in their own case."""
    # One pass over the raw fields: this runs on every request a plugin handles.
    names: dict[bytes, str] = {}
    for name, _ in headers.fields:
        if is_spoofable(name.lower()):
            names.setdefault(name.lower(), name.decode("utf-8", "surrogateescape"))
    return list(names.values())


def strip_spoofable(headers: http.Headers) -> list[str]:
    """Remove identity headers a client sent; return their names."""
    names = spoofable_names(headers)
    if names:
        headers.fields = tuple(f for f in headers.fields if not is_spoofable(f[0].lower()))
    return names


def is_spoofable(lower: bytes) -> bool:
    """Whether a (lower-case) header name is one of the identity headers."""
    return lower.startswith(SPOOFABLE_PREFIXES_B) or lower in ANONYMOUS_NAMES_B


def custom_claim_header(claim: str) -> str:
    return "X-Credential-" + claim.replace("_", "-")


def format_claim(value: Any) -> str | None:
    """Render a claim as header text: numbers in decimal, arrays comma-joined,
    objects as compact JSON. None for a JSON null."""
    if type(value) is str:  # the common case first
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        items = [format_claim(v) for v in value]
        return ",".join(i for i in items if i is not None)
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def credential_headers(
    claims: Mapping[str, Any], custom_claims: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """Headers for an active token, and the claims dropped as unsafe.

    A value with CR, LF, NUL or another control character would let an
    identity provider (or whoever controls a claim) inject header lines:
    such a value is dropped, never forwarded.
    """
    out: dict[str, str] = {}
    dropped: list[str] = []
    pairs, clashing = _claim_headers(tuple(custom_claims))
    seen: set[str] = set()
    for claim, header in pairs:
        if claim not in claims:
            continue
        if clashing:
            # A custom claim naming a standard one ("iss") would add the same
            # header twice in another case: the first (standard) name wins.
            if header.lower() in seen:
                continue
            seen.add(header.lower())
        text = format_claim(claims[claim])
        if text is None:
            continue
        if _UNSAFE_VALUE.search(text):
            dropped.append(claim)
            continue
        out[header] = text
    return out, dropped


@functools.lru_cache(maxsize=256)
def _claim_headers(custom_claims: tuple[str, ...]) -> tuple[tuple[tuple[str, str], ...], bool]:
    """(claim, header) pairs in order for a plugin's custom claims, and whether
    two of them name the same header (then the first present one wins)."""
    pairs = (*STANDARD_CLAIM_HEADERS, *((c, custom_claim_header(c)) for c in custom_claims))
    return pairs, len({h.lower() for _, h in pairs}) < len(pairs)


def consumer_headers(consumer: ConsumerRecord, *, anonymous: bool = False) -> dict[str, str]:
    out = {"X-Consumer-ID": consumer.id}
    if consumer.custom_id is not None:
        out["X-Consumer-Custom-ID"] = consumer.custom_id
    if consumer.username is not None:
        out["X-Consumer-Username"] = consumer.username
    if anonymous:
        out["X-Anonymous-Consumer"] = "true"
    return out

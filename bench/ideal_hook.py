"""The least an introspecting addon does for a cached token, as a yardstick.

    .venv/bin/python bench/variants.py addon=addon ideal=bench/ideal_hook.py

One pass over the header fields for the Authorization header, a SHA-256 key,
one dict lookup, 11 prepared header fields appended, a comment, a marker and
a small metadata dict: no routing, no policy, no expiry. Not a product: it
shows how close to plain mitmdump any addon doing this work can get on a
machine (docs/performance.md).
"""

from __future__ import annotations

import hashlib

from mitmproxy import http

FIELDS = tuple((f"X-Credential-H{i}".encode(), b"some-value-%d" % i) for i in range(11))
PREFIX = b"p" * 32
_answers: dict[str, tuple[tuple[bytes, bytes], ...]] = {}


class IdealHook:
    async def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        fields = request.data.headers.fields
        auth = b""
        for name, value in fields:
            if name.lower() == b"authorization":
                auth = value
        key = hashlib.sha256(PREFIX + b"\x00" + auth).hexdigest()
        added = _answers.get(key)
        if added is None:
            added = _answers[key] = FIELDS
        request.data.headers.fields = fields + added
        flow.comment = "oauth2-introspection [route all, service 'bench']: allowed (cache hit)"
        flow.marked = ":green_circle:"
        flow.metadata["oauth2_introspection"] = {"token_id": key[:12], "cache": "hit"}


addons = [IdealHook()]
# as in addon/introspect.py: no failed hook-name lookups on this module
requestheaders = request = responseheaders = response = update = None

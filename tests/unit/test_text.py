"""text.py: raw request bytes as a header value for the introspection call."""

from __future__ import annotations

import pytest

from oauth2_introspection.text import header_text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"/api/v1/items", "/api/v1/items"),
        (b"/a%20b/~x;y=1", "/a%20b/~x;y=1"),  # already encoded: kept as sent
        ("/café".encode(), "/caf%C3%A9"),
        (b"/\xff\xfe", "/%FF%FE"),  # not UTF-8
        (b"/a\x00b\x7f", "/a%00b%7F"),  # controls the HTTP client refuses
        ("GéT".encode(), "G%C3%A9T"),
    ],
)
def test_visible_ascii_is_kept_and_every_other_byte_percent_encoded(raw: bytes,
                                                                     shown: str) -> None:
    assert header_text(raw) == shown

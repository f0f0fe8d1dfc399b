"""The Manager page: one static HTML file (a little inline JavaScript, no build
step) served by the Admin API listener at `/` to browsers.

`GET /` stays Kong's JSON node information for API clients (decK, curl, ...);
a request whose `Accept` asks for HTML (a browser navigating there) gets the
page. The page holds no data and no secret: it calls the same Admin API with
`fetch()` (same origin), sending the `Kong-Admin-Token` the user typed when
one is configured.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

#: Inline script and style only, nothing from elsewhere, API calls to this origin.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def page() -> bytes:
    return resources.files(__package__).joinpath("index.html").read_bytes()


def wants_page(method: str, path: str, accept: str | None) -> bool:
    """A browser asking for `/` (or `/manager`)."""
    return (method in ("GET", "HEAD") and path in ("/", "/manager")
            and "text/html" in (accept or ""))


def same_origin(origin: str | None, scheme: str, host: str) -> bool:
    """An `Origin` header naming this very listener (the page's own fetch calls)."""
    return origin is not None and origin == f"{scheme}://{host}"

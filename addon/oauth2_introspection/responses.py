"""The answers the plugin gives itself, with RFC 6750 challenges.

Bodies are fixed texts: nothing from the introspection endpoint or a socket
error ever reaches the client (those go to the log and the flow's metadata).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mitmproxy import http

REALM = "service"
MISSING_TOKEN = "The access token is missing"
INVALID_TOKEN = "The access token is invalid or has expired"


@dataclass(frozen=True)
class Refusal:
    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def to_response(self, head: bool = False) -> http.Response:
        """`head`: the answer to a HEAD request, which has no body (its
        Content-Length still says what a GET would get, RFC 9110 9.3.2): a
        body there would be read as the start of the next answer."""
        response = http.Response.make(
            self.status,
            json.dumps(self.body, separators=(",", ":")),
            {"Content-Type": "application/json; charset=utf-8", **self.headers},
        )
        if head:
            response.raw_content = b""
        return response


def _challenge(error: str | None = None, description: str | None = None) -> str:
    params = [f'realm="{REALM}"']
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{description}"')
    return "Bearer " + ", ".join(params)


def missing_token() -> Refusal:
    return Refusal(
        401,
        {"error": "invalid_request", "error_description": MISSING_TOKEN},
        {"WWW-Authenticate": _challenge()},
    )


def invalid_token() -> Refusal:
    return Refusal(
        401,
        {"error": "invalid_token", "error_description": INVALID_TOKEN},
        {"WWW-Authenticate": _challenge("invalid_token", INVALID_TOKEN)},
    )


def introspection_failed() -> Refusal:
    return Refusal(
        502,
        {
            "error": "bad_gateway",
            "message": "The token introspection endpoint did not give a usable answer",
        },
    )


def anonymous_not_found(anonymous: str) -> Refusal:
    return Refusal(
        500,
        {
            "error": "server_error",
            "message": f"The anonymous consumer '{anonymous}' configured on this route's "
            "oauth2-introspection plugin does not exist",
        },
    )


def internal_error() -> Refusal:
    return Refusal(500, {"error": "server_error", "message": "An unexpected error occurred"})


def no_policy() -> Refusal:
    return Refusal(
        503,
        {
            "error": "server_error",
            "message": "No introspection policy is loaded; set the introspection_config option",
        },
    )


def bad_request_target() -> Refusal:
    """A request target that is not a path (`OPTIONS *`, an HTTP/2 `:path`
    without its slash): no route can be matched against it, so it is refused
    as nginx refuses it in front of Kong, never forwarded unchecked."""
    return Refusal(
        400,
        {
            "error": "invalid_request",
            "message": "Bad request: the request target must be a path starting with /",
        },
    )

"""RFC 7662 calls: one shared async httpx client per endpoint, typed answers.

A client is created when a configuration is compiled (constructing one costs
~20 ms of blocked event loop, far too much per request) and reused by every
request; idle connections stay pooled for the plugin's `keepalive`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .errors import (
    IntrospectionBadBody,
    IntrospectionBadStatus,
    IntrospectionTimeout,
    IntrospectionUnreachable,
)
from .masking import answer_snippet, call_secrets, mask_secret_params, scrub
from .text import is_utf8_text

logger = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1024 * 1024
#: what the call accepts: encodings read here in bounded steps (see _read_capped)
ACCEPT_ENCODING = "gzip, deflate"
#: nesting allowed in an answer: claims are shallow, and deeper values would
#: run the recursive encoders (cache, headers) into Python's recursion limit
MAX_ANSWER_DEPTH = 64
USER_AGENT = "mitmproxy-oauth2-introspection"
#: seconds before clients replaced by new TLS settings are closed (their calls end first)
CLOSE_GRACE = 60.0

#: Set (per flow) by the addon when introspection calls are shown as their own
#: flows (subflows.py): `recorder(req, response_or_None, body, error_or_None)`
#: is called once a call ends. Unset, a call costs one ContextVar lookup.
call_recorder: ContextVar[Any] = ContextVar("oauth2_introspection_call_recorder",
                                            default=None)


@dataclass(frozen=True)
class IntrospectionResult:
    active: bool
    claims: Mapping[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0


@dataclass(frozen=True)
class IntrospectionRequest:
    """Everything one call sends. `authorization` is a secret: never log it."""

    url: str
    token: str
    authorization: str = field(repr=False)
    token_type_hint: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = 10000

    def secrets(self) -> list[str]:
        """What no error text or log line may repeat (masking.scrub)."""
        return call_secrets(self.token, self.authorization, self.headers)


def pool_key(url: str, keepalive_ms: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", keepalive_ms


class ClientPool:
    """Long-lived httpx clients keyed by (endpoint origin, keepalive), made on
    first use; `verify` is how they check an https endpoint's certificate."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, int], httpx.AsyncClient] = {}
        self.verify: ssl.SSLContext | bool = True
        self._closing: set[asyncio.Task[None]] = set()

    def prepare(self, url: str, keepalive_ms: int) -> tuple[str, int]:
        key = pool_key(url, keepalive_ms)
        self.get(key)
        return key

    def get(self, key: tuple[str, int]) -> httpx.AsyncClient:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(
                # No proxy from the environment: HTTP(S)_PROXY often points at
                # this very mitmproxy, which would loop the call back to us.
                trust_env=False,
                verify=self.verify,
                limits=httpx.Limits(
                    max_connections=256,
                    max_keepalive_connections=64,
                    keepalive_expiry=key[1] / 1000,
                ),
                headers={"User-Agent": USER_AGENT},
            )
        return client

    def set_verify(self, verify: ssl.SSLContext | bool) -> None:
        """New certificate checks: clients are made again on their next use
        (the current ones are closed once their calls may have ended)."""
        self.verify = verify
        old, self._clients = self._clients, {}
        if old:
            self.later(CLOSE_GRACE, lambda: _close_all(old.values()))

    def later(self, grace: float, close: Callable[[], Awaitable[None]]) -> None:
        """Run `close` once `grace` seconds have passed: clients are closed
        only after the calls they may be serving could have ended."""
        async def run() -> None:
            await asyncio.sleep(grace)
            await close()

        with contextlib.suppress(RuntimeError):  # no event loop: nothing is open
            task = asyncio.get_running_loop().create_task(run())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def retain_only(self, keys: set[tuple[str, int]]) -> None:
        """Close clients no configuration uses any more."""
        for key in [k for k in self._clients if k not in keys]:
            await self._clients.pop(key).aclose()

    async def aclose(self) -> None:
        await self.retain_only(set())


async def _close_all(clients: Iterable[httpx.AsyncClient]) -> None:
    for client in clients:
        await client.aclose()


def tls_verify(insecure: bool, ca_file: str | None, ca_dir: str | None) -> ssl.SSLContext | bool:
    """How an https introspection endpoint's certificate is checked, from
    mitmproxy's own options for upstream servers (the endpoint is one):
    `ssl_insecure`, `ssl_verify_upstream_trusted_ca` (a PEM file) and
    `ssl_verify_upstream_trusted_confdir`. ValueError: unreadable CA."""
    if insecure:
        return False
    if not (ca_file or ca_dir):
        return True
    try:
        return ssl.create_default_context(cafile=ca_file or None, capath=ca_dir or None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"cannot load trusted CA certificates: {e}") from None


async def introspect(client: httpx.AsyncClient, req: IntrospectionRequest) -> IntrospectionResult:
    """POST the token; return the typed answer or raise an IntrospectionError."""
    form = {"token": req.token}
    if req.token_type_hint:
        form["token_type_hint"] = req.token_type_hint
    headers = {
        "Authorization": req.authorization,
        "Accept": "application/json",
        "Accept-Encoding": ACCEPT_ENCODING,
        **req.headers,
    }
    timeout_s = req.timeout_ms / 1000
    started = time.perf_counter()
    record = call_recorder.get()
    resp = None
    body = b""
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                "POST", req.url, data=form, headers=headers, timeout=timeout_s
            ) as resp:
                if resp.status_code != 200:
                    body = await _read_capped(resp)
                    # the first bytes say what went wrong; an endpoint may echo the token
                    logger.warning(
                        "introspection endpoint %s answered HTTP %d: %r",
                        mask_secret_params(req.url), resp.status_code,
                        answer_snippet(body, req.secrets()),
                    )
                    raise IntrospectionBadStatus(resp.status_code)
                body = await _read_capped(resp)
    except (TimeoutError, httpx.TimeoutException):
        logger.warning("introspection call to %s timed out after %d ms",
                       mask_secret_params(req.url), req.timeout_ms)
        err = IntrospectionTimeout(f"no answer within {req.timeout_ms} ms")
        if record is not None:
            record(req, resp, body, err)
        raise err from None
    except httpx.HTTPError as e:
        # httpx's messages can quote what was sent (an illegal header value)
        detail = scrub(f"{e.__class__.__name__}: {e}", req.secrets())
        logger.warning("introspection endpoint %s unreachable: %s",
                       mask_secret_params(req.url), detail)
        err = IntrospectionUnreachable(detail)
        if record is not None:
            record(req, resp, body, err)
        raise err from None
    except IntrospectionBadBody as e:  # over the size cap, while reading it
        logger.warning("introspection endpoint %s answered unusably: %s",
                       mask_secret_params(req.url), e)
        if record is not None:
            record(req, resp, body, e)
        raise
    except Exception as e:
        if record is not None:
            record(req, resp, body, e)
        raise
    if record is not None:
        record(req, resp, body, None)
    latency_ms = (time.perf_counter() - started) * 1000
    return parse_answer(body, req.url, latency_ms, req.secrets())


async def _read_capped(resp: httpx.Response) -> bytes:
    """The answer's body, decoded, and never more than MAX_ANSWER_BYTES of it
    held: decompressed here in bounded steps (httpx would inflate each chunk
    whole first, so a small gzip answer could take hundreds of MB)."""
    if resp.is_stream_consumed:  # read already (a transport that reads it, as in tests)
        if len(resp.content) > MAX_ANSWER_BYTES:
            raise IntrospectionBadBody(f"answer larger than {MAX_ANSWER_BYTES} bytes")
        return resp.content
    encoding = resp.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        decoder = zlib.decompressobj(wbits=47)  # gzip or zlib framing
    else:  # not asked for (see ACCEPT_ENCODING)
        raise IntrospectionBadBody(f"answer in an encoding not asked for ({encoding})")
    chunks = bytearray()
    try:
        async for raw in resp.aiter_raw():
            room = MAX_ANSWER_BYTES + 1 - len(chunks)
            if decoder is None:
                chunks += raw[:room]
            else:
                chunks += decoder.decompress(raw, room)
                if decoder.unconsumed_tail:
                    chunks += b"x"  # more output than room: over the cap
            if len(chunks) > MAX_ANSWER_BYTES:
                raise IntrospectionBadBody(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    except zlib.error:
        raise IntrospectionBadBody(f"answer not valid {encoding}") from None
    return bytes(chunks)


def parse_answer(body: bytes, url: str = "", latency_ms: float = 0.0,
                 secrets: Sequence[str] = ()) -> IntrospectionResult:
    """RFC 7662 §2.2: a JSON object whose `active` is a boolean, and that the
    rest of the addon can handle (see _unusable). `secrets` are hidden in the
    log lines that quote an unusable answer (an endpoint may echo the token)."""
    url = mask_secret_params(url)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        if "integer string conversion" in str(e):
            logger.warning("introspection endpoint %s answered JSON with a number of more "
                           "than 4,300 digits", url)
            raise IntrospectionBadBody("answer has a number too long to read") from None
        logger.warning("introspection endpoint %s answered non-JSON: %r",
                       url, answer_snippet(body, secrets))
        raise IntrospectionBadBody("answer is not JSON") from None
    except RecursionError:  # nested past Python's recursion limit
        logger.warning("introspection endpoint %s answered JSON nested too deeply: %r",
                       url, answer_snippet(body, secrets))
        raise IntrospectionBadBody(
            f"answer is nested deeper than {MAX_ANSWER_DEPTH} levels") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("active"), bool):
        logger.warning("introspection endpoint %s answered JSON without a boolean 'active': %r",
                       url, answer_snippet(body, secrets))
        raise IntrospectionBadBody("answer has no boolean 'active'")
    problem = _unusable(doc)
    if problem is not None:
        logger.warning("introspection endpoint %s answered unusable JSON (%s): %r",
                       url, problem, answer_snippet(body, secrets))
        raise IntrospectionBadBody(f"answer {problem}")
    return IntrospectionResult(active=doc["active"], claims=doc, latency_ms=latency_ms)


def _unusable(doc: dict[str, Any]) -> str | None:
    """What makes a parsed answer unusable, or None. Checked once per call so
    that nothing later (cache, headers, logs) fails on it with a 500."""
    exp = doc.get("exp")
    if type(exp) is int:
        try:
            float(exp)  # the cache bounds its lifetime by exp - now
        except OverflowError:
            return "has an 'exp' out of range"
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_ANSWER_DEPTH:
            return f"is nested deeper than {MAX_ANSWER_DEPTH} levels"
        if isinstance(value, dict):
            for k, v in value.items():
                if not is_utf8_text(k):
                    return "has a key that is not Unicode text (lone surrogate)"
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and not is_utf8_text(value):
            # a JSON escape such as \ud800: no UTF-8 for the cache or a header
            return "has a string that is not Unicode text (lone surrogate)"
    return None

"""Introspection calls as their own flows (mitmweb, mitmproxy's console, `-w` files).

After a request's introspection call ends, a synthetic `http.HTTPFlow` holding
the request the endpoint received and its answer is added to mitmproxy's view
(when there is one: mitmweb, mitmproxy) and to the save stream (when one is
open: `mitmdump -w`, `save_stream_file`), linked to the flow that caused it by
the same `token_id` and the parent's flow id. Secrets are masked: the
`Authorization` value keeps only its scheme, the form's `token` only its
first characters, and credential-like custom header values and URL query
values (`X-Api-Key`, `client_secret`) are hidden; the sub-flow's metadata
carries a `token_fp` (a hash of the token alone, independent of the plugin)
so the policy diff (diff.py) can reuse the recorded answer without the token
being stored anywhere.

The recording costs nothing unless it is active: the addon sets
`introspection.call_recorder` for a flow only then.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from mitmproxy import connection, ctx, http
from mitmproxy import flow as mflow

from .introspection import IntrospectionRequest, call_recorder
from .masking import (
    SECRET_NAME,
    mask_authorization,
    mask_secret_params,
    mask_token,
    scrub,
    scrub_bytes,
)

logger = logging.getLogger(__name__)

METADATA_KEY = "oauth2_introspection"
KIND = "introspection call"
MARKER = ":mag:"


def token_fingerprint(token: str) -> str:
    """A config-independent, non-reversible id of a token (for the policy diff)."""
    return hashlib.sha256(b"oauth2-introspection-fp\x00" + token.encode("utf-8",
                                                                        "surrogateescape")
                          ).hexdigest()[:16]


@dataclass
class Call:
    """One finished introspection call, as recorded inside introspect()."""

    req: IntrospectionRequest
    started: float
    ended: float
    status: int | None = None
    reason: str = ""
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: str | None = None
    http_version: str = "HTTP/1.1"


class Recording:
    """The calls made on behalf of one flow (normally zero or one)."""

    __slots__ = ("calls", "started", "token")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.started = time.time()
        self.token: Any = None

    def __call__(self, req: IntrospectionRequest, resp: Any, body: bytes,
                 error: BaseException | None) -> None:
        call = Call(req=req, started=self.started, ended=time.time(), body=body)
        if resp is not None:
            call.status = resp.status_code
            call.reason = resp.reason_phrase
            call.http_version = resp.http_version or "HTTP/1.1"
            call.request_headers = list(resp.request.headers.items())
            call.response_headers = list(resp.headers.items())
        else:
            call.request_headers = [
                ("User-Agent", "mitmproxy-oauth2-introspection"),
                ("Authorization", req.authorization),
                ("Accept", "application/json"),
                *req.headers.items(),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ]
        if error is not None:
            call.error = scrub(str(error), req.secrets()) or error.__class__.__name__
        self.calls.append(call)


class Subflows:
    """Owns the `introspection_subflows` behaviour for the core addon."""

    def __init__(self) -> None:
        #: the option's value
        self.wanted = True
        #: wanted and somewhere to put them (a view or an open save stream)
        self.active = False

    def refresh(self) -> None:
        """Recompute `active` (options changed, or mitmproxy is running)."""
        try:
            addons = ctx.master.addons
        except AttributeError:  # no master (plain unit tests)
            self.active = False
            return
        save = addons.get("save")
        self.active = self.wanted and (
            addons.get("view") is not None
            or bool(save is not None and getattr(save, "stream", None))
            or bool(getattr(ctx.options, "save_stream_file", ""))
        )

    def begin(self) -> Recording:
        rec = Recording()
        rec.token = call_recorder.set(rec)
        return rec

    @staticmethod
    def end(rec: Recording) -> None:
        call_recorder.reset(rec.token)
        rec.token = None

    def emit(self, parent: http.HTTPFlow, rec: Recording, meta: dict[str, Any]) -> None:
        if not rec.calls:
            return
        try:
            addons = ctx.master.addons
        except AttributeError:
            return
        view = addons.get("view")
        save = addons.get("save")
        ids = []
        for call in rec.calls:
            sub = build_flow(call, parent, meta)
            ids.append(sub.id)
            if view is not None:
                view.add([sub])
            if save is not None and getattr(save, "stream", None) is not None:
                save.save_flow(sub)
        meta["introspection_flows"] = ids
        meta["token_fp"] = token_fingerprint(rec.calls[-1].req.token)


def build_flow(call: Call, parent: http.HTTPFlow, meta: dict[str, Any]) -> http.HTTPFlow:
    """The request the endpoint saw and its answer, secrets masked."""
    req = call.req
    parts = urlsplit(req.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    client = connection.Client(
        peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0), timestamp_start=call.started
    )
    server = connection.Server(address=(parts.hostname or "", port))
    f = http.HTTPFlow(client, server)
    f.id = str(uuid.uuid4())
    form = {"token": mask_token(req.token)}
    if req.token_type_hint:
        form["token_type_hint"] = req.token_type_hint
    headers = []
    for name, value in call.request_headers:
        if name.lower() == "authorization":
            value = mask_authorization(value)
        elif SECRET_NAME.search(name):
            value = "***"
        elif name.lower() == "content-length":
            continue
        headers.append((name.encode(), value.encode()))
    body = urlencode(form, safe="*").encode()
    request = http.Request.make("POST", mask_secret_params(req.url), body, headers)
    request.timestamp_start = call.started
    request.timestamp_end = call.started
    f.request = request
    if call.status is not None:
        # an endpoint may echo the token (shown as in the form above) or the
        # other secrets of the call in an error answer
        answer = scrub_bytes(call.body, [req.token], mask_token(req.token)) if req.token else (
            call.body)
        answer = scrub_bytes(answer, req.secrets())
        response = http.Response.make(
            call.status, answer,
            [(k.encode(), scrub(v, req.secrets()).encode()) for k, v in call.response_headers
             if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")],
        )
        response.reason = call.reason
        response.timestamp_start = call.ended
        response.timestamp_end = call.ended
        f.response = response
    if call.error is not None and call.status is None:
        f.error = mflow.Error(call.error)
    parent_req = parent.request
    token_id = meta.get("token_id")
    f.comment = (
        f"oauth2-introspection: introspection call for flow {parent.id[:8]} "
        f"({parent_req.method} {parent_req.path.split('?', 1)[0]}, token {token_id})"
    )
    f.marked = MARKER
    f.metadata[METADATA_KEY] = {
        "kind": KIND,
        "parent_flow": parent.id,
        "token_id": token_id,
        "token_fp": token_fingerprint(req.token),
        "plugin": meta.get("plugin"),
        "route": meta.get("route"),
        "latency_ms": round((call.ended - call.started) * 1000, 1),
        "error": call.error,
    }
    return f

"""Policy diff: replay recorded requests against a candidate configuration.

Given a mitmproxy flow file written while the addon ran (`mitmdump -w FILE`,
`save_stream_file`, or mitmweb's *Save*), every request the addon annotated is
re-evaluated against a candidate declarative config with the same decide()
the proxy uses, and the decisions that change are reported: the verdict
(allowed / anonymous / 401 / 502 ...), the consumer, the headers the plugin
adds and the ones it removes. Nothing is sent upstream.

Introspection answers come from the recorded introspection sub-flows
(subflows.py), matched by token fingerprint, so no IdP is needed; with
`live=True` a token without a recorded answer is introspected at the candidate
plugin's endpoint, otherwise its verdict is `unknown`.

The request each decision is made on is the one the client sent, rebuilt from
the saved flow: the Host and path from the flow's metadata (`client_host`,
`client_path`), the headers the addon added dropped again, and a credential
that `hide_credentials` removed put back as a placeholder that stands for the
recorded token's fingerprint (tokens are never stored).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from mitmproxy import flow as mflow
from mitmproxy import http, io

from .cache import IntrospectionCache
from .decision import decide
from .headers import strip_spoofable
from .loader import load_file
from .policy import Policy, compile_policy
from .subflows import KIND, METADATA_KEY, token_fingerprint
from .token import remove_token

PLACEHOLDER = "recorded-token-"
#: stands for a hidden token no introspection sub-flow recorded
UNRECORDED = "unrecorded"


class NoRecordedAnswer(Exception):
    """A token whose answer was not recorded, and live introspection is off."""


@dataclass(frozen=True)
class Verdict:
    #: allowed | anonymous | preflight | no plugin | unknown | a status such as "401"
    result: str
    consumer: str | None = None
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    reason: str = ""

    def text(self) -> str:
        who = f" {self.consumer}" if self.consumer else ""
        if not self.reason or self.result == "allowed":
            why = ""
        elif self.result in ("anonymous", "unknown"):
            why = f" ({self.reason.strip('()')})"
        else:
            why = f" {self.reason}"
        return f"{self.result}{who}{why}"


@dataclass
class Row:
    flow_id: str
    request: str
    before: Verdict
    after: Verdict
    changes: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: int | None
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


@dataclass
class DiffReport:
    rows: list[Row]
    evaluated: int
    skipped: int

    def table(self) -> str:
        return format_table(self)


# -- reading the recording ---------------------------------------------------------


def read_flows(path: str | Path) -> list[mflow.Flow]:
    with open(path, "rb") as f:
        return list(io.FlowReader(f).stream())


class RecordedAnswers:
    """The introspection answers of a recording, per token fingerprint in
    recording order. A token's answer can change while recording (revoked,
    re-issued), so each request is replayed with the answer it was decided
    on: the one its own introspection sub-flow recorded, else (a cached
    decision) the token's last answer recorded before it, else its first.
    `get(fp)` answers for the request set with `at()`."""

    def __init__(self) -> None:
        self.by_fp: dict[str, list[tuple[int, str, Answer]]] = {}
        #: token_id -> fingerprint
        self.ids: dict[str, str] = {}
        self._position = 0
        self._linked: frozenset[str] = frozenset()

    def add(self, position: int, flow_id: str, fp: str, answer: Answer) -> None:
        self.by_fp.setdefault(fp, []).append((position, flow_id, answer))

    def at(self, position: int, linked: Iterable[str]) -> None:
        """Answer for the request at `position` whose own calls are `linked`."""
        self._position, self._linked = position, frozenset(linked)

    def get(self, fp: str) -> Answer | None:
        entries = self.by_fp.get(fp)
        if not entries:
            return None
        for _, flow_id, answer in entries:
            if flow_id in self._linked:
                return answer
        earlier = bisect.bisect_left(entries, self._position, key=lambda e: e[0])
        return entries[earlier - 1 if earlier else 0][2]


def recorded_answers(flows: Iterable[mflow.Flow]) -> RecordedAnswers:
    """The answers of the introspection sub-flows of a recording."""
    recorded = RecordedAnswers()
    for position, f in enumerate(flows):
        meta = f.metadata.get(METADATA_KEY)
        if not isinstance(f, http.HTTPFlow) or not meta or meta.get("kind") != KIND:
            continue
        fp = meta.get("token_fp")
        if not fp:
            continue
        if meta.get("token_id"):
            recorded.ids[meta["token_id"]] = fp
        if f.response is not None:
            answer = Answer(f.response.status_code, f.response.get_content(strict=False)
                            or b"", list(f.response.headers.items()))
        else:
            answer = Answer(None, error=(f.error.msg if f.error else "no answer"))
        recorded.add(position, f.id, fp, answer)
    return recorded


def recorded_verdict(f: http.HTTPFlow, meta: dict[str, Any]) -> Verdict:
    outcome = meta.get("outcome")
    report = meta.get("mode") == "report"
    if outcome == "refused":
        status = meta.get("would_answer") if report else (
            f.response.status_code if f.response else None)
        result = str(status or "refused")
    else:
        result = str(outcome)
    if report:
        added = frozenset(meta.get("would_set_headers") or {})
        removed = set(meta.get("would_remove_headers") or [])
        removed.update(meta.get("would_hide_credentials") or [])
    else:
        added = frozenset(meta.get("added_headers") or [])
        removed = set(meta.get("removed_headers") or []) | set(
            meta.get("hidden_credentials") or [])
    return Verdict(result, _consumer_label(meta.get("consumer")), added,
                   frozenset(_norm(removed)), meta.get("failure") or "")


def received_request(
    f: http.HTTPFlow, meta: dict[str, Any], ids: dict[str, str]
) -> http.Request:
    """The request as the client sent it, as far as the recording allows."""
    req = f.request.copy()
    query = req.path.partition("?")[2]
    if meta.get("client_path"):
        req.path = meta["client_path"] + (f"?{query}" if query else "")
    if meta.get("client_host"):
        req.host_header = meta["client_host"]
    if meta.get("mode") == "report":
        return req
    for name in meta.get("added_headers") or []:
        req.headers.pop(name, None)
    for name in meta.get("removed_headers") or []:
        req.headers[name] = "(recorded)"
    hidden = meta.get("hidden_credentials") or []
    if hidden:
        # the token's fingerprint, if an introspection sub-flow recorded one;
        # else a placeholder no answer matches: its verdict is `unknown`
        fp = meta.get("token_fp") or ids.get(meta.get("token_id") or "") or UNRECORDED
        _put_placeholders(req, meta.get("token_source"), hidden, PLACEHOLDER + fp)
    return req


def _put_placeholders(req: http.Request, source: str | None, hidden: Iterable[str],
                      value: str) -> None:
    """Put a placeholder back wherever hide_credentials removed a credential:
    a parameter token is cleared from the query and the body both (Kong), so
    e.g. `query:access_token` and `form:access_token` both come back. The
    token's own source last: a body field wins over the query string anyway."""
    places = {entry.partition(":")[0] for entry in hidden}
    places.discard("header")  # only a header token removes the header
    for place in sorted(places - {source}):
        _put_placeholder(req, place, value)
    _put_placeholder(req, source, value)


def _put_placeholder(req: http.Request, source: str | None, value: str) -> None:
    if source == "header":
        req.headers["Authorization"] = f"Bearer {value}"
    elif source == "query":
        base, _, query = req.path.partition("?")
        req.path = f"{base}?{query}&access_token={value}" if query else (
            f"{base}?access_token={value}")
    elif source == "form":
        body = req.get_content(strict=False) or b""
        req.content = body + (b"&" if body else b"") + b"access_token=" + value.encode()
    elif source == "json":
        try:
            doc = json.loads(req.get_content(strict=False) or b"{}")
        except (ValueError, RecursionError):
            return
        if isinstance(doc, dict):
            doc["access_token"] = value
            req.content = json.dumps(doc).encode()
    # multipart: not rebuilt; the candidate then sees no token


# -- evaluating against the candidate ----------------------------------------------


class _ReplayPool:
    """Stands in for ClientPool: one client whose transport answers from the
    recording (or, with live, from the real endpoint)."""

    def __init__(self, answers: RecordedAnswers | dict[str, Answer], live: bool) -> None:
        self.answers = answers
        self.live = live
        self._real: httpx.AsyncClient | None = None
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._handle),
                                        trust_env=False)

    def prepare(self, url: str, keepalive_ms: int) -> tuple[str, int]:
        return (url, keepalive_ms)

    def get(self, _key: tuple[str, int]) -> httpx.AsyncClient:
        return self.client

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl((await request.aread()).decode("utf-8", "replace")))
        token = form.get("token", "")
        fp = token[len(PLACEHOLDER):] if token.startswith(PLACEHOLDER) else (
            token_fingerprint(token))
        answer = self.answers.get(fp)
        if answer is None:
            if not self.live or token.startswith(PLACEHOLDER):
                raise NoRecordedAnswer(fp)
            if self._real is None:
                self._real = httpx.AsyncClient(trust_env=False)
            real = await self._real.send(request)
            await real.aread()
            return httpx.Response(real.status_code, headers=real.headers, content=real.content)
        if answer.status is None:
            if answer.error and "no answer within" in answer.error:
                raise httpx.ReadTimeout(answer.error, request=request)
            raise httpx.ConnectError(answer.error or "unreachable", request=request)
        headers = [(k, v) for k, v in answer.headers
                   if k.lower() not in ("content-length", "content-encoding",
                                        "transfer-encoding")]
        return httpx.Response(answer.status, headers=headers, content=answer.body)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._real is not None:
            await self._real.aclose()


async def candidate_verdict(policy: Policy, req: http.Request, pool: _ReplayPool) -> Verdict:
    host = req.host_header or req.host
    resolution = policy.resolve(host, req.path,
                                req.data.method.decode("utf-8", "surrogateescape"),
                                req.headers)
    plugin = resolution.plugin
    if plugin is None:
        return Verdict("no plugin")
    req = req.copy()
    removed = set(strip_spoofable(req.headers))
    try:
        decision = await decide(plugin, req, policy.consumers, IntrospectionCache(), pool)
    except NoRecordedAnswer:
        return Verdict("unknown", reason="(no recorded introspection answer)")
    result = str(decision.refusal.status) if decision.refusal is not None else decision.outcome
    if decision.hide is not None:
        removed.update(remove_token(req.copy(), decision.hide))
    return Verdict(result, _consumer_label(decision.details.get("consumer")),
                   frozenset(decision.set_headers), frozenset(_norm(removed)),
                   decision.details.get("failure") or "")


def compare(before: Verdict, after: Verdict) -> list[str]:
    changes: list[str] = []
    if before.result != after.result:
        changes.append(f"{before.result} → {after.result}")
    if before.consumer != after.consumer:
        changes.append(f"consumer {before.consumer or '-'} → {after.consumer or '-'}")
    added = sorted(after.added - before.added)
    dropped = sorted(before.added - after.added)
    if added or dropped:
        changes.append("headers added: " + " ".join(
            [f"+{h}" for h in added] + [f"-{h}" for h in dropped]))
    newly = sorted(after.removed - before.removed)
    kept = sorted(before.removed - after.removed)
    if newly or kept:
        changes.append("headers removed: " + " ".join(
            [f"+{h}" for h in newly] + [f"-{h}" for h in kept]))
    return changes


async def diff_flows(
    flows: Sequence[mflow.Flow], config_path: str | Path, live: bool = False
) -> DiffReport:
    """Re-evaluate every annotated request in `flows` against `config_path`."""
    config = load_file(config_path)
    answers = recorded_answers(flows)
    pool = _ReplayPool(answers, live)
    try:
        policy = compile_policy(config, pool.prepare, source=str(config_path))
        rows: list[Row] = []
        evaluated = skipped = 0
        for position, f in enumerate(flows):
            meta = f.metadata.get(METADATA_KEY) if isinstance(f, http.HTTPFlow) else None
            if not isinstance(f, http.HTTPFlow) or not meta or "outcome" not in meta:
                if not (meta and meta.get("kind") == KIND):
                    skipped += 1
                continue
            evaluated += 1
            before = recorded_verdict(f, meta)
            answers.at(position, meta.get("introspection_flows") or ())
            after = await candidate_verdict(policy, received_request(f, meta, answers.ids),
                                            pool)
            changes = compare(before, after)
            if changes:
                path = meta.get("client_path") or f.request.path.partition("?")[0]
                rows.append(Row(f.id, f"{f.request.method} {path}", before, after, changes))
        return DiffReport(rows, evaluated, skipped)
    finally:
        await pool.aclose()


async def diff_file(flows_path: str | Path, config_path: str | Path,
                    live: bool = False) -> DiffReport:
    return await diff_flows(read_flows(flows_path), config_path, live)


def diff_sync(flows: Sequence[mflow.Flow] | str | Path, config_path: str | Path,
              live: bool = False) -> DiffReport:
    """Run the diff from synchronous code, even inside a running event loop
    (mitmproxy commands): on a thread of its own."""
    result: list[DiffReport] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            if isinstance(flows, str | Path):
                result.append(asyncio.run(diff_file(flows, config_path, live)))
            else:
                result.append(asyncio.run(diff_flows(flows, config_path, live)))
        except BaseException as e:
            error.append(e)

    t = threading.Thread(target=run, name="oauth2-introspection-diff", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def format_table(report: DiffReport) -> str:
    head = ("flow", "request", "recorded", "candidate", "change")
    lines = [(r.flow_id[:8], r.request, r.before.text(), r.after.text(), "; ".join(r.changes))
             for r in report.rows]
    summary = (f"{len(report.rows)} of {report.evaluated} recorded decision(s) change"
               + (f" ({report.skipped} flow(s) not annotated by the addon skipped)"
                  if report.skipped else ""))
    if not lines:
        return summary
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    return "\n".join([*out, summary])


def _consumer_label(consumer: Any) -> str | None:
    if not isinstance(consumer, dict):
        return None
    return consumer.get("username") or consumer.get("custom_id") or consumer.get("id")


def _norm(names: Iterable[str]) -> set[str]:
    return {n if ":" in n else n.lower() for n in names}

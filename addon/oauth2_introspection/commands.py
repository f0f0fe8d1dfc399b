"""mitmproxy commands for watching and steering the policy.

Usable from mitmweb's command bar, mitmproxy's console (`:`) and mitmweb's
JSON API (`POST /commands/<name>`):

- `introspection.cache.show`: the cached introspection answers (token ids only)
- `introspection.cache.flush [token...]`: drop every answer, or those of the
  given tokens (raw tokens or 12-digit token ids)
- `introspection.explain <flows>`: why a flow was allowed or refused
  (`@focus`, `@<flow id>`, a filter expression)
- `introspection.reload`: re-read the `introspection_config` file
- `introspection.diff <flow file> <candidate config>`: the policy diff (diff.py)
  on a saved flow file, answers from its recorded introspection flows

Everything goes through the core addon and its cache object's public API
(`items()`, `flush(key)`), so another cache backend only has to keep that API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import mitmproxy.types
from mitmproxy import command, ctx, exceptions
from mitmproxy import flow as mflow

from .addon import METADATA_KEY, OAuth2Introspection
from .cache import TOKEN_PART, make_key
from .decision import token_id
from .errors import ConfigError
from .loader import summary
from .subflows import KIND
from .text import log_safe

logger = logging.getLogger("oauth2_introspection")

_TOKEN_ID_LEN = 12


class IntrospectionCommands:
    def __init__(self, core: OAuth2Introspection) -> None:
        self.core = core

    # -- cache -------------------------------------------------------------------

    @command.command("introspection.cache.show")
    def cache_show(self) -> str:
        """The cached introspection answers: token id, answer, seconds left."""
        now = time.monotonic()
        lines = []
        for key, entry in self.core.cache.items():
            claims = entry.result.claims
            who = next((log_safe(claims[c]) for c in ("username", "client_id", "sub")
                        if isinstance(claims.get(c), str) and claims.get(c)), "-")
            left = entry.expires_at - now
            lines.append(
                f"{token_id(key)}  {'active' if entry.result.active else 'inactive':8}  "
                f"{who:20}  {'until flushed' if left == float('inf') else f'{left:.0f} s left'}"
            )
        head = f"{len(lines)} cached introspection answer(s)"
        return "\n".join([head, *sorted(lines)]) if lines else head

    @command.command("introspection.cache.flush")
    def cache_flush(self, *tokens: str) -> str:
        """Drop every cached answer, or those of the given tokens (raw tokens or token ids)."""
        cache = self.core.cache
        shared = ("; this configuration's entries in the shared Redis cache are being removed"
                  if cache.l2 is not None else "")
        if not tokens:
            n = cache.flush()
            logger.info("oauth2-introspection: cache flushed (%d answer(s))", n)
            return f"flushed {n} cached answer(s){shared}"
        if not all(t.strip() for t in tokens):
            # `flush ""` is not "flush everything": say what is expected instead
            raise exceptions.CommandError(
                "empty token: give raw tokens or 12-digit token ids, or nothing to flush "
                "every cached answer")
        prefixes: set[str] = set()
        for token in tokens:
            prefixes |= self._prefixes_of(token)
        n = cache.flush_prefixes(sorted(prefixes))
        logger.info("oauth2-introspection: cache flushed for %d token(s) (%d answer(s))",
                    len(tokens), n)
        return f"flushed {n} cached answer(s){shared}"

    def _prefixes_of(self, token: str) -> set[str]:
        """What the cache keys of a token start with: a token id is the start
        of each of its keys; a raw token has a key on every plugin (half a key
        on an introspect_request plugin, whose keys go on with the request's
        method and path)."""
        found = set()
        if len(token) == _TOKEN_ID_LEN and all(c in "0123456789abcdef" for c in token):
            found.add(token)
        policy = self.core.policy
        if policy is not None:
            for p in policy.plugins:
                key = make_key(p.key_prefix, token)
                found.add(key[:TOKEN_PART] if p.config.introspect_request else key)
        return found

    # -- flows -------------------------------------------------------------------

    @command.command("introspection.explain")
    def explain(self, flows: Sequence[mflow.Flow]) -> str:
        """Why these flows were allowed or refused (@focus, @<flow id>, a filter)."""
        if not flows:
            raise exceptions.CommandError("no such flow")
        return "\n\n".join(explain_flow(f) for f in flows)

    # -- configuration -----------------------------------------------------------

    @command.command("introspection.reload")
    def reload(self) -> str:
        """Re-read the introspection_config file; an invalid file changes nothing."""
        path = ctx.options.introspection_config
        if not path:
            raise exceptions.CommandError("no introspection_config set")
        try:
            self.core.state.load_file(path)
        except ConfigError as e:
            logger.warning("oauth2-introspection: reload refused: %s", e)
            raise exceptions.CommandError(f"invalid introspection_config: {e}") from None
        text = f"reloaded {path}: {summary(self.core.state.config)}"
        logger.info("oauth2-introspection: %s", text)
        return text

    @command.command("introspection.diff")
    def diff(self, flows_file: mitmproxy.types.Path, config: mitmproxy.types.Path) -> str:
        """Decisions that change if the flows in a saved file met a candidate config."""
        from .diff import diff_sync

        try:
            return diff_sync(str(flows_file), str(config)).table()
        except ConfigError as e:
            raise exceptions.CommandError(f"invalid candidate config: {e}") from None
        except (OSError, exceptions.FlowReadException) as e:
            raise exceptions.CommandError(f"cannot read {flows_file}: {e}") from None


def explain_flow(f: mflow.Flow) -> str:
    meta: dict[str, Any] | None = f.metadata.get(METADATA_KEY)
    name = f.id[:8]
    if not meta:
        return f"flow {name}: not handled by oauth2-introspection ({f.comment or 'no comment'})"
    if meta.get("kind") == KIND:
        return (f"flow {name}: introspection call for flow {meta.get('parent_flow', '?')[:8]} "
                f"(token {meta.get('token_id')}, {meta.get('plugin')}, "
                f"{meta.get('latency_ms')} ms{', ' + meta['error'] if meta.get('error') else ''})")
    lines = [f"flow {name}: {f.comment or '(no comment)'}"]
    report = meta.get("mode") == "report"
    if report:
        lines.append("mode: report (forwarded unchanged; below is what enforce mode would do)")
    lines.append(f"route: {meta.get('route') or 'none matched'}; "
                 f"service: {meta.get('service') or '-'}")
    if meta.get("outcome") == "no plugin":
        lines.append("no oauth2-introspection plugin applies: forwarded without authentication")
        return "\n".join(lines)
    if "plugin" not in meta:  # refused before any plugin: no policy, a target not a path
        answer = meta.get("would_answer") if report else None
        lines.append(f"decision: refused: {meta.get('failure')}"
                     + (f" (enforce mode would answer {answer})" if answer else ""))
        return "\n".join(lines)
    lines.append(f"plugin: {meta.get('plugin')} ({meta.get('plugin_id')})")
    source = meta.get("token_source")
    if "token_source" in meta:
        lines.append(f"token: {'none found' if source is None else 'from ' + source}"
                     + (f", id {meta['token_id']}" if meta.get("token_id") else ""))
    if meta.get("cache"):
        left = meta.get("cache_remaining_s")
        lines.append(
            f"introspection: cache {meta['cache']}"
            + (f", {meta['introspection_latency_ms']} ms" if meta.get(
                "introspection_latency_ms") is not None else "")
            + f", active={meta.get('active')}"
            + (", not cached" if left is None else f", cached {left} s more")
        )
    if meta.get("introspection_error"):
        lines.append(f"introspection failed: {meta['introspection_error']} "
                     f"({meta.get('introspection_error_detail')})")
    outcome = meta.get("outcome")
    why = {
        "allowed": "the token is active",
        "anonymous": f"authentication failed ({meta.get('failure')}) and the plugin has "
                     "`anonymous`",
        "preflight": "OPTIONS request and run_on_preflight is false",
        "refused": f"authentication failed: {meta.get('failure')}",
    }.get(str(outcome), str(outcome))
    lines.append(f"decision: {outcome}: {why}")
    consumer = meta.get("consumer")
    if consumer:
        lines.append(f"consumer: {consumer.get('username') or consumer.get('custom_id') or '-'}"
                     f" (id {consumer.get('id')})")
    if report:
        if meta.get("would_answer"):
            lines.append(f"would answer: {meta['would_answer']}")
        if meta.get("would_set_headers"):
            lines.append("would set: " + ", ".join(
                f"{k}: {v}" for k, v in meta["would_set_headers"].items()))
        removed = [*(meta.get("would_remove_headers") or []),
                   *(meta.get("would_hide_credentials") or [])]
        if removed:
            lines.append("would remove: " + ", ".join(removed))
    else:
        if meta.get("added_headers"):
            lines.append("headers added: " + ", ".join(meta["added_headers"]))
        removed = [*(meta.get("removed_headers") or []), *(meta.get("hidden_credentials") or [])]
        if removed:
            lines.append("removed: " + ", ".join(removed))
    if meta.get("introspection_flows"):
        lines.append("introspection flow(s): " + ", ".join(meta["introspection_flows"]))
    return "\n".join(lines)

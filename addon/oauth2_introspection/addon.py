"""The mitmproxy addon: options, lifecycle and the request hook.

Orchestration only: route -> strip spoofable headers -> decide -> apply ->
send upstream. Everything it calls is a plain function or object that can be
tested without mitmproxy running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ReverseMode

from . import annotations, responses
from .cache import IntrospectionCache
from .cache_options import CacheOptions
from .decision import Decision, decide
from .errors import ConfigError
from .fastlane import METADATA_KEY, allow_cached, reverse_target
from .fastpath import ClientURL, RequestHead, decision_logging, read_head, rewrite_headers
from .fastpath import host_header as fast_host_header
from .headers import spoofable_names, strip_spoofable
from .introspection import ClientPool, tls_verify
from .loader import summary
from .policy import PluginRuntime, Policy, Resolution
from .routing import upstream_path
from .state import PolicyState
from .subflows import Recording, Subflows
from .text import storable
from .token import mask_url, remove_token

logger = logging.getLogger("oauth2_introspection")


# The user's own keep_host_header, remembered across script reloads (this
# module is not reloaded with the entry script, so the value survives).
_user_keep_host_header: bool | None = None
#: mitmproxy's options for checking upstream certificates, which the
#: introspection endpoint (an upstream of this proxy too) follows
_TLS_OPTIONS = {"ssl_insecure", "ssl_verify_upstream_trusted_ca",
                "ssl_verify_upstream_trusted_confdir"}
#: seconds between two "503 no policy loaded" log lines
NO_POLICY_LOG_INTERVAL = 10.0


class OAuth2Introspection:
    def __init__(self, state: PolicyState | None = None) -> None:
        self.cache = IntrospectionCache()
        self.clients = state.clients if state else ClientPool()
        self.state = state or PolicyState(self.clients)
        #: introspection_mode: report mode records decisions without applying them
        self.report = False
        #: introspection_subflows: introspection calls shown as their own flows
        self.subflows = Subflows()
        #: log allowed decisions (debug level) only when someone shows them
        self.log_allowed = True
        #: options introspection_cache_size and introspection_cache_redis_url (not an
        #: addon of its own: every addon object costs on every event of every flow)
        self.cache_options = CacheOptions(self)
        #: called with every flow the request hook saw, after it (e.g. the
        #: config watcher's warning about a failed reload)
        self.annotators: list[Callable[[http.HTTPFlow], None]] = []
        #: introspection_config as last applied, and a value just refused (see configure)
        self._applied_config = ""
        self._refused_config: str | None = None
        #: 503s since the last "no policy loaded" line (see _log_no_policy)
        self._no_policy_count = 0
        self._no_policy_logged_at = -math.inf

    @property
    def policy(self) -> Policy | None:
        return self.state.policy

    # -- lifecycle ---------------------------------------------------------------

    def load(self, loader: Any) -> None:
        self.cache_options.load(loader)
        loader.add_option(
            "introspection_config",
            str,
            "",
            "Kong declarative configuration (YAML or JSON, _format_version 3.0) with "
            "oauth2-introspection plugins. Without it every request is refused (503).",
        )
        # Both declared as str and parsed in configure(): a typed option that
        # fails to parse from --set silently disables the addon.
        loader.add_option(
            "introspection_mode",
            str,
            "enforce",
            "enforce: refuse and rewrite requests as the policy says. report: forward every "
            "request exactly as received and only record (flow comment, marker, metadata) what "
            "enforce mode would have done.",
        )
        loader.add_option(
            "introspection_subflows",
            str,
            "true",
            "Show each introspection call as its own flow (in mitmweb/mitmproxy's view and in "
            "saved flow files), linked to the flow that caused it (true/false).",
        )
        _check_deferred(loader)
        self._take_over_host_header()
        # httpx logs every call at INFO: one line per introspection drowns the
        # decisions we log ourselves.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def running(self) -> None:
        self._refused_config = None  # a refusal at startup has no rollback after it
        self._take_over_host_header()
        self.subflows.refresh()
        if self.policy is None:
            # WARNING, not ERROR: mitmproxy exits on any error logged during
            # startup, and the promise here is to stay up and answer 503.
            logger.warning(
                "oauth2-introspection: no introspection_config set: every request is refused "
                "with 503 until one is (--set introspection_config=FILE)"
            )

    def configure(self, updated: set[str]) -> None:
        if "termlog_verbosity" in updated:
            self.log_allowed = decision_logging(ctx.options)
        self.cache_options.configure(updated)
        if "introspection_mode" in updated:
            try:
                mode = annotations.parse_mode(ctx.options.introspection_mode)
            except ValueError as e:
                raise exceptions.OptionsError(f"invalid introspection_mode: {e}") from None
            if (mode == "report") != self.report:
                logger.info("oauth2-introspection: mode %s", mode)
            self.report = mode == "report"
        if updated & _TLS_OPTIONS:
            try:
                self.clients.set_verify(tls_verify(
                    bool(getattr(ctx.options, "ssl_insecure", False)),
                    getattr(ctx.options, "ssl_verify_upstream_trusted_ca", None),
                    getattr(ctx.options, "ssl_verify_upstream_trusted_confdir", None)))
            except ValueError as e:
                raise exceptions.OptionsError(f"oauth2-introspection: {e}") from None
        if updated & {"introspection_mode", "stream_large_bodies"}:
            _refuse_streaming(self.report)
        if "keep_host_header" in updated and not ctx.options.keep_host_header:
            # routing by host reads the client's Host, which reverse mode
            # replaces unless this is on: off, host-scoped plugins would not run
            raise exceptions.OptionsError(
                "keep_host_header stays on with oauth2-introspection (routes match the "
                "client's Host; the upstream gets the target's Host unless a route sets "
                "preserve_host)")
        if "introspection_subflows" in updated:
            value = str(ctx.options.introspection_subflows).strip().lower()
            if value not in _BOOLEANS:
                raise exceptions.OptionsError(
                    f"invalid introspection_subflows: must be true or false, not {value!r}")
            self.subflows.wanted = _BOOLEANS[value]
        if updated & {"introspection_subflows", "save_stream_file"}:
            self.subflows.refresh()
        if "introspection_config" in updated:
            path = ctx.options.introspection_config
            if self._refused_config is not None and path == self._applied_config:
                # mitmproxy rolling the option back after we refused a value
                # (in the same call, maybe more than once): what is in force
                # stays as it is (Admin API changes included), not reloaded
                return
            if not path:
                self.state.clear()
                self._applied_config = ""
                return
            try:
                self.state.load_file(path)
            except ConfigError as e:
                # One line naming file, entity and field; at startup this stops
                # mitmproxy, later the previous policy stays in force.
                self._refused_config = path
                with contextlib.suppress(RuntimeError):  # no loop: nothing rolls back later
                    # rollbacks happen within this option update: a later setting
                    # of the same file again is a reload, as always
                    asyncio.get_running_loop().call_soon(self._forget_refusal)
                raise exceptions.OptionsError(f"invalid introspection_config: {e}") from None
            self._applied_config = path
            logger.info("oauth2-introspection: loaded %s (%s)", path, summary(self.state.config))

    async def done(self) -> None:
        await self.cache_options.done()
        await self.clients.aclose()

    def _take_over_host_header(self) -> None:
        """Routing by host needs the client's Host, which mitmproxy's reverse
        mode replaces with the target's unless keep_host_header is on. We turn
        it on and set the upstream Host ourselves (see _send_upstream)."""
        global _user_keep_host_header
        if _user_keep_host_header is None:
            _user_keep_host_header = bool(ctx.options.keep_host_header)
        if not ctx.options.keep_host_header:
            ctx.options.update(keep_host_header=True)

    def server_connect(self, data: Any) -> None:
        """With keep_host_header on, mitmproxy's reverse mode no longer sets the
        SNI of an eagerly opened TLS connection to the target: set it here."""
        server = data.server
        mode = data.client.proxy_mode
        if (
            server.sni is None
            and isinstance(mode, ReverseMode)
            and mode.scheme == "https"
            and server.address == mode.address
        ):
            server.sni = mode.address[0]

    # -- the request hook ------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """mitmproxy's request hook. A cached token is decided and applied here,
        in one pass (fastlane.py); anything else returns a coroutine, which
        mitmproxy awaits (it awaits what a hook returns when that is
        awaitable). The common case thus creates no coroutine at all."""
        if not (flow.response or flow.error or not flow.live):
            try:
                policy = self.policy
                if (policy is None or self.report or self.log_allowed
                        or not allow_cached(flow, policy, self.cache)):
                    return self._request(flow)
            except Exception:
                self._internal_error(flow)
        for annotate in self.annotators:
            annotate(flow)
        return None

    async def _request(self, flow: http.HTTPFlow) -> None:
        try:
            await self._handle(flow)
        except Exception:
            self._internal_error(flow)
        for annotate in self.annotators:
            annotate(flow)

    def _internal_error(self, flow: http.HTTPFlow) -> None:
        # mitmproxy forwards a flow whose hook raised: never let that happen.
        logger.exception("oauth2-introspection: internal error on %s; answering 500",
                         safe_url(flow.request))
        flow.response = responses.internal_error().to_response(_is_head(flow))
        flow.comment = "oauth2-introspection: 500 internal error (see event log)"
        flow.marked = annotations.MARKERS["error"]

    def _forget_refusal(self) -> None:
        self._refused_config = None

    def _log_no_policy(self) -> None:
        """503 answers are logged as other 5xx are, but at most one line per
        NO_POLICY_LOG_INTERVAL seconds: every request gets one until a
        configuration is set."""
        self._no_policy_count += 1
        now = time.monotonic()
        if now - self._no_policy_logged_at >= NO_POLICY_LOG_INTERVAL:
            logger.warning("oauth2-introspection: 503 no policy loaded (%d request(s) refused "
                           "so; set introspection_config)", self._no_policy_count)
            self._no_policy_logged_at, self._no_policy_count = now, 0

    def _refuse_target(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        flow.metadata[METADATA_KEY] = {
            "outcome": "refused", "failure": "request target not a path",
            "client_host": storable(read_head(request).host_header or request.host),
            "client_path": storable(request.path),
            **({"mode": "report", "would_answer": 400} if self.report else {}),
        }
        if self.report:
            self._send_upstream(flow, Resolution(None, None))
            flow.comment = ("oauth2-introspection: report only: would refuse 400 request "
                            "target not a path (forwarded unchanged)")
            flow.marked = annotations.MARKERS["report_refused"]
            return
        flow.response = responses.bad_request_target().to_response(_is_head(flow))
        flow.comment = "oauth2-introspection: 400 request target not a path"
        flow.marked = annotations.MARKERS["error"]

    async def _handle(self, flow: http.HTTPFlow) -> None:
        policy = self.policy
        request = flow.request
        if policy is None:
            # what the policy diff needs to replay the request on a candidate
            flow.metadata[METADATA_KEY] = {
                "outcome": "refused", "failure": "no policy loaded",
                "client_host": storable(read_head(request).host_header or request.host),
                "client_path": storable(request.path.partition("?")[0]),
                **({"mode": "report", "would_answer": 503} if self.report else {}),
            }
        if policy is None and self.report:
            self._send_upstream(flow, Resolution(None, None))
            flow.comment = ("oauth2-introspection: report only: would refuse 503 no policy "
                            "loaded (forwarded unchanged)")
            flow.marked = annotations.MARKERS["report_refused"]
            return
        if policy is None:
            self._log_no_policy()
            flow.response = responses.no_policy().to_response(_is_head(flow))
            flow.comment = "oauth2-introspection: 503 no policy loaded"
            flow.marked = annotations.MARKERS["error"]
            return
        if not request.data.path.startswith(b"/"):
            self._refuse_target(flow)
            return
        head = read_head(request)
        host_header = head.host_header
        client_host = host_header or request.host
        # logged as the client sent it, before rewriting (rendered only if logged)
        client_url = ClientURL(request, host_header)
        path = request.path
        # the method as sent (mitmproxy's .method is upper-cased): Kong's
        # routes match it exactly
        resolution = policy.resolve(client_host, path,
                                    request.data.method.decode("utf-8", "surrogateescape"),
                                    request.headers)
        route = resolution.route
        meta: dict[str, Any] = {
            "route": route.label if route else None,
            "service": (route.service.name or route.service.id)
            if route and route.service else None,
            # the request as the client sent it (the path without its query,
            # which may hold a token): the policy diff routes with these
            "client_host": storable(client_host),
            "client_path": storable(path.partition("?")[0]),
        }
        plugin = resolution.plugin
        decision: Decision | None = None
        recording = None
        removed: tuple[str, ...] = ()
        added: tuple[tuple[bytes, bytes], ...] = ()
        if plugin is not None:
            if self.report:
                return await self._report(flow, resolution, meta, client_url)
            # decide() reads no identity header: they are stripped with the
            # other header changes below, in one rebuild of the header list
            meta["removed_headers"] = removed = (
                tuple(spoofable_names(request.headers)) if head.spoofed else ())
            decision, recording = await self._decide(plugin, request, policy, head)
            meta.update(decision.details)
            meta["outcome"] = decision.outcome
            if decision.refusal is not None:
                flow.response = decision.refusal.to_response(_is_head(flow))
                if removed:  # the recorded request shows what would have gone upstream
                    strip_spoofable(request.headers)
            else:
                added = decision.fields
                meta["added_headers"] = decision.names
                if decision.hide is not None:
                    meta["hidden_credentials"] = tuple(remove_token(request, decision.hide))
        else:
            meta["outcome"] = "no plugin"
        if flow.response is None:
            self._send_upstream(flow, resolution, host_header, strip=bool(removed), add=added)
        self._annotate(flow, meta, decision, route.label if route else None, client_url)
        if recording is not None:
            self.subflows.emit(flow, recording, meta)

    async def _decide(
        self, plugin: PluginRuntime, request: http.Request, policy: Policy,
        head: RequestHead | None = None,
    ) -> tuple[Decision, Recording | None]:
        """decide(), recording the introspection calls it makes when subflows are on."""
        recording = self.subflows.begin() if self.subflows.active else None
        try:
            decision = await decide(plugin, request, policy.consumers, self.cache, self.clients,
                                    head)
        finally:
            if recording is not None:
                self.subflows.end(recording)
        return decision, recording

    async def _report(
        self, flow: http.HTTPFlow, resolution: Resolution, meta: dict[str, Any], client_url: str
    ) -> None:
        """Report mode: decide, record what enforce mode would do, apply nothing
        (the request goes upstream as received, routed as usual)."""
        policy = self.policy
        assert policy is not None and resolution.plugin is not None
        request = flow.request
        removed = spoofable_names(request.headers)
        decision, recording = await self._decide(resolution.plugin, request, policy)
        meta.update(decision.details)
        meta["outcome"] = decision.outcome
        meta["mode"] = "report"
        annotations.report_details(decision, request, removed, meta)
        self._send_upstream(flow, resolution)
        route = resolution.route
        self._annotate(flow, meta, decision, route.label if route else None, client_url)
        if recording is not None:
            self.subflows.emit(flow, recording, meta)

    def _send_upstream(
        self, flow: http.HTTPFlow, resolution: Resolution, client_host: str | bool | None = False,
        *, strip: bool = False, add: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """Route the request to its service. `client_host`: the client's Host,
        when the caller read it already; `strip`: drop the identity headers the
        client sent; `add`: header fields to append (the identity we vouch for)."""
        request = flow.request
        route = resolution.route
        if client_host is False:
            client_host = fast_host_header(request)
        service = route.service if route else None
        upstream = service.upstream if service else None
        if route is not None:
            base = upstream[3] if upstream else ""
            path = request.path
            new_path = upstream_path(
                base, resolution.match, path,
                strip_path=route.strip_path, path_handling=route.path_handling,
            )
            if new_path != path:
                request.path = new_path
        if upstream is not None:
            scheme, host, port, _ = upstream
            data = request.data
            if (data.scheme, data.host, data.port) != (scheme.encode(), host, port):
                request.scheme, request.host, request.port = scheme, host, port
            target_host = service.upstream_host  # type: ignore[union-attr]
        else:
            target_host = reverse_target(flow.client_conn.proxy_mode)
        keep_client_host = route.preserve_host if route else bool(_user_keep_host_header)
        if keep_client_host and client_host:
            host_value: str | None = client_host
        else:
            host_value = target_host
        rewrite_headers(request, host_value, strip=strip, add=add)
        if (request.data.authority and request.data.method != b"CONNECT"
                and not (request.is_http2 or request.is_http3)):
            # routed by the request line's host: send it in origin form, so the
            # upstream cannot read another host from it than the Host we send
            request.authority = ""

    def _annotate(
        self, flow: http.HTTPFlow, meta: dict[str, Any], decision: Decision | None,
        route: str | None, client_url: str,
    ) -> None:
        flow.metadata[METADATA_KEY] = meta
        where = f"route {route}" if route else "no route"
        if decision is None:
            return
        report = meta.get("mode") == "report"
        summary = annotations.summary_for(decision, report) if report else decision.summary
        flow.comment = f"oauth2-introspection [{where}, {meta.get('plugin')}]: {summary}"
        flow.marked = annotations.marker_for(decision, report)
        if report:
            level = logging.INFO
        elif decision.outcome in ("allowed", "preflight"):
            if not self.log_allowed:  # see fastpath.decision_logging
                return
            level = logging.DEBUG
        elif decision.refusal is not None and decision.refusal.status >= 500:
            level = logging.WARNING
        else:
            level = logging.INFO
        token = meta.get("token_id")
        logger.log(level, f"{flow.request.method} {client_url} [{where}]: {summary}"
                   + (f" token={token}" if token else ""))


def _is_head(flow: http.HTTPFlow) -> bool:
    return flow.request.data.method == b"HEAD"


def _check_deferred(loader: Any) -> None:
    """Refuse, at startup, a `--set` of one of our options that mitmproxy
    could not apply: given twice, or without a value. mitmproxy raises that
    while registering the script and then leaves the addon out, with nothing
    said, so every request would be forwarded unchecked. An error logged here
    stops mitmproxy before it serves anything."""
    deferred = getattr(getattr(loader, "master", None), "options", None)
    for name, value in dict(getattr(deferred, "deferred", {}) or {}).items():
        values = getattr(value, "val", None)
        if not name.startswith("introspection_") or not isinstance(values, list):
            continue
        if len(values) > 1:
            problem = f"given {len(values)} times; give it once"
        elif not values:
            problem = f"given without a value; write --set {name}=VALUE"
        else:
            continue
        logger.error("oauth2-introspection: --set %s %s (mitmproxy would otherwise start "
                     "without this addon and forward every request unchecked)", name, problem)


def _refuse_streaming(report: bool) -> None:
    """mitmproxy sends a streamed request's head and body upstream before the
    request hook runs (`stream_large_bodies`, and for a chunked body it may
    switch to streaming midway): enforce mode could not refuse such a request
    before the service sees it, so the two are not combined (fail closed)."""
    if not report and getattr(ctx.options, "stream_large_bodies", None):
        raise exceptions.OptionsError(
            "stream_large_bodies cannot be used with oauth2-introspection in enforce mode: "
            "mitmproxy would forward streamed requests before their token is checked "
            "(unset it, or use introspection_mode=report)")


_BOOLEANS = {"true": True, "on": True, "yes": True, "1": True,
             "false": False, "off": False, "no": False, "0": False}


def safe_url(request: http.Request) -> str:
    """The request URL for logs, without an access_token query parameter
    (however its name is percent-encoded)."""
    return mask_url(request.pretty_url)

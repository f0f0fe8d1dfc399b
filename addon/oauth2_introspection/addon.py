"""The mitmproxy addon: options, lifecycle and the request hook.

Orchestration only: route -> strip spoofable headers -> decide -> apply ->
send upstream. Everything it calls is a plain function or object that can be
tested without mitmproxy running.
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.net.http.url import hostport
from mitmproxy.proxy.mode_specs import ReverseMode

from . import responses
from .cache import IntrospectionCache
from .decision import Decision, decide
from .errors import ConfigError
from .headers import strip_spoofable
from .introspection import ClientPool
from .policy import Policy, Resolution
from .routing import upstream_path
from .state import PolicyState
from .token import drop_form_field, remove_token

logger = logging.getLogger("oauth2_introspection")

METADATA_KEY = "oauth2_introspection"

# The user's own keep_host_header, remembered across script reloads (this
# module is not reloaded with the entry script, so the value survives).
_user_keep_host_header: bool | None = None


class OAuth2Introspection:
    def __init__(self, state: PolicyState | None = None) -> None:
        self.cache = IntrospectionCache()
        self.clients = state.clients if state else ClientPool()
        self.state = state or PolicyState(self.clients)

    @property
    def policy(self) -> Policy | None:
        return self.state.policy

    # -- lifecycle ---------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option(
            "introspection_config",
            str,
            "",
            "Kong declarative configuration (YAML or JSON, _format_version 3.0) with "
            "oauth2-introspection plugins. Without it every request is refused (503).",
        )
        self._take_over_host_header()
        # httpx logs every call at INFO: one line per introspection drowns the
        # decisions we log ourselves.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def running(self) -> None:
        self._take_over_host_header()
        if self.policy is None:
            # WARNING, not ERROR: mitmproxy exits on any error logged during
            # startup, and the promise here is to stay up and answer 503.
            logger.warning(
                "oauth2-introspection: no introspection_config set: every request is refused "
                "with 503 until one is (--set introspection_config=FILE)"
            )

    def configure(self, updated: set[str]) -> None:
        if "introspection_config" in updated:
            path = ctx.options.introspection_config
            if not path:
                self.state.clear()
                return
            try:
                policy = self.state.load_file(path)
            except ConfigError as e:
                # One line naming file, entity and field; at startup this stops
                # mitmproxy, later the previous policy stays in force.
                raise exceptions.OptionsError(f"invalid introspection_config: {e}") from None
            logger.info(
                "oauth2-introspection: loaded %s (%d route(s), %d plugin(s), %d consumer(s))",
                path, len(policy.router), len(policy.plugins), len(policy.consumers),
            )

    async def done(self) -> None:
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

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            await self._handle(flow)
        except Exception:
            # mitmproxy forwards a flow whose hook raised: never let that happen.
            logger.exception("oauth2-introspection: internal error on %s; answering 500",
                             safe_url(flow.request))
            flow.response = responses.internal_error().to_response()
            flow.comment = "oauth2-introspection: 500 internal error (see event log)"

    async def _handle(self, flow: http.HTTPFlow) -> None:
        policy = self.policy
        request = flow.request
        if policy is None:
            flow.response = responses.no_policy().to_response()
            flow.comment = "oauth2-introspection: 503 no policy loaded"
            return
        client_host = request.host_header or request.host
        client_url = safe_url(request)  # logged as the client sent it, before rewriting
        resolution = policy.resolve(client_host, request.path, request.method, request.headers)
        route = resolution.route
        meta: dict[str, Any] = {
            "route": route.label if route else None,
            "service": (route.service.name or route.service.id)
            if route and route.service else None,
        }
        plugin = resolution.plugin
        decision: Decision | None = None
        if plugin is not None:
            meta["removed_headers"] = strip_spoofable(request.headers)
            decision = await decide(plugin, request, policy.consumers, self.cache, self.clients)
            meta.update(decision.details)
            meta["outcome"] = decision.outcome
            if decision.refusal is not None:
                flow.response = decision.refusal.to_response()
            else:
                for name, value in decision.set_headers.items():
                    request.headers[name] = value
                meta["added_headers"] = sorted(decision.set_headers)
                if decision.hide is not None:
                    meta["hidden_credentials"] = remove_token(request, decision.hide)
        else:
            meta["outcome"] = "no plugin"
        if flow.response is None:
            self._send_upstream(flow, resolution)
        self._annotate(flow, meta, decision, route.label if route else None, client_url)

    def _send_upstream(self, flow: http.HTTPFlow, resolution: Resolution) -> None:
        request = flow.request
        route = resolution.route
        client_host = request.host_header
        service = route.service if route else None
        upstream = service.upstream if service else None
        if route is not None:
            base = upstream[3] if upstream else ""
            request.path = upstream_path(
                base, resolution.match, request.path,
                strip_path=route.strip_path, path_handling=route.path_handling,
            )
        if upstream is not None:
            scheme, host, port, _ = upstream
            request.scheme, request.host, request.port = scheme, host, port
            target_host = hostport(scheme, host, port)
        else:
            mode = flow.client_conn.proxy_mode
            target_host = (
                hostport(mode.scheme if mode.scheme in ("http", "https") else "http",
                         *mode.address)
                if isinstance(mode, ReverseMode) else None
            )
        keep_client_host = route.preserve_host if route else bool(_user_keep_host_header)
        if keep_client_host and client_host:
            request.host_header = client_host
        elif target_host is not None:
            request.host_header = target_host

    def _annotate(
        self, flow: http.HTTPFlow, meta: dict[str, Any], decision: Decision | None,
        route: str | None, client_url: str,
    ) -> None:
        flow.metadata[METADATA_KEY] = meta
        where = f"route {route}" if route else "no route"
        if decision is None:
            return
        flow.comment = f"oauth2-introspection [{where}, {meta.get('plugin')}]: {decision.summary}"
        token = meta.get("token_id")
        line = (f"{flow.request.method} {client_url} [{where}]: {decision.summary}"
                + (f" token={token}" if token else ""))
        if decision.outcome in ("allowed", "preflight"):
            logger.debug(line)
        elif decision.refusal is not None and decision.refusal.status >= 500:
            logger.warning(line)
        else:
            logger.info(line)


def safe_url(request: http.Request) -> str:
    """The request URL for logs, without an access_token query parameter."""
    url = request.pretty_url
    if "access_token" not in url:
        return url
    base, _, query = url.partition("?")
    kept = drop_form_field(query, "access_token")
    return f"{base}?{kept}&access_token=***" if kept else f"{base}?access_token=***"

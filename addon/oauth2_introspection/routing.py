"""Kong-style route matching, built once per configuration.

Kong (3.x, `traditional_compatible` router) gives every (route, path) pair a
priority and tries them best first. The priority compares, in order: how many
kinds of matcher the route has (methods, hosts, headers, paths), whether all
its hosts are plain (no wildcard), how many headers it matches, whether the
path is a regex (then its `regex_priority`), and the length of a prefix path.
Ties keep declaration order. The first candidate that matches wins.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote

T = TypeVar("T")


@dataclass(frozen=True)
class RouteSpec(Generic[T]):
    """What the router needs of a route; `target` is opaque (the compiled route)."""

    target: T
    hosts: Sequence[str] = ()
    paths: Sequence[str] = ()
    methods: Sequence[str] = ()
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    regex_priority: int = 0


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    target: T
    #: the part of the (normalised) path the route's path matched, for strip_path
    matched_prefix: str
    #: the normalised request path the match was made on
    path: str


@dataclass(frozen=True)
class _HostMatcher:
    exact: frozenset[str]
    suffixes: tuple[str, ...]  # from "*.example.com" -> ".example.com"
    prefixes: tuple[str, ...]  # from "example.*" -> "example."

    def matches(self, host: str, host_with_port: str) -> bool:
        if host in self.exact or host_with_port in self.exact:
            return True
        return any(
            h.endswith(s) and len(h) > len(s) for s in self.suffixes for h in (host, host_with_port)
        ) or any(host.startswith(p) and len(host) > len(p) for p in self.prefixes)


@dataclass(frozen=True)
class _Candidate(Generic[T]):
    target: T
    priority: tuple[int, ...]
    hosts: _HostMatcher | None
    methods: frozenset[str] | None
    headers: tuple[tuple[str, Callable[[list[str]], bool]], ...]
    prefix: str | None
    regex: re.Pattern[str] | None


def _host_matcher(hosts: Sequence[str]) -> _HostMatcher:
    exact: set[str] = set()
    suffixes: list[str] = []
    prefixes: list[str] = []
    for host in hosts:
        host = host.lower()
        if host.startswith("*."):
            suffixes.append(host[1:])
        elif host.endswith(".*"):
            prefixes.append(host[:-1])
        else:
            exact.add(host)
    return _HostMatcher(frozenset(exact), tuple(suffixes), tuple(prefixes))


class Router(Generic[T]):
    """Match (host, path, method, headers) to the best route."""

    def __init__(self, routes: Sequence[RouteSpec[T]]) -> None:
        candidates: list[tuple[tuple[int, ...], int, _Candidate[T]]] = []
        order = 0
        for spec in routes:
            kinds = sum(bool(x) for x in (spec.methods, spec.hosts, spec.headers, spec.paths))
            plain_hosts = bool(spec.hosts) and all("*" not in h for h in spec.hosts)
            hosts = _host_matcher(spec.hosts) if spec.hosts else None
            methods = frozenset(spec.methods) if spec.methods else None
            headers = tuple((name.lower(), _value_matcher(values))
                            for name, values in spec.headers.items())
            for path in spec.paths or [None]:
                is_regex = path is not None and path.startswith("~")
                priority = (
                    kinds,
                    int(plain_hosts),
                    len(headers),
                    int(is_regex),
                    spec.regex_priority if is_regex else 0,
                    len(path) if (path and not is_regex) else 0,
                )
                regex = re.compile(kong_regex(path[1:])) if (path and is_regex) else None
                prefix = path if (path and not is_regex) else None
                candidates.append(
                    (priority, order, _Candidate(spec.target, priority, hosts, methods, headers,
                                                 prefix, regex))
                )
                order += 1
        candidates.sort(key=lambda c: (tuple(-p for p in c[0]), c[1]))
        self._candidates = tuple(c for _, _, c in candidates)

    def __len__(self) -> int:
        return len(self._candidates)

    @property
    def matches_headers(self) -> bool:
        """Whether any route matches on request headers."""
        return any(c.headers for c in self._candidates)

    def match(
        self,
        host: str,
        path: str,
        method: str,
        headers: Mapping[str, str] | None = None,
    ) -> RouteMatch[T] | None:
        """`host` may carry a port; `path` is the raw request path (query included)."""
        host_with_port = host.lower()
        host_only = _strip_port(host_with_port)
        norm = normalize_path(path.split("?", 1)[0])
        for c in self._candidates:
            # methods as sent: Kong compares them exactly (`get` is not `GET`)
            if c.methods is not None and method not in c.methods:
                continue
            if c.hosts is not None and not c.hosts.matches(host_only, host_with_port):
                continue
            if c.headers:
                if headers is None:
                    continue
                if not all(matches(_header_values(headers, name)) for name, matches in c.headers):
                    continue
            if c.prefix is not None:
                if not norm.startswith(c.prefix):
                    continue
                matched = c.prefix
            elif c.regex is not None:
                m = c.regex.match(norm)
                if m is None:
                    continue
                matched = norm[: m.end()]
            else:
                matched = ""
            return RouteMatch(c.target, matched, norm)
        return None


def _value_matcher(values: Sequence[str]) -> Callable[[list[str]], bool]:
    """Whether a request header's values match a route's: one value equal
    to a plain one (case-insensitively, whole: `v1, v2` is not `v2`), or found
    by a `~*` one, a case-insensitive regular expression (as Kong 3)."""
    plain = frozenset(v.lower() for v in values if not v.startswith("~*"))
    regexes = tuple(re.compile(v[2:], re.IGNORECASE) for v in values if v.startswith("~*"))

    def matches(sent: list[str]) -> bool:
        return any(v.strip().lower() in plain or any(r.search(v) for r in regexes)
                   for v in sent)

    return matches


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Each value of a header (a repeated header is several values)."""
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        return list(get_all(name))
    value = headers.get(name)
    return [] if value is None else [value]


# Kong (PCRE, Rust regex) names a group `(?<name>...)`; Python wants `(?P<name>...)`
_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")


def kong_regex(pattern: str) -> str:
    """A route regex as Kong writes it, in Python's syntax (named groups;
    lookbehinds `(?<=`, `(?<!` are left alone)."""
    return _NAMED_GROUP.sub("(?P<", pattern)


def _strip_port(host: str) -> str:
    if host.startswith("["):  # IPv6 literal
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_path(path: str) -> str:
    """The path as Kong matches it (RFC 3986 §6.2.2): escapes of unreserved
    characters decoded (others kept, upper-cased, so `%2F` stays a escaped
    slash), `.`/`..` resolved, repeated slashes merged. Matching on it keeps
    `/a/../private` or `/%70rivate` from slipping past a path-scoped plugin."""
    if "%" in path:
        path = _PERCENT_ESCAPE.sub(_decode_unreserved, path)
    if "//" not in path and "/." not in path:
        return path or "/"
    out: list[str] = []
    segments = path.split("/")
    for seg in segments[1:]:
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = "/" if segments[-1] in ("", ".", "..") and out else ""
    return "/" + "/".join(out) + trailing


def upstream_path(
    service_path: str,
    match: RouteMatch[object] | None,
    raw_path: str,
    *,
    strip_path: bool,
    path_handling: str = "v0",
) -> str:
    """The path (with query) to send upstream, following Kong's path_handling.

    Without a service path and without stripping, the client's raw path is sent
    unchanged; otherwise the path is rebuilt from the normalised one.
    """
    if match is None or (not service_path and not (strip_path and match.matched_prefix)):
        return raw_path
    # "%" is safe: the normalised path keeps reserved characters escaped.
    safe = "%/!$&'()*+,;=:@-._~"
    base = service_path or "/"
    req_uri = quote(match.path, safe=safe)
    # Kong: the postfix is what follows the matched prefix ("/" without a path match).
    postfix = quote(match.path[len(match.matched_prefix or "/"):], safe=safe)
    if path_handling == "v1":
        path = _upstream_uri_v1(base, postfix, req_uri, strip_path)
    else:
        path = _upstream_uri_v0(base, postfix, req_uri, strip_path)
    query = raw_path[raw_path.index("?"):] if "?" in raw_path else ""
    return path + query


def _upstream_uri_v0(base: str, postfix: str, req_uri: str, strip_path: bool) -> str:
    """Kong's get_upstream_uri_v0 (kong/router/utils.lua), the default."""
    if base.endswith("/"):
        if not strip_path:
            return base + req_uri[1:]
        if not postfix:
            if base == "/":
                return "/"
            return base if req_uri.endswith("/") else base[:-1]
        return base[:-1] + postfix if postfix.startswith("/") else base + postfix
    if not strip_path:
        return base if req_uri == "/" else base + req_uri
    if not postfix:
        return base + "/" if len(req_uri) > 1 and req_uri.endswith("/") else base
    return base + postfix if postfix.startswith("/") else base + "/" + postfix


def _upstream_uri_v1(base: str, postfix: str, req_uri: str, strip_path: bool) -> str:
    """Kong's path_handling v1 (traditional router)."""
    if not strip_path:
        return base + req_uri[1:]
    if base.endswith("/") and postfix.startswith("/"):
        return base[:-1] + postfix
    return base + postfix

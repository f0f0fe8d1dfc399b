"""The one exception tree of the package.

    IntrospectionAddonError
    ├── ConfigError                   a declarative file is unreadable or invalid
    └── IntrospectionError            the endpoint gave no usable answer (never cached)
        ├── IntrospectionUnreachable  connect/read/write failure
        ├── IntrospectionTimeout      the whole call took longer than `timeout`
        ├── IntrospectionBadStatus    HTTP status other than 200
        └── IntrospectionBadBody      not JSON, not an object, no boolean `active`,
                                      or unusable (too deep, lone surrogate, huge `exp`)

Callers catch at the level they need: the request path turns any
`IntrospectionError` into a 502, the addon turns a `ConfigError` into an
`OptionsError`. Messages never contain a token or the endpoint's body.
"""

from __future__ import annotations


class IntrospectionAddonError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(IntrospectionAddonError):
    """A configuration file or value is invalid.

    `problems` holds one line per problem, each starting with the source
    (`file:line:`); `str()` is the first, so it fits mitmproxy's one-line
    OptionsError.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{problems[0]}{more}")


class IntrospectionError(IntrospectionAddonError):
    """The introspection endpoint could not give a usable answer."""

    #: short machine-readable reason, used in flow comments and metadata
    reason = "introspection failed"


class IntrospectionUnreachable(IntrospectionError):
    reason = "introspection endpoint unreachable"


class IntrospectionTimeout(IntrospectionError):
    reason = "introspection timeout"


class IntrospectionBadStatus(IntrospectionError):
    reason = "introspection endpoint answered non-200"

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"introspection endpoint answered HTTP {status}")


class IntrospectionBadBody(IntrospectionError):
    reason = "introspection answer malformed"

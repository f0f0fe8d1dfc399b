"""Kong-compatible OAuth 2.0 token introspection (RFC 7662) for mitmproxy.

Use it as a mitmproxy script::

    mitmdump --mode reverse:http://127.0.0.1:9000@127.0.0.1:8080 \\
        -s addon/introspect.py --set introspection_config=configs/example.yaml
"""

from .addon import OAuth2Introspection
from .config import DeclarativeConfig, OAuth2IntrospectionConfig
from .errors import (
    ConfigError,
    IntrospectionAddonError,
    IntrospectionBadBody,
    IntrospectionBadStatus,
    IntrospectionError,
    IntrospectionTimeout,
    IntrospectionUnreachable,
)
from .loader import load_file, load_text

__all__ = [
    "ConfigError",
    "DeclarativeConfig",
    "IntrospectionAddonError",
    "IntrospectionBadBody",
    "IntrospectionBadStatus",
    "IntrospectionError",
    "IntrospectionTimeout",
    "IntrospectionUnreachable",
    "OAuth2Introspection",
    "OAuth2IntrospectionConfig",
    "load_file",
    "load_text",
]

"""The Kong-compatible Admin API (a subset), served inside mitmproxy's event loop.

    forms.py     request bodies as Kong reads them (dotted keys, [] arrays, coercion)
    entities.py  services/routes/plugins/consumers CRUD on a flat copy of the config
    api.py       the endpoints, as a plain function of (method, path, query, body)
    server.py    the tornado listener: access checks, then api.py
    addon.py     mitmproxy options and lifecycle; persistence of accepted changes
"""

from .addon import AdminAPIAddon
from .api import AdminAPI, AdminResponse

__all__ = ["AdminAPI", "AdminAPIAddon", "AdminResponse"]

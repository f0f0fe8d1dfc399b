"""mitmproxy entry script: `mitmdump -s addon/introspect.py --set introspection_config=FILE`.

Works installed (`pip install .`) or straight from a checkout: the package sits
beside this file.
"""

import os
import sys

import mitmproxy.addons  # noqa: F401  (every hook class is registered: see below)
from mitmproxy import hooks

try:
    from oauth2_introspection import OAuth2Introspection
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oauth2_introspection import OAuth2Introspection
from oauth2_introspection.admin import AdminAPIAddon
from oauth2_introspection.commands import IntrospectionCommands
from oauth2_introspection.reload import ConfigWatcher

_core = OAuth2Introspection()
addons = [_core, IntrospectionCommands(_core), AdminAPIAddon(_core), ConfigWatcher(_core)]

# mitmproxy looks every hook name up on this module too, for every event of
# every flow, and on a module a missing name costs an AttributeError with a
# formatted message (several per request, measurable against plain mitmdump).
# Naming them all as "no hook" (None, which mitmproxy skips) makes the lookups
# free; the hooks themselves live on the addon objects above.
globals().update({name: None for name in hooks.all_hooks if name not in globals()})

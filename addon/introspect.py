"""mitmproxy entry script: `mitmdump -s addon/introspect.py --set introspection_config=FILE`.

Works installed (`pip install .`) or straight from a checkout: the package sits
beside this file.
"""

import os
import sys

import mitmproxy.addons  # noqa: F401  (every hook class is registered: see below)
from mitmproxy import hooks

try:
    from oauth2_introspection.bundle import IntrospectionAddon
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from oauth2_introspection.bundle import IntrospectionAddon

# One object for all the parts (core, commands, Admin API, config watcher):
# mitmproxy walks every addon object on every event (bundle.py).
addons = [IntrospectionAddon()]

# mitmproxy looks every hook name up on this module too, for every event of
# every flow, and on a module a missing name costs an AttributeError with a
# formatted message (several per request, measurable against plain mitmdump).
# Naming them all as "no hook" (None, which mitmproxy skips) makes the lookups
# free; the hooks themselves live on the addon object above.
# Except `add_log`: mitmproxy still sends that event but warns about any addon
# that has the name ("The add_log event has been deprecated") when it loads.
globals().update({name: None for name in hooks.all_hooks
                  if name not in globals() and name != "add_log"})

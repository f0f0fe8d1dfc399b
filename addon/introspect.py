"""mitmproxy entry script: `mitmdump -s addon/introspect.py --set introspection_config=FILE`.

Works installed (`pip install .`) or straight from a checkout: the package sits
beside this file.
"""

import os
import sys

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

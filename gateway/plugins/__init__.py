"""The policy-plugin feature: resolving plugin paths and the stage that runs them (plugins
themselves import only ``gateway.plugin_api``).
"""

# ``from gateway.plugins import Verdict`` is documented for plugins written before
# ``gateway.plugin_api``; it is the same class.
from gateway.plugin_api import Verdict

__all__ = ["Verdict"]

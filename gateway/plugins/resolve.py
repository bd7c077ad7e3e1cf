"""Turning a plugin ``path`` from the config into the object it names.

Kept apart from ``gateway.plugins.stage`` (the request stage that runs plugins) so that checking a
config (``gateway.config.access``) can tell whether a path resolves without importing the
stage, its request context and errors: the config layer stays below the pipeline.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

# Short names of the shipped plugins (the ``plugins`` package at the repository root).
BUILTINS = {
    "pii": "plugins.pii:PIIRedaction",
    "blocklist": "plugins.blocklist:BlockList",
    "max_tokens_cap": "plugins.max_tokens_cap:MaxTokensCap",
}
ENTRY_POINT_GROUP = "llm_gateway.plugins"


class PluginLoadError(ValueError):
    """A plugin could not be imported or built (the message names the config path)."""


def resolve(path: str) -> Any:
    """The object a plugin ``path`` names (imported, or loaded from a file); raises ``PluginLoadError``."""
    target = BUILTINS.get(path, path)
    if ":" not in target:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == target]
        if not found:
            raise PluginLoadError(f'"{path}" is neither module:attr, file.py:attr, a built-in '
                                  f'({", ".join(sorted(BUILTINS))}) nor an entry point in {ENTRY_POINT_GROUP}')
        return found[0].load()
    module_name, _, attr = target.rpartition(":")
    if module_name.endswith(".py") or "/" in module_name:
        file = Path(module_name).resolve()
        name = "llm_gateway_plugin_" + "".join(c if c.isalnum() else "_" for c in str(file))
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None or not file.is_file():
                raise PluginLoadError(f"cannot load {file}: no such file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
    else:
        module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginLoadError(f"{module_name} has no attribute {attr!r}") from None

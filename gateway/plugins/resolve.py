"""Turning a plugin ``path`` from the config into the object it names, and checking that every
enabled plugin's path does.

``check_plugins`` is the plugins feature's part of compiling a config (``PluginsFeature.compile``
on start-up and reload; ``gateway.compiled`` for commands): a path that does not resolve refuses
the config with a ``ConfigError`` naming ``plugins[i].path``. Kept apart from
``gateway.plugins.stage`` (the request stage that runs plugins), so checking a config imports
neither the stage nor its request context.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from gateway.config.loader import ConfigError, ConfigSnapshot

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


def plugin_problems(snapshot: ConfigSnapshot) -> list[str]:
    """``plugins[i].path: …`` for each enabled plugin whose path does not resolve (the plugin is
    built, with its settings, when the access layer puts the config in force)."""
    problems = []
    for i, spec in enumerate(snapshot.config.plugins):
        if not spec.enabled:
            continue
        try:
            resolve(spec.path)
        except PluginLoadError as exc:
            problems.append(f"plugins[{i}].path: {exc}")
        except Exception as exc:  # the module itself failed to import
            problems.append(f"plugins[{i}].path: cannot import {spec.path}: {type(exc).__name__}: {exc}")
    return problems


def check_plugins(snapshot: ConfigSnapshot) -> None:
    """Raise ``ConfigError`` when a plugin path of ``snapshot`` does not resolve."""
    problems = plugin_problems(snapshot)
    if problems:
        raise ConfigError(snapshot.source, problems)

"""Config files: pydantic models, loading with path-qualified errors, immutable snapshots.

The lowest layer: it imports nothing of the gateway outside ``gateway.config`` (a house rule
checks it). The prompt and chain files a config names are read here as bytes; the features
compile them (``gateway.config.loader``). The names below load on first use (PEP 562), so
importing a light submodule (``gateway.config.locations``, ``.environment``, ``.resolve``)
does not pull in the models.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "ConfigError": "loader", "ConfigSnapshot": "loader", "default_config": "loader", "load_config": "loader",
    "parse_config": "loader",
    "Backend": "models", "GatewayConfig": "models", "MockSettings": "models", "PublicModel": "models",
    "Target": "models", "Timeouts": "models",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gateway.config.{module}"), name)
    globals()[name] = value
    return value

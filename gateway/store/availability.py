"""Whether the embedded engine is installed (the ``embedded`` extra), and what to say when not.

chDB (with the numpy, pandas and pyarrow it pulls in) is an optional part of the package: a
gateway that writes to a ClickHouse server does not need it. Checking looks for the module
without importing it, so asking never loads the engine.
"""

from __future__ import annotations

import importlib.util

NOT_QUERYABLE = ("telemetry records are kept in the request log; install llm-gateway[embedded] or set "
                 "telemetry.clickhouse.dsn to make them queryable")


class EmbeddedUnavailable(ImportError):
    """The embedded store is configured but chDB is not installed."""

    def __init__(self) -> None:
        super().__init__(not_queryable_message())


def embedded_available() -> bool:
    """Whether chDB can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("chdb") is not None
    except (ImportError, ValueError):
        return False


def not_queryable_message() -> str:
    """The one line ``serve`` and the ingester print when the embedded store is configured and
    chDB is not installed."""
    return NOT_QUERYABLE


def require_embedded() -> None:
    """Raise ``EmbeddedUnavailable`` unless chDB is installed."""
    if not embedded_available():
        raise EmbeddedUnavailable()

"""The ``llm-gateway`` command line: one module per command group, and the client that asks the
running gateway or opens the store.
"""

# ``gateway.cli:main`` is the console script's entry point (installed wrappers name it).
from gateway.cli.commands import main

__all__ = ["main"]

"""Chains: multi-step LLM workflows managed in config like prompts, served as public models.

A chain file (``config/chains/<name>.yaml``, see ``models.py``) lists steps; each renders a
prompt from the registry and calls a public model. ``models.<public>.chain: <name>`` serves
it: an app calls the public name like any model. Files are loaded into the config snapshot
(``registry.py``; hashed, validated against the models and prompts, hot-reloaded with the
config), run by ``runner.py`` through the gateway's own request path in-process (every step a
request with its own row, linked to the chain's row by ``session_id`` / ``parent_request_id``),
and listed, shown and run by ``llm-gateway chains …`` (``cli.py``).
"""

from __future__ import annotations

__all__ = ["install_chains"]


def install_chains(handlers) -> None:
    """Make ``handlers`` (``ProxyHandlers``) answer chain models with a ``ChainRunner``."""
    from gateway.chains.runner import ChainRunner

    handlers.run_chain = ChainRunner(handlers).run

"""Chains: multi-step LLM workflows managed in config like prompts, served as public models.

A chain file (``config/chains/<name>.yaml``, see ``models.py``) lists steps; each renders a
prompt from the registry and calls a public model. ``models.<public>.chain: <name>`` serves
it: an app calls the public name like any model. Files are read with the config (their bytes
part of its hash, hot-reloaded with it), compiled by ``ChainsFeature.compile`` for each config
(``registry.py``: validated against the models and prompts), run by ``runner.py`` through the
gateway's own request path in-process (every step a request with its own row, linked to the
chain's row by ``session_id`` / ``parent_request_id``), and listed, shown and run by
``llm-gateway chains …`` (``gateway/cli/chains.py``).

``ChainsFeature`` serves chain models: its stage, last before routing, answers a request for a
chain model by running the chain and passes every other request on. A config without chain
models has no such stage.
"""

from __future__ import annotations

from gateway.core.errors import InvalidRequestError
from gateway.core.feature import Feature

__all__ = ["ChainsFeature"]


class ChainsFeature(Feature):
    """Dispatches requests for chain models to a ``ChainRunner`` (steps run through
    ``handlers.call_internal``, a ``ProxyHandlers``; retrieve steps through ``retriever``, a
    ``gateway.retrieval.search.Retriever``)."""

    name = "chains"

    def __init__(self, handlers, retriever=None):
        from gateway.chains.runner import ChainRunner

        self._run = ChainRunner(handlers, retriever).run

    def compile(self, runtime) -> None:
        """Compile the config's chain files against its models and compiled prompts (after
        ``PromptsFeature.compile``); a ``ConfigError`` refuses the config."""
        from gateway.chains.registry import compile_chains

        runtime.compiled[self.name] = compile_chains(runtime.snapshot, runtime.compiled.get("prompts"))

    def stage(self, runtime):
        chains = runtime.compiled[self.name]
        if chains is None or not chains.by_model:
            return None
        by_model, run = chains.by_model, self._run

        async def chain_dispatch(ctx, call_next):
            chain = by_model.get(ctx.body["model"])
            if chain is not None:  # a chain model: its steps run as requests of their own
                if ctx.endpoint != "chat/completions":  # its answer is a chat completion, in no other API's shape
                    raise InvalidRequestError(f"model {ctx.body['model']!r} is a chain, served on "
                                              "/v1/chat/completions only", param="model")
                return await run(ctx, chain)
            return await call_next(ctx)

        return chain_dispatch

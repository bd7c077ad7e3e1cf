"""A chain's retrieve step: search a collection with a query rendered from the step variables.

The query template (``retrieve.query``, default ``{{ input }}``) renders in the prompts'
sandbox over the same variables a prompt step sees (the caller's ``variables``, ``input``,
``messages``, earlier outputs). The search runs as the chain's caller (its key's tenant and
``collections``; ``gateway.retrieval.search``); its embeddings call is a row of its own with
the chain's session and ``parent_request_id``, tagged with the chain and step. The hits become
the step's output (``id``, ``doc_id``, ``chunk_index``, ``text``, ``metadata``, ``distance``)
and their ids and distances are appended to the chain's row (``retrieved_chunks``,
``retrieved_distances``).
"""

from __future__ import annotations

from typing import Any

from gateway.core.context import RequestContext
from gateway.core.errors import InvalidRequestError, ServiceUnavailableError


async def run_retrieve(retriever: Any, ctx: RequestContext, chain: Any, i: int, values: dict[str, Any]) -> list:
    """The hits of retrieve step ``i`` of ``chain`` for the chain request ``ctx``."""
    from gateway.prompts.errors import PromptError
    from gateway.prompts.render import render_template
    from gateway.retrieval.search import Caller

    step = chain.steps[i]
    spec = step.retrieve
    if retriever is None:  # a gateway built without collections (an embedder's own composition)
        raise ServiceUnavailableError("retrieval collections are not available in this gateway")
    template = chain.queries[i] if i < len(chain.queries) else None
    if template is None:
        raise InvalidRequestError("the step's query template did not compile")
    try:
        query = render_template(template, values, f"retrieve.query of step {step.name!r}", frozenset(),
                                param="variables").strip()
    except PromptError as exc:
        raise InvalidRequestError(exc.message, param=exc.param) from None
    if not query:
        raise InvalidRequestError("the rendered query is empty (the chain's input has no text to search with)",
                                  param="messages")
    grant = ctx.access
    key = grant.key if grant is not None else None
    caller = Caller(key=key, grant=grant, request=ctx.request, headers=ctx.headers, parent=ctx.request_id,
                    purpose="chain", session=ctx.session_id,
                    tags={"chain": chain.name, "chain_version": str(chain.version), "chain_step": step.name})
    _, hits = await retriever.search(spec.collection, query, spec.k, dict(spec.filter), caller)
    ctx.retrieved_chunks = [*(ctx.retrieved_chunks or ()), *(h.id for h in hits)]
    ctx.retrieved_distances = [*(ctx.retrieved_distances or ()), *(h.distance for h in hits)]
    return [h.as_json() for h in hits]


__all__ = ["run_retrieve"]

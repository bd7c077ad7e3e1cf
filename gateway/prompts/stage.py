"""The prompt stage: a request that names a prompt gets it rendered in (``inject.apply_prompt``).

The stage is in every config's path: with no prompts configured it still refuses a ``prompt``
field (chat, messages) or an ``x-gateway-prompt`` header, which must not reach a backend. It is a plain
function, not a coroutine: it has nothing to do once the answer comes back, so it returns the
next stage's awaitable instead of awaiting it, and leaves no frame on the request's stack
(``gateway.core.pipeline``). A request that names no prompt costs two look-ups and a call.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web

from gateway.core.context import RequestContext
from gateway.core.errors import InvalidRequestError
from gateway.core.pipeline import Handler
from gateway.prompts.errors import PromptError
from gateway.prompts.inject import HEADER, PROMPTED, apply_prompt


def prompt_stage(ctx: RequestContext, call_next: Handler) -> Awaitable[web.StreamResponse]:
    """The pipeline stage (selection rules: ``gateway.prompts.inject``)."""
    body = ctx.body
    assert body is not None  # the stage runs on JSON requests only
    takes = ctx.endpoint in PROMPTED
    header = ctx.headers.get(HEADER)
    if header is None and (not takes or "prompt" not in body):
        if not takes:
            return call_next(ctx)
        registry = ctx.runtime.compiled.get("prompts")  # PromptsFeature.compile
        if registry is None or ctx.model_requested not in registry.by_model:
            return call_next(ctx)
    elif not takes:
        raise InvalidRequestError(f"{HEADER} applies to /v1/chat/completions and /v1/messages only", param=HEADER)
    try:
        apply_prompt(ctx, header)
    except PromptError as exc:
        raise InvalidRequestError(exc.message, param=exc.param) from None
    return call_next(ctx)

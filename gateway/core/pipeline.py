"""The stage protocol and ``compose``.

A stage is ``async def stage(ctx, call_next) -> web.StreamResponse``: it may change the
request (``ctx.body``), answer by itself (a cache hit, a 401) without calling ``call_next``,
or call ``call_next(ctx)`` and look at the outcome afterwards. A stage that edits ``ctx.body``
in place calls ``ctx.body.mutated()`` (or ``request_body.mark_mutated``); one that puts a new
dict there needs nothing more. Otherwise the client's original bytes are forwarded as they
came (the fast path when nothing changed). A stage with nothing to do after the answer may be
a plain function that returns ``call_next(ctx)`` without awaiting it: it then leaves no
coroutine frame on the request's stack, which every suspension of the request would pass
through again (the prompt and observability stages do this). ``compose`` nests the stages
once per compiled config (``gateway.app`` lists them, in order), so a request pays one function
call per active stage and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from gateway.core.context import RequestContext

Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]
Stage = Callable[[RequestContext, Handler], Awaitable[web.StreamResponse]]


def compose(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Chain ``stages`` (first runs first) in front of ``terminal``."""
    handler = terminal
    for stage in reversed(stages):
        handler = (lambda s, nxt: (lambda ctx: s(ctx, nxt)))(stage, handler)
    return handler

"""The stage protocol and ``compose``.

A stage is ``async def stage(ctx, call_next) -> web.StreamResponse``: it may change the
request (``ctx.body``), answer by itself (a cache hit, a 401) without calling ``call_next``,
or call ``call_next(ctx)`` and look at the outcome afterwards. A stage that edits ``ctx.body``
in place calls ``ctx.body.mutated()`` (or ``request_body.mark_mutated``); one that puts a new
dict there needs nothing more. Otherwise the client's original bytes are forwarded as they
came (the fast path when nothing changed). ``compose`` nests the stages
once at start-up, so a request pays one function call per stage and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from gateway.context import RequestContext

Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]
Stage = Callable[[RequestContext, Handler], Awaitable[web.StreamResponse]]


def compose(stages: Sequence[Stage], terminal: Handler) -> Handler:
    """Chain ``stages`` (first runs first) in front of ``terminal``."""
    handler = terminal
    for stage in reversed(stages):
        handler = (lambda s, nxt: (lambda ctx: s(ctx, nxt)))(stage, handler)
    return handler


# Where each kind of stage runs: auth before everything; prompts render the final request;
# plugins (PII redaction, block lists) then see exactly what goes upstream; the cache keys on
# the request as all of them left it.
STAGE_ORDER = ("access", "prompts", "plugins", "cache")


class StageList(list[Stage]):
    """The app's stages, kept in ``STAGE_ORDER`` whenever features register at different times
    (at build, at start-up, on a reload). Add stages only through ``place``."""

    def __init__(self) -> None:
        super().__init__()
        self._kinds: list[str] = []

    def place(self, stage: Stage, kind: str) -> None:
        """Insert ``stage`` (``kind`` from ``STAGE_ORDER``) after every stage of an earlier kind."""
        rank = STAGE_ORDER.index(kind)
        at = sum(1 for k in self._kinds if STAGE_ORDER.index(k) <= rank)
        self.insert(at, stage)
        self._kinds.insert(at, kind)

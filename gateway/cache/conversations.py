"""Conversations of translated ``/v1/responses`` turns, kept for ``previous_response_id``.

A target that translates the Responses API to Chat Completions answers statelessly, so the
gateway keeps what OpenAI would: after each such turn, its conversation (chat messages) under
the response's id, for ``responses.ttl_s``, in the store the ``cache:`` section names (memory,
or Redis shared by every instance). A later request naming that id continues from it
(``gateway.inbound.responses.turn``). The same record keeps the turn's ``response`` and input
items, so the stored-response endpoints answer for it (``GET``/``DELETE /v1/responses/{id}``,
``GET …/input_items``, ``POST …/cancel``: ``gateway.inbound.responses.stored``); an id the gateway
did not keep goes on where ``passthrough:`` sends its path (none: 404). Keys carry the tenant,
so one tenant never reads another's; ``store: false`` keeps nothing. The stage is in a config's
path only when one of its backends translates the Responses API, and costs every other
endpoint two comparisons.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from gateway.cache.entry import JSON, CacheEntry
from gateway.cache.stores import CacheStats, MemoryStore, RedisStore, build_store, store_signature
from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import ServiceUnavailableError
from gateway.core.feature import Feature
from gateway.core.pipeline import Handler
from gateway.inbound.responses import stored
from gateway.inbound.responses.turn import Turn

log = logging.getLogger("gateway.cache")
ENDPOINT = "responses"


def key(tenant: str, response_id: str, namespace: str = "v1") -> str:
    """The store key of a response's conversation: under ``cache.namespace`` like the cache's
    (deployments sharing a Redis keep apart by it), the tenant's length first (no two tenants'
    keys can be the same string)."""
    return f"llm-gateway:responses:{namespace}:{len(tenant)}:{tenant}:{response_id}"


class ConversationStage:
    """The stage (``__call__``) and its store; one per application."""

    def __init__(self) -> None:
        self.stats = CacheStats()
        self.store: MemoryStore | RedisStore | None = None
        self.ttl_s = 86400.0
        self.namespace = "v1"
        self.max_entry_bytes = 8 << 20
        self._sig: tuple | None = None
        self._tasks: set[asyncio.Task] = set()

    def use(self, config: Any) -> None:
        """Keep conversations where ``config`` says (a new store only when that changed)."""
        cache, settings = config.cache, config.responses
        self.ttl_s = settings.ttl_s
        self.namespace = cache.namespace
        self.max_entry_bytes = cache.max_entry_bytes  # one conversation, in Redis too
        sig = store_signature(cache, settings.max_bytes)
        if sig == self._sig:
            return
        old, self._sig = self.store, sig
        self.store = build_store(cache, self.stats, settings.max_bytes)
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        if self.store is not None:
            await self.store.start()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.store is not None:
            await self.store.close()

    def __call__(self, ctx: RequestContext, call_next: Handler):
        if ctx.endpoint != ENDPOINT:
            if ctx.passthrough is not None and ctx.endpoint.startswith("responses/"):
                return self._stored(ctx, call_next)
            return call_next(ctx)
        return self._turn(ctx, call_next)

    async def _kept(self, tenant: str, response_id: str) -> Any:
        """The record kept under ``response_id`` for ``tenant`` (None: none)."""
        entry = await self.store.get(key(tenant, response_id, self.namespace)) if self.store is not None else None
        try:
            return orjson.loads(entry.body) if entry is not None else None
        except orjson.JSONDecodeError:  # a value that does not decode is not kept (as the cache's)
            return None

    async def _turn(self, ctx: RequestContext, call_next: Handler):
        body = ctx.body if isinstance(ctx.body, dict) else {}
        turn = ctx.conversation = Turn()
        store = self.store
        previous = body.get("previous_response_id")
        if store is not None and isinstance(previous, str) and previous:
            turn.history = stored.history(await self._kept(ctx.tenant, previous))
        response = await call_next(ctx)
        if store is not None and ctx.status_code == 200 and not ctx.error_type:
            kept = stored.record(body, turn)
            if kept is not None:
                entry = CacheEntry(JSON, ENDPOINT, orjson.dumps(kept))
                if entry.size <= self.max_entry_bytes:  # a longer one is not kept: its id is then not found
                    await store.set(key(ctx.tenant, kept["response"]["id"], self.namespace), entry, self.ttl_s)
        return response

    async def _stored(self, ctx: RequestContext, call_next: Handler):
        """A stored-response request: answered from a response this tenant kept here, else on
        to ``passthrough:``'s backend for the path (none: not found)."""
        how = ctx.passthrough
        found = stored.route(how.method, ctx.endpoint)
        if found is None:
            return await call_next(ctx)
        action, response_id = found
        tenant = ctx.object_owner or ctx.tenant  # the admin key reaches the owner's
        kept = await self._kept(tenant, response_id)
        if not isinstance(kept, dict) or not isinstance(kept.get("response"), dict):
            if how.backend is None:
                raise stored.not_found(response_id)
            return await call_next(ctx)
        query = ctx.request.rel_url.query
        if action == "cancel":
            raise stored.not_cancellable()
        if action == "input_items":
            answer = stored.page(kept.get("input") or [], query)
        elif action == "DELETE":
            assert self.store is not None  # something was kept
            if not await self.store.delete(key(tenant, response_id, self.namespace)):
                raise ServiceUnavailableError("The response could not be deleted now; try again.",
                                              code="store_unavailable")
            answer = stored.deleted(response_id)
        elif query.get("stream") == "true":
            raise stored.not_streamed()
        else:
            answer = kept["response"]
        body = ctx.response_body = orjson.dumps(answer)
        outcome.answered(ctx, 200)
        headers = {"Content-Type": "application/json", **(ctx.response_headers or {}),
                   "x-request-id": ctx.x_request_id}
        return web.Response(status=200, body=body, headers=headers)


class ConversationsFeature(Feature):
    """Plugs ``ConversationStage`` in: on the path of a config where some backend translates the
    Responses API (a backend whose ``native_paths`` lack ``responses``)."""

    name = "conversations"

    def __init__(self) -> None:
        self.conversations = ConversationStage()

    @staticmethod
    def _translating(runtime) -> bool:
        return any(ENDPOINT not in client.native_paths for client in runtime.clients.values())

    def compile(self, runtime) -> None:
        if self._translating(runtime):  # its stored responses are answered here (by the stage)
            runtime.own_paths = stored.ROUTES

    def stage(self, runtime):
        return self.conversations if self._translating(runtime) else None

    def activate(self, runtime) -> None:
        self.conversations.use(runtime.snapshot.config)

    async def start(self, app) -> None:
        await self.conversations.start()

    async def stop(self, app) -> None:
        await self.conversations.close()

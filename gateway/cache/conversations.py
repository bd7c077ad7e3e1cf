"""Conversations of translated ``/v1/responses`` turns, kept for ``previous_response_id``.

A target that translates the Responses API to Chat Completions answers statelessly, so the
gateway keeps what OpenAI would: after each such turn, its conversation (chat messages) under
the response's id, for ``responses.ttl_s``, in the store the ``cache:`` section names (memory,
or Redis shared by every instance). A later request naming that id continues from it
(``gateway.inbound.responses.turn``). Keys carry the tenant, so one tenant never reads
another's; ``store: false`` keeps nothing. The stage is in a config's path only when one of its
backends translates the Responses API, and costs every other endpoint one comparison.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from gateway.cache.entry import JSON, CacheEntry
from gateway.cache.stores import CacheStats, MemoryStore, RedisStore, build_store, store_signature
from gateway.core.context import RequestContext
from gateway.core.feature import Feature
from gateway.core.pipeline import Handler
from gateway.inbound.responses.turn import Turn, conversation

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
            return call_next(ctx)
        return self._turn(ctx, call_next)

    async def _turn(self, ctx: RequestContext, call_next: Handler):
        body = ctx.body if isinstance(ctx.body, dict) else {}
        turn = ctx.conversation = Turn()
        store = self.store
        previous = body.get("previous_response_id")
        if store is not None and isinstance(previous, str) and previous:
            entry = await store.get(key(ctx.tenant, previous, self.namespace))
            try:
                history = orjson.loads(entry.body) if entry is not None else None
            except orjson.JSONDecodeError:  # a value that does not decode is not kept (as the cache's)
                history = None
            turn.history = history if isinstance(history, list) else None
        response = await call_next(ctx)
        if store is not None and ctx.status_code == 200 and not ctx.error_type:
            messages = conversation(body, turn)
            if messages is not None and turn.response is not None:
                entry = CacheEntry(JSON, ENDPOINT, orjson.dumps(messages))
                if entry.size <= self.max_entry_bytes:  # a longer one is not kept: its id is then not found
                    await store.set(key(ctx.tenant, turn.response["id"], self.namespace), entry, self.ttl_s)
        return response


class ConversationsFeature(Feature):
    """Plugs ``ConversationStage`` in: on the path of a config where some backend translates the
    Responses API (a backend whose ``native_paths`` lack ``responses``)."""

    name = "conversations"

    def __init__(self) -> None:
        self.conversations = ConversationStage()

    def stage(self, runtime):
        translating = any(ENDPOINT not in client.native_paths for client in runtime.clients.values())
        return self.conversations if translating else None

    def activate(self, runtime) -> None:
        self.conversations.use(runtime.snapshot.config)

    async def start(self, app) -> None:
        await self.conversations.start()

    async def stop(self, app) -> None:
        await self.conversations.close()

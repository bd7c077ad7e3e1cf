"""The cache stage: look up, coalesce, relay, store.

``CacheStage`` is one pipeline stage (``async (ctx, call_next)``). Per request:

1. The policy of the config in force (compiled once per config, on start-up or reload) says whether the cache
   applies: the model's ``cache.enabled``, a cached endpoint, ``mode`` (deterministic:
   ``temperature: 0`` or a ``seed``), and the request's ``Cache-Control``. If not, the request
   goes on untouched (``bypass``); a request for a model without caching pays one dict lookup.
2. Lookup (unless ``no-cache``/``no-store``): a live entry younger than ``max-age`` answers at
   once (``hit``, with ``age``), converted to the request's shape if needed.
3. Otherwise, if an identical request is in flight, follow it (``coalesced``): a stream
   follower of a stream leader gets the leader's chunks as they are relayed; any other pairing
   waits for the leader's complete answer.
4. Otherwise lead. A model with a semantic cache first looks for a near question
   (``semantic.py``; not for ``no-cache``): a stored answer within its distance is served like a
   hit (``semantic_hit``), and followers that joined meanwhile get it too. Otherwise (``miss``):
   capture what the relay sends, and store it when it is a complete success (status 200, not
   cut, a finish reason, not too large, not ``no-store``); the semantic layer also keeps it when
   every choice finished of its own accord (not ``length``).

Leader failures: a complete error answer or a raised ``GatewayError`` is shared — followers
fail the same way (the upstream already had its retries and fallbacks). A leader that
vanishes without an answer (its client left before the upstream answered, or the stream broke
before ``[DONE]``) sends its followers that have received nothing back to step 2 once; a
follower that is mid-stream gets an in-band error event, as for an upstream cut. A follower
that leaves never affects the leader.

Every response of a request the cache looked at carries ``x-gateway-cache``
(``hit|semantic_hit|miss|bypass|coalesced``): on responses the handler builds (relayed answers, errors) it
goes through ``ctx.response_headers``; responses built here also carry ``ctx.response_headers``
(e.g. the access stage's ``x-ratelimit-*``).

Responses built from an entry, and entries built from a leader's answer: ``answer.py``; a
stream follower fed live from its leader: ``live.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.cache.answer import (
    BYPASS,
    COALESCED,
    HEADER,
    HIT,
    JSON_CT,
    MISS,
    SEMANTIC_HIT,
    STREAMED,
    answer,
    entry_of,
    looks_sse,
)
from gateway.cache.entry import CacheEntry
from gateway.cache.flight import Flight
from gateway.cache.live import relay_live
from gateway.cache.policy import SEMANTIC_ENDPOINTS, CachePolicy, ModelPolicy, RequestControl, question
from gateway.cache.semantic import Question, SemanticLookup, servable
from gateway.cache.stores import CacheStats, MemoryStore, RedisStore, build_store, store_signature
from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError

log = logging.getLogger("gateway.cache")


Handler = Callable[[RequestContext], Awaitable[web.StreamResponse]]


class CacheStage:
    """The cache as a pipeline stage; one per application (``app[CACHE]``).

    ``stats``: ``CacheStats`` counters. ``store``: the store in use (None until a config
    enables caching). ``flights``: in-flight leaders by key. Start/stop with ``start()`` /
    ``close()`` on the event loop. A hot reload that changes the store settings swaps the store
    (the old one is closed; a memory store's entries are dropped).
    """

    def __init__(self) -> None:
        # Seconds since the epoch: when entries are stored, how old they are (``max-age``,
        # ``Age``) and, for the memory store, when they expire. Tests move it with ``use_clock``.
        self.clock: Callable[[], float] = time.time
        self._store_clock: Callable[[], float] = time.monotonic
        self.stats = CacheStats()
        self.store: MemoryStore | RedisStore | None = None
        self.flights: dict[str, Flight] = {}
        self._store_sig: tuple | None = None
        self._policy: CachePolicy | None = None
        self._tasks: set[asyncio.Task] = set()
        # The semantic layer (``CacheFeature`` gives it the gateway's handlers and telemetry);
        # None: exact matches only.
        self.semantic: SemanticLookup | None = None

    # --- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store the starting config needs (``use`` chose it; none when caching is off)."""
        if self.store is not None:
            await self.store.start()

    async def close(self) -> None:
        """Wait for pending Redis writes, then close the store."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.store is not None:
            await self.store.close()

    def _swap_store(self, policy: CachePolicy) -> None:
        s = policy.settings
        sig = store_signature(s, s.max_bytes)
        if sig == self._store_sig:
            return
        old = self.store
        self.store = build_store(s, self.stats, s.max_bytes, self._store_clock)
        self._store_sig = sig
        if old is not None:
            log.info("cache: store settings changed; now using the %s store", s.store)
            self._spawn(old.close())

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Read time from ``clock`` from now on (entry ages, and memory-store expiry), so that a
        test can move time instead of sleeping. Redis expires entries on its own clock."""
        self.clock = self._store_clock = clock
        if self.semantic is not None:
            self.semantic.clock = clock
        if isinstance(self.store, MemoryStore):
            self.store._clock = clock

    def describe(self) -> dict:
        """State for ``GET /admin/cache``: store kind, size or availability, flights, counters."""
        store = self.store
        out: dict = {"store": store.kind if store is not None else None, "in_flight": len(self.flights),
                     "stats": self.stats.as_dict()}
        if self._policy is not None:
            out["namespace"] = self._policy.settings.namespace
            out["enabled"] = self._policy.any_enabled
        if isinstance(store, MemoryStore):
            out.update(entries=len(store), bytes=store.bytes, max_bytes=store.max_bytes)
        elif isinstance(store, RedisStore):
            out["redis_available"] = store.available
        return out

    def use(self, policy: CachePolicy) -> None:
        """Put ``policy`` (a config made current) in force: open, swap or close the store it
        needs. Called on start-up and on each reload, never on the request path."""
        if policy.any_enabled:
            self._swap_store(policy)
        elif self.store is not None:  # turned off by a reload: free the store
            log.info("cache: turned off; closing the %s store", self.store.kind)
            self._spawn(self.store.close())
            self.store, self._store_sig = None, None
        self._policy = policy

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the stage ------------------------------------------------------------------
    async def __call__(self, ctx: RequestContext, call_next: Handler) -> web.StreamResponse:
        policy = self._policy
        if policy is None or not policy.any_enabled:  # a request begun just before a reload turned it off
            ctx.cache_status = BYPASS
            return await call_next(ctx)
        model_policy = policy.for_model(ctx.model_requested)
        if not model_policy.enabled:
            ctx.cache_status = BYPASS
            return await call_next(ctx)
        # An upload (``ctx.passthrough``: a form) is known by its text fields only, never its files.
        if self.store is None or ctx.body is None or ctx.passthrough is not None or \
                not policy.eligible(ctx.endpoint, ctx.body, model_policy):
            return await self._bypass(ctx, call_next)
        ctl = RequestControl.parse(ctx.request.headers if ctx.request is not None else None)
        if not ctl.lookup and not ctl.store:
            return await self._bypass(ctx, call_next)
        try:
            headers = ctx.request.headers if ctx.request is not None else None
            key = policy.key(ctx.endpoint, ctx.body, ctx.tenant, headers, ctx.metadata, ctx.api_key_id, ctx.stream)
        except TypeError:
            return await self._bypass(ctx, call_next)
        return await self._serve(ctx, call_next, policy, model_policy, ctl, key, 0)

    @staticmethod
    def _mark(ctx: RequestContext, status: str) -> None:
        """Record ``status`` and have the handler put it on whatever response it builds."""
        ctx.cache_status = status
        extra = ctx.response_headers
        ctx.response_headers = {**extra, HEADER: status} if extra else {HEADER: status}

    async def _bypass(self, ctx: RequestContext, call_next: Handler) -> web.StreamResponse:
        self.stats.bypasses += 1
        self._mark(ctx, BYPASS)
        return await call_next(ctx)

    async def _serve(self, ctx: RequestContext, call_next: Handler, policy: CachePolicy, mp: ModelPolicy,
                     ctl: RequestControl, key: str, rounds: int) -> web.StreamResponse:
        store = self.store
        looked_up = False
        if ctl.lookup and store is not None and store.available:
            entry = store.get_nowait(key) if store.kind == "memory" else await store.get(key)
            looked_up = store.available
            if entry is not None and (ctl.max_age is None or entry.age(self.clock()) <= ctl.max_age):
                response = answer(ctx, entry, HIT, self.clock)
                if response is not None:
                    self.stats.hits += 1
                    return response
        if policy.coalesce:
            flight = self.flights.get(key)
            if flight is not None:
                if rounds < 2:
                    return await self._follow(ctx, call_next, flight, policy, mp, ctl, key, rounds)
                return await self._lead(ctx, call_next, policy, mp, ctl, key, None, looked_up)
            flight = Flight(key, ctx)
            self.flights[key] = flight
            return await self._lead(ctx, call_next, policy, mp, ctl, key, flight, looked_up)
        return await self._lead(ctx, call_next, policy, mp, ctl, key, None, looked_up)

    # --- leading --------------------------------------------------------------------
    def _question(self, ctx: RequestContext, policy: CachePolicy, mp: ModelPolicy) -> Question | None:
        """The request's question when its model's semantic cache applies to it, else None."""
        sp, semantic = mp.semantic, self.semantic
        if sp is None or semantic is None or ctx.endpoint not in SEMANTIC_ENDPOINTS or not semantic.available:
            return None
        assert ctx.body is not None  # the stage bypasses body-less requests
        split = question(ctx.endpoint, ctx.body, sp.roles)
        if split is None:
            return None
        headers = ctx.request.headers if ctx.request is not None else None
        try:
            key_hash = policy.semantic_key(ctx.endpoint, split[1], ctx.tenant, headers, ctx.metadata,
                                           ctx.api_key_id, ctx.stream)
        except TypeError:
            return None
        return Question(split[0], key_hash)

    async def _lead(self, ctx: RequestContext, call_next: Handler, policy: CachePolicy, mp: ModelPolicy,
                    ctl: RequestControl, key: str, flight: Flight | None, looked_up: bool) -> web.StreamResponse:
        q = self._question(ctx, policy, mp)
        vector: list[float] | None = None
        if q is not None and ctl.lookup:
            assert self.semantic is not None and mp.semantic is not None  # _question said so
            try:
                match, vector = await self.semantic.lookup(ctx, q, mp.semantic, policy.settings.namespace,
                                                           ctl.max_age)
            except BaseException:  # cancelled (the client left): followers start over
                if flight is not None:
                    self._end(flight, vanished=True)
                raise
            looked_up = True
            if match is not None:
                served = answer(ctx, match.entry, SEMANTIC_HIT, self.clock)
                if served is not None:
                    self.stats.semantic_hits += 1
                    ctx.cache_distance = match.distance
                    ctx.cache_entry_id = match.entry_id
                    if flight is not None:  # followers that joined meanwhile get the same answer
                        self._end(flight, entry=match.entry)
                    return served
            self.stats.semantic_misses += 1
        if looked_up:
            self.stats.misses += 1
            self._mark(ctx, MISS)
        else:
            self.stats.bypasses += 1
            self._mark(ctx, BYPASS)
        capture: list[bytes] = flight.pieces if flight is not None else []
        ctx.capture = capture
        if flight is not None:
            ctx.on_bytes = flight.notify
        try:
            response = await call_next(ctx)
        except GatewayError as exc:
            if flight is not None:
                self._end(flight, error=exc)
            raise
        except BaseException:
            if flight is not None:
                self._end(flight, vanished=True)
            raise
        finally:
            ctx.on_bytes = None
        entry = entry_of(ctx, capture, self.clock()) if ctl.store or flight is not None else None
        pending = None
        if entry is not None and ctl.store and (entry.finish_reason or ctx.endpoint == "embeddings") \
                and entry.size <= policy.max_entry_bytes:
            ttl = ctl.ttl_s or mp.ttl_s
            if policy.max_ttl_s is not None:
                ttl = min(ttl, policy.max_ttl_s)
            store = self.store
            if store is None:  # the cache was turned off meanwhile
                pass
            elif store.kind == "memory":
                if store.set_nowait(key, entry, ttl):
                    self.stats.stores += 1
            else:
                pending = self._spawn(self._store_later(store, key, entry, ttl))
            # A question whose embedding just failed is not embedded again to be stored.
            if q is not None and servable(entry) and (vector is not None or not ctl.lookup):
                self._store_semantic(ctx, q, mp, policy, vector, entry, ctl.ttl_s)
        else:
            self.stats.not_stored += 1
        if flight is not None:
            if entry is not None:
                flight.finish(entry=entry)
            elif ctx.status_code != 200 and not ctx.truncated and not outcome.is_client_closed(ctx) \
                    and len(capture) == 1 and not looks_sse(capture[0]):
                flight.finish(response=(ctx.status_code, capture[0]))
            else:
                flight.finish(vanished=True)
            if pending is None:
                self._forget(flight)
            else:  # late arrivals are served from the flight until the entry is in Redis
                pending.add_done_callback(lambda _t: self._forget(flight))
        return response

    def _store_semantic(self, ctx: RequestContext, q: Question, mp: ModelPolicy, policy: CachePolicy,
                        vector: list[float] | None, entry: CacheEntry, ttl_s: float | None) -> None:
        """Keep ``entry`` as the answer to ``q``, after the response (embedding the question
        first when the look-up did not: ``no-cache``)."""
        semantic, sp = self.semantic, mp.semantic
        assert semantic is not None and sp is not None  # a question is only made for such a model
        ttl = ttl_s or sp.ttl_s
        if policy.max_ttl_s is not None:
            ttl = min(ttl, policy.max_ttl_s)
        child = semantic.embedding_request(ctx, sp.embedding_model, q.text) if vector is None else None
        text = q.text.encode()[:policy.question_max_bytes].decode(errors="ignore") if policy.keep_question else ""
        self._spawn(semantic.store(ctx, child, vector, q, sp, policy.settings.namespace, entry, ttl, text))

    def _end(self, flight: Flight, **outcome) -> None:
        flight.finish(**outcome)
        self._forget(flight)

    def _forget(self, flight: Flight) -> None:
        if self.flights.get(flight.key) is flight:
            del self.flights[flight.key]

    async def _store_later(self, store: RedisStore, key: str, entry: CacheEntry, ttl: float) -> None:
        if await store.set(key, entry, ttl):
            self.stats.stores += 1

    # --- following ------------------------------------------------------------------
    async def _follow(self, ctx: RequestContext, call_next: Handler, flight: Flight, policy: CachePolicy,
                      mp: ModelPolicy, ctl: RequestControl, key: str, rounds: int) -> web.StreamResponse:
        leader = flight.leader
        if ctx.stream and leader.stream and ctx.endpoint in STREAMED:
            while not flight.pieces and not flight.done:
                await flight.wait()
            if flight.pieces and leader.status_code == 200 and looks_sse(flight.pieces[0]):
                return await relay_live(ctx, flight, self.stats)
        while not flight.done:
            await flight.wait()
        if flight.entry is not None:
            response = answer(ctx, flight.entry, COALESCED, self.clock, leader.backend)
            if response is not None:
                self.stats.coalesced += 1
                return response
        elif flight.response is not None:
            status, body = flight.response
            self.stats.coalesced += 1
            ctx.cache_status = COALESCED
            outcome.error(ctx, status, leader.error_type, leader.error_message)
            headers = {**ctx.response_headers} if ctx.response_headers else {}
            headers.update({"Content-Type": JSON_CT, "x-request-id": ctx.x_request_id, HEADER: COALESCED})
            return web.Response(status=status, body=body, headers=headers)
        elif flight.error is not None:
            self.stats.coalesced += 1
            self._mark(ctx, COALESCED)  # the handler answers the error, with this header
            raise flight.error
        # The leader left without an answer: try again (once as a follower, then on our own).
        return await self._serve(ctx, call_next, policy, mp, ctl, key, rounds + 1)


"""The semantic layer of the cache: a request whose question is near an earlier one's.

A model with ``cache.semantic`` is served, after an exact miss, from a stored answer whose
question embeds within ``max_distance`` (cosine) of this one's and whose every other field
matched exactly (``CachePolicy.semantic_key``: model, tools, response format, temperature …,
the tenant, the varying headers). ``SemanticLookup`` does the work for the stage:

- ``embed``: the question's embedding, through the gateway's own embeddings route in-process
  (``gateway.proxy.internal_embeddings``, run as a chain step is): a request of its own with its own
  row (``parent_request_id`` = the request it serves), counted against the same key;
- ``lookup``: embed, then the nearest entry in ClickHouse (``gateway.telemetry.semantic_cache``
  on the ``vectors`` query lane, bounded by ``lookup_timeout_s``);
- ``store``: a complete answer becomes a ``llm_semantic_cache_d{dims}`` row through the request
  log (the ingester inserts it, seconds later).

Nothing here ever fails a request: an embedding that fails or times out, a busy lane, a store
that is down or a table that does not exist yet is a miss (counted in ``CacheStats``; logged
once per outage).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.cache.entry import CacheEntry
from gateway.cache.policy import SemanticPolicy
from gateway.cache.stores import CacheStats
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, UpstreamBadAnswerError
from gateway.proxy.internal_embeddings import embedding_request, parse_vectors

log = logging.getLogger("gateway.cache")

# Finish reasons of an answer that ended of its own accord: a "length" or "content_filter" cut
# is never served to another question, even when the exact cache keeps it for the same request.
_COMPLETE = frozenset({b"stop", b"tool_calls", b"function_call"})
_FINISH_RE = re.compile(rb'"finish_reason"\s*:\s*"([^"]*)"')


def servable(entry: CacheEntry) -> bool:
    """Whether every choice of ``entry`` finished of its own accord (JSON body or stream)."""
    reasons = _FINISH_RE.findall(entry.body)
    return bool(reasons) and all(r in _COMPLETE for r in reasons)


@dataclass(frozen=True, slots=True)
class Question:
    """A request's question: its ``text`` (embedded) and ``key_hash`` (what must match exactly)."""

    text: str
    key_hash: str


@dataclass(frozen=True, slots=True)
class Match:
    """A stored answer close enough to serve: the ``entry``, its ``entry_id`` and ``distance``."""

    entry: CacheEntry
    entry_id: str
    distance: float


def _vector_of(response: web.StreamResponse) -> list[float] | None:
    """The embedding of a one-input embeddings answer, or None."""
    if response.status != 200 or not isinstance(response, web.Response) or \
            not isinstance(response.body, (bytes, bytearray)):
        return None
    try:
        return parse_vectors(bytes(response.body), 1)[0]
    except UpstreamBadAnswerError:
        return None


class SemanticLookup:
    """Embeds questions, finds and stores semantic entries; one per ``CacheStage``.

    ``handlers``: a ``ProxyHandlers`` (``call_internal``), or None (no embedding: every
    request misses). ``sink`` / ``lanes``: callables returning the request log and the query
    lanes (None with telemetry off: the layer stays inert). ``stats``: the cache's counters.
    """

    def __init__(self, handlers: Any, sink: Callable[[], Any], lanes: Callable[[], Any], stats: CacheStats,
                 clock: Callable[[], float] = time.time):
        self._handlers = handlers
        self._sink = sink
        self._lanes = lanes
        self.stats = stats
        self.clock = clock
        self._healthy = True

    @property
    def available(self) -> bool:
        """Whether there is anywhere to look (and to store): telemetry on, an embedding route."""
        return self._handlers is not None and self._sink() is not None and self._lanes() is not None

    def _failed(self, what: str, exc: BaseException | str) -> None:
        self.stats.semantic_errors += 1
        if self._healthy:
            reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
            log.warning("cache: semantic %s failed (%s); requests go on as misses", what, reason)
        self._healthy = False

    def _ok(self) -> None:
        if not self._healthy:
            log.info("cache: semantic look-ups work again")
        self._healthy = True

    # --- embedding ----------------------------------------------------------------------
    def embedding_request(self, ctx: RequestContext, model: str, text: str) -> RequestContext:
        """The in-process embeddings request for ``text`` on behalf of ``ctx`` (same client,
        headers, key and runtime; its own id; ``parent_request_id`` = ``ctx``'s)."""
        return embedding_request(model, [text], runtime=ctx.runtime, parent=ctx.request_id, request=ctx.request,
                                 headers=ctx.headers, session=ctx.session_id, client_ip=ctx.client_ip,
                                 user_agent=ctx.user_agent,
                                 metadata={**(ctx.metadata or {}), "semantic_cache": ctx.request_id})

    async def embed(self, child: RequestContext, timeout_s: float) -> list[float] | None:
        """Run ``child`` (``embedding_request``) within ``timeout_s``; its vector, or None."""
        task = asyncio.ensure_future(self._handlers.call_internal(child))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task not in done:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, GatewayError):
                pass
            self._failed("embedding", f"no answer within {timeout_s:g} s")
            return None
        try:
            vector = _vector_of(task.result())
        except GatewayError as exc:
            self._failed("embedding", exc)
            return None
        if vector is None:
            self._failed("embedding", f"{child.model_requested} answered HTTP {child.status_code} without a vector")
        return vector

    # --- look-up ------------------------------------------------------------------------
    async def lookup(self, ctx: RequestContext, q: Question, sp: SemanticPolicy, namespace: str,
                     max_age: float | None) -> tuple[Match | None, list[float] | None]:
        """The entry to serve ``ctx`` (or None) and the question's vector (None if the
        embedding failed). ``max_age``: the request's own ``Cache-Control: max-age``."""
        from gateway.telemetry.semantic_cache import nearest

        vector = await self.embed(self.embedding_request(ctx, sp.embedding_model, q.text), sp.embed_timeout_s)
        if vector is None:
            return None, None
        now = self.clock()
        ages = [a for a in (sp.max_age_s, max_age) if a is not None]
        min_ts = now - min(ages) if ages else 0.0
        try:
            async with asyncio.timeout(sp.lookup_timeout_s):
                found = await nearest(self._lanes(), tenant=ctx.tenant, namespace=namespace, key_hash=q.key_hash,
                                      vector=vector, min_ts=min_ts, now=now)
        except TimeoutError:
            self._failed("look-up", f"no answer within {sp.lookup_timeout_s:g} s")
            return None, vector
        except Exception as exc:  # busy lane, store down: a miss
            self._failed("look-up", exc)
            return None, vector
        self._ok()
        if found is None or found.distance > sp.max_distance:
            return None, vector
        try:
            entry = CacheEntry.decode(found.entry)
        except ValueError as exc:
            self._failed("entry", exc)
            return None, vector
        if not servable(entry):  # never stored so; a guard for rows written otherwise
            return None, vector
        return Match(entry, found.entry_id, found.distance), vector

    # --- storing ------------------------------------------------------------------------
    async def store(self, ctx: RequestContext, child: RequestContext | None, vector: list[float] | None,
                    q: Question, sp: SemanticPolicy, namespace: str, entry: CacheEntry, ttl_s: float,
                    question_text: str) -> bool:
        """Write ``entry`` (the answer to ``ctx``) as a semantic entry; ``vector``: the question's
        embedding when the look-up made it, else ``child`` (an ``embedding_request``) is run now.
        ``question_text``: what the row's ``question`` column keeps."""
        from gateway.telemetry.semantic_cache import entry_row

        if vector is None:
            if child is None:
                return False
            vector = await self.embed(child, sp.embed_timeout_s)
            if vector is None:
                return False
        sink = self._sink()
        if sink is None:
            return False
        row = entry_row(tenant=ctx.tenant, namespace=namespace, model=ctx.model_requested, key_hash=q.key_hash,
                        entry_id=str(uuid.uuid4()), request_id=ctx.request_id, ts=entry.created,
                        expires=entry.created + ttl_s, embedding_model=sp.embedding_model, vector=vector,
                        question=question_text, entry=entry.encode())
        try:
            sink.emit_row(*row)
        except Exception as exc:  # the request log refused it (full): the answer is simply not kept
            self._failed("store", exc)
            return False
        self.stats.semantic_stores += 1
        return True

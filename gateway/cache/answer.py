"""The responses the cache builds itself, and the entries it stores.

``answer`` serves an entry in the request's shape (JSON, or a replayed stream with or without
its usage chunk, converted when the entry was stored in the other shape) and records the
request's outcome as answered; ``entry_of`` turns what a leader relayed into an entry when it
is a complete success. ``x-gateway-cache`` values and the header name live here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.cache.convert import usage_dict
from gateway.cache.entry import JSON, SSE, CacheEntry
from gateway.core import outcome
from gateway.core.context import RequestContext

log = logging.getLogger("gateway.cache")

HIT, MISS, BYPASS, COALESCED, SEMANTIC_HIT = "hit", "miss", "bypass", "coalesced", "semantic_hit"
HEADER = "x-gateway-cache"
STREAMED = frozenset({"chat/completions", "completions"})
JSON_CT = "application/json"
SSE_CT = "text/event-stream"


def wants_usage(body: dict[str, Any] | None) -> bool:
    """Whether a stream request asked for the usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options") if body is not None else None
    return isinstance(options, dict) and options.get("include_usage") is True


def looks_sse(data: bytes) -> bool:
    head = data.lstrip()[:1]
    return bool(head) and head not in (b"{", b"[")


def answer(ctx: RequestContext, entry: CacheEntry, status: str, clock: Callable[[], float],
           backend: str = "") -> web.Response | None:
    """A response carrying ``entry`` in the request's shape; None if it cannot be converted.
    ``clock``: the cache's clock (seconds since the epoch), for the ``Age`` of a hit."""
    try:
        if ctx.stream and ctx.endpoint in STREAMED:
            want = wants_usage(ctx.body)
            ctx.client_wants_usage = want
            body = entry.sse_body(want)
            headers = {"Content-Type": SSE_CT, "Cache-Control": "no-cache"}
        else:
            body = entry.json_body()
            headers = {"Content-Type": JSON_CT}
            ctx.response_body = body
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        log.warning("cache: entry not servable as %s (%s)", "a stream" if ctx.stream else "JSON", exc)
        return None
    if ctx.response_headers:
        headers.update(ctx.response_headers)
    headers["x-request-id"] = ctx.x_request_id
    headers[HEADER] = status
    if status in (HIT, SEMANTIC_HIT):
        headers["Age"] = str(int(entry.age(clock())))
        ctx.cache_saved_ms = entry.latency_ms
    elif backend:
        headers["x-gateway-backend"] = backend
    ctx.cache_status = status
    outcome.answered(ctx, 200)
    ctx.t_first_token = time.perf_counter()
    # ctx.usage stays empty: no model processed this request (its row logs 0 tokens, cost 0).
    ctx.finish_reason = entry.finish_reason
    ctx.model_served = entry.model
    return web.Response(status=200, body=body, headers=headers)


def entry_of(ctx: RequestContext, capture: list[bytes], now: float) -> CacheEntry | None:
    """The leader's answer as an entry stored at ``now``, if it is a complete success."""
    if not outcome.complete(ctx) or not capture:
        return None
    data = capture[0] if len(capture) == 1 else b"".join(capture)
    latency_ms = (time.perf_counter() - ctx.t_start) * 1000
    usage = usage_dict(ctx.usage)
    if ctx.stream and looks_sse(data):
        if not ctx.stream_done:  # the relay's rule: [DONE], or a clean end after every choice finished
            return None
        return CacheEntry(SSE, ctx.endpoint, data, has_usage=ctx.client_wants_usage, usage=usage,
                          finish_reason=ctx.finish_reason, model=ctx.model_served, latency_ms=latency_ms,
                          created=now)
    return CacheEntry(JSON, ctx.endpoint, data, usage=usage, finish_reason=ctx.finish_reason,
                      model=ctx.model_served, latency_ms=latency_ms, created=now)

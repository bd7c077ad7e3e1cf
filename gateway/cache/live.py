"""A stream follower fed live: an identical stream request that joins a stream leader gets the
leader's events as they are relayed (its usage chunk added or dropped to fit what this client
asked for), and an in-band error event if the leader's stream ends before it completes.
"""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from gateway.cache.answer import COALESCED, HEADER, SSE_CT, wants_usage
from gateway.cache.convert import UsageView, usage_dict
from gateway.cache.flight import Flight
from gateway.cache.stores import CacheStats
from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import StreamTruncatedError


async def relay_live(ctx: RequestContext, flight: Flight, stats: CacheStats) -> web.StreamResponse:
    """Send a stream leader's events to this follower as the leader relays them."""
    leader = flight.leader
    stats.coalesced += 1
    ctx.cache_status = COALESCED
    want = wants_usage(ctx.body)
    ctx.client_wants_usage = want
    headers = {**ctx.response_headers} if ctx.response_headers else {}
    headers.update({"Content-Type": SSE_CT, "Cache-Control": "no-cache", "x-request-id": ctx.x_request_id,
                    HEADER: COALESCED})
    if leader.backend:
        headers["x-gateway-backend"] = leader.backend
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(ctx.request)
    outcome.answered(ctx, 200)
    view = UsageView(leader.client_wants_usage, want, lambda: usage_dict(leader.usage))
    sent = 0
    try:
        while True:
            pieces = flight.pieces
            while sent < len(pieces):
                out = view.piece(pieces[sent])
                sent += 1
                if out:
                    if ctx.t_first_token is None:
                        ctx.t_first_token = time.perf_counter()
                    await response.write(out)
            if flight.done and sent >= len(flight.pieces):
                break
            await flight.wait()
        rest = view.finish()
        if rest:
            await response.write(rest)
        ctx.finish_reason = leader.finish_reason
        ctx.model_served = leader.model_served
        if flight.entry is None:
            status = leader.status_code if leader.status_code >= 500 else 502
            left = not leader.error_type or outcome.is_client_closed(leader)
            if flight.vanished and left:
                failure = StreamTruncatedError("the stream this request shared with an identical one "
                                               "ended before it completed; retry the request")
                outcome.error(ctx, status, failure.code, failure.message, truncated=True)
                await response.write(b"data: " + failure.body() + b"\n\n")
            else:  # the leader's own failure, not its client's leaving
                outcome.error(ctx, status, "" if outcome.is_client_closed(leader) else leader.error_type,
                              truncated=True)
        await response.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        outcome.client_closed(ctx, write_failed=True)
    return response

"""Relaying a backend's answer to the client: a body whole (``relay_body``, with the JSON
observation that fills the row: model, id, usage, finish reason, text) or a stream as it
arrives (``relay_stream``, through an observer: the SSE tee, or an inbound protocol's or typed
events' observer). An upstream error body is masked of any run of a backend's key and put in
the caller's error shape; a stream that fails or ends incomplete gets an in-band error event,
never a silent end. Called by ``handlers.forward`` once the attempt loop has an answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.core import outcome
from gateway.core.context import RequestContext, Usage
from gateway.core.errors import (
    GatewayError,
    StreamTruncatedError,
    UpstreamError,
    UpstreamTimeoutError,
    upstream_error_body,
)
from gateway.inbound import StreamObserver
from gateway.proxy.attempts import AttemptOutcome
from gateway.proxy.streaming import StreamTee

log = logging.getLogger("gateway.proxy")

_JSON = "application/json"


def as_it_arrives(ctx: RequestContext, result: AttemptOutcome) -> AttemptOutcome:
    """``result`` with a success that is not JSON (a file's bytes, speech audio or its events,
    ``response_format=text``) set to be relayed as it arrives instead of read whole."""
    response = result.response
    if result.chunks is None and result.body is None and response.status < 400 and \
            not response.headers.get("Content-Type", "").startswith(_JSON):
        result.first_chunk, result.chunks = b"", _timed(ctx, response.iter_chunks())
    return result


async def _timed(ctx: RequestContext, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A non-JSON answer relayed as it arrives: its first bytes are its first token."""
    async for data in chunks:
        if ctx.t_first_token is None:
            ctx.t_first_token = time.perf_counter()
        yield data
    if ctx.t_first_token is None:  # an empty body is still a whole answer
        ctx.t_first_token = time.perf_counter()


async def relay_body(ctx: RequestContext, upstream, headers: dict, body: bytes | None,
                     parsed: Any = None) -> web.Response:
    """Send the answer's body whole (``body``, or read now; ``parsed``: its JSON when the attempt
    loop decoded it, not decoded again): an error in the caller's shape."""
    try:
        if body is None:
            body = await upstream.read()
    except TimeoutError:
        raise UpstreamTimeoutError(f"backend {ctx.backend!r} timed out sending its response") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"backend {ctx.backend!r} failed sending its response: {type(exc).__name__}") from None
    if upstream.status >= 400:
        secrets = ctx.runtime.secrets
        body = secrets.mask_runs(body)  # an echoed key, whole or in part
        for name, value in headers.items():  # ... or in a header passed back
            headers[name] = secrets.mask_runs(value.encode()).decode("utf-8", "replace")
        body = upstream_error_body(upstream.status, body) if ctx.inbound is None else \
            ctx.inbound.upstream_error(upstream.status, body)
        headers["Content-Type"] = _JSON
        outcome.error(ctx, upstream.status, "upstream_http_error", body[:500].decode("utf-8", "replace"))
    elif parsed is not None:  # decoded by the attempt loop: not decoded again
        if ctx.inbound is None:
            observe_chat(ctx, parsed)
        else:
            ctx.inbound.observe_json(ctx, body, parsed)
    elif upstream.headers.get("Content-Type", "").startswith(_JSON) and (
            ctx.passthrough is None or ctx.model_requested):
        # (A request that names no model reads a stored object, a batch, a response: the usage
        # it carries is of work done when it ran, not now. Not read, so never billed again.)
        (observe_json if ctx.inbound is None else ctx.inbound.observe_json)(ctx, body)
    ctx.t_first_token = ctx.t_first_token or time.perf_counter()
    if ctx.capture is not None:
        ctx.capture.append(body)
    if ctx.on_bytes is not None:
        ctx.on_bytes(body)
    ctx.response_body = body
    return web.Response(status=upstream.status, body=body, headers=headers)


def observe_json(ctx: RequestContext, body: bytes) -> None:
    """What a JSON answer tells the row: the served model, its id, usage, finish reason, text.
    An answer not shaped as OpenAI's is relayed all the same; what does not fit is left unread."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    observe_chat(ctx, parsed)


def observe_chat(ctx: RequestContext, parsed: Any) -> None:
    """``observe_json`` of an answer already decoded."""
    if not isinstance(parsed, dict):
        return
    model, rid = parsed.get("model"), parsed.get("id")
    ctx.model_served = model if isinstance(model, str) else ""
    ctx.response_id = rid if isinstance(rid, str) else ""
    usage = parsed.get("usage")
    if isinstance(usage, dict):
        ctx.usage = Usage.from_any(usage)
    choices = parsed.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        finish = choice.get("finish_reason")
        if finish and isinstance(finish, str):
            ctx.finish_reason = finish
        message = choice.get("message")
        if isinstance(message, dict) and message.get("refusal") and isinstance(message["refusal"], str):
            ctx.refusal = True
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(text, str):
            ctx.completion_text.append(text)


async def relay_stream(request: web.Request, ctx: RequestContext, upstream, headers: dict,
                        result, tee: StreamTee | StreamObserver | None) -> web.StreamResponse:
    """Relay a stream as it arrives, each read through ``tee`` when there is one."""
    headers["Cache-Control"] = "no-cache"
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    failure: GatewayError | None = None
    perf = time.perf_counter
    send: Callable[[bytes], Awaitable[None]] = response.write
    # An in-band error event may echo the backend's key: the tee masks the events it reads;
    # a stream relayed without a tee has its reads that mention an error masked.
    mask = ctx.runtime.secrets.mask_error_runs if tee is None and ctx.runtime.secrets else None
    if ctx.capture is not None or ctx.on_bytes is not None or mask is not None:
        capture, on_bytes = ctx.capture, ctx.on_bytes

        async def send(data: bytes) -> None:  # noqa: F811 - the observed variant
            if mask is not None:
                data = mask(data)
            if capture is not None:
                capture.append(data)
            if on_bytes is not None:
                on_bytes(data)
            await response.write(data)
    try:
        first = result.first_chunk
        if first:
            out = tee.feed(first, perf()) if tee is not None else first
            if out:
                await send(out)
        async for data in result.chunks:
            out = tee.feed(data, perf()) if tee is not None else data
            if out:
                await send(out)
        if tee is not None:
            rest = tee.tail()
            if rest:
                await send(rest)
            if tee.upstream_error is not None:
                outcome.error(ctx, 502, "upstream_stream_error", str(tee.upstream_error.get("message", ""))[:500])
            elif not tee.done:
                failure = StreamTruncatedError(
                    f"backend {ctx.backend!r} ended the stream before {tee.END}; the response is incomplete")
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        # The client went away: stop reading the upstream (closed by the caller).
        outcome.client_closed(ctx, write_failed=True)
        upstream.close()
        return response
    except TimeoutError:
        failure = UpstreamTimeoutError(f"backend {ctx.backend!r} stopped sending within its read timeout")
    except aiohttp.ClientError as exc:
        failure = UpstreamError(f"backend {ctx.backend!r} failed mid-stream: {type(exc).__name__}")
    except Exception as exc:  # a bug (a translator's, say) ends the stream in-band too, never silently
        log.exception("request %s: relaying the stream failed", ctx.request_id)
        failure = GatewayError(f"the gateway failed relaying the stream ({type(exc).__name__}); "
                               f"request id {ctx.request_id}")
    if failure is not None:
        # Never a silent clean end: tell the client in-band, in OpenAI's error shape; a body
        # that is not an event stream (a file, audio) has no room for that: the connection is
        # cut, so the client's HTTP library sees the body end early.
        outcome.failed(ctx, failure, truncated=True)
        upstream.close()
        if tee is None and not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            if request.transport is not None:
                request.transport.abort()
            return response
        try:
            await send((tee or StreamTee).error_event(failure))
        except ConnectionResetError:
            pass
    else:
        upstream.release()
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response

"""The request's outcome — status, error class, message, truncated, client closed — in one place.

What happened is recorded on the context only through these functions: ``answered`` (an answer
started with a status), ``error`` / ``failed`` (an error, from a ``GatewayError`` or the upstream),
``client_closed`` (the client went away) and ``copy`` (a chain takes its last step's, a coalesced
request its leader's). ``conclude`` runs once when the request ends, before any finisher, and
settles what is still open: a request that never got an answer, or a JSON answer that never got
its body, was abandoned by its client. Every reader — the telemetry row, tracing, metrics, the
access log, limits settlement, the cache — then reads ``ctx.status_code``, ``ctx.error_type``,
``ctx.error_message`` and ``ctx.truncated`` as they stand, with no fallback of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.core.context import RequestContext
    from gateway.core.errors import GatewayError

# Status logged when the client went away before the answer was complete (nginx's convention).
CLIENT_CLOSED = 499
CLIENT_CLOSED_TYPE = "client_closed"


def answered(ctx: RequestContext, status: int) -> None:
    """An answer started with ``status`` (upstream headers, a cache hit, a coalesced answer)."""
    ctx.status_code = status


def error(ctx: RequestContext, status: int, error_type: str, message: str = "", truncated: bool = False) -> None:
    """The request ended in (or its answer carries) an error of class ``error_type``."""
    ctx.status_code = status
    ctx.error_type = error_type
    ctx.error_message = message
    if truncated:
        ctx.truncated = True


def failed(ctx: RequestContext, exc: GatewayError, truncated: bool = False) -> None:
    """The request failed with ``exc`` (answered to the client, or sent in-band mid-stream)."""
    error(ctx, exc.status, exc.code or exc.type, exc.message, truncated)


def client_closed(ctx: RequestContext, write_failed: bool = False) -> None:
    """The client went away. On a cancellation an error already recorded stands, and a stream
    that already relayed ``[DONE]`` is complete (SDKs close the connection as soon as they read
    it, often before our last write returns). A failed write (``write_failed``) is certain: the
    answer did not reach the client."""
    if write_failed:
        ctx.status_code, ctx.error_type, ctx.truncated = CLIENT_CLOSED, CLIENT_CLOSED_TYPE, True
    elif not ctx.error_type and not ctx.stream_done:
        ctx.status_code, ctx.error_type, ctx.truncated = CLIENT_CLOSED, CLIENT_CLOSED_TYPE, ctx.stream


def copy(ctx: RequestContext, source: RequestContext) -> None:
    """``ctx`` ends as ``source`` did (a chain's last step; a coalesced request's leader)."""
    ctx.status_code = source.status_code
    ctx.truncated = source.truncated
    if source.error_type:
        ctx.error_type, ctx.error_message = source.error_type, source.error_message


def conclude(ctx: RequestContext) -> None:
    """The final decision, made once when the request ends: a request with no status, or a JSON
    answer whose body never arrived, was abandoned by its client."""
    if not ctx.error_type and (ctx.status_code == 0 or (
            not ctx.stream and ctx.t_upstream_start is not None and ctx.t_first_token is None
            and ctx.status_code < 400)):
        ctx.status_code, ctx.error_type, ctx.truncated = CLIENT_CLOSED, CLIENT_CLOSED_TYPE, ctx.stream


def is_client_closed(ctx: RequestContext) -> bool:
    return ctx.status_code == CLIENT_CLOSED


def complete(ctx: RequestContext) -> bool:
    """A whole, successful answer (the only kind the cache stores)."""
    return ctx.status_code == 200 and not ctx.truncated and not ctx.error_type


def model_worked(ctx: RequestContext) -> bool:
    """Whether a model processed the request, so that it is billed (by estimate when no usage
    came back): it reached an upstream and succeeded, produced text, was cut off, or its client
    left (the model still read the prompt). Valid at the end of the relay and after
    ``conclude`` alike (a status still 0 is a client that left). A request that names no model
    (a file fetched, a batch created: ``passthrough:``) has nothing to bill."""
    if ctx.t_upstream_start is None or ctx.passthrough is not None and not ctx.model_requested:
        return False
    status = ctx.status_code
    return (200 <= status < 300 or bool(ctx.completion_text) or ctx.truncated or status == CLIENT_CLOSED
            or status == 0)

"""The attempt loop: try a ``RoutePlan``'s targets in order, with retries and fallbacks.

Failure classes (``connect``, ``timeout``, ``5xx``, ``429``, ``context_length_exceeded``,
``not_found``: a 404 saying the model is not deployed on that target) decide what happens
next: retry the same target (``retry.retry_on``, with exponential backoff and full jitter, a
429's ``Retry-After`` honoured up to a cap), move to the next target (``fallback_on``; a
context-length error only to targets with a larger ``context_window``), or give up. Any other
4xx is the caller's error: returned at once, never retried. Nothing here has written to the
client yet — for streams the first body bytes are read inside the loop, so a stream that dies
before its first byte still fails over, and one that has sent a byte never does (the caller
relays from there).

A ``judged`` request (model-routed inference that speaks JSON or events) whose target answers
2xx with something else — a body that is not JSON, a stream request answered with neither
``text/event-stream`` nor JSON — has failed (``5xx``): the body of a whole answer is read and
parsed here (the parse is kept for the relay's observation), a stream's Content-Type checked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from gateway.core.context import Attempt, RequestContext
from gateway.core.deadlines import deadline as first_byte_deadline
from gateway.core.errors import (
    GatewayError,
    InvalidRequestError,
    NoHealthyTargetError,
    UpstreamBadAnswerError,
    UpstreamError,
    UpstreamTimeoutError,
)
from gateway.inbound.base import Leg
from gateway.routing.plan import Candidate, RoutePlan

_BREAKER_FAILURES = frozenset({"connect", "timeout", "5xx", "429"})
_CONTEXT_MARKERS = (b"context_length_exceeded", b"maximum context length", b"context window",
                    b"prompt is too long")
# A 404 that says the model is not there: OpenAI's (and gateways') ``model_not_found``, Azure's
# ``DeploymentNotFound``; vLLM's "The model `x` does not exist." and Anthropic's
# ``not_found_error`` ("model: x") name the model. Any other 404 is the caller's.
_MISSING_MODEL_CODES = (b"model_not_found", b"deploymentnotfound")
_MISSING_MODEL_WORDS = (b"does not exist", b"not_found_error")


@dataclass(slots=True)
class AttemptOutcome:
    """The response the client gets: from ``candidate``; for streams, ``chunks`` is the body
    iterator and ``first_chunk`` its first bytes, already read; ``body`` a body already read
    (error responses)."""

    candidate: Candidate
    response: Any
    first_chunk: bytes | None = None
    chunks: Any = None
    body: bytes | None = None
    parsed: Any = None  # ``body`` decoded, when a judged answer was checked here


_SSE = "text/event-stream"
_JSON = "application/json"


async def _judged_body(resp: Any, translated: bool, backend: str) -> tuple[bytes, Any]:
    """The body of a 2xx answer to a JSON endpoint and, unless ``translated`` (the translation
    parses it), its decoded JSON; ``UpstreamBadAnswerError`` when it is not JSON (or, translated,
    not a chat completion)."""
    try:
        body = await resp.read()
        return body, None if translated else orjson.loads(body)
    except TimeoutError:
        raise UpstreamTimeoutError(f"backend {backend!r} timed out sending its response") from None
    except (orjson.JSONDecodeError, UpstreamError):  # (UpstreamError: the translation's)
        kind = resp.headers.get("Content-Type", "")[:60] or "no Content-Type"
        what = "something other than a chat completion" if translated else "a body that is not JSON"
        raise UpstreamBadAnswerError(f"backend {backend!r} answered {resp.status} with {what} ({kind})") from None


def classify_status(status: int, body: bytes) -> str | None:
    """Failure class of an HTTP status (None: success, or a caller error not to retry)."""
    if status < 400:
        return None
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    if status in (400, 413, 422) and any(m in body.lower() for m in _CONTEXT_MARKERS):
        return "context_length_exceeded"
    if status == 404:
        lower = body.lower()
        if any(m in lower for m in _MISSING_MODEL_CODES) or (
                b"model" in lower and any(m in lower for m in _MISSING_MODEL_WORDS)):
            return "not_found"
    return None


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or a numeric ``Retry-After`` (HTTP dates are ignored)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(float(value) / scale, 0.0)
            except ValueError:
                continue
    return None


def _error_class(exc: GatewayError) -> str:
    if isinstance(exc, UpstreamBadAnswerError):
        return "5xx"
    return "timeout" if isinstance(exc, UpstreamTimeoutError) else "connect"


async def run_attempts(plan: RoutePlan, ctx: RequestContext, body_for: Callable[[Candidate], tuple[bytes, dict]],
                       headers: Mapping[str, str] | None, query: str, stream: bool, rng,
                       sleep=asyncio.sleep, clock=time.perf_counter,
                       legs: Callable[[Candidate], Leg] | None = None, method: str = "POST",
                       judged: bool = False) -> AttemptOutcome:
    """Run the plan. Returns the outcome to relay (a success, a caller error, or the last
    upstream error response when every target failed). Raises the last ``GatewayError``
    when the final failure had no response (unreachable, timeout). Fills
    ``ctx.attempt_log`` (one ``Attempt`` per try) and ``ctx.attempts``.

    ``legs``: an inbound protocol's per-target path, body, headers and answer wrapper
    (``gateway.inbound.base.Leg``); without it every target gets ``body_for`` on ``ctx.endpoint``.
    ``judged``: a 2xx answer must be what a JSON inference endpoint speaks (see the module)."""
    retry = plan.retry
    start = clock()
    deadline = start + retry.deadline_ms / 1000
    last_outcome: AttemptOutcome | None = None
    last_error: GatewayError | None = None
    min_window: int | None = None  # after a context-length error, only larger targets
    log = ctx.attempt_log if ctx.attempt_log is not None else []
    ctx.attempt_log = log
    backoff_ms = 0.0
    for cand in plan.ordered:
        if min_window is not None and (cand.target.context_window or 0) <= min_window:
            cand.skipped = "context_window"
            continue
        path, send, wrap, answer, sent_query = ctx.endpoint, headers, None, None, query
        if legs is None:
            raw, parsed = body_for(cand)
        else:
            try:
                leg = legs(cand)
            except InvalidRequestError as exc:  # the protocol cannot ask this target (a translation refused)
                cand.skipped, last_outcome, last_error = "unsupported", None, exc
                continue
            path, raw, parsed, wrap, answer = leg.path, leg.raw, leg.parsed, leg.wrap, leg.answer
            if leg.headers:
                send = {**(headers or {}), **leg.headers}
            if leg.query is not None:
                sent_query = leg.query
        for n in range(1, retry.attempts + 1):
            state = cand.state
            if not state.breaker.allow():
                cand.skipped = cand.skipped or "circuit_open"
                break
            state.inflight += 1
            state.requests += 1
            t0 = clock()
            record = Attempt(backend=cand.client.name, provider=cand.client.type, model=cand.upstream_model,
                             t_start=t0, backoff_ms=backoff_ms)
            backoff_ms = 0.0
            log.append(record)
            ctx.attempts = len(log)
            resp = None
            failure: str | None = None
            outcome: AttemptOutcome | None = None
            try:
                resp = answer if answer is not None else await cand.client.forward(
                    method, path, raw, parsed, cand.upstream_model,
                    send if ctx.trace is None else ctx.trace.outbound(record, send), sent_query)
                if wrap is not None:
                    resp = wrap(resp)
                record.status_code = resp.status
                if resp.status < 400:
                    first = None
                    kind = resp.headers.get("Content-Type", "")
                    if stream and kind.startswith(_SSE):
                        chunks = resp.iter_chunks()
                        try:
                            # A deadline, not ``wait_for``: no extra task, no timer per stream.
                            with first_byte_deadline(cand.client.first_byte_s):
                                first = await chunks.__anext__()
                        except StopAsyncIteration:
                            first = b""
                        record.t_first_byte = clock()
                        outcome = AttemptOutcome(cand, resp, first, chunks)
                    elif not judged or answer is not None:  # (an answer made in process is ours)
                        outcome = AttemptOutcome(cand, resp)
                    elif stream:  # JSON for a stream (a backend ignoring ``stream``) is relayed as before
                        if not kind.startswith(_JSON):
                            raise UpstreamBadAnswerError(
                                f"backend {cand.client.name!r} answered a stream request with "
                                f"{kind[:60] or 'no Content-Type'}, neither events nor JSON")
                        outcome = AttemptOutcome(cand, resp)
                    else:
                        body, parsed = await _judged_body(resp, wrap is not None, cand.client.name)
                        outcome = AttemptOutcome(cand, resp, body=body, parsed=parsed)
                else:
                    body = await resp.read()
                    failure = classify_status(resp.status, body)
                    outcome = AttemptOutcome(cand, resp, body=body)
            except InvalidRequestError as exc:
                # This backend cannot serve the request (an adapter refused it): not the
                # target's failure. Try the next target; if none can, the 400 stands.
                state.inflight -= 1
                state.requests -= 1
                log.pop()
                ctx.attempts = len(log)
                cand.skipped = "unsupported"
                last_outcome, last_error = None, exc
                break
            except TimeoutError:
                failure, last_error = "timeout", UpstreamTimeoutError(
                    f"backend {cand.client.name!r} sent no stream data within {cand.client.first_byte_s:g} s")
            except GatewayError as exc:
                failure, last_error = _error_class(exc), exc
            except aiohttp.ClientError as exc:
                failure, last_error = "connect", UpstreamError(
                    f"backend {cand.client.name!r} failed: {type(exc).__name__}")
            except BaseException:
                state.inflight -= 1
                if resp is not None:
                    resp.close()
                raise
            record.t_end = clock()
            if failure is None:  # success, or the caller's own error: final either way
                assert outcome is not None  # no failure: an answer came
                state.breaker.record(True)
                if outcome.response.status >= 400:
                    state.inflight -= 1  # a caller error is not held in flight
                    record.error_type = "client_error"
                else:
                    ctx.target_state = state  # released (and timed) when the response ends
                return outcome
            record.error_type = failure
            state.inflight -= 1
            if failure in _BREAKER_FAILURES:
                state.breaker.record(False)
                state.failures += 1
            else:
                state.breaker.record(True)
            if outcome is not None:
                last_outcome, last_error = outcome, None
            elif resp is not None:
                resp.close()
            if failure == "context_length_exceeded":
                min_window = cand.target.context_window or 0
                if failure in plan.fallback_on:
                    break
                assert last_outcome is not None  # classified from the answer's body
                return last_outcome
            if failure in retry.retry_on and n < retry.attempts:
                wait = rng.uniform(0, min(retry.max_backoff_ms, retry.base_backoff_ms * 2 ** (n - 1))) / 1000
                if failure == "429" and outcome is not None:
                    hinted = retry_after_s(outcome.response.headers)
                    if hinted is not None:
                        if hinted * 1000 > retry.max_retry_after_ms:
                            wait = None  # the target asks for longer than we may wait: move on
                        else:
                            wait = hinted
                if wait is not None and clock() + wait < deadline:
                    backoff_ms = wait * 1000
                    await sleep(wait)
                    continue
            if failure in plan.fallback_on and clock() < deadline:
                break
            return _finish(plan, last_outcome, last_error)
    return _finish(plan, last_outcome, last_error)


def _finish(plan: RoutePlan, outcome: AttemptOutcome | None, error: GatewayError | None) -> AttemptOutcome:
    """The last failure decides: raise it, or return its response for pass-through."""
    if error is not None:
        raise error
    if outcome is None:  # every target was skipped while we went
        raise NoHealthyTargetError(
            f"No healthy target for model `{plan.public_model}` ("
            + ", ".join(f"{c.state.key}: {c.skipped}" for c in plan.considered) + ").", plan=plan)
    return outcome

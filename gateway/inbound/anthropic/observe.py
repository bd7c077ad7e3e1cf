"""What the request's row learns from an Anthropic answer, native or translated: the ``message``
JSON, or the event stream (usage from ``message_start`` and ``message_delta``, TTFT and chunk
times from the content deltas, the stop reason, the end at ``message_stop``).

Usage is recorded as for every endpoint (``gateway.core.context.Usage``): Anthropic's
``input_tokens`` + ``cache_read_input_tokens`` + ``cache_creation_input_tokens`` are the prompt,
the cached and cache-write tokens also in their own columns (the outbound adapter's
``translate_usage`` does that sum). The stop reason is recorded in OpenAI's vocabulary
(``stop``, ``length``, ``tool_calls``), as for every other row.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import GatewayError
from gateway.core.sse import SSESplitter, event_data
from gateway.inbound.anthropic.response import gateway_error
from gateway.inbound.anthropic.stream import error_event as stream_error
from gateway.providers.anthropic.response import FINISH_REASONS, translate_usage

_COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def record_usage(ctx: RequestContext, usage: dict[str, Any]) -> None:
    """Record ``usage`` unless every count is 0: Anthropic always counts the prompt, so that is
    a translated answer whose backend reported no usage (the row then estimates its tokens)."""
    if any(usage.get(name) for name in _COUNTS):
        ctx.usage = Usage.from_openai(translate_usage(usage))


def observe_json(ctx: RequestContext, body: bytes, message: Any = None) -> None:
    """A ``message`` body (or anything else, ignored); ``message``: already decoded."""
    if message is None:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
    if not isinstance(message, dict) or message.get("type") != "message":
        return
    ctx.model_served = message.get("model") or ""
    ctx.response_id = message.get("id") or ""
    if isinstance(message.get("usage"), dict):
        record_usage(ctx, message["usage"])
    reason = message.get("stop_reason")
    if reason:
        ctx.finish_reason = FINISH_REASONS.get(reason) or str(reason)
    for block in message.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            ctx.completion_text.append(block["text"])


class MessagesObserver:
    """The relay's tee for Anthropic event streams (``gateway.inbound.base.StreamObserver``):
    forwards whole events as they complete, reads each once."""

    __slots__ = ("_ctx", "_split", "_usage", "done", "upstream_error")
    END = "message_stop"

    def __init__(self, ctx: RequestContext):
        self._ctx = ctx
        self._split = SSESplitter()
        self._usage: dict[str, Any] = {}
        self.done = False
        self.upstream_error: dict | None = None

    def feed(self, data: bytes, now: float) -> bytes:
        events = self._split.feed(data)
        if len(events) == 1:
            return self._observe(events[0], now)
        return b"".join([self._observe(raw, now) for raw in events])

    def tail(self) -> bytes:
        return self._split.tail()

    def error_event(self, exc: GatewayError) -> bytes:
        return stream_error(gateway_error(exc))

    def _observe(self, raw: bytes, now: float) -> bytes:
        """Record what the event ``raw`` says; return the bytes to forward."""
        data = event_data(raw)
        if not data:
            return raw
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(payload, dict):
            return raw
        kind = payload.get("type")
        ctx = self._ctx
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = delta.get("text")
            if isinstance(text, str):
                ctx.completion_text.append(text)
            if ctx.t_first_token is None:
                ctx.t_first_token = now
            ctx.chunk_times.append(now)
        elif kind == "message_start":
            message = payload.get("message") or {}
            ctx.model_served = message.get("model") or ""
            ctx.response_id = message.get("id") or ""
            self._usage.update(message.get("usage") or {})
            record_usage(ctx, self._usage)
        elif kind == "message_delta":
            # Counts on message_delta are cumulative; an absent one keeps message_start's value.
            self._usage.update({k: v for k, v in (payload.get("usage") or {}).items() if v is not None})
            record_usage(ctx, self._usage)
            reason = (payload.get("delta") or {}).get("stop_reason")
            if reason:
                ctx.finish_reason = FINISH_REASONS.get(reason) or str(reason)
        elif kind == "message_stop":
            self.done = ctx.stream_done = True
        elif kind == "error":
            secrets = ctx.runtime.secrets if ctx.runtime is not None else None
            if secrets:  # a backend may echo its key in an error event, whole or in part
                raw = secrets.mask_runs(raw)
            error = payload.get("error")
            message = error.get("message") if isinstance(error, dict) else str(error)
            if secrets:
                message = secrets.mask_runs(str(message).encode()).decode("utf-8", "replace")
            self.upstream_error = {"message": str(message)}
        return raw

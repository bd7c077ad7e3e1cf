"""Anthropic's Messages API inbound: ``POST /v1/messages`` for Anthropic SDKs and tools.

A target on an Anthropic backend (whose adapter lists ``messages`` in ``native_paths``) gets the
client's body as sent, under the target's model name, with the backend's own key and the
client's ``anthropic-version``/``anthropic-beta``; its answer is relayed as it comes. Any other
target (OpenAI, Azure, vLLM, the mock) gets the request translated to chat completions
(``request``), and its answer translated back (``response``, ``stream``). Either way the relay
sees Anthropic's shapes, which ``observe`` reads for the row; errors, the gateway's own
included, are answered in Anthropic's error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, UpstreamError
from gateway.core.request_body import RequestBody
from gateway.core.upstream import UpstreamResponse
from gateway.inbound.anthropic import observe
from gateway.inbound.anthropic.request import backend_body, to_chat
from gateway.inbound.anthropic.response import gateway_error, to_message, upstream_error
from gateway.inbound.anthropic.stream import MessagesEncoder
from gateway.inbound.base import CHAT, Leg, TranslatedAnswer

# Client headers a native backend gets as the client sent them.
_PASSED_ON = ("anthropic-version", "anthropic-beta")


def passed_on(ctx: RequestContext) -> dict[str, str] | None:
    """The client's Anthropic headers, for a native backend (None: it sent none)."""
    headers = ctx.headers
    passed = {name: headers[name] for name in _PASSED_ON if name in headers} if headers is not None else None
    return passed or None


def _signed(block: Any) -> bool:
    """Whether an assistant content block may go to Anthropic: anything but a ``thinking`` block
    without a signature (one a chat backend's reasoning became, here or in another gateway),
    which Anthropic refuses (``Invalid `signature` in `thinking` block``)."""
    return not (isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature"))


def _assistant_blocks(message: Any) -> list | None:
    """An assistant turn's content blocks (None: another turn, or text given as a string)."""
    if isinstance(message, dict) and message.get("role") == "assistant" and isinstance(message.get("content"), list):
        return message["content"]
    return None


def for_anthropic(body: Any) -> Any:
    """The client's body as an Anthropic backend takes it: unchanged, unless its history holds
    unsigned thinking blocks (a conversation moved from a chat-backed model onto Claude), which
    are dropped, with an assistant turn they leave empty (Anthropic joins the user turns around it)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or all(_signed(b) for m in messages for b in _assistant_blocks(m) or ()):
        return body
    kept = []
    for message in messages:
        blocks = _assistant_blocks(message)
        if blocks is not None:
            blocks = [b for b in blocks if _signed(b)]
            if not blocks:
                continue
            message = {**message, "content": blocks}
        kept.append(message)
    return RequestBody({**body, "messages": kept})


def native_leg(endpoint: str, body: Any, candidate: Any, passed: dict[str, str] | None) -> Leg:
    """The request as an Anthropic backend takes it (``for_anthropic``), under the target's model
    name (the client's bytes when unchanged)."""
    raw, parsed = body.encode_for(candidate.upstream_model, True)
    return Leg(endpoint, raw, parsed, passed)


class MessagesInbound:
    """``/v1/messages`` (``gateway.inbound.base.Inbound``)."""

    name = "anthropic-messages"

    def legs(self, ctx: RequestContext, body: Any) -> Callable[[Any], Leg]:
        """How each target is asked; the chat body is built once, when a translated target is first tried."""
        endpoint = ctx.endpoint
        passed = passed_on(ctx)
        chat: dict[str, Any] | None = None
        native: Any = None
        stops = body.get("stop_sequences")

        def json(data: bytes) -> bytes:
            try:
                answer = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(f"backend {ctx.backend!r} answered with a body that is not JSON") from None
            if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
                raise UpstreamError(f"backend {ctx.backend!r} answered with something other than a chat completion")
            return orjson.dumps(to_message(answer, stops))

        def wrap(resp: UpstreamResponse) -> UpstreamResponse:
            return TranslatedAnswer(resp, json, lambda: MessagesEncoder(stops), ctx.stream)

        def leg(candidate: Any) -> Leg:
            nonlocal chat, native
            client = candidate.client
            if endpoint in client.native_paths:
                native = for_anthropic(body) if native is None else native
                return native_leg(endpoint, native, candidate, passed)
            if chat is None:
                chat = to_chat(body)
            parsed = backend_body(chat, client.type, candidate.upstream_model)
            return Leg(CHAT, orjson.dumps(parsed) if client.needs_raw else b"", parsed, None, wrap, query="")

        return leg

    def observe_json(self, ctx: RequestContext, body: bytes, parsed: Any = None) -> None:
        observe.observe_json(ctx, body, parsed)

    def observer(self, ctx: RequestContext) -> observe.MessagesObserver:
        return observe.MessagesObserver(ctx)

    def error_body(self, exc: GatewayError) -> bytes:
        return gateway_error(exc)

    def upstream_error(self, status: int, body: bytes) -> bytes:
        return upstream_error(status, body)

    def not_json(self, reason: str) -> str:
        return f"The request body is not valid JSON: {reason}"  # Anthropic's words


__all__ = ["MessagesInbound", "for_anthropic", "native_leg", "passed_on"]

"""OpenAI's Responses API inbound: ``POST /v1/responses`` for Responses clients (Codex, agents).

A target whose backend serves the Responses API (``native_paths`` has ``responses``: openai,
azure and vllm backends unless their ``responses`` setting says ``translate``) gets the
client's body as sent, under the target's model name; its answer is relayed byte for byte and
read for the row (``observe``). Any other target (mock, anthropic, a backend set to
``translate``) gets the request as Chat Completions (``request``), and its answer told back as a
``response`` object (``response``) or the Responses event stream (``stream``);
``previous_response_id`` continues a conversation the gateway kept (``turn``). Errors are
OpenAI's shape, as for chat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import NOT_JSON, GatewayError, UpstreamError, upstream_error_body
from gateway.core.upstream import UpstreamResponse
from gateway.inbound.base import CHAT, Leg, TranslatedAnswer
from gateway.inbound.responses import observe
from gateway.inbound.responses.request import backend_body, to_chat
from gateway.inbound.responses.response import from_chat
from gateway.inbound.responses.stream import ResponsesEncoder
from gateway.inbound.responses.turn import Turn, history_for


class ResponsesInbound:
    """``/v1/responses`` (``gateway.inbound.base.Inbound``)."""

    name = "openai-responses"

    def legs(self, ctx: RequestContext, body: Any) -> Callable[[Any], Leg]:
        """How each target is asked; the chat body is built once, when a translated target is first tried."""
        endpoint = ctx.endpoint
        response_id = "resp_" + ctx.request_id.replace("-", "")
        created = int(ctx.ts_start or time.time())
        if ctx.conversation is None:  # (the conversations stage is off) the observer reads the turn's usage
            ctx.conversation = Turn()
        turn: Turn = ctx.conversation
        chat: dict[str, Any] | None = None

        def json(data: bytes) -> bytes:
            try:
                answer = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamError(f"backend {ctx.backend!r} answered with a body that is not JSON") from None
            if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list) or not answer["choices"]:
                raise UpstreamError(f"backend {ctx.backend!r} answered with something other than a chat completion")
            turn.response = from_chat(answer, body, response_id, created)
            turn.usage = Usage.from_openai(answer.get("usage"))
            return orjson.dumps(turn.response)

        def encoder() -> ResponsesEncoder:
            return ResponsesEncoder(body, response_id, created, on_done=turn)

        def wrap(resp: UpstreamResponse) -> UpstreamResponse:
            return TranslatedAnswer(resp, json, encoder, ctx.stream)

        def leg(candidate: Any) -> Leg:
            nonlocal chat
            client = candidate.client
            if endpoint in client.native_paths:
                raw, parsed = body.encode_for(candidate.upstream_model, True)
                return Leg(endpoint, raw, parsed)
            if chat is None:
                chat = to_chat(body, history_for(body, turn))
            parsed = backend_body(chat, client.type, candidate.upstream_model)
            return Leg(CHAT, orjson.dumps(parsed) if client.needs_raw else b"", parsed, None, wrap)

        return leg

    def observe_json(self, ctx: RequestContext, body: bytes, parsed: Any = None) -> None:
        observe.observe_json(ctx, body, parsed)

    def observer(self, ctx: RequestContext) -> observe.ResponsesTee:
        return observe.ResponsesTee(ctx)

    def error_body(self, exc: GatewayError) -> bytes:
        return exc.body()

    def upstream_error(self, status: int, body: bytes) -> bytes:
        return upstream_error_body(status, body)

    def not_json(self, reason: str) -> str:
        return NOT_JSON


__all__ = ["ResponsesInbound"]

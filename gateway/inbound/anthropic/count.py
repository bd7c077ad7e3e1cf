"""``POST /v1/messages/count_tokens``: Anthropic's token count of a Messages request.

An Anthropic backend answers it natively. For any other target the gateway counts itself, in
process, with nothing sent: the request translated to chat completions as ``/v1/messages`` would
send it, counted with tiktoken (``gateway.core.tokens``; on a thread, as an encoding may have
to load first) — an estimate for models that do not use OpenAI's encodings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.inbound.anthropic import MessagesInbound, for_anthropic, native_leg, passed_on
from gateway.inbound.anthropic.request import to_chat
from gateway.inbound.base import Leg

_JSON = {"Content-Type": "application/json"}


class Counted:
    """The count as an upstream answer (``gateway.core.upstream.UpstreamResponse``), made in process."""

    status = 200
    headers = _JSON

    def __init__(self, tokens: Any, chat: dict[str, Any], model: str):
        self._tokens = tokens
        self._chat = chat
        self._model = model

    def _count(self) -> int:
        return self._tokens.count_chat(self._chat["messages"], self._model, self._chat.get("tools"))

    async def read(self) -> bytes:
        return orjson.dumps({"input_tokens": await asyncio.to_thread(self._count)})

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield await self.read()

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


class CountTokensInbound(MessagesInbound):
    """``/v1/messages/count_tokens``; answers and errors as ``/v1/messages``."""

    name = "anthropic-count-tokens"

    def legs(self, ctx: RequestContext, body: Any) -> Callable[[Any], Leg]:
        endpoint = ctx.endpoint
        passed = passed_on(ctx)

        def leg(candidate: Any) -> Leg:
            if endpoint in candidate.client.native_paths:
                return native_leg(endpoint, for_anthropic(body), candidate, passed)
            chat = to_chat({**body, "max_tokens": 1, "stream": False})  # a count needs no max_tokens
            return Leg(endpoint, b"", chat, answer=Counted(ctx.runtime.tokens, chat, candidate.upstream_model))

        return leg

    def observe_json(self, ctx: RequestContext, body: bytes, parsed: Any = None) -> None:
        """A count uses no model and costs nothing: the row has 0 tokens (not an estimate)."""
        ctx.usage = Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)


__all__ = ["CountTokensInbound", "Counted"]

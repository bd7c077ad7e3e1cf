"""Inbound protocols: the APIs besides Chat Completions that clients speak to the gateway,
registered by the endpoint (below ``/v1/``) they are served on. ``gateway.inbound.base`` says
how one plugs in."""

from __future__ import annotations

from typing import Any

from gateway.inbound.anthropic import MessagesInbound
from gateway.inbound.anthropic.count import CountTokensInbound
from gateway.inbound.anthropic.models import wants_anthropic
from gateway.inbound.base import CHAT, Encoder, Inbound, Leg, StreamObserver, TranslatedAnswer
from gateway.inbound.responses import ResponsesInbound

INBOUND: dict[str, Inbound] = {
    "messages": MessagesInbound(),
    "messages/count_tokens": CountTokensInbound(),
    "responses": ResponsesInbound(),
}


def protocol_of(endpoint: str | None, path: str, headers: Any) -> Inbound | None:
    """The protocol a ``/v1`` request speaks, for its answers and errors (None: OpenAI's): a
    proxied endpoint's, or, on the model routes both APIs define (``endpoint`` None),
    Anthropic's when the client sent ``anthropic-version`` (its SDKs always do)."""
    if endpoint is not None:
        return INBOUND.get(endpoint)
    return INBOUND["messages"] if wants_anthropic(path, headers) else None


__all__ = ["CHAT", "INBOUND", "protocol_of", "Encoder", "Inbound", "Leg", "StreamObserver", "TranslatedAnswer"]

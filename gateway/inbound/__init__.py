"""Inbound protocols: the APIs besides Chat Completions that clients speak to the gateway,
registered by the endpoint (below ``/v1/``) they are served on. ``gateway.inbound.base`` says
how one plugs in."""

from gateway.inbound.anthropic import MessagesInbound
from gateway.inbound.anthropic.count import CountTokensInbound
from gateway.inbound.base import CHAT, Encoder, Inbound, Leg, StreamObserver, TranslatedAnswer
from gateway.inbound.responses import ResponsesInbound

INBOUND: dict[str, Inbound] = {
    "messages": MessagesInbound(),
    "messages/count_tokens": CountTokensInbound(),
    "responses": ResponsesInbound(),
}

__all__ = ["CHAT", "INBOUND", "Encoder", "Inbound", "Leg", "StreamObserver", "TranslatedAnswer"]

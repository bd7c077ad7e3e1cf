"""One ``/v1/responses`` turn on a translated target, as kept for ``previous_response_id``.

A backend that speaks only Chat Completions keeps no state, so the gateway keeps each
translated turn — the chat messages before it, this turn's input and the ``response`` it
answered with (``stored.record``) — under the response's id (``gateway.cache.conversations``
stores it, per tenant, for ``responses.ttl_s``). The next turn that names that id continues
from those messages and that answer (``request.to_chat``'s ``history``). ``Turn`` carries that
state through one request: the stage fills ``history`` before the request goes on, the
translation records the ``response`` it answered with, and the stage keeps the turn afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.context import Usage
from gateway.core.errors import InvalidRequestError
from gateway.inbound.responses import custom


@dataclass(slots=True)
class Turn:
    """``history``: the chat messages before this turn (None: no ``previous_response_id``, or
    none found); ``response``: the ``response`` object a translated target's answer became
    (None until then, and for a native target, which keeps its own state); ``usage``: that
    answer's usage as its backend reported it, for the row — the ``response`` must say 0 for a
    count the backend left out (cached, reasoning tokens), which the row keeps unknown (NULL)."""

    history: list[dict[str, Any]] | None = None
    response: dict[str, Any] | None = None
    usage: Usage | None = None


def history_for(body: dict[str, Any], turn: Turn | None) -> list[dict[str, Any]] | None:
    """The messages a translated request continues from; a ``previous_response_id`` the gateway
    does not hold (expired, never translated here, ``store: false``, another tenant's) is refused
    as OpenAI refuses it."""
    previous = body.get("previous_response_id")
    if not previous:
        return None
    if turn is None or turn.history is None:
        raise previous_response_not_found(previous)
    return turn.history


def previous_response_not_found(previous: Any) -> InvalidRequestError:
    """OpenAI's answer to a ``previous_response_id`` it does not hold."""
    return InvalidRequestError(f"Previous response with id '{str(previous)[:100]}' not found.",
                               param="previous_response_id", code="previous_response_not_found")


def assistant_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    """A ``response`` object's output as the chat messages a backend reads back: one assistant
    message with its text and tool calls (reasoning is not sent back)."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text += [p.get("text") or p.get("refusal") or "" for p in item.get("content") or ()]
        elif item.get("type") in ("function_call", "custom_tool_call"):
            calls.append(custom.tool_call(item))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


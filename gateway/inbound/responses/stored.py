"""Responses the gateway answered by translation, read back as OpenAI serves stored responses.

After a translated turn (``store`` not false) the gateway keeps one record under the response's
id (``gateway.cache.conversations``): the chat messages before the turn, the turn's ``input`` as
items with ids, and the ``response`` object it answered with (``record``); ``history`` makes the
conversation ``previous_response_id`` continues from out of them.
The record answers ``GET /v1/responses/{id}`` (the response; ``?stream=true`` is refused: the
events are not kept), ``GET …/input_items`` (a page of the items, ``page``), ``DELETE``
(``deleted``) and ``POST …/cancel`` (refused, ``not_cancellable``: only background responses
can be cancelled, and the gateway runs none). ``ROUTES`` says which method and path is which.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from gateway.core.errors import InvalidRequestError, NotFoundError
from gateway.inbound.responses.request import input_messages
from gateway.inbound.responses.turn import Turn, assistant_messages

# "METHOD path" (the path below /v1/) of the requests a kept response answers.
ROUTES = re.compile(r"(?P<method>GET|DELETE) responses/(?P<id>[^/]+)|GET responses/(?P<items_id>[^/]+)/input_items"
                    r"|POST responses/(?P<cancel_id>[^/]+)/cancel")
_MAX_LIMIT = 100


def route(method: str, endpoint: str) -> tuple[str, str] | None:
    """``(action, response id)`` of a request a kept response may answer (action: ``GET``,
    ``DELETE``, ``input_items`` or ``cancel``), or None."""
    match = ROUTES.fullmatch(f"{method} {endpoint}")
    if match is None:
        return None
    if match["items_id"] is not None:
        return "input_items", match["items_id"]
    if match["cancel_id"] is not None:
        return "cancel", match["cancel_id"]
    return match["method"], match["id"]


def record(body: dict[str, Any], turn: Turn) -> dict[str, Any] | None:
    """What to keep after a turn answered by a translated target (None: nothing to keep): the
    conversation before it, its input items and its ``response`` (each kept once)."""
    if turn.response is None or body.get("store") is False or turn.response.get("status") == "failed":
        return None
    return {"history": turn.history or [], "input": input_items(body.get("input", [])), "response": turn.response}


def history(value: Any) -> list[dict[str, Any]] | None:
    """The chat messages a kept record continues from: those before its turn, the turn's input
    and its answer (a bare list: a conversation kept before responses were kept whole, still in
    a shared Redis while an upgrade rolls out)."""
    if isinstance(value, list):
        return value
    if not isinstance(value, dict) or not isinstance(value.get("response"), dict):
        return None
    return [*(value.get("history") or ()), *input_messages(value.get("input") or []),
            *assistant_messages(value["response"])]


def input_items(value: Any) -> list[dict[str, Any]]:
    """A request's ``input`` (already checked by the translation) as the items OpenAI lists: each
    with an ``id`` (the client's, or a new one) and a ``type``; a message's text as parts."""
    items = [{"role": "user", "content": value}] if isinstance(value, str) else value
    out = []
    for given in items:
        item: dict[str, Any] = {"type": "message", **given}
        if item["type"] == "message":
            text = item.get("content")
            if isinstance(text, str):  # as its one text part
                item["content"] = [{"type": "output_text", "text": text, "annotations": []}
                                   if item.get("role") == "assistant" else {"type": "input_text", "text": text}]
            item.setdefault("status", "completed")
        if not isinstance(item.get("id"), str) or not item["id"]:
            item["id"] = ("msg_" if item["type"] == "message" else "item_") + uuid.uuid4().hex
        out.append(item)
    return out


def page(items: list[dict[str, Any]], query: Any) -> dict[str, Any]:
    """One page of ``input_items`` as OpenAI lists them: ``order`` (``desc``, the default, or
    ``asc``), ``limit`` (1 to 100, default 20), after the item whose id is ``after``."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError(f"Invalid 'order': {order[:20]!r} (expected 'asc' or 'desc').", param="order")
    raw = query.get("limit", "20")
    limit = int(raw) if raw.isdigit() else 0
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidRequestError(f"Invalid 'limit': expected an integer from 1 to {_MAX_LIMIT}.", param="limit")
    ordered = items if order == "asc" else items[::-1]
    after = query.get("after")
    if after:
        at = next((i for i, item in enumerate(ordered) if item["id"] == after), None)
        if at is None:
            raise InvalidRequestError(f"Invalid 'after': no input item with id '{after[:100]}'.", param="after")
        ordered = ordered[at + 1:]
    data = ordered[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}


def deleted(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "deleted": True}


def not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id[:100]}' not found.")


def not_streamed() -> InvalidRequestError:
    """A kept response is told as JSON only: its events are not kept."""
    return InvalidRequestError("Streaming a stored response is not supported for this model: retrieve it "
                               "without 'stream'.", param="stream", code="unsupported_parameter")


def not_cancellable() -> InvalidRequestError:
    """OpenAI's answer to cancelling a response that was not run in the background (the gateway
    translates none in the background: ``background`` is refused on translated targets)."""
    return InvalidRequestError("Only responses created with background=true can be cancelled.")


__all__ = ["ROUTES", "deleted", "history", "input_items", "not_cancellable", "not_found", "not_streamed", "page",
           "record", "route"]

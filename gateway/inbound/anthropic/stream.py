"""A chat completions chunk stream → Anthropic's Messages event stream, incrementally (pure, no I/O).

Anthropic's sequence: ``message_start``; per content block ``content_block_start``, its
``content_block_delta`` events (``thinking_delta``, ``text_delta``, ``input_json_delta``) and
``content_block_stop``; ``message_delta`` (``stop_reason``, usage); ``message_stop``; one ``ping``
after the first ``content_block_start``, where Anthropic's own streams send it. Blocks
come one at a time, so a block is stopped when the next kind of content starts: reasoning
(``reasoning_content``) → a thinking block, text → a text block, each tool call → a
``tool_use`` block. The usage chunk follows the finish reason in a chat stream, so
``message_delta`` waits for ``[DONE]`` (or for the end of a stream whose choice has finished).
An in-band ``{"error": …}`` becomes an ``error`` event; a stream cut before it finished gets no
``message_stop`` (the relay reports it truncated).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.sse import SSESplitter, event_data
from gateway.inbound.anthropic.response import error_json, message_id, stop_reason, to_usage
from gateway.inbound.chunks import (
    DONE,
    InBandError,
    call_key,
    function_of,
    read_chunk,
    reasoning_of,
    text_of,
    tool_calls,
)


def event(payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: ``event: <type>`` then its ``data:`` line."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


PING = event({"type": "ping"})


def error_event(body: bytes) -> bytes:
    """An Anthropic error JSON body as an ``error`` event."""
    return b"event: error\ndata: " + body + b"\n\n"


class MessagesEncoder:
    """Chat chunk SSE bytes → Anthropic SSE bytes (``feed``/``finish``). ``stops``: the
    request's ``stop_sequences`` (to tell a stop sequence from an end of turn)."""

    __slots__ = ("_split", "_stops", "_started", "_index", "_open", "_tools", "_reason", "_sequence", "_usage",
                 "_ended")

    def __init__(self, stops: Any = None):
        self._split = SSESplitter()
        self._stops = stops
        self._started = False
        self._index = -1  # the current block's index
        self._open: Any = None  # the open block: "thinking", "text", a tool call's index, or None
        self._tools: dict[int, int] = {}  # chat tool call index → its block index
        self._reason: str | None = None
        self._sequence: str | None = None
        self._usage: dict[str, Any] | None = None
        self._ended = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for raw in self._split.feed(data):
            if not self._ended:
                self._event(event_data(raw), out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        tail = self._split.tail()
        if tail.strip() and not self._ended:
            self._event(event_data(tail), out)
        if not self._ended and self._reason is not None:  # finished, though no [DONE] came
            self._end(out)
        return b"".join(out)

    def _event(self, data: bytes | None, out: list[bytes]) -> None:
        if not data:
            return
        if data == DONE:
            if self._started:
                self._end(out)
            return
        chunk = read_chunk(data)
        if isinstance(chunk, InBandError):
            out.append(error_event(error_json(500, chunk.message, "api_error")))
            self._ended = True
            return
        if chunk is None:
            return
        if not self._started:
            self._started = True
            out.append(event({"type": "message_start", "message": {
                "id": message_id(chunk.get("id")), "type": "message", "role": "assistant",
                "model": text_of(chunk.get("model")), "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}  # none (a last chunk may say only its finish reason), or not one: nothing to tell
        reasoning = reasoning_of(delta)
        if reasoning:
            self._delta("thinking", {"type": "thinking", "thinking": "", "signature": ""},
                        {"type": "thinking_delta", "thinking": reasoning}, out)
        text = delta.get("content")
        if isinstance(text, str) and text:
            self._delta("text", {"type": "text", "text": ""}, {"type": "text_delta", "text": text}, out)
        for call in tool_calls(delta):
            self._tool(call, out)
        if choice.get("finish_reason"):
            self._close(out)
            self._reason, self._sequence = stop_reason(choice, self._stops)

    def _delta(self, kind: Any, block: dict[str, Any], delta: dict[str, Any], out: list[bytes]) -> None:
        if self._open != kind:
            self._start(kind, block, out)
        out.append(event({"type": "content_block_delta", "index": self._index, "delta": delta}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        key = call_key(call, self._open[1] if isinstance(self._open, tuple) else None)
        fn = function_of(call)
        call_id, name = text_of(call.get("id")), text_of(fn.get("name"))
        if key not in self._tools and not (call_id or name):
            return  # a delta that neither names a call nor continues one
        if key not in self._tools:  # a new call: its block starts with its id and name
            self._start(("tool", key), {"type": "tool_use", "id": call_id or f"toolu_{self._index + 1}",
                                        "name": name, "input": {}}, out)
            self._tools[key] = self._index
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments and self._open == ("tool", key):
            out.append(event({"type": "content_block_delta", "index": self._index,
                              "delta": {"type": "input_json_delta", "partial_json": arguments}}))

    def _start(self, kind: Any, block: dict[str, Any], out: list[bytes]) -> None:
        """Stop the open block, start the next; Anthropic sends a ``ping`` after its first."""
        self._close(out)
        self._open = kind
        self._index += 1
        out.append(event({"type": "content_block_start", "index": self._index, "content_block": block}))
        if self._index == 0:
            out.append(PING)

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(event({"type": "content_block_stop", "index": self._index}))
            self._open = None

    def _end(self, out: list[bytes]) -> None:
        self._close(out)
        out.append(event({"type": "message_delta",
                          "delta": {"stop_reason": self._reason or "end_turn", "stop_sequence": self._sequence},
                          "usage": to_usage(self._usage)}))
        out.append(event({"type": "message_stop"}))
        self._ended = True

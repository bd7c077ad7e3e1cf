"""A chat completions chunk stream → Anthropic's Messages event stream, incrementally (pure, no I/O).

Anthropic's sequence: ``message_start``; per content block ``content_block_start``, its
``content_block_delta`` events (``thinking_delta``, ``text_delta``, ``input_json_delta``) and
``content_block_stop``; ``message_delta`` (``stop_reason``, usage); ``message_stop``; one ``ping``
after the first ``content_block_start``, where Anthropic's own streams send it. Blocks
come one at a time, so a block is stopped when the next kind of content starts: reasoning
(``reasoning_content``) → a thinking block, text → a text block, each tool call → a
``tool_use`` block, in the order the calls begin. A backend may interleave parallel calls' deltas
(call 1 begins before call 0's arguments came): a call's block stays open until its arguments
close their JSON object (or the answer ends), and what the calls after it receive meanwhile is
kept and sent when their blocks start, so no argument is lost. The usage chunk follows the
finish reason in a chat stream, so ``message_delta`` waits for ``[DONE]`` (or for the end of a
stream whose choice has finished).
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


class _Call:
    """A tool call of the answer: its id and name, the arguments received so far, how much of them
    was sent, and whether they closed their top-level JSON object yet (scanned as they come)."""

    __slots__ = ("id", "name", "arguments", "sent", "depth", "in_string", "escaped", "complete")

    def __init__(self, call_id: str, name: str):
        self.id, self.name = call_id, name
        self.arguments = ""
        self.sent = 0
        self.depth = 0
        self.in_string = self.escaped = self.complete = False

    def add(self, text: str) -> None:
        self.arguments += text
        for char in text:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                self.complete = self.complete or self.depth == 0


class MessagesEncoder:
    """Chat chunk SSE bytes → Anthropic SSE bytes (``feed``/``finish``). ``stops``: the
    request's ``stop_sequences`` (to tell a stop sequence from an end of turn)."""

    __slots__ = ("_split", "_stops", "_started", "_index", "_open", "_calls", "_waiting", "_last", "_reason",
                 "_sequence", "_usage", "_ended")

    def __init__(self, stops: Any = None):
        self._split = SSESplitter()
        self._stops = stops
        self._started = False
        self._index = -1  # the current block's index
        self._open: Any = None  # the open block: "thinking", "text", ("tool", a call's key), or None
        self._calls: dict[Any, _Call] = {}  # a tool call's key (``chunks.call_key``) → the call
        self._waiting: list[Any] = []  # the keys of calls whose blocks have not started, in order
        self._last: Any = None  # the key of the call the last tool call delta was for
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
            self._flush(out)
            self._reason, self._sequence = stop_reason(choice, self._stops)

    def _delta(self, kind: Any, block: dict[str, Any], delta: dict[str, Any], out: list[bytes]) -> None:
        if self._open != kind:
            self._start(kind, block, out)
        out.append(event({"type": "content_block_delta", "index": self._index, "delta": delta}))

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        key = call_key(call, self._last)
        fn = function_of(call)
        record = self._calls.get(key)
        if record is None:
            call_id, name = text_of(call.get("id")), text_of(fn.get("name"))
            if not (call_id or name):
                return  # a delta that neither names a call nor continues one
            record = self._calls[key] = _Call(call_id, name)
            self._waiting.append(key)
        self._last = key
        record.add(text_of(fn.get("arguments")))
        self._advance(out)

    def _advance(self, out: list[bytes]) -> None:
        """Send the open call's new arguments; once they are complete (or no call's block is
        open), start the next waiting call's block with what it received so far."""
        while True:
            if isinstance(self._open, tuple):
                record = self._calls[self._open[1]]
                self._send(record, out)
                if not (self._waiting and record.complete):
                    return
            elif not self._waiting:
                return
            self._start_call(self._waiting.pop(0), out)

    def _start_call(self, key: Any, out: list[bytes]) -> None:
        """A call's block starts with its id and name, then what its arguments are so far."""
        record = self._calls[key]
        self._start(("tool", key), {"type": "tool_use", "id": record.id or f"toolu_{self._index + 1}",
                                    "name": record.name, "input": {}}, out)
        self._send(record, out)

    def _send(self, record: _Call, out: list[bytes]) -> None:
        if len(record.arguments) > record.sent:
            out.append(event({"type": "content_block_delta", "index": self._index,
                              "delta": {"type": "input_json_delta", "partial_json": record.arguments[record.sent:]}}))
            record.sent = len(record.arguments)

    def _flush(self, out: list[bytes]) -> None:
        """The answer is over: every waiting call gets its block, in order, and the last one stops."""
        while self._waiting:
            self._start_call(self._waiting.pop(0), out)
        self._close(out)

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
        self._flush(out)
        out.append(event({"type": "message_delta",
                          "delta": {"stop_reason": self._reason or "end_turn", "stop_sequence": self._sequence},
                          "usage": to_usage(self._usage)}))
        out.append(event({"type": "message_stop"}))
        self._ended = True

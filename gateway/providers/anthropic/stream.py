"""Anthropic's SSE stream → OpenAI ``chat.completion.chunk`` events, incrementally (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.sse import DONE_EVENT, SSESplitter, encode_data_event, event_data
from gateway.providers.anthropic.response import FINISH_REASONS, arguments_json, translate_error, translate_usage


class AnthropicStreamDecoder:
    """Anthropic SSE bytes → OpenAI ``chat.completion.chunk`` SSE bytes, incrementally.

    ``feed(data) -> bytes`` for each upstream read (events may be split anywhere);
    ``finish() -> bytes`` at the end of the body. A stream cut short produces no
    ``[DONE]`` (the gateway reports it truncated); after ``message_stop`` or ``error``,
    further events are ignored.
    """

    __slots__ = ("_split", "_include_usage", "_created", "_id", "_model", "_usage", "_started", "_blocks",
                 "_tools", "_ended")

    def __init__(self, include_usage: bool, created: int):
        self._split = SSESplitter()
        self._include_usage = include_usage
        self._created = created
        self._id = "chatcmpl-anthropic"
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._started = False
        self._blocks: dict[int | None, list] = {}  # content block index → [kind, tool index, has arguments]
        self._tools = 0
        self._ended = False

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for raw in self._split.feed(data):
            self._event(raw, out)
        return b"".join(out)

    def finish(self) -> bytes:
        out: list[bytes] = []
        tail = self._split.tail()
        if tail.strip():
            self._event(tail, out)  # an unterminated last event
        return b"".join(out)

    # --- one event ---
    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return encode_data_event({"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                  "model": self._model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                                     "finish_reason": finish}]})

    def _start(self, out: list[bytes]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        if self._ended:
            return
        data = event_data(raw)
        if not data:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = message.get("id") or self._id
            self._model = message.get("model") or self._model
            self._usage.update(message.get("usage") or {})
            self._start(out)
        elif kind == "content_block_start":
            self._start(out)
            self._block_start(event.get("index"), event.get("content_block") or {}, out)
        elif kind == "content_block_delta":
            self._start(out)
            self._block_delta(event.get("index"), event.get("delta") or {}, out)
        elif kind == "content_block_stop":
            block = self._blocks.get(event.get("index"))
            if block and block[0] == "tool" and not block[2]:  # no arguments streamed: an empty object
                out.append(self._chunk({"tool_calls": [{"index": block[1], "function": {"arguments": "{}"}}]}))
        elif kind == "message_delta":
            self._start(out)
            usage = event.get("usage") or {}
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                out.append(self._chunk({}, FINISH_REASONS.get(reason, "stop")))
        elif kind == "message_stop":
            self._start(out)
            if self._include_usage:
                out.append(encode_data_event({"id": self._id, "object": "chat.completion.chunk",
                                              "created": self._created, "model": self._model, "choices": [],
                                              "usage": translate_usage(self._usage)}))
            out.append(DONE_EVENT)
            self._ended = True
        elif kind == "error":
            out.append(encode_data_event({"error": translate_error(None, event.get("error"))}))
            self._ended = True
        # ping and unknown event types: nothing to say

    def _block_start(self, index: Any, block: dict[str, Any], out: list[bytes]) -> None:
        kind = block.get("type")
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            given = block.get("input")
            self._blocks[index] = ["tool", tool, bool(given)]
            out.append(self._chunk({"tool_calls": [{
                "index": tool, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments_json(given) if given else ""}}]}))
        elif kind == "text":
            self._blocks[index] = ["text", None, False]
            if block.get("text"):
                out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking":
            self._blocks[index] = ["thinking", None, False]
            if block.get("thinking"):
                out.append(self._chunk({"reasoning_content": block["thinking"]}))
        else:
            self._blocks[index] = [kind, None, False]

    def _block_delta(self, index: Any, delta: dict[str, Any], out: list[bytes]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                out.append(self._chunk({"content": delta["text"]}))
        elif kind == "input_json_delta":
            block = self._blocks.get(index)
            partial = delta.get("partial_json")
            if block and block[0] == "tool" and partial:
                block[2] = True
                out.append(self._chunk({"tool_calls": [{"index": block[1], "function": {"arguments": partial}}]}))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                out.append(self._chunk({"reasoning_content": delta["thinking"]}))
        # signature_delta, citations_delta: no OpenAI counterpart

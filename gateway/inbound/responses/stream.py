"""A Chat Completions chunk stream re-told as a Responses API event stream.

``ResponsesEncoder`` is fed the OpenAI ``chat.completion.chunk`` SSE a translated target's relay
would send (usage included) and returns Responses events in the order OpenAI emits them:
``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` → ``response.content_part.added`` → deltas
(``response.reasoning_text.delta``, ``response.output_text.delta``, ``response.refusal.delta``,
or ``response.function_call_arguments.delta`` for a tool call) → their ``*.done`` →
``response.content_part.done`` → ``response.output_item.done``, and last
``response.completed`` (or ``response.incomplete`` after ``finish_reason: length``) carrying
the whole ``output`` and ``usage``. Every event has the next ``sequence_number``; items are
numbered by ``output_index`` in the order they open. An in-band error from the backend ends the
stream with an ``error`` event and ``response.failed``; a stream that breaks off is ended the
same way by the relay's observer — never silently. A request that asks for a reasoning summary
(``reasoning.summary``, as Codex does) gets the backend's reasoning as OpenAI's reasoning models
stream their summaries: ``response.reasoning_summary_part.added`` →
``response.reasoning_summary_text.delta``… → ``.done`` → ``response.reasoning_summary_part.done``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.core.context import Usage
from gateway.core.sse import SSESplitter, event_data
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
from gateway.inbound.responses import custom
from gateway.inbound.responses import response as shapes


@dataclass(slots=True)
class _Item:
    """An output item being streamed: ``kind`` is ``reasoning`` (its content), ``summary`` (a
    reasoning item's summary), ``output_text``, ``refusal``, ``function_call`` or
    ``custom_tool_call`` (the call)."""

    kind: str
    index: int
    id: str
    parts: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""

    def final(self, response_id: str, status: str) -> dict[str, Any]:
        """The item as ``response.output_item.done`` and the final ``output`` carry it."""
        text = "".join(self.parts)
        if self.kind == "custom_tool_call":
            return custom.call_item(self.id, self.call_id, self.name, text)
        if self.kind == "function_call":
            return {**shapes.call_item(response_id, 0, self.call_id, self.name, text, status), "id": self.id}
        if self.kind in ("reasoning", "summary"):
            return {**shapes.reasoning_item(response_id, text, status, self.kind == "summary"), "id": self.id}
        return {**shapes.message_item(response_id, [self.part(text)], status), "id": self.id}

    def part(self, text: str) -> dict[str, Any]:
        if self.kind == "reasoning":
            return {"type": "reasoning_text", "text": text}
        if self.kind == "summary":
            return {"type": "summary_text", "text": text}
        if self.kind == "refusal":
            return {"type": "refusal", "refusal": text}
        return shapes.text_part(text)


# Per content kind: the part's added and done events and the field numbering parts, the delta
# event, the text's done event and the field that carries the whole text there.
_PART = ("response.content_part.added", "response.content_part.done", "content_index")
_EVENTS = {
    "output_text": (*_PART, "response.output_text.delta", "response.output_text.done", "text"),
    "refusal": (*_PART, "response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning": (*_PART, "response.reasoning_text.delta", "response.reasoning_text.done", "text"),
    "summary": ("response.reasoning_summary_part.added", "response.reasoning_summary_part.done", "summary_index",
                "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "text"),
}
_PREFIX = {"output_text": "msg", "refusal": "msg", "reasoning": "rs", "summary": "rs"}
# The item's list of parts, empty when ``response.output_item.added`` announces it.
_PARTS = {"output_text": "content", "refusal": "content", "summary": "summary"}


class ResponsesEncoder:
    """Chat chunk SSE in, Responses events out: ``feed(bytes) -> bytes``, ``finish() -> bytes``
    at the end of the upstream stream (completes a stream whose choice finished without
    ``[DONE]``). ``done``: a terminal event was emitted; a stream cut before one is ended by the
    relay's observer (``observe.ResponsesTee.error_event``)."""

    def __init__(self, request: dict[str, Any], response_id: str, created_at: int, on_done: Any = None):
        self._request = request
        self._id = response_id
        self._created = created_at
        self._split = SSESplitter()
        self._sequence = 0
        self._out: list[bytes] = []
        self._started = False
        self._model = str(request.get("model") or "")
        self._reasoning = "summary" if shapes.wants_summary(request) else "reasoning"
        self._customs = custom.names(request.get("tools"))
        self._items: list[_Item] = []
        self._done_items: dict[int, dict[str, Any]] = {}
        self._open: _Item | None = None  # the reasoning or message item receiving deltas
        self._calls: dict[Any, _Item] = {}  # a tool call's key (``chunks.call_key``) -> its item
        self._counts: dict[str, int] = {}
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._on_done = on_done  # a ``turn.Turn``: its ``response`` is set to the completed one
        self.done = False

    # --- the interface -----------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        for raw in self._split.feed(data):
            if not self.done:
                self._event(raw)
        return self._flush()

    def finish(self) -> bytes:
        """The upstream ended: a choice that finished is a complete response even without ``[DONE]``."""
        rest = self._split.tail()
        if rest and not self.done:
            self._event(rest + b"\n\n")
        if not self.done and self._finish_reason is not None:
            self._complete()
        return self._flush()

    def _fail(self, code: str | None, message: str) -> None:
        """End the stream as failed: an ``error`` event, then ``response.failed``."""
        if not self.done:
            self._start()
            self._emit("error", code=code, message=message, param=None)
            response = self._response("failed", "incomplete")
            response["error"] = {"code": "server_error", "message": message}
            self._emit("response.failed", response=response)
            self.done = True

    # --- reading chunks ----------------------------------------------------------------
    def _event(self, raw: bytes) -> None:
        data = event_data(raw)
        if data is None:
            return
        if data == DONE:
            self._complete()
            return
        chunk = read_chunk(data)
        if isinstance(chunk, InBandError):
            self._fail(chunk.code, chunk.message)
            return
        if chunk is None:
            return
        if chunk.get("model") and isinstance(chunk["model"], str):
            self._model = chunk["model"]
        self._start()
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # a Responses answer has one choice
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = {}  # none (a last chunk may say only its finish reason), or not one: nothing to tell
            reasoning = reasoning_of(delta)
            if reasoning:
                self._text(self._reasoning, reasoning)
            if isinstance(delta.get("content"), str) and delta["content"]:
                self._text("output_text", delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                self._text("refusal", delta["refusal"])
            for call in tool_calls(delta):
                self._call(call)
            if text_of(choice.get("finish_reason")):
                self._finish_reason = choice["finish_reason"]

    def _text(self, kind: str, delta: str) -> None:
        item = self._open
        if item is None or item.kind != kind:
            self._close_open()
            item = self._open = self._add(kind, shapes.item_id(self._id, _PREFIX[kind], self._next(_PREFIX[kind])))
            added = item.final(self._id, "in_progress")
            if kind in _PARTS:
                added[_PARTS[kind]] = []
            self._emit("response.output_item.added", output_index=item.index, item=added)
            part_added, _, number, *_ = _EVENTS[kind]
            self._emit(part_added, item_id=item.id, output_index=item.index, **{number: 0}, part=item.part(""))
        item.parts.append(delta)
        _, _, number, event, *_ = _EVENTS[kind]
        extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
        self._emit(event, item_id=item.id, output_index=item.index, **{number: 0}, delta=delta, **extra)

    def _call(self, call: dict[str, Any]) -> None:
        index = call_key(call, next(reversed(self._calls), None))
        function = function_of(call)
        call_id, name = text_of(call.get("id")), text_of(function.get("name"))
        item = self._calls.get(index)
        if item is None:
            if not (call_id or name):
                return  # a delta that neither names a call nor continues one
            self._close_open()
            custom_tool = name in self._customs
            kind, prefix = ("custom_tool_call", "ctc") if custom_tool else ("function_call", "fc")
            n = self._next(prefix)
            item = self._calls[index] = self._add(kind, shapes.item_id(self._id, prefix, n))
            item.call_id = call_id or shapes.item_id(self._id, "call", item.index)  # some servers give none
            item.name = name
            self._emit("response.output_item.added", output_index=item.index,
                       item=item.final(self._id, "in_progress"))
        elif name:
            item.name += name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item.parts.append(arguments)
            if item.kind == "custom_tool_call":
                return  # JSON arguments, of which the input is told whole once the call is done
            self._emit("response.function_call_arguments.delta", item_id=item.id, output_index=item.index,
                       delta=arguments)

    # --- items and the lifecycle -------------------------------------------------------
    def _next(self, prefix: str) -> int:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return n

    def _add(self, kind: str, item_id: str) -> _Item:
        item = _Item(kind, len(self._items), item_id)
        self._items.append(item)
        return item

    def _close_open(self) -> None:
        item, self._open = self._open, None
        if item is None:
            return
        text = "".join(item.parts)
        _, part_done, number, _, event, name = _EVENTS[item.kind]
        extra: dict[str, Any] = {"logprobs": []} if item.kind == "output_text" else {}
        self._emit(event, item_id=item.id, output_index=item.index, **{number: 0}, **{name: text}, **extra)
        self._emit(part_done, item_id=item.id, output_index=item.index, **{number: 0}, part=item.part(text))
        self._close(item)

    def _close(self, item: _Item) -> None:
        final = self._done_items[item.index] = item.final(self._id, "completed")
        self._emit("response.output_item.done", output_index=item.index, item=final)

    def _complete(self) -> None:
        self._start()
        self._close_open()
        for item in sorted(self._calls.values(), key=lambda c: c.index):
            arguments = "".join(item.parts)
            if item.kind == "custom_tool_call":
                text = custom.input_of(arguments)
                if text:
                    self._emit("response.custom_tool_call_input.delta", item_id=item.id, output_index=item.index,
                               delta=text)
                self._emit("response.custom_tool_call_input.done", item_id=item.id, output_index=item.index,
                           input=text)
            else:
                self._emit("response.function_call_arguments.done", item_id=item.id, output_index=item.index,
                           arguments=arguments)
            self._close(item)
        self._calls.clear()
        response = shapes.finish(self._response("completed", "completed"), self._finish_reason)
        response["usage"] = shapes.usage(self._usage)
        self._emit(f"response.{response['status']}", response=response)
        self.done = True
        if self._on_done is not None:
            self._on_done.response = response
            self._on_done.usage = Usage.from_openai(self._usage)

    def _response(self, status: str, open_status: str) -> dict[str, Any]:
        response = shapes.shell(self._request, self._id, self._created, self._model, status)
        response["output"] = [self._done_items.get(item.index) or item.final(self._id, open_status)
                              for item in self._items]
        return response

    def _start(self) -> None:
        if not self._started:
            self._started = True
            created = shapes.shell(self._request, self._id, self._created, self._model, "in_progress")
            self._emit("response.created", response=created)
            self._emit("response.in_progress", response=created)

    def _emit(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        self._out.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n")

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

"""Pure conversions between the shapes an answer can be cached in and served as.

- ``UsageView``: re-shape an OpenAI SSE event sequence for a client that did (or did not) ask
  for ``stream_options.include_usage``: drop the usage-only chunk and the ``"usage":null``
  members, or add a usage chunk before ``[DONE]``.
- ``assemble_json``: a stored stream → one ``chat.completion`` / ``text_completion`` body
  (content, ``reasoning_content`` and any other string fields concatenated, tool-call deltas
  merged by index, logprobs concatenated, finish reasons, usage).
- ``synthesize_sse``: a stored JSON answer → the chunks a stream of it would have carried.

No I/O, no state beyond one stream's conversion; all bytes in and out are UTF-8 JSON / SSE.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.context import Usage
from gateway.core.sse import DONE_EVENT, SSESplitter, encode_data_event, event_data

_USAGE_NULL = b',"usage":null'
CHAT = "chat/completions"


def usage_dict(usage: Usage) -> dict[str, Any] | None:
    """An OpenAI ``usage`` object rebuilt from the flattened ``Usage`` (None if nothing is known)."""
    if usage.prompt_tokens is None and usage.completion_tokens is None and usage.total_tokens is None:
        return None
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    if usage.cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    if usage.reasoning_tokens is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def split_events(data: bytes) -> list[bytes]:
    """Whole SSE events of a complete stream (an unterminated tail counts as one event)."""
    splitter = SSESplitter()
    events = splitter.feed(data)
    tail = splitter.tail()
    if tail:
        events.append(tail)
    return events


def is_done(raw: bytes) -> bool:
    """Whether ``raw`` is the ``data: [DONE]`` event."""
    return event_data(raw) == b"[DONE]"


def _usage_chunk(data: bytes) -> bool:
    """Whether an event's data is the usage-only chunk (``choices: []`` plus a usage object)."""
    if b'"usage":{' not in data and b'"usage": {' not in data:
        return False
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and not chunk.get("choices") and bool(chunk.get("usage"))


class UsageView:
    """Convert one stream's events from ``source_has_usage`` to ``want_usage`` form.

    ``usage`` is a callable returning the OpenAI usage dict to put in an added usage chunk
    (called once, when ``[DONE]`` is reached, or at ``finish`` for a stream that ended cleanly
    without it; it may return None: then no chunk is added).
    Feed whole events (``event(raw) -> bytes``) or byte pieces that hold whole events
    (``piece(data) -> bytes``); the result is what to send, possibly ``b""``.
    """

    __slots__ = ("_strip", "_add", "_usage", "_meta", "_split", "_added")

    def __init__(self, source_has_usage: bool, want_usage: bool, usage):
        self._strip = source_has_usage and not want_usage
        self._add = want_usage and not source_has_usage
        self._usage = usage
        self._meta: dict[str, Any] | None = None
        self._split = SSESplitter()
        self._added = False  # the usage chunk was placed (before [DONE])

    @property
    def identity(self) -> bool:
        """True when the events pass unchanged."""
        return not self._strip and not self._add

    def piece(self, data: bytes) -> bytes:
        if self.identity:
            return data
        return b"".join(self.event(raw) for raw in self._split.feed(data))

    def finish(self) -> bytes:
        """The end of the stream: whatever incomplete event is left, and the usage chunk still
        to add when the stream ended cleanly without ``[DONE]`` (complete all the same)."""
        tail = self._split.tail()
        out = self.event(tail) if tail and not self.identity else tail
        if not self._add or self._added:
            return out
        self._added = True
        chunk = self._usage_chunk()
        if out and not out.endswith(b"\n\n"):  # an unterminated last event: end it first
            out = out.rstrip(b"\r\n") + b"\n\n"
        return out + chunk

    def event(self, raw: bytes) -> bytes:
        data = event_data(raw)
        if data is None:
            return raw
        if self._strip:
            if _usage_chunk(data):
                return b""
            return raw.replace(_USAGE_NULL, b"", 1) if _USAGE_NULL in raw else raw
        if data == b"[DONE]":
            self._added = True
            return self._usage_chunk() + raw
        if self._meta is None and data.startswith(b"{"):
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                return raw
            if isinstance(chunk, dict) and "error" not in chunk:
                self._meta = {k: chunk[k] for k in ("id", "object", "created", "model", "system_fingerprint")
                              if chunk.get(k) is not None}
        return raw

    def _usage_chunk(self) -> bytes:
        usage = self._usage() if self._usage is not None else None
        if usage and self._meta is not None:
            return encode_data_event({**self._meta, "choices": [], "usage": usage})
        return b""


def convert_stream(body: bytes, source_has_usage: bool, want_usage: bool, usage: dict | None) -> bytes:
    """A whole stored stream in the form a client with ``want_usage`` gets."""
    view = UsageView(source_has_usage, want_usage, lambda: usage)
    if view.identity:
        return body
    return view.piece(body) + view.finish()


def _merge_logprobs(acc: dict, logprobs: Any) -> None:
    if not isinstance(logprobs, dict):
        return
    current = acc.get("logprobs")
    if not isinstance(current, dict):
        acc["logprobs"] = current = {}
    for key, value in logprobs.items():
        if isinstance(value, list):
            current.setdefault(key, [])
            if isinstance(current[key], list):
                current[key].extend(value)
        elif value is not None or key not in current:
            current[key] = value


def _merge_tool_calls(message: dict, deltas: list) -> None:
    calls: dict[int, dict] = message.setdefault("_tool_calls", {})
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        call = calls.setdefault(delta.get("index", len(calls)), {})
        for key, value in delta.items():
            if key == "index":
                continue
            if key == "function" and isinstance(value, dict):
                fn = call.setdefault("function", {})
                for fk, fv in value.items():
                    if isinstance(fv, str):
                        fn[fk] = fn.get(fk, "") + fv
                    elif fv is not None:
                        fn[fk] = fv
            elif isinstance(value, str) and key != "id" and key != "type":
                call[key] = call.get(key, "") + value
            elif value is not None:
                call[key] = value


def _merge_delta(message: dict, delta: dict) -> None:
    for key, value in delta.items():
        if key == "role":
            if value:
                message["role"] = value
        elif key == "tool_calls":
            if isinstance(value, list):
                _merge_tool_calls(message, value)
        elif key == "function_call" and isinstance(value, dict):
            fc = message.get("function_call")
            if not isinstance(fc, dict):
                message["function_call"] = fc = {}
            for fk, fv in value.items():
                if isinstance(fv, str):
                    fc[fk] = fc.get(fk, "") + fv
        elif isinstance(value, str):
            current = message.get(key)
            message[key] = (current if isinstance(current, str) else "") + value
        elif value is not None:
            message[key] = value
        else:
            message.setdefault(key, None)


def assemble_json(body: bytes, endpoint: str, usage: dict | None) -> bytes:
    """One JSON answer (``chat.completion`` or ``text_completion``) from a stored SSE stream.

    ``usage``: the usage to report when the stream itself carried none. Raises ``ValueError``
    if the stream holds no chunk at all.
    """
    chat = endpoint == CHAT
    meta: dict[str, Any] = {}
    choices: dict[int, dict] = {}
    stream_usage = None
    for raw in split_events(body):
        data = event_data(raw)
        if not data or data == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(chunk, dict) or "error" in chunk:
            continue
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                meta.setdefault(key, chunk[key])
        if chunk.get("usage"):
            stream_usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            acc = choices.get(index)
            if acc is None:
                acc = choices[index] = {"index": index}
                if chat:
                    acc["message"] = {"role": "assistant", "content": None}
                else:
                    acc["text"] = ""
            if chat:
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    _merge_delta(acc["message"], delta)
            elif isinstance(choice.get("text"), str):
                acc["text"] += choice["text"]
            _merge_logprobs(acc, choice.get("logprobs"))
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]
    if not meta and not choices:
        raise ValueError("no chunk in the stored stream")
    out_choices = []
    for index in sorted(choices):
        acc = choices[index]
        if chat:
            message = acc["message"]
            calls = message.pop("_tool_calls", None)
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
        out_choices.append({**acc, "logprobs": acc.get("logprobs"), "finish_reason": acc.get("finish_reason")})
    out: dict[str, Any] = {"id": meta.get("id", ""), "object": "chat.completion" if chat else "text_completion",
                           "created": meta.get("created", 0), "model": meta.get("model", ""),
                           "choices": out_choices}
    for key in ("system_fingerprint", "service_tier"):
        if key in meta:
            out[key] = meta[key]
    usage = stream_usage or usage
    if usage:
        out["usage"] = usage
    return orjson.dumps(out)


def synthesize_sse(body: bytes, endpoint: str, want_usage: bool) -> bytes:
    """The SSE stream (``[DONE]``-terminated) that carries the JSON answer ``body``.

    Chat: per choice one chunk with the whole message as its delta (tool calls with their
    ``index``), then one with the finish reason; text completions: one chunk per choice.
    The usage chunk is added only when ``want_usage``. Raises ``ValueError`` on a body that
    is not a JSON object with ``choices``.
    """
    resp = orjson.loads(body)
    if not isinstance(resp, dict) or not isinstance(resp.get("choices"), list):
        raise ValueError("not a completion body")
    chat = endpoint == CHAT
    base: dict[str, Any] = {"id": resp.get("id", ""), "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": resp.get("created", 0), "model": resp.get("model", "")}
    if resp.get("system_fingerprint") is not None:
        base["system_fingerprint"] = resp["system_fingerprint"]
    events = []
    for i, choice in enumerate(resp["choices"]):
        index = choice.get("index", i)
        if chat:
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": message.get("role") or "assistant"}
            for key, value in message.items():
                if key == "role" or value is None or value == []:
                    continue
                if key == "tool_calls" and isinstance(value, list):
                    value = [{"index": n, **call} for n, call in enumerate(value)]
                delta[key] = value
            events.append({**base, "choices": [{"index": index, "delta": delta, "logprobs": choice.get("logprobs"),
                                                "finish_reason": None}]})
            events.append({**base, "choices": [{"index": index, "delta": {}, "logprobs": None,
                                                "finish_reason": choice.get("finish_reason")}]})
        else:
            events.append({**base, "choices": [{"index": index, "text": choice.get("text", ""),
                                                "logprobs": choice.get("logprobs"),
                                                "finish_reason": choice.get("finish_reason")}]})
    if want_usage and resp.get("usage"):
        events.append({**base, "choices": [], "usage": resp["usage"]})
    return b"".join(encode_data_event(e) for e in events) + DONE_EVENT

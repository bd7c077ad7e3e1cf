"""Anthropic's Messages API behind OpenAI's chat completions: a pure translator, no I/O.

- Requests (``build_request``): OpenAI ``/v1/chat/completions`` bodies become ``POST
  {base_url}/messages`` bodies: system/developer messages → ``system``; user/assistant
  content parts (text, images as base64 data URLs or http(s) URLs, PDF files) → content
  blocks; assistant ``tool_calls`` → ``tool_use`` blocks; ``tool`` messages → ``tool_result``
  blocks in a user turn (consecutive same-role turns are merged); ``tools``/``tool_choice``/
  ``parallel_tool_calls`` → Anthropic tools; ``max_tokens`` (or ``max_completion_tokens``;
  the backend's ``default_max_tokens`` when absent), ``temperature``, ``top_p``, ``stop`` →
  ``stop_sequences``, ``user`` → ``metadata.user_id``. Fields with no Anthropic meaning that
  do not change the answer (``seed``, ``store``, ``stream_options`` …) are dropped; features
  Anthropic cannot honour (``n`` > 1, logprobs, ``logit_bias``, penalties, JSON
  ``response_format``, audio, legacy ``functions``, other endpoints) raise
  ``InvalidRequestError`` (400). Fields OpenAI does not define are passed on untouched
  (Anthropic-native ``top_k``, ``thinking`` …), and Anthropic judges them.
- Responses (``parse_response``): content blocks → ``message.content`` (text joined) and
  ``tool_calls``; ``thinking`` blocks → ``reasoning_content``; ``stop_reason`` →
  ``finish_reason``; usage → OpenAI usage, cache reads in ``prompt_tokens_details``.
- Streams (``stream_decoder``): Anthropic SSE events → ``chat.completion.chunk`` events;
  the first carries ``role: assistant``, tool calls get stable indices 0, 1, … in the order
  their blocks start, a usage chunk (``choices: []``) precedes ``data: [DONE]`` when the
  request asked for ``stream_options.include_usage``, and an ``error`` event becomes
  ``data: {"error": {...}}`` with no ``[DONE]`` after it.
- Errors (``map_error``): Anthropic error types → OpenAI's error shape; HTTP 529
  (``overloaded_error``) becomes 503 so routing treats it as a retryable 5xx.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.config.models import Backend
from gateway.errors import InvalidRequestError, UpstreamError, error_body
from gateway.providers.base import Capabilities, UpstreamRequest
from gateway.sse import DONE_EVENT, SSESplitter, encode_data_event, event_data

DEFAULT_VERSION = "2023-06-01"

FINISH_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}

# Anthropic error type → OpenAI error type (status comes from the HTTP response).
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error", "request_too_large": "invalid_request_error",
    "not_found_error": "invalid_request_error", "authentication_error": "authentication_error",
    "permission_error": "permission_error", "billing_error": "insufficient_quota",
    "rate_limit_error": "rate_limit_error", "api_error": "server_error", "timeout_error": "server_error",
    "overloaded_error": "server_error",
}

# OpenAI request fields with no Anthropic counterpart that do not change the answer: dropped.
_DROPPED = frozenset({"model", "stream_options", "seed", "store", "metadata", "service_tier", "prompt_cache_key",
                      "safety_identifier", "reasoning_effort", "verbosity"})
# OpenAI request fields translated below (everything else not in _DROPPED passes through).
_TRANSLATED = frozenset({"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                         "stream", "tools", "tool_choice", "parallel_tool_calls", "user", "n", "logprobs",
                         "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
                         "response_format", "functions", "function_call", "audio", "modalities",
                         "prediction", "web_search_options"})
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)", re.DOTALL)


def _unsupported(what: str, param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"{what} is not supported by Anthropic backends.", param=param)


# --- requests --------------------------------------------------------------------------------
def _check_unsupported(body: dict[str, Any]) -> None:
    """Raise ``InvalidRequestError`` for OpenAI features Anthropic cannot honour."""
    n = body.get("n")
    if n is not None and n != 1:
        raise _unsupported(f"n={n} (several choices per request); send n=1 or omit it", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _unsupported("logprobs / top_logprobs", "logprobs")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise _unsupported(f"{name} (other than 0)", name)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise _unsupported(f"response_format {fmt.get('type')!r} (ask for JSON in the prompt, or define a tool "
                           "whose parameters are the schema)", "response_format")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise _unsupported("The legacy `functions`/`function_call` API (use `tools`/`tool_choice`)", "functions")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise _unsupported("Audio output", "audio")
    for name in ("prediction", "web_search_options"):
        if body.get(name) is not None:
            raise _unsupported(name, name)


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` part → an Anthropic ``image`` block (base64 data URL or URL)."""
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise InvalidRequestError(f"{where}.image_url.url must be a string.", param=where)
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if not m or ";base64" not in m["params"]:
            raise InvalidRequestError(f"{where}: an image data URL must be base64 (data:image/png;base64,...).",
                                      param=where)
        source = {"type": "base64", "media_type": m["type"], "data": m["data"]}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequestError(f"{where}: image URLs must be http(s) or base64 data URLs.", param=where)
    return {"type": "image", "source": source}


def _file_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``file`` part with inline ``file_data`` (a base64 PDF) → a ``document`` block."""
    spec = part.get("file") if isinstance(part.get("file"), dict) else {}
    m = _DATA_URL.match(spec.get("file_data") or "")
    if not m or ";base64" not in m["params"]:
        raise _unsupported(f"{where}: files other than inline base64 data (file_id)", where)
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": m["type"],
                                                             "data": m["data"]}}
    if spec.get("filename"):
        block["title"] = spec["filename"]
    return block


def _content_blocks(content: Any, where: str, allow_media: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) → Anthropic content blocks.

    ``cache_control`` on a part is kept (Anthropic prompt caching). Empty text is skipped.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where} must be a string or an array of content parts.", param=where)
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequestError(f"{at}.{kind} must be a string.", param=at)
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and allow_media:
            block = _image_block(part, at)
        elif kind == "file" and allow_media:
            block = _file_block(part, at)
        elif kind == "input_audio":
            raise _unsupported(f"{at}: audio input", at)
        else:
            raise InvalidRequestError(f"{at}: content part type {kind!r} is not supported here by Anthropic "
                                      "backends.", param=at)
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    """Assistant ``tool_calls`` → ``tool_use`` blocks (arguments parsed from their JSON string)."""
    if not isinstance(tool_calls, list):
        raise InvalidRequestError(f"{where} must be an array.", param=where)
    blocks = []
    for j, call in enumerate(tool_calls):
        at = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError(f"{at} must be a function call with a name.", param=at)
        args = fn.get("arguments") or "{}"
        try:
            parsed = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            raise InvalidRequestError(f"{at}.function.arguments is not valid JSON.", param=at) from None
        if not isinstance(parsed, dict):
            raise InvalidRequestError(f"{at}.function.arguments must be a JSON object.", param=at)
        blocks.append({"type": "tool_use", "id": call.get("id") or f"call_{j}", "name": fn["name"],
                       "input": parsed})
    return blocks


def _tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``tool`` message → a ``tool_result`` block."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(f"{where}.tool_call_id is required for tool messages.", param=where)
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _content_blocks(content, f"{where}.content", allow_media=True)
    return block


def _append_turn(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one when the role repeats (Anthropic
    alternates user and assistant turns; all tool results of one step share a user turn)."""
    if turns and turns[-1]["role"] == role:
        prev = turns[-1]["content"]
        prev = [{"type": "text", "text": prev}] if isinstance(prev, str) else prev
        turns[-1]["content"] = prev + ([{"type": "text", "text": content}] if isinstance(content, str) else content)
    else:
        turns.append({"role": role, "content": content})


def translate_messages(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """OpenAI ``messages`` → ``(system, messages)`` for Anthropic.

    ``system``: None, a string (one plain text), or a list of text blocks. Raises
    ``InvalidRequestError`` naming the offending ``messages[i]`` path.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object.", param=where)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_content_blocks(content, f"{where}.content", allow_media=False))
        elif role == "user":
            plain = isinstance(content, str) and content
            _append_turn(turns, "user", content if plain else _content_blocks(content, f"{where}.content", True))
        elif role == "assistant":
            blocks = _content_blocks(content, f"{where}.content", allow_media=False)
            calls = message.get("tool_calls")
            if calls:
                blocks += _tool_use_blocks(calls, f"{where}.tool_calls")
            if blocks:
                plain = isinstance(content, str) and not calls
                _append_turn(turns, "assistant", content if plain else blocks)
        elif role == "tool":
            _append_turn(turns, "user", [_tool_result_block(message, where)])
        else:
            raise InvalidRequestError(f"{where}.role {role!r} is not supported by Anthropic backends.",
                                      param=f"{where}.role")
    if not system:
        return None, turns
    if len(system) == 1 and len(system[0]) == 2:  # one plain text block
        return system[0]["text"], turns
    return system, turns


def translate_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI function tools → Anthropic tools (``input_schema`` from ``parameters``)."""
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be an array.", param="tools")
    out = []
    for j, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _unsupported(f"tools[{j}]: tools other than functions", f"tools[{j}]")
        item: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if "cache_control" in tool:
            item["cache_control"] = tool["cache_control"]
        out.append(item)
    return out


def translate_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """``tool_choice`` + ``parallel_tool_calls`` → Anthropic ``tool_choice`` (None: leave unset)."""
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported by Anthropic backends.",
                                  param="tool_choice")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def translate_request(body: dict[str, Any], model: str, default_max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat completions body → an Anthropic Messages body (a new dict).

    ``model``: the upstream model. Raises ``InvalidRequestError`` for unsupported features.
    """
    _check_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError("'messages' must be an array of message objects.", param="messages")
    system, turns = translate_messages(messages)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: dict[str, Any] = {"model": model, "max_tokens": default_max_tokens if max_tokens is None else max_tokens}
    if system is not None:
        out["system"] = system
    out["messages"] = turns
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = translate_tools(tools)
        choice = translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        out["stream"] = True
    for name, value in body.items():  # fields OpenAI does not define: Anthropic-native extensions
        if name not in _TRANSLATED and name not in _DROPPED:
            out[name] = value
    return out


# --- responses -------------------------------------------------------------------------------
def translate_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage.

    Anthropic's ``input_tokens`` excludes cached input; OpenAI's ``prompt_tokens`` includes it,
    so ``prompt_tokens = input + cache_read + cache_creation`` and
    ``prompt_tokens_details.cached_tokens = cache_read``.
    """
    read = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": read}}


def _arguments(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def translate_response(message: dict[str, Any], created: int) -> dict[str, Any]:
    """An Anthropic ``message`` object → an OpenAI ``chat.completion`` dict."""
    texts, thinking, calls = [], [], []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": _arguments(block.get("input"))}})
    out_message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                                   "refusal": None}
    if thinking:
        out_message["reasoning_content"] = "".join(thinking)
    if calls:
        out_message["tool_calls"] = calls
    out: dict[str, Any] = {
        "id": message.get("id"), "object": "chat.completion", "created": created, "model": message.get("model"),
        "choices": [{"index": 0, "message": out_message, "logprobs": None,
                     "finish_reason": FINISH_REASONS.get(message.get("stop_reason"), "stop")}],
    }
    if isinstance(message.get("usage"), dict):
        out["usage"] = translate_usage(message["usage"])
    return out


def translate_error(status: int | None, error: Any, fallback: str = "") -> dict[str, Any]:
    """An Anthropic ``error`` object (``{"type", "message"}``) → OpenAI's error object.

    ``type`` follows OpenAI's vocabulary; ``code`` keeps Anthropic's error type, or says
    ``context_length_exceeded`` for a prompt that is too long.
    """
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = fallback or (f"Anthropic answered HTTP {status}" if status else "Anthropic stream error")
    openai_type = ERROR_TYPES.get(kind)
    if openai_type is None:
        openai_type = ("server_error" if status is None or status >= 500 else
                       "rate_limit_error" if status == 429 else "invalid_request_error")
    code = kind if isinstance(kind, str) else None
    if "prompt is too long" in message:
        code = "context_length_exceeded"
    return {"message": message, "type": openai_type, "param": None, "code": code}


# --- streams ---------------------------------------------------------------------------------
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
        self._blocks: dict[int, list] = {}  # content block index → [kind, tool index, has arguments]
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
                "function": {"name": block.get("name"), "arguments": _arguments(given) if given else ""}}]}))
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


# --- the adapter -----------------------------------------------------------------------------
class AnthropicAdapter:
    """Anthropic Messages API backends (``type: anthropic``). ``clock`` gives ``created``."""

    name = "anthropic"
    identity = False
    translates_responses = True
    capabilities = Capabilities(endpoints=frozenset({"chat/completions"}), streaming=True, streaming_usage=True,
                                tools=True, images=True, embeddings=False)

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock

    def static_headers(self, backend: Backend) -> dict[str, str]:
        """``x-api-key`` (when configured) and ``anthropic-version``."""
        headers = {"anthropic-version": backend.api_version or DEFAULT_VERSION}
        if backend.api_key:
            headers["x-api-key"] = backend.api_key
        return headers

    def build_request(self, endpoint: str, body: dict[str, Any], raw: bytes | None, upstream_model: str,
                      backend: Backend) -> UpstreamRequest:
        """``POST messages`` with the translated body. Raises ``InvalidRequestError`` (400) for
        other endpoints and for features Anthropic cannot honour."""
        if endpoint != "chat/completions":
            hint = " (Anthropic has no embeddings API)" if endpoint == "embeddings" else ""
            raise InvalidRequestError(f"/v1/{endpoint} is not available on Anthropic backends{hint}; they serve "
                                      "/v1/chat/completions only.")
        out = translate_request(body, upstream_model, backend.default_max_tokens)
        return UpstreamRequest("messages", "", orjson.dumps(out))

    def parse_response(self, endpoint: str, body: bytes) -> bytes:
        """Anthropic message JSON → OpenAI ``chat.completion`` JSON. Raises ``UpstreamError``
        (502) when the body is not a message."""
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError("Anthropic backend answered with a body that is not JSON") from None
        if not isinstance(message, dict) or message.get("type") not in ("message", None):
            raise UpstreamError("Anthropic backend answered with something other than a message")
        return orjson.dumps(translate_response(message, int(self.clock())))

    def stream_decoder(self, endpoint: str, request_body: dict[str, Any]) -> AnthropicStreamDecoder:
        options = request_body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return AnthropicStreamDecoder(include_usage, int(self.clock()))

    def map_error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """``(status, OpenAI error body)``; 529 (overloaded) → 503. An empty ``body`` maps the
        status only (and returns ``b""``)."""
        out_status = 503 if status == 529 else status
        if not body:
            return out_status, b""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        fallback = "" if isinstance(error, dict) else body[:2000].decode("utf-8", "replace").strip()
        return out_status, orjson.dumps({"error": translate_error(status, error, fallback)})

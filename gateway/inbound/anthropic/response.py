"""Chat completions answers → Anthropic's shapes: a ``chat.completion`` → a ``message``, OpenAI
usage → Anthropic usage, any error → Anthropic's error object (pure, no I/O).

The reverse of ``gateway.providers.anthropic.response``, whose tables it inverts."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.context import Usage
from gateway.core.errors import GatewayError
from gateway.inbound.chunks import function_of, reasoning_of, text_of, tool_calls

STOP_REASONS: dict[str | None, str] = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
    "content_filter": "refusal",
}

# The error type Anthropic answers with each status (``overloaded_error`` is its 529).
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status."""
    kind = _ERROR_TYPES.get(status)
    if kind is not None:
        return kind
    return "api_error" if status >= 500 else "invalid_request_error"


def error_json(status: int, message: str, kind: str | None = None) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind or error_type(status), "message": message}})


def gateway_error(exc: GatewayError) -> bytes:
    """One of the gateway's own errors (401 bad key, 429 limits, 400 bad body …) as Anthropic's."""
    return error_json(exc.status, exc.message)


def upstream_error(status: int, body: bytes) -> bytes:
    """A backend's error response as Anthropic's: kept when it already is one (a native
    backend), the message of OpenAI's shape re-wrapped, anything else quoted."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        if parsed.get("type") == "error" and isinstance(error.get("type"), str):
            return body
        message = error.get("message")
        if isinstance(message, str) and message:
            return error_json(status, message)
    text = body[:2000].decode("utf-8", "replace").strip() or f"upstream answered HTTP {status}"
    return error_json(status, text)


def to_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage → Anthropic usage: ``input_tokens`` excludes what was read from (and written
    to) the prompt cache, which have their own fields; reasoning tokens are ``thinking_tokens``.
    What is not a count reads as unknown (0 in the required fields), as on every relay."""
    counts = Usage.from_openai(usage)
    read, written = counts.cached_tokens, counts.cache_write_tokens
    out: dict[str, Any] = {"input_tokens": max((counts.prompt_tokens or 0) - (read or 0) - (written or 0), 0),
                           "output_tokens": counts.completion_tokens or 0}
    if read is not None:
        out["cache_read_input_tokens"] = read
    if written is not None:
        out["cache_creation_input_tokens"] = written
    if counts.reasoning_tokens is not None:  # part of output_tokens, as in OpenAI's completion_tokens
        out["output_tokens_details"] = {"thinking_tokens": counts.reasoning_tokens}
    return out


def stop_reason(choice: dict[str, Any], stops: Any) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` of a choice. vLLM names the stop string that ended it
    (``stop_reason``); other backends do not, so their stops read as ``end_turn``."""
    finish = text_of(choice.get("finish_reason"))
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and isinstance(stops, list) and matched in stops:
        return "stop_sequence", matched
    return STOP_REASONS.get(finish or None, "end_turn"), None


def message_id(chat_id: Any) -> str:
    text = chat_id if isinstance(chat_id, str) and chat_id else "gateway"
    return text if text.startswith("msg_") else f"msg_{text}"


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic's ``input`` is (``{}`` if not one)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(chat: dict[str, Any], stops: Any) -> dict[str, Any]:
    """A ``chat.completion`` dict (with a non-empty ``choices`` list) → an Anthropic ``message``
    dict (its first choice); fields of the wrong type read as absent."""
    choice = chat["choices"][0] if isinstance(chat["choices"][0], dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = reasoning_of(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    for call in tool_calls(message):
        fn = function_of(call)
        content.append({"type": "tool_use", "id": text_of(call.get("id")) or f"toolu_{len(content)}",
                        "name": text_of(fn.get("name")), "input": tool_input(fn.get("arguments"))})
    reason, sequence = stop_reason(choice, stops)
    return {"id": message_id(chat.get("id")), "type": "message", "role": "assistant",
            "model": text_of(chat.get("model")), "content": content, "stop_reason": reason,
            "stop_sequence": sequence, "usage": to_usage(chat.get("usage"))}

"""Anthropic answers → OpenAI's shapes: a ``message`` object → ``chat.completion``, usage →
OpenAI usage (cached input counted in the prompt), an ``error`` object → OpenAI's error object.
Shared by whole responses and by the stream decoder."""

from __future__ import annotations

from typing import Any

import orjson

FINISH_REASONS: dict[str | None, str] = {  # looked up with whatever the backend sent
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "max_tokens": "length",
    "model_context_window_exceeded": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}

# Anthropic error type → OpenAI error type (status comes from the HTTP response).
ERROR_TYPES: dict[str | None, str] = {
    "invalid_request_error": "invalid_request_error", "request_too_large": "invalid_request_error",
    "not_found_error": "invalid_request_error", "authentication_error": "authentication_error",
    "permission_error": "permission_error", "billing_error": "insufficient_quota",
    "rate_limit_error": "rate_limit_error", "api_error": "server_error", "timeout_error": "server_error",
    "overloaded_error": "server_error",
}


def translate_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage → OpenAI usage.

    Anthropic's ``input_tokens`` excludes cached input; OpenAI's ``prompt_tokens`` includes it,
    so ``prompt_tokens = input + cache_read + cache_creation``,
    ``prompt_tokens_details.cached_tokens = cache_read`` and
    ``prompt_tokens_details.cache_write_tokens = cache_creation`` (OpenAI's usage has no field
    for cache writes; OpenRouter's name for it), ``completion_tokens_details.reasoning_tokens =
    output_tokens_details.thinking_tokens``, each only when Anthropic reported it: a field it
    left out stays out (no ``prompt_tokens_details`` at all when both are), a 0 stays 0.
    """
    read = usage.get("cache_read_input_tokens")
    written = usage.get("cache_creation_input_tokens")
    read_n = read if isinstance(read, int) else 0
    written_n = written if isinstance(written, int) else 0
    prompt = (usage.get("input_tokens") or 0) + read_n + written_n
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    details: dict[str, Any] = {}
    if isinstance(read, int):
        details["cached_tokens"] = read
    if isinstance(written, int):
        details["cache_write_tokens"] = written
    if details:
        out["prompt_tokens_details"] = details
    thinking = (usage.get("output_tokens_details") or {}).get("thinking_tokens")
    if isinstance(thinking, int):  # part of output_tokens: OpenAI's reasoning_tokens
        out["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return out


def arguments_json(value: Any) -> str:
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
                          "function": {"name": block.get("name"), "arguments": arguments_json(block.get("input"))}})
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

"""GenAI semantic-convention values derived from a request: pure functions, no I/O.

Shared by the spans (``tracing``) and the metrics: the operation and provider names, the
``gen_ai.request.*`` parameters read from the body, the upstream's address, and (only when
content capture is on) the messages in the conventions' ``parts`` shape.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson

# gen_ai.operation.name by endpoint (below /v1). Pass-through endpoints use their own path on
# spans; metrics put them under "other" so a client cannot mint label values.
OPERATIONS = {"chat/completions": "chat", "completions": "text_completion", "embeddings": "embeddings",
              "responses": "chat"}
# gen_ai.provider.name by backend type.
PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic", "vllm": "vllm",
             "mock": "mock"}


def operation_name(endpoint: str) -> str:
    """``gen_ai.operation.name`` for a span (unknown endpoints: the endpoint itself)."""
    return OPERATIONS.get(endpoint, endpoint)


def provider_name(backend_type: str) -> str:
    return PROVIDERS.get(backend_type, backend_type or "unknown")


@lru_cache(maxsize=256)
def server_address(base_url: str | None) -> tuple[str, int] | None:
    """``(server.address, server.port)`` of a backend's base URL (``None``: in-process mock)."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def request_attributes(body: dict | None) -> dict[str, Any]:
    """``gen_ai.request.*`` from an OpenAI-shaped request body (absent ones left out)."""
    out: dict[str, Any] = {}
    if not body:
        return out
    max_tokens = _number(body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = _number(body.get("max_completion_tokens"))
    if max_tokens is not None:
        out["gen_ai.request.max_tokens"] = int(max_tokens)
    for key, attr in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                      ("frequency_penalty", "gen_ai.request.frequency_penalty"),
                      ("presence_penalty", "gen_ai.request.presence_penalty")):
        value = _number(body.get(key))
        if value is not None:
            out[attr] = float(value)
    for key, attr in (("seed", "gen_ai.request.seed"), ("n", "gen_ai.request.choice.count"),
                      ("top_k", "gen_ai.request.top_k")):
        value = _number(body.get(key))
        if value is not None:
            out[attr] = int(value)
    if "stream" in body:
        out["gen_ai.request.stream"] = body.get("stream") is True
    stop = body.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = tuple(stop)
    fmt = body.get("encoding_format")
    if isinstance(fmt, str):
        out["gen_ai.request.encoding_formats"] = (fmt,)
    return out


# --- content (only with tracing.capture_content) ---------------------------------------------
def _parts(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    if isinstance(content, list):
        for item in content:
            if isinstance(item, dict):
                kind = item.get("type")
                if kind == "text" and isinstance(item.get("text"), str):
                    parts.append({"type": "text", "content": item["text"]})
                elif kind == "image_url":
                    url = (item.get("image_url") or {}).get("url") if isinstance(item.get("image_url"), dict) else None
                    if isinstance(url, str) and not url.startswith("data:"):
                        parts.append({"type": "uri", "modality": "image", "uri": url})
                    else:
                        parts.append({"type": "blob", "modality": "image"})
                else:
                    parts.append({"type": str(kind or "unknown")})
            elif isinstance(item, str):
                parts.append({"type": "text", "content": item})
    return parts


def input_messages(endpoint: str, body: dict | None) -> list[dict] | None:
    """The request's messages as ``gen_ai.input.messages`` wants them, or ``None``."""
    if not body:
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        out = []
        for m in messages:
            if not isinstance(m, dict):
                continue
            role = str(m.get("role") or "user")
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or ():
                if isinstance(call, dict):
                    fn = call.get("function")
                    if not isinstance(fn, dict):
                        fn = {}
                    parts.append({"type": "tool_call", "id": call.get("id"), "name": fn.get("name"),
                                  "arguments": fn.get("arguments")})
            if role == "tool":
                parts = [{"type": "tool_call_response", "id": m.get("tool_call_id"),
                          "response": m.get("content")}]
            out.append({"role": role, "parts": parts})
        return out
    prompt = body.get("prompt")
    if endpoint == "completions" and isinstance(prompt, (str, list)):
        return [{"role": "user", "parts": _parts(prompt)}]
    return None


def output_messages(text: list[str], finish_reason: str) -> list[dict] | None:
    """The generated text as ``gen_ai.output.messages`` (one assistant message), or ``None``."""
    if not text:
        return None
    return [{"role": "assistant", "parts": [{"type": "text", "content": "".join(text)}],
             "finish_reason": finish_reason or "stop"}]


def as_json(value: Any, limit: int, scrub: Callable[[str], str] | None = None) -> str:
    """Compact JSON text, passed through ``scrub`` (redaction), capped at ``limit`` characters
    (a capped value ends with ``…``)."""
    text = orjson.dumps(value, default=str).decode()
    if scrub is not None:
        text = scrub(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"

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

The translation lives in ``request``, ``response`` and ``stream``; this module holds the
adapter the router uses and re-exports the translators.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.config.models import Backend
from gateway.core.errors import InvalidRequestError, UpstreamError
from gateway.providers.anthropic.request import (
    translate_messages,
    translate_request,
    translate_tool_choice,
    translate_tools,
)
from gateway.providers.anthropic.response import (
    ERROR_TYPES,
    FINISH_REASONS,
    translate_error,
    translate_response,
    translate_usage,
)
from gateway.providers.anthropic.stream import AnthropicStreamDecoder
from gateway.providers.base import Capabilities, UpstreamRequest

DEFAULT_VERSION = "2023-06-01"


class AnthropicAdapter:
    """Anthropic Messages API backends (``type: anthropic``). ``clock`` gives ``created``."""

    name = "anthropic"
    identity = False
    translates_responses = True
    # Anthropic's own API, asked by the Messages inbound (``gateway.inbound.anthropic``) as it is.
    # Its Files and Message Batches APIs too, where ``passthrough:`` sends them (``files/…``
    # and ``messages/batches/…`` below these, by ``native_prefixes``), with the backend's headers.
    native_paths = frozenset({"messages", "messages/count_tokens", "files", "messages/batches"})
    native_prefixes = ("files/", "messages/batches/")
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
                                      "/v1/chat/completions, /v1/messages, and /v1/files and "
                                      "/v1/messages/batches where passthrough: sends them.")
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


__all__ = ["DEFAULT_VERSION", "ERROR_TYPES", "FINISH_REASONS", "AnthropicAdapter", "AnthropicStreamDecoder",
           "translate_error", "translate_messages", "translate_request", "translate_response", "translate_tool_choice",
           "translate_tools", "translate_usage"]

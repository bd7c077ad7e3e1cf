"""OpenAI-compatible backends (OpenAI, vLLM, any compatible API): the identity adapter.

Requests go out as the client sent them (with the backend's model name) under
``Authorization: Bearer <backend key>``; responses, streams and errors come back untouched.
"""

from __future__ import annotations

from typing import Any

from gateway.config.models import Backend
from gateway.providers.base import Capabilities, UpstreamRequest


class OpenAICompatAdapter:
    """Identity translation; ``name`` is the backend type (``openai`` or ``vllm``)."""

    identity = True
    native_paths = frozenset({"responses"})  # the Responses API, where the server has it (docs/providers.md)
    capabilities = Capabilities(endpoints=frozenset({"*"}))

    def __init__(self, name: str):
        self.name = name

    def static_headers(self, backend: Backend) -> dict[str, str]:
        return {"Authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}

    def build_request(self, endpoint: str, body: dict[str, Any], raw: bytes | None, upstream_model: str,
                      backend: Backend) -> UpstreamRequest:
        import orjson
        return UpstreamRequest(endpoint, "", raw if raw is not None else orjson.dumps(body))

    def parse_response(self, endpoint: str, body: bytes) -> bytes:
        return body

    def stream_decoder(self, endpoint: str, request_body: dict[str, Any]):
        return None

    def map_error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return status, body

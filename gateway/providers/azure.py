"""Azure OpenAI: deployment-based URLs, ``api-version`` query parameter, ``api-key`` header.

The target's model name is the deployment: ``/v1/chat/completions`` goes to
``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…``, and the Responses
API to ``{base_url}/openai/v1/responses`` (Azure's v1 route: the deployment is the body's
``model``). Bodies, responses, streams and errors are OpenAI's own, so only the request's
address changes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from gateway.config.models import Backend
from gateway.core.errors import InvalidRequestError
from gateway.providers.base import Capabilities, UpstreamRequest

DEFAULT_API_VERSION = "2024-10-21"
_DEPLOYMENT_ENDPOINTS = frozenset({"chat/completions", "completions", "embeddings", "audio/transcriptions",
                                   "audio/speech", "images/generations"})


class AzureAdapter:
    """Azure OpenAI deployments (``type: azure``)."""

    name = "azure"
    identity = False
    native_paths = frozenset({"responses"})
    capabilities = Capabilities(endpoints=_DEPLOYMENT_ENDPOINTS)

    def static_headers(self, backend: Backend) -> dict[str, str]:
        return {"api-key": backend.api_key} if backend.api_key else {}

    def build_request(self, endpoint: str, body: dict[str, Any], raw: bytes | None, upstream_model: str,
                      backend: Backend) -> UpstreamRequest:
        if endpoint == "responses":
            return UpstreamRequest("openai/v1/responses", "", raw if raw is not None else orjson.dumps(body))
        if endpoint not in _DEPLOYMENT_ENDPOINTS:
            raise InvalidRequestError(f"/v1/{endpoint} is not available on Azure OpenAI backends "
                                      f"(supported: {', '.join(sorted(_DEPLOYMENT_ENDPOINTS))}).")
        path = f"openai/deployments/{quote(upstream_model, safe='')}/{endpoint}"
        query = f"api-version={quote(backend.api_version or DEFAULT_API_VERSION)}"
        return UpstreamRequest(path, query, raw if raw is not None else orjson.dumps(body))

    def parse_response(self, endpoint: str, body: bytes) -> bytes:
        return body

    def stream_decoder(self, endpoint: str, request_body: dict[str, Any]):
        return None

    def map_error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return status, body

"""The ``mock`` backend type as a provider of the registry: it answers in-process.

Like every provider it is found by the backend's type (``gateway.providers.adapter_for``);
unlike the HTTP adapters it has no request to build and no response to translate: ``answer``
is the whole round trip (``gateway.providers.base.InProcessProvider``).
"""

from __future__ import annotations

from typing import Any

from gateway.config.models import Backend
from gateway.providers.mock.backend import MockResponse


class MockProvider:
    """Deterministic OpenAI-shaped answers from the request alone (``backend.mock`` settings)."""

    name = "mock"

    def answer(self, endpoint: str, body: dict[str, Any], upstream_model: str, backend: Backend) -> MockResponse:
        return MockResponse(backend.mock, endpoint, body, upstream_model)

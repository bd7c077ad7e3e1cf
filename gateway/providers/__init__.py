"""Providers, one per backend type: pure translators between OpenAI's API and each backend's,
and the in-process ``mock``.

``adapter_for(type)`` returns the provider of a backend type. OpenAI-compatible backends
(``openai``, ``vllm``) use the identity adapter and pay nothing; others translate requests,
responses, streams and errors; ``mock`` answers in-process (``base.InProcessProvider``).
Adding a provider is one module, one line in ``ADAPTERS`` and its conformance fixtures
(``tests/contract/``).
"""

from gateway.providers.azure import AzureAdapter
from gateway.providers.base import Adapter, Capabilities, InProcessProvider, Provider, StreamDecoder, UpstreamRequest
from gateway.providers.mock.provider import MockProvider
from gateway.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, Provider] = {
    "openai": OpenAICompatAdapter("openai"),
    "vllm": OpenAICompatAdapter("vllm"),
    "azure": AzureAdapter(),
    "mock": MockProvider(),
}


def register(backend_type: str, adapter: Provider) -> None:
    """Add (or replace) the provider used for ``backend_type``."""
    ADAPTERS[backend_type] = adapter


def adapter_for(backend_type: str) -> Provider | None:
    """The provider of a backend type (None for a type nothing is registered for)."""
    if backend_type == "anthropic" and "anthropic" not in ADAPTERS:
        from gateway.providers.anthropic import AnthropicAdapter
        ADAPTERS["anthropic"] = AnthropicAdapter()
    return ADAPTERS.get(backend_type)


__all__ = ["ADAPTERS", "Adapter", "Capabilities", "InProcessProvider", "Provider", "StreamDecoder", "UpstreamRequest",
           "adapter_for", "register"]

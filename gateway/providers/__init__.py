"""Provider adapters: pure translators between OpenAI's API and each backend's.

``adapter_for(type)`` returns the adapter of a backend type. OpenAI-compatible backends
(``openai``, ``vllm``) use the identity adapter and pay nothing; others translate requests,
responses, streams and errors. Adding a provider is one module, one line in ``ADAPTERS`` and
its conformance fixtures (``tests/contract/``).
"""

from gateway.providers.azure import AzureAdapter
from gateway.providers.base import Adapter, Capabilities, StreamDecoder, UpstreamRequest
from gateway.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAICompatAdapter("openai"),
    "vllm": OpenAICompatAdapter("vllm"),
    "azure": AzureAdapter(),
}


def register(backend_type: str, adapter: Adapter) -> None:
    """Add (or replace) the adapter used for ``backend_type``."""
    ADAPTERS[backend_type] = adapter


def adapter_for(backend_type: str) -> Adapter | None:
    """The adapter for a backend type (None for ``mock``, which answers in-process)."""
    if backend_type == "anthropic" and "anthropic" not in ADAPTERS:
        from gateway.providers.anthropic import AnthropicAdapter
        ADAPTERS["anthropic"] = AnthropicAdapter()
    return ADAPTERS.get(backend_type)


__all__ = ["ADAPTERS", "Adapter", "Capabilities", "StreamDecoder", "UpstreamRequest", "adapter_for", "register"]

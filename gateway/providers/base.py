"""The adapter interface every provider implements (pure functions of data, no I/O).

- ``capabilities``: what the backend supports; the gateway answers 400 for the rest.
- ``static_headers(backend)``: headers sent on every request (auth, versions), computed once.
- ``build_request(endpoint, body, raw, upstream_model, backend)`` → ``UpstreamRequest``: the
  path/query/body to send for an OpenAI-shaped request. Raises
  ``gateway.core.errors.InvalidRequestError`` (400) for what the backend cannot do.
- ``parse_response(endpoint, body)`` → OpenAI-shaped JSON bytes of a successful response.
- ``stream_decoder(endpoint, request_body)`` → a ``StreamDecoder`` turning the backend's stream
  into OpenAI SSE bytes.
- ``map_error(status, body)`` → ``(status, OpenAI error body)`` for an error response.

``identity`` adapters (OpenAI-compatible backends) are never called on the request path:
bytes flow untouched.

An ``InProcessProvider`` (the built-in ``mock``) is the other kind of provider: no HTTP at all,
``answer(endpoint, body, upstream_model, backend)`` returns the response itself. Both kinds are
found the same way, by the backend's type (``gateway.providers.adapter_for``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gateway.config.models import Backend
from gateway.core.upstream import UpstreamResponse


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend type supports. ``endpoints``: paths below ``/v1`` it serves (``*``: any)."""

    endpoints: frozenset[str]
    streaming: bool = True
    streaming_usage: bool = True
    tools: bool = True
    images: bool = True
    embeddings: bool = True


@dataclass(slots=True)
class UpstreamRequest:
    """What to send: ``path`` appended to the backend's ``base_url``, ``query`` (no ``?``),
    ``body`` bytes, and per-request ``headers`` (or None)."""

    path: str
    query: str
    body: bytes
    headers: dict[str, str] | None = None


class StreamDecoder(Protocol):
    """Incremental stream translation: ``feed(bytes) -> bytes`` (OpenAI SSE to send),
    ``finish() -> bytes`` at the end of the upstream body."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class Adapter(Protocol):
    name: str
    identity: bool
    capabilities: Capabilities

    def static_headers(self, backend: Backend) -> dict[str, str]: ...

    def build_request(self, endpoint: str, body: dict[str, Any], raw: bytes | None, upstream_model: str,
                      backend: Backend) -> UpstreamRequest: ...

    def parse_response(self, endpoint: str, body: bytes) -> bytes: ...

    def stream_decoder(self, endpoint: str, request_body: dict[str, Any]) -> StreamDecoder: ...

    def map_error(self, status: int, body: bytes) -> tuple[int, bytes]: ...


@runtime_checkable
class InProcessProvider(Protocol):
    """A provider that answers in-process, with no network: ``answer`` is the whole round trip
    (an OpenAI-shaped response; a request it refuses answers OpenAI's 400 in it)."""

    name: str

    def answer(self, endpoint: str, body: dict[str, Any], upstream_model: str,
               backend: Backend) -> UpstreamResponse: ...


# What the registry holds for a backend type.
Provider = Adapter | InProcessProvider

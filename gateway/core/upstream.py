"""What routing and the attempt loop know of a backend: ``Upstream`` and ``UpstreamResponse``.

Routing ranks targets and hands the attempt loop a client for each; it never sends anything
itself. So it depends on these two small interfaces, not on the HTTP code: the proxy layer
supplies the implementation (``gateway.proxy.upstream.BackendClient``, whose responses come
from the network or, for an in-process provider such as ``mock``, from the provider itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol


class Translator(Protocol):
    """Incremental stream translation: ``feed(bytes) -> bytes``, ``finish() -> bytes`` at the end."""

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


async def translated(chunks: AsyncIterator[bytes], translator: Translator) -> AsyncIterator[bytes]:
    """``chunks`` as ``translator`` turns them into another stream (reads that give nothing are skipped)."""
    async for data in chunks:
        out = translator.feed(data)
        if out:
            yield out
    out = translator.finish()
    if out:
        yield out


class UpstreamResponse(Protocol):
    """A backend's answer once its headers are in: OpenAI-shaped, whatever the provider.

    ``read()`` → the whole body; ``iter_chunks()`` → the body as it arrives (SSE bytes for a
    stream); ``close()`` drops the connection at once; ``release()`` returns a fully read one
    to the pool.
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...

    def release(self) -> None: ...


class Upstream(Protocol):
    """One configured backend as a sender: ``name`` (its config key), ``type`` (its provider),
    ``first_byte_s`` (seconds allowed until headers, and a stream's first bytes, arrive),
    ``needs_raw`` (whether ``forward`` wants the encoded body, or works from the dict) and
    ``native_paths`` (paths of the backend's own API that inbound protocols send untranslated)."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def first_byte_s(self) -> float: ...

    @property
    def needs_raw(self) -> bool: ...

    @property
    def native_paths(self) -> frozenset[str]: ...

    async def forward(self, method: str, path: str, body: bytes | None, parsed: dict[str, Any] | None,
                      upstream_model: str, extra_headers: Mapping[str, str] | None = None,
                      query: str = "") -> UpstreamResponse:
        """Send one request (``path``: the part after ``/v1/``) and return the response once its
        headers are in. Raises ``gateway.core.errors`` errors for transport failures and for a
        request the backend cannot serve."""
        ...

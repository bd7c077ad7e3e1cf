"""Pydantic models for ``gateway.yaml``.

Every model forbids unknown keys so that a typo is an error naming its path, not a silently
ignored setting. Cross-references (a model target naming a backend) are checked by
``GatewayConfig``'s validator so the error carries the full path, e.g.
``models.chat-fast.targets[0].backend: unknown backend "vlm-a"``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Upstream timeouts in seconds.

    ``connect``: TCP/TLS connect. ``first_byte``: from sending the request until the response
    headers (and, for streams, the first body bytes) arrive. ``read``: longest silence between
    two reads of a body. ``total``: the whole exchange, stream included.
    """

    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(120.0, gt=0)
    read: float = Field(120.0, gt=0)
    total: float = Field(600.0, gt=0)


class MockSettings(_Strict):
    """Behaviour of the built-in deterministic ``mock`` backend.

    ``ttft_ms``: delay before the first token (ms). ``itl_ms``: delay between chunks (ms).
    ``tokens``: completion tokens generated (capped by the request's ``max_tokens``).
    ``chunk_tokens``: tokens per streamed chunk. ``usage``: whether responses report usage
    (off simulates a backend that never does). ``embedding_dims``: vector size for embeddings.
    """

    ttft_ms: float = Field(0.0, ge=0)
    itl_ms: float = Field(0.0, ge=0)
    latency_ms: float = Field(0.0, ge=0, description="extra delay before a non-streamed answer")
    tokens: int = Field(16, ge=0)
    chunk_tokens: int = Field(1, ge=1)
    usage: bool = True
    embedding_dims: int = Field(8, ge=1)


class Backend(_Strict):
    """One upstream: an OpenAI-compatible HTTP API, a vLLM server, or the in-process mock.

    ``base_url`` includes the API prefix (``https://api.openai.com/v1``); request paths are
    appended to it without their ``/v1`` prefix. ``api_key`` is normally ``${ENV_VAR}``.
    """

    type: Literal["openai", "vllm", "mock"]
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    mock: MockSettings = MockSettings()

    @model_validator(mode="after")
    def _needs_url(self) -> "Backend":
        if self.type != "mock" and not self.base_url:
            raise ValueError(f'backend type "{self.type}" needs a base_url')
        return self


class Target(_Strict):
    """A backend plus the model name that backend knows it by."""

    backend: str
    model: str | None = Field(None, description="upstream model name; defaults to the public name")


class PublicModel(_Strict):
    """A public model name as clients see it, mapped to one or more targets (first is used)."""

    targets: list[Target] = Field(min_length=1)
    owned_by: str = "llm-gateway"


class ServerSettings(_Strict):
    """HTTP front settings.

    ``body_limit_bytes``: largest accepted request body (413 above it).
    ``forward_headers``: client request headers passed to the upstream (names or globs such
    as ``x-team-*``, case-insensitive). ``Authorization`` is never forwarded.
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    body_limit_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    forward_headers: list[str] = Field(default_factory=list)


class GatewayConfig(_Strict):
    """The whole of ``gateway.yaml``."""

    server: ServerSettings = ServerSettings()
    backends: dict[str, Backend] = Field(default_factory=dict)
    models: dict[str, PublicModel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_links(self) -> "GatewayConfig":
        problems = []
        for name, model in self.models.items():
            for i, target in enumerate(model.targets):
                if target.backend not in self.backends:
                    known = ", ".join(sorted(self.backends)) or "none defined"
                    problems.append(
                        f'models.{name}.targets[{i}].backend: unknown backend "{target.backend}"'
                        f" (known: {known})"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

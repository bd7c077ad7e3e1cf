"""Pydantic models for the ``cache:`` section of ``gateway.yaml`` and per-model overrides.

Kept apart from ``models.py`` so cache settings evolve without touching the core models;
``GatewayConfig.cache`` embeds ``CacheSettings`` and ``PublicModel.cache`` a ``CacheOverride``.
Like every config model they forbid unknown keys. The behaviour is described in docs/cache.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CacheMode = Literal["deterministic", "always"]
CacheEndpoint = Literal["chat/completions", "completions", "embeddings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheOverride(_Strict):
    """``models.<name>.cache``: per-model settings; an unset field inherits ``cache.*``.

    ``enabled``: cache this model (even when ``cache.enabled`` is false, and vice versa).
    ``ttl_s``: seconds an entry lives. ``mode``: ``deterministic`` (only requests with
    ``temperature: 0`` or a ``seed``) or ``always``.
    """

    enabled: bool | None = None
    ttl_s: float | None = Field(None, gt=0)
    mode: CacheMode | None = None


class CacheSettings(_Strict):
    """Exact-match response cache (see docs/cache.md).

    ``enabled``: cache every model unless its ``models.<name>.cache.enabled`` says otherwise
    (off by default: a model can still opt in). ``store``: ``memory`` (an LRU in this process)
    or ``redis`` (shared by every instance; needs ``redis_url``, e.g.
    ``redis://127.0.0.1:6379/0``). ``namespace``: part of every key; change it to invalidate
    everything at once. ``ttl_s``: default entry lifetime in seconds; ``max_ttl_s`` caps the
    per-request ``x-gateway-cache-ttl`` header. ``mode``: see ``CacheOverride``.
    ``max_bytes``: memory store bound (LRU eviction beyond it). ``max_entry_bytes``: larger
    answers are not stored. ``coalesce``: identical concurrent requests share one upstream
    call. ``endpoints``: which ``/v1`` endpoints are cached. ``vary_headers``: request headers
    whose values become part of the key (headers that routing rules match on are added
    automatically). ``redis_timeout_s``: per-operation and pool-wait timeout (a slow Redis means
    uncached, never an error); ``redis_max_connections``: size of the blocking pool;
    ``redis_retry_s``: after a Redis failure, how long the cache skips Redis before trying again.
    """

    enabled: bool = False
    store: Literal["memory", "redis"] = "memory"
    redis_url: str | None = Field(None, repr=False)  # may hold a password: masked in /admin/config
    namespace: str = Field("v1", min_length=1, max_length=64)
    ttl_s: float = Field(3600.0, gt=0)
    max_ttl_s: float | None = Field(None, gt=0)
    mode: CacheMode = "deterministic"
    max_bytes: int = Field(256 * 1024 * 1024, ge=0)
    max_entry_bytes: int = Field(8 * 1024 * 1024, ge=1)
    coalesce: bool = True
    endpoints: list[CacheEndpoint] = Field(default_factory=lambda: ["chat/completions", "completions", "embeddings"])
    vary_headers: list[str] = Field(default_factory=list)
    redis_timeout_s: float = Field(0.25, gt=0)
    redis_max_connections: int = Field(32, ge=1)
    redis_retry_s: float = Field(1.0, ge=0)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("namespace")
    @classmethod
    def _plain_namespace(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError("namespace must not contain whitespace")
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> "CacheSettings":
        if self.store == "redis" and not self.redis_url:
            raise ValueError('store "redis" needs a redis_url')
        return self

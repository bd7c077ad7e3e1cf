"""Pydantic models for the ``cache:`` section of ``gateway.yaml`` and per-model overrides.

Kept apart from ``models.py`` so cache settings evolve without touching the core models;
``GatewayConfig.cache`` embeds ``CacheSettings`` and ``PublicModel.cache`` a ``CacheOverride``.
Like every config model they forbid unknown keys. The behaviour is described in docs/cache.md.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CacheMode = Literal["deterministic", "always"]
CacheEndpoint = Literal["chat/completions", "completions", "embeddings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheOverride(_Strict):
    """A model's own cache settings; an unset field inherits ``cache.*``."""

    enabled: bool | None = Field(None, description=(
        "cache this model (even when cache.enabled is false, and vice versa)"))
    ttl_s: float | None = Field(None, gt=0, description="seconds an entry lives")
    mode: CacheMode | None = Field(None, description=(
        "deterministic (only requests with temperature 0 or a seed) or always"))


class CacheSettings(_Strict):
    """Exact-match response cache (docs/cache.md); off by default, a model can still opt in."""

    enabled: bool = Field(False, description="cache every model unless its models.<name>.cache.enabled says otherwise")
    store: Literal["memory", "redis"] = Field("memory", description=(
        "memory (an LRU in this process) or redis (shared by every instance; needs redis_url)"))
    redis_url: str | None = Field(None, repr=False, description=(
        "redis://host:6379/0 (may hold a password: masked in /admin/config)"))
    namespace: str = Field("v1", min_length=1, max_length=64, description=(
        "part of every key; change it to invalidate everything at once"))
    ttl_s: float = Field(3600.0, gt=0, description="default entry lifetime in seconds")
    max_ttl_s: float | None = Field(None, gt=0, description="cap on the per-request x-gateway-cache-ttl header")
    mode: CacheMode = Field("deterministic", description=(
        "deterministic (only requests with temperature 0 or a seed) or always"))
    max_bytes: int = Field(256 * 1024 * 1024, ge=0, description="memory store bound (LRU eviction beyond it)")
    max_entry_bytes: int = Field(8 * 1024 * 1024, ge=1, description="larger answers are not stored")
    coalesce: bool = Field(True, description="identical concurrent requests share one upstream call")
    endpoints: list[CacheEndpoint] = Field(default_factory=lambda: list(get_args(CacheEndpoint)),
                                           description="the /v1 endpoints that are cached")
    vary_headers: list[str] = Field(default_factory=list, description=(
        "request headers whose values are part of the key (those routing rules match on are added)"))
    redis_timeout_s: float = Field(0.25, gt=0, description=(
        "per-operation and pool-wait timeout (a slow Redis means uncached, never an error)"))
    redis_max_connections: int = Field(32, ge=1, description="size of the Redis connection pool")
    redis_retry_s: float = Field(1.0, ge=0, description="after a Redis failure, how long the cache skips Redis")

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
    def _redis_needs_url(self) -> CacheSettings:
        if self.store == "redis" and not self.redis_url:
            raise ValueError('store "redis" needs a redis_url')
        return self

"""Pydantic models for the ``cache:`` section of ``gateway.yaml`` and per-model overrides.

Kept apart from ``models.py`` so cache settings evolve without touching the core models;
``GatewayConfig.cache`` embeds ``CacheSettings`` and ``PublicModel.cache`` a ``CacheOverride``.
Like every config model they forbid unknown keys. The behaviour is described in docs/cache.md.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CacheMode = Literal["deterministic", "always"]
CacheEndpoint = Literal["chat/completions", "completions", "embeddings"]
QuestionRole = Literal["system", "developer", "user", "assistant", "tool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SemanticOverride(_Strict):
    """A model's semantic cache (``models.<name>.cache.semantic``); unset fields inherit ``cache.semantic.*``."""

    enabled: bool = Field(True, description="serve this model's requests from near-identical earlier ones")
    embedding_model: str | None = Field(None, description=(
        "public embeddings model of this gateway that embeds the question"))
    max_distance: float | None = Field(None, ge=0, le=2, description=(
        "largest cosine distance between two questions that still counts as the same question"))
    max_age_s: float | None = Field(None, gt=0, description="serve only entries at most this many seconds old")
    ttl_s: float | None = Field(None, gt=0, description="seconds an entry is kept (default: the model's cache ttl_s)")
    roles: list[QuestionRole] | None = Field(None, min_length=1, description=(
        "chat messages whose text is the question (embedded); the text of the others must match exactly"))


class SemanticSettings(_Strict):
    """Defaults of every model's semantic cache (``cache.semantic``); a model opts in with
    ``models.<name>.cache.semantic``. Needs telemetry (entries live in ClickHouse)."""

    embedding_model: str | None = Field(None, description=(
        "public embeddings model of this gateway that embeds questions"))
    max_distance: float = Field(0.1, ge=0, le=2, description=(
        "largest cosine distance between two questions that still counts as the same question"))
    max_age_s: float | None = Field(None, gt=0, description="serve only entries at most this many seconds old")
    ttl_s: float | None = Field(None, gt=0, description="seconds an entry is kept (default: the model's cache ttl_s)")
    roles: list[QuestionRole] = Field(default_factory=lambda: list[QuestionRole](["user"]), min_length=1, description=(
        "chat messages whose text is the question (embedded); the text of the others must match exactly"))
    embed_timeout_s: float = Field(2.0, gt=0, description=(
        "longest wait for the question's embedding (then: a miss, never an error)"))
    lookup_timeout_s: float = Field(0.25, gt=0, description=(
        "longest wait for the nearest-entry query (then: a miss, never an error)"))


class CacheOverride(_Strict):
    """A model's own cache settings; an unset field inherits ``cache.*``."""

    enabled: bool | None = Field(None, description=(
        "cache this model (even when cache.enabled is false, and vice versa)"))
    ttl_s: float | None = Field(None, gt=0, description="seconds an entry lives")
    mode: CacheMode | None = Field(None, description=(
        "deterministic (only requests with temperature 0 or a seed) or always"))
    semantic: SemanticOverride | None = Field(None, description=(
        "serve near-identical questions from the cache too (docs/cache.md#semantic-cache)"))


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
    semantic: SemanticSettings = Field(SemanticSettings(), description=(
        "defaults of the semantic cache a model opts into with models.<name>.cache.semantic"))

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


def semantic_problems(config: Any) -> list[str]:
    """What a ``GatewayConfig`` gets wrong about semantic caches: an embeddings model that is not
    one of its public models (or is a chain), a model whose cache is off, telemetry off (the
    entries live in the telemetry store)."""
    problems: list[str] = []
    defaults = config.cache.semantic
    for name, model in config.models.items():
        o = model.cache
        sem = o.semantic if o is not None else None
        if sem is None or not sem.enabled:
            continue
        where = f"models.{name}.cache.semantic"
        embed = sem.embedding_model or defaults.embedding_model
        if not embed:
            problems.append(f"{where}.embedding_model: required (here or in cache.semantic.embedding_model)")
        elif embed not in config.models:
            problems.append(f'{where}.embedding_model: unknown model "{embed}" (a public model of this gateway)')
        elif config.models[embed].chain is not None:
            problems.append(f'{where}.embedding_model: "{embed}" is a chain, not an embeddings model')
        if not (config.cache.enabled if o is None or o.enabled is None else o.enabled):
            problems.append(f"{where}: the semantic cache needs the model's cache on "
                            f"(models.{name}.cache.enabled or cache.enabled)")
        if not config.telemetry.enabled:
            problems.append(f"{where}: needs telemetry (its entries live in the telemetry store); "
                            "telemetry.enabled is false")
    return problems

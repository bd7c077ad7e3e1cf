"""Pydantic models for ``gateway.yaml``.

Every model forbids unknown keys so that a typo is an error naming its path, not a silently
ignored setting. Cross-references (a model target naming a backend) are checked by
``GatewayConfig``'s validator so the error carries the full path, e.g.
``models.chat-fast.targets[0].backend: unknown backend "vlm-a"``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.cache import CacheOverride, CacheSettings
from gateway.config.access import AuthSettings, LimitSettings, PluginSpec, VirtualKey, access_problems
from gateway.config.prompts import PromptSettings
from gateway.config.chains import ChainSettings
from gateway.config.observability import ObservabilitySettings
from gateway.config.telemetry import PricingSettings, TelemetrySettings
from gateway.config.vllm import VllmLaunch, VllmLoadSettings, VllmScrape, vllm_problems


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

    ``ttft_ms``: delay before the first chunk (ms). ``itl_ms``: delay before each later chunk
    (ms); a non-streamed answer takes as long as the whole stream would. ``tokens``: words in a
    text answer (capped by the request's ``max_tokens``).
    ``chunk_tokens``: tokens per streamed chunk. ``usage``: whether responses report usage
    (off simulates a backend that never does). ``embedding_dims``: vector size for embeddings.
    """

    ttft_ms: float = Field(0.0, ge=0)
    itl_ms: float = Field(0.0, ge=0)
    latency_ms: float = Field(0.0, ge=0, description="extra delay before every answer, embeddings included")
    tokens: int = Field(16, ge=0)
    chunk_tokens: int = Field(1, ge=1)
    usage: bool = True
    embedding_dims: int = Field(8, ge=1)


class Backend(_Strict):
    """One upstream: an OpenAI-compatible HTTP API, a vLLM server, Anthropic's Messages API,
    Azure OpenAI, or the in-process mock.

    ``base_url`` includes the API prefix (``https://api.openai.com/v1``,
    ``https://api.anthropic.com/v1``); request paths are appended to it without their ``/v1``
    prefix. For ``azure`` it is the resource endpoint (``https://NAME.openai.azure.com``) and
    the target's model is the deployment name. ``api_key`` is normally ``${ENV_VAR}``.
    """

    type: Literal["openai", "vllm", "mock", "anthropic", "azure"]
    base_url: str | None = None
    api_key: str | None = Field(None, repr=False)
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    mock: MockSettings = MockSettings()
    api_version: str | None = Field(None, description=(
        "azure: the api-version query parameter (default 2024-10-21); "
        "anthropic: the anthropic-version header (default 2023-06-01)"))
    default_max_tokens: int = Field(4096, ge=1, description="anthropic: max_tokens when the caller sends none")
    vllm: VllmScrape | None = Field(None, description="vllm: metrics scraping (on by default; docs/vllm.md)")
    launch: VllmLaunch | None = Field(None, description="vllm: a server the gateway starts (docs/vllm.md)")

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_as_text(cls, value):
        # YAML reads an unquoted 2024-10-21 as a date; the API wants the text.
        return value.isoformat() if isinstance(value, (date, datetime)) else value

    @model_validator(mode="after")
    def _needs_url(self) -> "Backend":
        if self.type != "mock" and not self.base_url:
            raise ValueError(f'backend type "{self.type}" needs a base_url')
        return self


class Target(_Strict):
    """A backend plus the model name that backend knows it by.

    ``weight``: share for the ``weighted`` strategy (relative). ``priority``: order for the
    ``priority`` strategy (lower first; ties keep list order). ``context_window``: the
    model's context in tokens; a target too small for the estimated prompt + ``max_tokens``
    is skipped, and a context-length error moves to a larger one.
    """

    backend: str
    model: str | None = Field(None, description="upstream model name; defaults to the public name")
    weight: float = Field(1.0, ge=0)
    priority: int = 0
    context_window: int | None = Field(None, gt=0)


Strategy = Literal["weighted", "priority", "least-latency", "least-busy", "vllm-load"]
FailureClass = Literal["connect", "timeout", "5xx", "429", "context_length_exceeded"]


class RetryPolicy(_Strict):
    """Retries of one target before moving on.

    ``attempts``: tries per target (1 = no retry). Backoff before retry *n* is
    ``min(max_backoff_ms, base_backoff_ms * 2**(n-1))`` with full jitter; a 429's
    ``Retry-After`` is honoured up to ``max_retry_after_ms``. ``deadline_ms`` bounds the whole
    attempt loop (all targets). ``retry_on``: failure classes worth retrying on the same target.
    """

    attempts: int = Field(2, ge=1, le=10)
    base_backoff_ms: float = Field(100.0, ge=0)
    max_backoff_ms: float = Field(2000.0, ge=0)
    max_retry_after_ms: float = Field(5000.0, ge=0)
    deadline_ms: float = Field(60000.0, gt=0)
    retry_on: list[FailureClass] = Field(default_factory=lambda: ["connect", "timeout", "5xx", "429"])


class CircuitBreakerSettings(_Strict):
    """Per-target circuit breaker.

    Opens after ``consecutive_failures`` failures in a row, or when the failure rate over the
    last ``window_s`` seconds exceeds ``error_rate`` with at least ``min_requests`` requests.
    While open the target is skipped; after ``cooldown_s`` one probe request (half-open)
    decides whether it closes again.
    """

    enabled: bool = True
    consecutive_failures: int = Field(5, ge=1)
    error_rate: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(30.0, gt=0)


class PublicModel(_Strict):
    """A public model name as clients see it, served by one or more targets.

    ``strategy`` orders the targets per request; the attempt loop tries them in that order,
    moving on for the failure classes in ``fallback_on``.
    """

    targets: list[Target] = Field(default_factory=list)
    strategy: Strategy = "priority"
    retry: RetryPolicy | None = None
    fallback_on: list[FailureClass] | None = None
    owned_by: str = "llm-gateway"
    prompt: str | None = Field(None, description="prompt injected into every chat request: name[@label|@version]")
    cache: CacheOverride | None = None  # per-model cache settings (docs/cache.md)
    chain: str | None = Field(None, description="serve this chain (chains/<name>.yaml) instead of targets")

    @model_validator(mode="after")
    def _targets_or_chain(self) -> "PublicModel":
        if self.chain is not None:
            if self.targets or self.prompt:
                raise ValueError("a chain model has no `targets` or `prompt` (its steps name models and prompts)")
        elif not self.targets:
            raise ValueError("targets: a model needs at least one target (or `chain: NAME`)")
        return self


class RouteMatch(_Strict):
    """Conditions of a routing rule; all given conditions must hold.

    ``model``: glob on the requested model. ``headers``: header → exact value.
    ``header_regex``: header → regular expression (``re.search``). ``metadata``: key → value
    from the caller metadata. ``tenant`` / ``api_key_id`` / ``prompt_id``: exact (globs
    allowed). ``stream``: true/false. ``min_prompt_tokens`` / ``max_prompt_tokens``: bounds on
    the estimated prompt tokens (tiktoken).
    """

    model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    header_regex: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    tenant: str | None = None
    api_key_id: str | None = None
    prompt_id: str | None = None
    stream: bool | None = None
    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)


class RouteRule(_Strict):
    """One routing rule: when ``match`` holds, use public ``model`` instead, or override the
    model's ``targets`` / ``strategy``. Rules are tried in order; the first match wins."""

    name: str
    match: RouteMatch = RouteMatch()
    model: str | None = None
    targets: list[Target] | None = None
    strategy: Strategy | None = None

    @model_validator(mode="after")
    def _has_action(self) -> "RouteRule":
        if self.model is None and self.targets is None and self.strategy is None:
            raise ValueError("a rule needs `model`, `targets` or `strategy`")
        return self


class RoutingSettings(_Strict):
    """Defaults for every public model: retry policy, fallback classes, circuit breaker.

    ``seed``: fix the random source (weighted choice, exploration) for reproducible tests.
    ``exploration``: share of ``least-latency`` decisions that try a random target.
    ``ewma_alpha``: weight of the newest latency sample in the EWMA.
    """

    retry: RetryPolicy = RetryPolicy()
    fallback_on: list[FailureClass] = Field(
        default_factory=lambda: ["connect", "timeout", "5xx", "429", "context_length_exceeded"])
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    exploration: float = Field(0.05, ge=0, le=1)
    ewma_alpha: float = Field(0.3, gt=0, le=1)
    seed: int | None = None
    redis_url: str | None = Field(None, description="share circuit state between instances")
    vllm_load: VllmLoadSettings = VllmLoadSettings()  # the vllm-load strategy (docs/vllm.md)


class ServerSettings(_Strict):
    """HTTP front settings.

    ``body_limit_bytes``: largest accepted request body (413 above it).
    ``forward_headers``: client request headers passed to the upstream (names or globs such
    as ``x-team-*``, case-insensitive). ``Authorization`` is never forwarded.
    ``trusted_proxies``: the reverse proxies in front of the gateway; only their
    ``X-Forwarded-*`` headers are believed. ``cors_origins``: the web origins whose pages may
    call the gateway from a browser (docs/access.md).
    """

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    body_limit_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    forward_headers: list[str] = Field(default_factory=list)
    reload_interval_s: float = Field(1.0, ge=0, description="how often the config file is checked; 0: only SIGHUP")
    admin_key: str | None = Field(None, repr=False, description=(
        "bearer key for /admin/* (e.g. ${GATEWAY_ADMIN_KEY}); unset: admin endpoints answer local requests only "
        "(docs/access.md)"))
    trusted_proxies: list[str] = Field(default_factory=list, description=(
        "addresses/CIDRs of reverse proxies whose X-Forwarded-For/-Proto/-Host headers are believed"))
    cors_origins: list[str] = Field(default_factory=list, description=(
        "browser origins (scheme://host[:port]) allowed to call the gateway; none: no CORS headers"))

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)") from None
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"https?://[^/?#\s*]+/?", item, re.IGNORECASE):
                raise ValueError(f"{item!r} is not an origin: scheme://host[:port], no path, no wildcard "
                                 "(e.g. https://app.example.com)")
        return [item.rstrip("/").lower() for item in value]


class GatewayConfig(_Strict):
    """The whole of ``gateway.yaml``."""

    server: ServerSettings = ServerSettings()
    backends: dict[str, Backend] = Field(default_factory=dict)
    models: dict[str, PublicModel] = Field(default_factory=dict)
    routes: list[RouteRule] = Field(default_factory=list)
    routing: RoutingSettings = RoutingSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    pricing: PricingSettings = PricingSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    prompts: PromptSettings = PromptSettings()
    chains: ChainSettings = ChainSettings()
    cache: CacheSettings = CacheSettings()
    auth: AuthSettings = AuthSettings()
    keys: list[VirtualKey] = Field(default_factory=list)
    limits: LimitSettings = LimitSettings()
    plugins: list[PluginSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_links(self) -> "GatewayConfig":
        problems = []
        known = ", ".join(sorted(self.backends)) or "none defined"

        def check_targets(where: str, targets: list[Target]) -> None:
            for i, target in enumerate(targets):
                if target.backend not in self.backends:
                    problems.append(f'{where}.targets[{i}].backend: unknown backend "{target.backend}"'
                                    f" (known: {known})")

        for name, model in self.models.items():
            check_targets(f"models.{name}", model.targets)
        for i, rule in enumerate(self.routes):
            if rule.targets is not None:
                check_targets(f"routes[{i}]", rule.targets)
            if rule.model is not None and rule.model not in self.models:
                problems.append(f'routes[{i}].model: unknown model "{rule.model}"')
        names = [r.name for r in self.routes]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f'routes[{i}].name: duplicate rule name "{name}"')
        problems.extend(access_problems(self))
        problems.extend(vllm_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

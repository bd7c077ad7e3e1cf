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
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from gateway.config.access import AuthSettings, LimitSettings, PluginSpec, VirtualKey, access_problems
from gateway.config.adapters import Adapter, adapter_problems
from gateway.config.bias import BiasSettings
from gateway.config.cache import CacheOverride, CacheSettings, semantic_problems
from gateway.config.chains import ChainSettings
from gateway.config.evaluations import EvaluationSettings
from gateway.config.observability import ObservabilitySettings
from gateway.config.prompts import PromptSettings
from gateway.config.responses import ResponsesSettings
from gateway.config.telemetry import PricingSettings, TelemetrySettings
from gateway.config.vllm import VllmLaunch, VllmLoadSettings, VllmScrape, vllm_problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Upstream timeouts of a backend, in seconds."""

    connect: float = Field(10.0, gt=0, description="seconds to open the TCP/TLS connection")
    first_byte: float = Field(120.0, gt=0, description=(
        "seconds from sending the request until the response headers (and, for a stream, its first bytes) arrive; "
        "504 after"))
    read: float = Field(120.0, gt=0, description=(
        "longest silence in seconds between two reads of a body (mid-stream: an SSE error event)"))
    total: float = Field(600.0, gt=0, description="seconds for the whole exchange, stream included")


class MockSettings(_Strict):
    """Behaviour of the built-in deterministic ``mock`` backend (demos, tests, load tests)."""

    ttft_ms: float = Field(0.0, ge=0, description="delay before the first chunk (ms)")
    itl_ms: float = Field(0.0, ge=0, description=(
        "delay before each later chunk (ms); a non-streamed answer takes as long as the whole stream would"))
    latency_ms: float = Field(0.0, ge=0, description="extra delay before every answer, embeddings included")
    tokens: int = Field(16, ge=0, description="words in a text answer (capped by the request's max_tokens)")
    chunk_tokens: int = Field(1, ge=1, description="tokens per streamed chunk")
    usage: bool = Field(True, description="report usage; false behaves like a backend that never does")
    embedding_dims: int = Field(8, ge=1, description="length of each embedding vector")


class Backend(_Strict):
    """One upstream: an OpenAI-compatible HTTP API, a vLLM server, Anthropic's Messages API,
    Azure OpenAI, or the in-process mock.

    ``base_url`` includes the API prefix (``https://api.openai.com/v1``,
    ``https://api.anthropic.com/v1``); request paths are appended to it without their ``/v1``
    prefix. For ``azure`` it is the resource endpoint (``https://NAME.openai.azure.com``) and
    the target's model is the deployment name.
    """

    type: Literal["openai", "vllm", "mock", "anthropic", "azure"] = Field(description=(
        "the protocol: openai (any OpenAI-compatible API), vllm, anthropic (Messages API), azure (Azure OpenAI) or "
        "mock (built in)"))
    base_url: str | None = Field(None, description=(
        "API root with its prefix (https://api.openai.com/v1); for azure the resource endpoint; required except for "
        "mock"))
    api_key: str | None = Field(None, repr=False, description=(
        "the backend's key, normally ${ENV_VAR}; never logged or shown"))
    timeouts: Timeouts = Field(Timeouts(), description="upstream timeouts")
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description=(
        "extra headers sent with every request to this backend"))
    mock: MockSettings = Field(MockSettings(), description="behaviour of a mock backend")
    api_version: str | None = Field(None, description=(
        "azure: the api-version query parameter (default 2024-10-21); "
        "anthropic: the anthropic-version header (default 2023-06-01)"))
    default_max_tokens: int = Field(4096, ge=1, description="anthropic: max_tokens when the caller sends none")
    vllm: VllmScrape | None = Field(None, description="vllm: metrics scraping (on by default; docs/vllm.md)")
    launch: VllmLaunch | None = Field(None, description="vllm: a server the gateway starts (docs/vllm.md)")
    responses: Literal["native", "translate"] | None = Field(None, description=(
        "/v1/responses: native (the backend serves the Responses API; the default for openai, azure, vllm) or "
        "translate (to Chat Completions and back; always for mock and anthropic)"))

    @field_validator("api_version", mode="before")
    @classmethod
    def _version_as_text(cls, value):
        # YAML reads an unquoted 2024-10-21 as a date; the API wants the text.
        return value.isoformat() if isinstance(value, (date, datetime)) else value

    @field_validator("base_url")
    @classmethod
    def _url_scheme(cls, value: str | None) -> str | None:
        if value and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (e.g. http://{value}), not {value!r}")
        return value

    @model_validator(mode="after")
    def _needs_url(self) -> Backend:
        if self.type != "mock" and not self.base_url:
            raise ValueError(f'backend type "{self.type}" needs a base_url')
        if self.responses == "native" and self.type in ("mock", "anthropic"):
            raise ValueError(f'backend type "{self.type}" does not serve the Responses API: responses must be '
                             '"translate"')
        return self


class Target(_Strict):
    """A backend plus the model name that backend knows it by. A context-length error
    moves only to a target with a larger ``context_window``.
    """

    backend: str = Field(description="name of a backend under backends")
    model: str | None = Field(None, description="upstream model name; defaults to the public name")
    weight: float = Field(1.0, ge=0, description="relative share for the weighted strategy")
    priority: int = Field(0, description="order for the priority strategy: lower first, ties in list order")
    context_window: int | None = Field(None, gt=0, description=(
        "the model's context in tokens: a smaller target than the estimated prompt + max_tokens is skipped"))


Strategy = Literal["weighted", "priority", "least-latency", "least-busy", "vllm-load"]
_FailureName = Literal["connect", "timeout", "5xx", "429", "context_length_exceeded", "not_found"]
_RETRY_ON: tuple[_FailureName, ...] = ("connect", "timeout", "5xx", "429")  # retried by default
# YAML reads an unquoted 429 as a number: accept it as the class "429" (and say so in the schema).
FailureClass = Annotated[_FailureName, BeforeValidator(
    lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v,
    json_schema_input_type=_FailureName | Literal[429])]


class RetryPolicy(_Strict):
    """Retries of one target before moving on: exponential backoff with full jitter,
    within one deadline for all targets.
    """

    attempts: int = Field(2, ge=1, le=10, description="tries per target (1: no retry)")
    base_backoff_ms: float = Field(100.0, ge=0, description=(
        "backoff before retry n is up to min(max_backoff_ms, base_backoff_ms × 2^(n-1)), full jitter"))
    max_backoff_ms: float = Field(2000.0, ge=0, description="cap on one backoff")
    max_retry_after_ms: float = Field(5000.0, ge=0, description=(
        "a 429's Retry-After is honoured up to this; a longer one moves to the next target"))
    deadline_ms: float = Field(60000.0, gt=0, description="bound on the whole attempt loop, all targets together")
    retry_on: list[FailureClass] = Field(default_factory=lambda: list(_RETRY_ON), description=(
        "failure classes retried on the same target (connect, timeout, 5xx, 429, context_length_exceeded, "
        "not_found)"))


class CircuitBreakerSettings(_Strict):
    """Per-target circuit breaker: while open the target is skipped; after
    ``cooldown_s`` one probe request (half-open) decides whether it closes again.
    """

    enabled: bool = Field(True, description="skip targets that keep failing")
    consecutive_failures: int = Field(5, ge=1, description="failures in a row that open the circuit")
    error_rate: float = Field(0.5, gt=0, le=1, description=(
        "failure share over window_s that opens it (with at least min_requests)"))
    min_requests: int = Field(20, ge=1, description="requests in the window before error_rate applies")
    window_s: float = Field(30.0, gt=0, description="seconds of history error_rate looks at")
    cooldown_s: float = Field(30.0, gt=0, description=(
        "seconds an open circuit waits before one probe request decides whether it closes"))


class PublicModel(_Strict):
    """A public model name as clients see it, served by one or more targets (or by a chain).

    ``strategy`` orders the targets per request; the attempt loop tries them in that order,
    moving on for the failure classes in ``fallback_on``.
    """

    targets: list[Target] = Field(default_factory=list, description=(
        "where the model is served: a backend and the name it knows the model by, in order"))
    strategy: Strategy = Field("priority", description=(
        "how targets are ordered per request (the Routing section of the README)"))
    retry: RetryPolicy | None = Field(None, description="retry policy for this model (default: routing.retry)")
    fallback_on: list[FailureClass] | None = Field(None, description=(
        "failure classes that move on to the next target (default: routing.fallback_on)"))
    owned_by: str = Field("llm-gateway", description="owned_by in GET /v1/models")
    prompt: str | None = Field(None, description="prompt injected into every chat request: name[@label|@version]")
    cache: CacheOverride | None = Field(None, description=(
        "this model's cache settings; unset fields inherit cache.* (docs/cache.md)"))
    chain: str | None = Field(None, description="serve this chain (chains/<name>.yaml) instead of targets")
    sticky: bool = Field(False, description=(
        "weighted: the same caller gets the same first target (the prompts' experiment key: "
        "x-gateway-experiment-key, user, tenant, key), as for a canary between a base model and an adapter"))

    @model_validator(mode="after")
    def _targets_or_chain(self) -> PublicModel:
        if self.chain is not None:
            if self.targets or self.prompt:
                raise ValueError("a chain model has no `targets` or `prompt` (its steps name models and prompts)")
        elif not self.targets:
            raise ValueError("targets: a model needs at least one target (or `chain: NAME`)")
        if self.sticky and self.strategy != "weighted":
            raise ValueError(f"sticky: only for strategy: weighted (this model's strategy is {self.strategy})")
        return self


class RouteMatch(_Strict):
    """Conditions of a routing rule; all given conditions must hold."""

    model: str | None = Field(None, description="glob on the requested model")
    headers: dict[str, str] = Field(default_factory=dict, description="request header → exact value")
    header_regex: dict[str, str] = Field(default_factory=dict, description=(
        "request header → regular expression (searched)"))
    metadata: dict[str, str] = Field(default_factory=dict, description="caller metadata key → value")
    tenant: str | None = Field(None, description="the key's tenant (glob)")
    api_key_id: str | None = Field(None, description="the key's id (glob)")
    prompt_id: str | None = Field(None, description="the selected prompt's name (glob)")
    stream: bool | None = Field(None, description="whether the request streams")
    min_prompt_tokens: int | None = Field(None, ge=0, description=(
        "the estimated prompt tokens are at least this (tiktoken)"))
    max_prompt_tokens: int | None = Field(None, ge=0, description="the estimated prompt tokens are at most this")


class RouteRule(_Strict):
    """One routing rule: when ``match`` holds, use public ``model`` instead, or override the
    model's ``targets`` / ``strategy``. Rules are tried in order; the first match wins."""

    name: str = Field(description="the rule's name, recorded as route_rule in each row (unique)")
    match: RouteMatch = Field(RouteMatch(), description="conditions, all of which must hold")
    model: str | None = Field(None, description="send the request to this public model instead")
    targets: list[Target] | None = Field(None, description="serve it from these targets instead of the model's")
    strategy: Strategy | None = Field(None, description="order the targets with this strategy instead")

    @model_validator(mode="after")
    def _has_action(self) -> RouteRule:
        if self.model is None and self.targets is None and self.strategy is None:
            raise ValueError("a rule needs `model`, `targets` or `strategy`")
        return self


class RoutingSettings(_Strict):
    """Defaults for every public model: retry policy, fallback classes, circuit breaker."""

    retry: RetryPolicy = Field(RetryPolicy(), description="default retry policy of every model")
    fallback_on: list[FailureClass] = Field(
        default_factory=lambda: [*_RETRY_ON, "context_length_exceeded", "not_found"], description=(
        "default failure classes that move on to the next target"))
    circuit_breaker: CircuitBreakerSettings = Field(CircuitBreakerSettings(), description=(
        "per-target circuit breaker"))
    exploration: float = Field(0.05, ge=0, le=1, description=(
        "share of least-latency decisions that try the targets in random order"))
    ewma_alpha: float = Field(0.3, gt=0, le=1, description=(
        "weight of the newest latency sample in the latency average"))
    seed: int | None = Field(None, description=(
        "fix the random source (weighted choice, exploration) for reproducible runs"))
    redis_url: str | None = Field(None, description="share circuit state between instances")
    vllm_load: VllmLoadSettings = Field(VllmLoadSettings(), description=(
        "the vllm-load strategy's weights and prefix affinity (docs/vllm.md)"))


class ServerSettings(_Strict):
    """The HTTP front: address, body limits, forwarded headers, reloads, admin access, proxies, CORS."""

    host: str = Field("127.0.0.1", description="bind address (serve --host overrides)")
    port: int = Field(8080, ge=0, le=65535, description="port (serve --port overrides)")
    body_limit_bytes: int = Field(32 * 1024 * 1024, ge=1024, description=(
        "largest accepted request body (JSON, and any other body than an upload); 413 above it"))
    upload_limit_bytes: int = Field(512 * 1024 * 1024, ge=1024, description=(
        "largest accepted multipart/form-data upload (/v1/files, /v1/uploads/{id}/parts, /v1/audio/*, "
        "/v1/images/edits; OpenAI's file limit); streamed on once its model is read (a form naming it only "
        "after its file is held up to this limit); 413 above it"))
    forward_headers: list[str] = Field(default_factory=list, description=(
        "client headers passed to the backend (names or globs such as x-team-*, any case); never Authorization"))
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


class PassthroughRoute(_Strict):
    """Paths served without a model: a request to a matching path below ``/v1/`` that names no
    ``model`` (``GET``/``DELETE`` on files and batches, a batch created, a moderation or an upload
    without one) goes to this backend, with its key. The key's ``endpoints`` still apply."""

    path: str = Field(description="glob over the path below /v1/ (fnmatch; `*` also crosses `/`), e.g. files*")
    backend: str = Field(description="name of the backend under backends that serves it")

    @field_validator("path")
    @classmethod
    def _glob(cls, value: str) -> str:
        text = value.strip()
        text = text.removeprefix("/v1/") if text.startswith("/v1/") else text.lstrip("/")
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"{value!r} is not a path glob below /v1/ (e.g. \"files*\", \"batches*\")")
        return text


class GatewayConfig(_Strict):
    """The whole of ``gateway.yaml``."""

    server: ServerSettings = Field(ServerSettings(), description="the HTTP front")
    backends: dict[str, Backend] = Field(default_factory=dict, description="upstreams by name")
    models: dict[str, PublicModel] = Field(default_factory=dict, description="public model names clients use, by name")
    routes: list[RouteRule] = Field(default_factory=list, description=(
        "routing rules, tried in order; the first that matches wins"))
    routing: RoutingSettings = Field(RoutingSettings(), description=(
        "retries, fallbacks and circuit breakers for every model"))
    telemetry: TelemetrySettings = Field(TelemetrySettings(), description=(
        "one row per request in ClickHouse (embedded chDB by default)"))
    pricing: PricingSettings = Field(PricingSettings(), description="per-model prices for cost_usd")
    observability: ObservabilitySettings = Field(ObservabilitySettings(), description="traces, metrics and logs")
    prompts: PromptSettings = Field(PromptSettings(), description="where versioned prompt files live")
    chains: ChainSettings = Field(ChainSettings(), description="where chain files live and their limits")
    bias: BiasSettings = Field(BiasSettings(), description="bias monitoring defaults (llm-gateway bias)")
    cache: CacheSettings = Field(CacheSettings(), description="the response cache")
    evaluations: EvaluationSettings = Field(EvaluationSettings(), description=(
        "llm-gateway eval: the judge and embeddings models, and per-candidate gates"))
    responses: ResponsesSettings = Field(ResponsesSettings(), description=(
        "/v1/responses state kept for translated targets (previous_response_id)"))
    auth: AuthSettings = Field(AuthSettings(), description="who may call /v1/*")
    keys: list[VirtualKey] = Field(default_factory=list, description="virtual keys and the policy of each")
    limits: LimitSettings = Field(LimitSettings(), description=(
        "where rate, token, concurrency and budget counters live"))
    plugins: list[PluginSpec] = Field(default_factory=list, description="policy hooks run on each request")
    passthrough: list[PassthroughRoute] = Field(default_factory=list, description=(
        "where requests without a model go, by path (the first glob that matches wins)"))
    adapters: dict[str, Adapter] = Field(default_factory=dict, description=(
        "LoRA adapters loaded on the vLLM servers of their base model, by the name targets use (docs/vllm.md)"))

    @model_validator(mode="after")
    def _cross_links(self) -> GatewayConfig:
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
        for i, route in enumerate(self.passthrough):
            if route.backend not in self.backends:
                problems.append(f'passthrough[{i}].backend: unknown backend "{route.backend}" (known: {known})')
        names = [r.name for r in self.routes]
        for i, name in enumerate(names):
            if name in names[:i]:
                problems.append(f'routes[{i}].name: duplicate rule name "{name}"')
        problems.extend(access_problems(self))
        problems.extend(vllm_problems(self.backends))
        problems.extend(adapter_problems(self))
        problems.extend(semantic_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

"""Pydantic models for the access-and-policy sections of ``gateway.yaml``: ``auth``, ``keys``,
``limits`` and ``plugins`` (``GatewayConfig`` embeds them; see ``docs/access.md``).

A virtual key is stored as the SHA-256 of the key, never the key itself; ``llm-gateway keys
create`` prints a new key once with the config line to paste. Keys may also come from a file
(``auth.keys_file: ${GATEWAY_KEYS_FILE}``), e.g. one a secret manager mounts. Like every config
model these forbid unknown keys, and no validation message ever repeats a key or hash.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# What a key may reach below /v1/ unless it lists its own ``endpoints``: inference only. Account
# and server-admin paths (files, batches, fine_tuning, vLLM's LoRA loading, anything else) are
# forwarded with the backend's own key, so a key gets them only by naming them.
DEFAULT_ENDPOINTS = ("chat/completions", "completions", "embeddings", "responses", "messages",
                     "messages/count_tokens", "moderations",
                     "audio/*", "images/*")
# The name that stands for DEFAULT_ENDPOINTS inside a key's ``endpoints``.
DEFAULT_ALIAS = "default"
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Spend allowed per calendar period (UTC), in USD."""

    day: float | None = Field(None, gt=0, description="USD per UTC day")
    month: float | None = Field(None, gt=0, description="USD per UTC month")


class VirtualKey(_Strict):
    """One client key and the policy of its holder. Rate and token limits are token buckets
    refilled continuously.
    """

    tenant: str = Field(min_length=1, max_length=128, description="the team the key belongs to (rows, limits, rules)")
    sha256: str = Field(repr=False, description=(
        "hex SHA-256 of the key (llm-gateway keys create prints it), never the key itself"))
    id: str | None = Field(None, description=(
        "the name rows, headers and rules use (default key- + the hash's first 12 hex digits)"))
    models: list[str] = Field(default_factory=lambda: ["*"], description="globs of the public models the key may use")
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute")
    max_concurrent: int | None = Field(None, ge=1, description="requests in flight at once")
    budget_usd: Budget | None = Field(None, description="spend allowed per UTC day / month")
    endpoints: list[str] | None = Field(None, description=(
        "globs over the paths below /v1/ the key may use (default stands for the inference endpoints; unset: those "
        "only)"))
    collections: list[str] = Field(default_factory=lambda: ["*"], description=(
        "globs of the retrieval collections the key may search (of its tenant's and the shared ones)"))
    metadata: dict[str, str] = Field(default_factory=dict, description=(
        "added to every row of the key (wins over caller metadata)"))
    disabled: bool = Field(False, description="the key answers 401 as if unknown")

    @field_validator("sha256", mode="before")
    @classmethod
    def _hash(cls, value: Any) -> str:
        text = str(value).strip().lower() if isinstance(value, str) else ""
        if text.startswith("sha256:"):
            text = text[7:]
        if not _HEX64.match(text):
            # Never echo the value: someone may have pasted the key itself.
            raise ValueError("must be the SHA-256 of the key as 64 hex digits (`llm-gateway keys create` "
                             "prints it), never the key itself")
        return text

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError("id: 1-128 characters of letters, digits and . _ : @ -")
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out: list[str] = []
        for pattern in value:
            text = pattern.strip()
            text = text.removeprefix("/v1/") if text.startswith("/v1/") else text.lstrip("/")
            if not text or any(c.isspace() for c in text):
                # The value is not repeated: it may be something pasted into the wrong field.
                raise ValueError(f"entry {len(out)} is not a path glob below /v1/ (e.g. \"files*\", \"audio/*\", "
                                 "\"default\")")
            out.append(text)
        return out

    @property
    def endpoint_patterns(self) -> tuple[str, ...]:
        """The globs in force for paths below ``/v1/`` (``default`` expanded)."""
        if self.endpoints is None:
            return DEFAULT_ENDPOINTS
        out: list[str] = []
        for pattern in self.endpoints:
            for p in DEFAULT_ENDPOINTS if pattern == DEFAULT_ALIAS else (pattern,):
                if p not in out:
                    out.append(p)
        return tuple(out)

    @property
    def listed_endpoint_patterns(self) -> tuple[str, ...]:
        """The globs the key lists itself, not through ``default``: the paths it may also read
        (``GET``/``DELETE``). The default set is inference, which is a POST; reading those paths
        (``GET /v1/chat/completions`` lists the account's stored completions) needs listing."""
        return tuple(p for p in self.endpoints or () if p != DEFAULT_ALIAS)

    @property
    def key_id(self) -> str:
        """The id rows and rules see (``id`` or ``key-`` + 12 hex of the hash)."""
        return self.id or "key-" + self.sha256[:12]

    def allows(self, model: str) -> bool:
        """Whether ``model`` (a public name) matches one of ``models``."""
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


def read_keys_file(path: str) -> list[VirtualKey]:
    """Keys from a YAML/JSON file: a list of key entries or ``{keys: [...]}``.

    Raises ``ValueError`` with ``keys_file[i].field: message`` lines (values never shown).
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"keys_file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ValueError(f"keys_file: {path} is not valid YAML/JSON") from None
    if isinstance(raw, dict):
        raw = raw.get("keys")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"keys_file: {path} must hold a list of keys or {{keys: [...]}}")
    keys, problems = [], []
    for i, entry in enumerate(raw):
        try:
            keys.append(VirtualKey.model_validate(entry))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                where = ".".join(str(p) for p in err["loc"])
                problems.append(f"keys_file[{i}]{'.' + where if where else ''}: "
                                f"{err['msg'].removeprefix('Value error, ')}")
    if problems:
        raise ValueError("\n".join(problems))
    return keys


class AuthSettings(_Strict):
    """Who may call ``/v1/*``."""

    mode: Literal["keys", "none"] | None = Field(None, description=(
        "keys (a known key is required) or none (anyone); unset: keys as soon as any key is configured"))
    keys_file: str | None = Field(None, description=(
        "more keys from a YAML/JSON file (e.g. ${GATEWAY_KEYS_FILE}), same shape as keys; read on each (re)load"))
    stored_objects: Literal["owned", "shared"] = Field("owned", description=(
        "objects stored at a backend through passthrough: (files, batches, uploads, vector stores, stored "
        "responses and completions): owned (each tenant reaches only those its keys created; the admin key "
        "all) or shared (every key with the path reaches all: single-tenant deployments)"))
    stored_objects_ttl_days: float = Field(400.0, gt=0, description=(
        "how long the gateway remembers who created an object; after that only the admin key reaches it"))
    _file_keys: list[VirtualKey] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load_file(self) -> AuthSettings:
        if self.keys_file:
            self._file_keys = read_keys_file(self.keys_file)
        return self

    @property
    def file_keys(self) -> list[VirtualKey]:
        return self._file_keys


class LimitSettings(_Strict):
    """Where rate, token, concurrency and budget counters live and how tokens are estimated."""

    redis_url: str | None = Field(None, repr=False, description=(
        "share counters between instances (redis://host:6379/0); unset: counters in this process"))
    on_redis_error: Literal["allow", "reject"] = Field("allow", description=(
        "while Redis is unreachable: allow (serve unlimited, counted and logged) or reject (503)"))
    redis_timeout_ms: float = Field(250.0, gt=0, description="timeout of one Redis call (ms)")
    redis_connect_timeout_ms: float = Field(1000.0, gt=0, description="timeout to open a Redis connection (ms)")
    redis_pool_timeout_ms: float = Field(1000.0, gt=0, description=(
        "longest wait for a free pooled connection in a burst (ms)"))
    redis_retry_s: float = Field(1.0, ge=0, description=(
        "after a refused connection or three failures in a row, skip Redis this long"))
    redis_max_connections: int = Field(64, ge=1, description="size of the Redis connection pool")
    key_prefix: str = Field("llmgw", min_length=1, max_length=64, description="prefix of the Redis keys")
    default_max_tokens: int = Field(512, ge=0, description=(
        "completion tokens assumed when a request sets no max_tokens (corrected with the real usage)"))
    token_estimate: Literal["chars", "tiktoken"] = Field("chars", description=(
        "chars (~4 characters a token, cheapest) or tiktoken"))
    concurrency_lease_s: float = Field(900.0, gt=0, description=(
        "how long an in-flight slot survives an instance that died"))


class PluginSpec(_Strict):
    """One plugin hook: ``path`` names a class or factory (called with ``settings`` as keyword
    arguments) or a ready object.
    """

    path: str = Field(min_length=1, description=(
        "package.module:attr, path/to/file.py:attr, or a built-in name (pii, blocklist, max_tokens_cap)"))
    name: str | None = Field(None, description="label in counters and logs (default from path)")
    enabled: bool = Field(True, description="false skips it")
    timeout_ms: float = Field(200.0, gt=0, description="bound on each hook call (ms)")
    on_error: Literal["allow", "reject"] = Field("allow", description=(
        "when the hook raises or times out: allow the request (counted and logged) or reject it (503)"))
    tenants: list[str] | None = Field(None, description="run only for these tenants (globs; default all)")
    settings: dict[str, Any] = Field(default_factory=dict, description=(
        "keyword arguments for the plugin's class or factory"))

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        tail = self.path.rsplit(":", 1)[-1] if ":" in self.path else self.path
        return tail.rsplit("/", 1)[-1].removesuffix(".py")


def all_keys(config: Any) -> list[VirtualKey]:
    """Inline ``keys`` plus those of ``auth.keys_file``."""
    return list(config.keys) + list(config.auth.file_keys)


def auth_mode(config: Any) -> str:
    """The effective ``auth.mode``: as set, else ``keys`` when any key exists, else ``none``."""
    mode = config.auth.mode
    if mode is None:
        return "keys" if all_keys(config) else "none"
    return mode


def access_problems(config: Any) -> list[str]:
    """Cross-checks of the access sections (path-qualified, never showing a key or hash)."""
    problems = []
    seen_ids: dict[str, str] = {}
    seen_hashes: dict[str, str] = {}
    inline = len(config.keys)
    for i, key in enumerate(all_keys(config)):
        where = f"keys[{i}]" if i < inline else f"auth.keys_file[{i - inline}]"
        if key.key_id in seen_ids:
            problems.append(f'{where}.id: duplicate key id "{key.key_id}" (also {seen_ids[key.key_id]})')
        else:
            seen_ids[key.key_id] = where
        if key.sha256 in seen_hashes:
            problems.append(f"{where}.sha256: the same key is listed twice (also {seen_hashes[key.sha256]})")
        else:
            seen_hashes[key.sha256] = where
    # Whether each plugin path imports is the plugins feature's check (gateway.plugins.resolve),
    # made when a config is compiled: this layer imports no plugin code.
    labels: dict[str, int] = {}
    for i, spec in enumerate(config.plugins):
        if spec.label in labels:
            problems.append(f'plugins[{i}].name: duplicate plugin name "{spec.label}" '
                            f"(also plugins[{labels[spec.label]}])")
        labels.setdefault(spec.label, i)
    return problems


__all__ = ["DEFAULT_ENDPOINTS", "AuthSettings", "Budget", "LimitSettings", "PluginSpec", "VirtualKey",
           "access_problems", "all_keys", "auth_mode", "read_keys_file"]

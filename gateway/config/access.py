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
DEFAULT_ENDPOINTS = ("chat/completions", "completions", "embeddings", "responses", "messages", "moderations",
                     "audio/*", "images/*")
# The name that stands for DEFAULT_ENDPOINTS inside a key's ``endpoints``.
DEFAULT_ALIAS = "default"
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Spend allowed per calendar period (UTC), in USD: ``day`` and/or ``month``."""

    day: float | None = Field(None, gt=0)
    month: float | None = Field(None, gt=0)


class VirtualKey(_Strict):
    """One client key and the policy of its holder.

    ``sha256``: hex SHA-256 of the key (``llm-gateway keys create`` prints it). ``id``: the
    name rows, headers and rules use (default ``key-`` + the hash's first 12 hex digits, the
    same fingerprint telemetry uses). ``models``: globs of public model names the key may use.
    ``rpm`` / ``tpm``: requests and tokens per minute (token buckets refilled continuously).
    ``max_concurrent``: requests in flight at once. ``budget_usd``: spend per UTC day / month.
    ``endpoints``: globs over the paths below ``/v1/`` the key may use (``files*``, with or
    without the leading ``/v1/``; ``default`` stands for ``DEFAULT_ENDPOINTS``); unset: the
    inference endpoints of ``DEFAULT_ENDPOINTS`` only.
    ``metadata``: added to every row of the key (wins over caller metadata). ``disabled``: the
    key answers 401 as if unknown.
    """

    tenant: str = Field(min_length=1, max_length=128)
    sha256: str = Field(repr=False)
    id: str | None = None
    models: list[str] = Field(default_factory=lambda: ["*"])
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    budget_usd: Budget | None = None
    endpoints: list[str] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    disabled: bool = False

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
        out = []
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
    """Who may call ``/v1/*``.

    ``mode``: ``keys`` (a known virtual key is required) or ``none`` (anyone; local
    development). Unset: ``keys`` as soon as any key is configured, else ``none``.
    ``keys_file``: more keys from a file (normally ``${GATEWAY_KEYS_FILE}``), same shape as
    ``keys``; read when the config is (re)loaded.
    """

    mode: Literal["keys", "none"] | None = None
    keys_file: str | None = None
    _file_keys: list[VirtualKey] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _load_file(self) -> "AuthSettings":
        if self.keys_file:
            self._file_keys = read_keys_file(self.keys_file)
        return self

    @property
    def file_keys(self) -> list[VirtualKey]:
        return self._file_keys


class LimitSettings(_Strict):
    """Where rate, token, concurrency and budget counters live and how tokens are estimated.

    ``redis_url``: share counters between gateway instances (``redis://host:6379/0``; may hold a
    password, never shown); unset: in-process counters. ``on_redis_error``: ``allow`` (fail
    open: serve unlimited while Redis is unreachable, counted and logged) or ``reject`` (503).
    ``redis_timeout_ms``: per-call timeout; ``redis_connect_timeout_ms``: for opening a
    connection; ``redis_pool_timeout_ms``: the longest wait for a free pooled connection (of
    ``redis_max_connections``) in a burst. A refused connection, or three failures in a row,
    make the gateway skip Redis for ``redis_retry_s``. ``default_max_tokens``: completion tokens assumed when a request sets no
    ``max_tokens`` (the estimate is corrected with the real usage afterwards).
    ``token_estimate``: ``chars`` (~4 characters per token, cheapest) or ``tiktoken``.
    ``concurrency_lease_s``: how long an in-flight slot survives an instance that died.
    """

    redis_url: str | None = Field(None, repr=False)
    on_redis_error: Literal["allow", "reject"] = "allow"
    redis_timeout_ms: float = Field(250.0, gt=0)
    redis_connect_timeout_ms: float = Field(1000.0, gt=0)
    redis_pool_timeout_ms: float = Field(1000.0, gt=0)
    redis_retry_s: float = Field(1.0, ge=0)
    redis_max_connections: int = Field(64, ge=1)
    key_prefix: str = Field("llmgw", min_length=1, max_length=64)
    default_max_tokens: int = Field(512, ge=0)
    token_estimate: Literal["chars", "tiktoken"] = "chars"
    concurrency_lease_s: float = Field(900.0, gt=0)


class PluginSpec(_Strict):
    """One plugin hook.

    ``path``: ``package.module:attr`` (imported), ``path/to/file.py:attr`` (loaded by path,
    relative to the working directory) or a built-in name (``pii``, ``blocklist``,
    ``max_tokens_cap``). ``attr`` is a class or factory called with ``settings`` as keyword
    arguments, or a ready object. ``name``: label in counters and logs (default from ``path``).
    ``timeout_ms``: bound on each hook call. ``on_error``: when the hook raises or times out,
    ``allow`` the request (counted and logged) or ``reject`` it (503). ``tenants``: run only for
    these tenants (globs; default all). ``enabled``: false skips it.
    """

    path: str = Field(min_length=1)
    name: str | None = None
    enabled: bool = True
    timeout_ms: float = Field(200.0, gt=0)
    on_error: Literal["allow", "reject"] = "allow"
    tenants: list[str] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

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
    labels: dict[str, int] = {}
    from gateway.plugins import PluginLoadError, resolve

    for i, spec in enumerate(config.plugins):
        if spec.enabled:
            try:
                resolve(spec.path)  # importable (built when installed, with its settings)
            except PluginLoadError as exc:
                problems.append(f"plugins[{i}].path: {exc}")
            except Exception as exc:  # the module itself failed to import
                problems.append(f"plugins[{i}].path: cannot import {spec.path}: {type(exc).__name__}: {exc}")
        if spec.label in labels:
            problems.append(f'plugins[{i}].name: duplicate plugin name "{spec.label}" (also plugins[{labels[spec.label]}])')
        labels.setdefault(spec.label, i)
    return problems


__all__ = ["DEFAULT_ENDPOINTS", "AuthSettings", "Budget", "LimitSettings", "PluginSpec", "VirtualKey", "access_problems", "all_keys",
           "auth_mode", "read_keys_file"]

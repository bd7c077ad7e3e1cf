"""What is cached, for how long, and under which key.

``CachePolicy`` is compiled once per config snapshot: per public model whether the cache
applies, its TTL and mode; which request headers and caller metadata vary the key (the ones
``vary_headers`` names plus every header / metadata key / ``api_key_id`` / ``stream`` that a
routing rule matches on, since those can change which model answers).

The key is ``llm-gateway:cache:<namespace>:<sha256 hex>`` over the canonical request: the
endpoint, the tenant, the varying values and the body after prompt injection with keys
sorted at every level and whole-number floats written as integers, minus the transport-only
fields in ``TRANSPORT_FIELDS``. Every other field, unknown ones included, is part of the key.

``RequestControl.parse(headers)`` reads ``Cache-Control`` (``no-cache``, ``no-store``,
``max-age=N``) and ``x-gateway-cache-ttl: N`` from a request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.config.models import GatewayConfig

# Fields that change how an answer is delivered or attributed, never what it says.
TRANSPORT_FIELDS = frozenset({"stream", "stream_options", "user", "metadata"})
KEY_PREFIX = "llm-gateway:cache:"
TTL_HEADER = "x-gateway-cache-ttl"


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Cache settings in force for one public model: ``enabled``, ``ttl_s`` (seconds),
    ``always`` (False: only deterministic requests — ``temperature: 0`` or a ``seed``)."""

    enabled: bool
    ttl_s: float
    always: bool


def _is_deterministic(body: dict[str, Any]) -> bool:
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, bool) and temperature == 0:
        return True
    return body.get("seed") is not None


def _canonical(value: Any) -> Any:
    """Whole-number floats as ints (``0.0`` and ``0`` are the same JSON number)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class CachePolicy:
    """The cache settings of one ``GatewayConfig``, compiled for the request path.

    ``settings``: the ``cache:`` section. ``any_enabled``: some model (or the default) caches.
    ``for_model(name)`` → ``ModelPolicy``. ``eligible(endpoint, body, policy)``: whether this
    request may be served from / stored in the cache. ``key(ctx)``: the cache key (str).
    """

    def __init__(self, cfg: GatewayConfig):
        s = cfg.cache
        self.settings = s
        self.default = ModelPolicy(s.enabled, s.ttl_s, s.mode == "always")
        self.models: dict[str, ModelPolicy] = {}
        for name, model in cfg.models.items():
            o = model.cache
            self.models[name] = self.default if o is None else ModelPolicy(
                s.enabled if o.enabled is None else o.enabled,
                s.ttl_s if o.ttl_s is None else o.ttl_s,
                (s.mode if o.mode is None else o.mode) == "always")
        self.any_enabled = s.enabled or any(p.enabled for p in self.models.values())
        self.endpoints = frozenset(s.endpoints)
        headers = {h.lower() for h in s.vary_headers}
        metadata: set[str] = set()
        self.vary_stream = False
        self.vary_api_key = False
        for rule in cfg.routes:
            m = rule.match
            headers.update(h.lower() for h in m.headers)
            headers.update(h.lower() for h in m.header_regex)
            metadata.update(m.metadata)
            self.vary_stream |= m.stream is not None
            self.vary_api_key |= m.api_key_id is not None
        self.vary_headers = tuple(sorted(headers))
        self.vary_metadata = tuple(sorted(metadata))
        self.prefix = f"{KEY_PREFIX}{s.namespace}:"
        self.max_ttl_s = s.max_ttl_s
        self.max_entry_bytes = s.max_entry_bytes
        self.coalesce = s.coalesce

    def for_model(self, model: str) -> ModelPolicy:
        """The policy of public model ``model`` (the default one for names not configured)."""
        return self.models.get(model, self.default)

    def eligible(self, endpoint: str, body: dict[str, Any], policy: ModelPolicy) -> bool:
        """Cache applies: enabled for the model, a cached endpoint, deterministic unless ``always``
        (embeddings are deterministic by nature)."""
        if not policy.enabled or endpoint not in self.endpoints:
            return False
        return policy.always or endpoint == "embeddings" or _is_deterministic(body)

    def key(self, endpoint: str, body: dict[str, Any], tenant: str, headers, metadata, api_key_id: str,
            stream: bool) -> str:
        """The cache key of a request. ``headers``: the request's (case-insensitive) headers;
        ``metadata``: caller metadata dict or None. Raises ``TypeError`` for a body orjson
        cannot serialise."""
        canonical = {k: _canonical(v) for k, v in body.items() if k not in TRANSPORT_FIELDS}
        vary: list[Any] = []
        if self.vary_headers:
            vary.append([headers.get(h) if headers is not None else None for h in self.vary_headers])
        if self.vary_metadata:
            vary.append([str(metadata[k]) if metadata and k in metadata else None for k in self.vary_metadata])
        if self.vary_stream:
            vary.append(stream)
        if self.vary_api_key:
            vary.append(api_key_id)
        material = orjson.dumps([endpoint, tenant, vary, canonical], option=orjson.OPT_SORT_KEYS)
        return self.prefix + hashlib.sha256(material).hexdigest()


@dataclass(slots=True)
class RequestControl:
    """Per-request cache control. ``lookup``: may be answered from the cache (not
    ``no-cache``/``no-store``). ``store``: the fresh answer may be stored (not ``no-store``).
    ``max_age``: accept only entries at most this many seconds old (None: any).
    ``ttl_s``: store with this TTL (None: the model's)."""

    lookup: bool = True
    store: bool = True
    max_age: float | None = None
    ttl_s: float | None = None

    @classmethod
    def parse(cls, headers) -> RequestControl:
        """Read ``Cache-Control`` and ``x-gateway-cache-ttl`` (malformed values are ignored)."""
        ctl = cls()
        if headers is None:
            return ctl
        value = headers.get("Cache-Control")
        if value:
            for part in value.lower().split(","):
                part = part.strip()
                if part == "no-cache":
                    ctl.lookup = False
                elif part == "no-store":
                    ctl.lookup = ctl.store = False
                elif part.startswith("max-age="):
                    try:
                        ctl.max_age = max(0.0, float(part[8:].strip().strip('"')))
                    except ValueError:
                        pass
        ttl = headers.get(TTL_HEADER)
        if ttl:
            try:
                seconds = float(ttl)
            except ValueError:
                seconds = None
            if seconds is not None and seconds == seconds:  # not NaN
                if seconds <= 0:
                    ctl.store = False
                else:
                    ctl.ttl_s = seconds
        return ctl

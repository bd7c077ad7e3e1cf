"""What is cached, for how long, and under which key.

``CachePolicy`` is compiled once per config snapshot: per public model whether the cache
applies, its TTL and mode; which request headers and caller metadata vary the key (the ones
``vary_headers`` names plus every header / metadata key / ``api_key_id`` / ``stream`` that a
routing rule matches on, since those can change which model answers).

The key is ``llm-gateway:cache:<namespace>:<sha256 hex>`` over the canonical request: the
endpoint, the tenant, the varying values and the body after prompt injection with keys
sorted at every level and whole-number floats written as integers, minus the transport-only
fields in ``TRANSPORT_FIELDS``. Every other field, unknown ones included, is part of the key.

The semantic layer (``semantic.py``) splits a request into its question (the text it embeds:
``question``) and the rest, which must match exactly: ``semantic_key`` is the same digest as the
exact key's, taken over the request with the question's text fields emptied.

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


SEMANTIC_ENDPOINTS = frozenset({"chat/completions", "completions"})


@dataclass(frozen=True, slots=True)
class SemanticPolicy:
    """A model's semantic cache: the ``embedding_model`` (a public model) that embeds the
    question, the largest cosine ``max_distance`` that still matches, ``max_age_s`` (None: any
    age), ``ttl_s`` of the entries it stores, the chat ``roles`` whose text is the question, and
    the time bounds of the embedding call and of the look-up."""

    embedding_model: str
    max_distance: float
    max_age_s: float | None
    ttl_s: float
    roles: frozenset[str]
    embed_timeout_s: float
    lookup_timeout_s: float


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Cache settings in force for one public model: ``enabled``, ``ttl_s`` (seconds),
    ``always`` (False: only deterministic requests — ``temperature: 0`` or a ``seed``),
    ``semantic`` (None: exact matches only)."""

    enabled: bool
    ttl_s: float
    always: bool
    semantic: SemanticPolicy | None = None


def _is_deterministic(body: dict[str, Any]) -> bool:
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, bool) and temperature == 0:
        return True
    return body.get("seed") is not None


def _semantic(defaults, o, ttl_s: float) -> SemanticPolicy | None:
    """A model's ``SemanticPolicy`` from its ``cache.semantic`` and the ``cache.semantic`` defaults."""
    if o is None or not o.enabled:
        return None
    embed = o.embedding_model or defaults.embedding_model
    if not embed:  # the config refuses this; a hand-built one just has no semantic cache
        return None
    return SemanticPolicy(
        embed, defaults.max_distance if o.max_distance is None else o.max_distance,
        o.max_age_s if o.max_age_s is not None else defaults.max_age_s,
        o.ttl_s or defaults.ttl_s or ttl_s, frozenset(o.roles or defaults.roles),
        defaults.embed_timeout_s, defaults.lookup_timeout_s)


def _text_of(content: Any) -> tuple[str, Any] | None:
    """A message's text and its content with that text emptied; None when it is not text
    (a string, or a list of parts where only ``text`` parts are read)."""
    if isinstance(content, str):
        return content, ""
    if isinstance(content, list):
        texts: list[str] = []
        emptied: list[Any] = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
                part = {**part, "text": ""}
            emptied.append(part)
        return "\n".join(texts), emptied
    return None


def question(endpoint: str, body: dict[str, Any], roles: frozenset[str]) -> tuple[str, dict[str, Any]] | None:
    """The text that defines a request's question, and the request with that text emptied
    (what must match exactly). Chat: the text of the messages whose role is in ``roles`` (string
    contents and ``text`` parts; parts joined by line breaks, messages by blank lines);
    completions: the prompt (a string or a list of strings). None when the request has no such
    text, or it is not plain text (token ids)."""
    if endpoint == "chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        texts: list[str] = []
        rest: list[Any] = []
        for m in messages:
            if isinstance(m, dict) and m.get("role") in roles and m.get("content") is not None:
                split = _text_of(m["content"])
                if split is None:
                    return None
                texts.append(split[0])
                m = {**m, "content": split[1]}
            rest.append(m)
        text = "\n\n".join(t for t in texts if t)
        return (text, {**body, "messages": rest}) if text.strip() else None
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return (prompt, {**body, "prompt": ""}) if prompt.strip() else None
        if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            text = "\n\n".join(prompt)
            return (text, {**body, "prompt": [""] * len(prompt)}) if text.strip() else None
    return None


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
            if o is None:
                self.models[name] = self.default
                continue
            ttl_s = s.ttl_s if o.ttl_s is None else o.ttl_s
            self.models[name] = ModelPolicy(s.enabled if o.enabled is None else o.enabled, ttl_s,
                                            (s.mode if o.mode is None else o.mode) == "always",
                                            _semantic(s.semantic, o.semantic, ttl_s))
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
        # A semantic entry's row keeps its question's text only where rows keep request bodies.
        bodies = cfg.telemetry.bodies
        self.keep_question = bodies.request
        self.question_max_bytes = bodies.max_bytes

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

    def semantic_key(self, endpoint: str, rest: dict[str, Any], tenant: str, headers, metadata, api_key_id: str,
                     stream: bool) -> str:
        """What must match besides the question: the exact key's digest (without its prefix) of
        ``rest``, the request with its question's text emptied (``question``), as 64 hex
        digits (the namespace is a column of its own). Raises ``TypeError`` like ``key``."""
        return self.key(endpoint, rest, tenant, headers, metadata, api_key_id, stream)[len(self.prefix):]


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

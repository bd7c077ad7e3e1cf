"""``CacheEntry``: one cached answer, its wire format for Redis, and how it is served.

An entry is either a JSON body (``kind == "json"``) or a complete SSE stream as the client
received it (``kind == "sse"``: every event up to and including ``data: [DONE]``, or up to its
clean end when the backend closed a complete stream without ``[DONE]``).
``has_usage`` says whether that stream carries the usage chunk and ``"usage":null`` members
(the original client asked for ``include_usage``); ``usage`` is the OpenAI usage object,
kept either way so a later client that asks for usage gets it. Served as:

- the stored form when it matches (a stream replayed byte for byte, ids included);
- converted otherwise (``gateway.cache.convert``): a stream for a JSON request is assembled
  into one body; a JSON body for a stream request becomes synthesised chunks; a stream for a
  client with the other ``include_usage`` choice gets the usage chunk added or removed.

Converted forms are computed on demand and remembered on the entry (bounded: at most three).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.cache.convert import assemble_json, convert_stream, synthesize_sse

JSON = "json"
SSE = "sse"
_MAGIC = b"LGC1"
# Bytes an entry costs in memory besides its body, as tracemalloc measured them: the entry, its
# usage dict, the store's key (a 64-character hex digest), its LRU node and expiry (~560 B).
ENTRY_OVERHEAD = 600


class CacheEntry:
    """A cached answer.

    ``kind``: ``"json"`` or ``"sse"``. ``endpoint``: ``chat/completions``, ``completions`` or
    ``embeddings``. ``body``: the JSON body or the whole SSE stream (bytes). ``has_usage``: see
    the module docstring. ``usage``: OpenAI usage dict or None. ``finish_reason``, ``model``:
    for logs. ``created``: Unix epoch seconds when stored. ``latency_ms``: what the original
    answer took end to end (logged as ``cache_saved_ms`` on hits).
    """

    __slots__ = ("kind", "endpoint", "body", "has_usage", "usage", "finish_reason", "model", "created",
                 "latency_ms", "_forms", "on_grow")

    def __init__(self, kind: str, endpoint: str, body: bytes, *, has_usage: bool = False,
                 usage: dict[str, Any] | None = None, finish_reason: str = "", model: str = "",
                 created: float | None = None, latency_ms: float = 0.0):
        self.kind = kind
        self.endpoint = endpoint
        self.body = body
        self.has_usage = has_usage
        self.usage = usage
        self.finish_reason = finish_reason
        self.model = model
        self.created = time.time() if created is None else created
        self.latency_ms = latency_ms
        self._forms: dict[Any, bytes] | None = None
        # Called with (entry, bytes) when a served form (JSON from a stream, SSE from JSON) is
        # kept beside the body: the in-memory store counts it against its bound.
        self.on_grow: Callable[[CacheEntry, int], None] | None = None

    @property
    def size(self) -> int:
        """Bytes this entry is counted for in a store's budget (the forms it keeps included)."""
        forms = self._forms
        return len(self.body) + ENTRY_OVERHEAD + (sum(map(len, forms.values())) if forms else 0)

    def age(self, now: float | None = None) -> float:
        """Seconds since the entry was stored (never negative)."""
        return max(0.0, (time.time() if now is None else now) - self.created)

    # --- serving ------------------------------------------------------------------
    def json_body(self) -> bytes:
        """The answer as one JSON body. Raises ``ValueError`` if a stored stream holds no chunk."""
        if self.kind == JSON:
            return self.body
        return self._form("json", lambda: assemble_json(self.body, self.endpoint, self.usage))

    def sse_body(self, want_usage: bool) -> bytes:
        """The answer as a complete SSE stream for a client with ``include_usage == want_usage``.
        Raises ``ValueError`` if a stored JSON body is not a completion."""
        if self.kind == SSE:
            if want_usage == self.has_usage:
                return self.body
            return self._form(("sse", want_usage),
                              lambda: convert_stream(self.body, self.has_usage, want_usage, self.usage))
        return self._form(("sse", want_usage), lambda: synthesize_sse(self.body, self.endpoint, want_usage))

    def _form(self, which, build) -> bytes:
        forms = self._forms
        if forms is None:
            forms = self._forms = {}
        out = forms.get(which)
        if out is None:
            out = forms[which] = build()
            if self.on_grow is not None:
                self.on_grow(self, len(out))
        return out

    # --- wire format (Redis) -------------------------------------------------------
    def encode(self) -> bytes:
        """``LGC1`` + 4-byte header length + JSON header + body."""
        header = orjson.dumps([self.kind, self.endpoint, self.has_usage, self.usage, self.finish_reason, self.model,
                               self.created, self.latency_ms])
        return _MAGIC + len(header).to_bytes(4, "big") + header + self.body

    @classmethod
    def decode(cls, data: bytes) -> CacheEntry:
        """Inverse of ``encode``. Raises ``ValueError`` on anything else."""
        if not data.startswith(_MAGIC) or len(data) < 8:
            raise ValueError("not a cache entry")
        n = int.from_bytes(data[4:8], "big")
        try:
            kind, endpoint, has_usage, usage, finish, model, created, latency = orjson.loads(data[8:8 + n])
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise ValueError("corrupt cache entry header") from None
        if kind not in (JSON, SSE):
            raise ValueError(f"unknown cache entry kind {kind!r}")
        return cls(kind, endpoint, data[8 + n:], has_usage=bool(has_usage), usage=usage, finish_reason=finish,
                   model=model, created=float(created), latency_ms=float(latency))

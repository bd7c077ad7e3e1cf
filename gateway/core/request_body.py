"""``RequestBody``: the client's JSON request, which knows whether it was changed.

It *is* the decoded JSON object (a ``dict`` subclass), so every reader — stages, plugins,
telemetry, the cache key — uses it as before. It also keeps the client's bytes (``raw``) until it
is ``changed``: a stage that edits the body in place calls ``mutated()``; one that builds a new
body assigns a plain ``dict`` (or a ``RequestBody``) to ``ctx.body``, which ``of()`` reads as
changed. The forwarder asks ``encode_for(model, needs_raw)`` for each target: an unchanged body
sent to the model the client named is the client's own bytes, with no encoding and no copy.
"""

from __future__ import annotations

from typing import Any

import orjson


class RequestBody(dict):
    """The request's JSON object plus ``raw`` (the client's bytes; None once changed)."""

    # ``_encoded``: None while the client's bytes may be forwarded as they are; else the
    # per-model encodings made so far.
    __slots__ = ("raw", "_encoded")

    def __init__(self, data: dict[str, Any] | None = None, raw: bytes | None = None):
        """The client's body (``raw``: its bytes), or one the gateway built (``raw`` None)."""
        super().__init__(data or ())
        self.raw: bytes | None = raw
        self._encoded: dict[str, tuple[bytes, dict]] | None = None if raw is not None else {}

    @property
    def changed(self) -> bool:
        """Whether the body differs from what the client sent (telemetry then logs it re-encoded)."""
        return self.raw is None

    @classmethod
    def of(cls, body: dict[str, Any] | None) -> RequestBody:
        """``body`` as a ``RequestBody``: itself, or a changed copy of a plain dict a stage or
        plugin put on the context."""
        return body if type(body) is cls else cls(body)

    def mutated(self) -> None:
        """Record an in-place change: the upstream gets the body re-encoded, telemetry logs it
        as changed."""
        self.raw = None
        self._encoded = {}

    def reencode(self) -> None:
        """The gateway's own addition for the upstream only (``stream_options.include_usage``):
        re-encode for the upstream, while the logged request stays what the client sent."""
        self._encoded = {}

    def for_target(self, cand: Any) -> tuple[bytes, dict]:
        """``encode_for`` a routing candidate (its upstream model name, its client's needs)."""
        model = cand.upstream_model
        raw = self.raw
        if self._encoded is None and raw is not None and model == self.get("model"):
            return raw, self  # unchanged: forward the client's bytes
        return self.encode_for(model, cand.client.needs_raw)

    def encode_for(self, model: str, needs_raw: bool = True) -> tuple[bytes, dict]:
        """``(bytes, dict)`` of the request as a target serving ``model`` receives it; the bytes
        are ``b""`` when the target encodes the dict itself (``needs_raw`` false)."""
        encoded = self._encoded
        if encoded is None:
            if self.raw is not None and model == self.get("model"):
                return self.raw, self
            encoded = self._encoded = {}
        hit = encoded.get(model)
        if hit is None or (needs_raw and not hit[0]):
            per_target = {**self, "model": model}
            hit = encoded[model] = (orjson.dumps(per_target) if needs_raw else b"", per_target)
        return hit


_new_body = dict.__new__
_fill = dict.update


def client_body(data: dict[str, Any], raw: bytes) -> RequestBody:
    """The client's request: ``data`` decoded from ``raw``. Built without a Python-level
    ``__init__``: it runs once per request."""
    body = _new_body(RequestBody)
    _fill(body, data)
    body.raw = raw
    body._encoded = None
    return body


def logged_bytes(body: dict[str, Any] | None) -> bytes:
    """The request as telemetry logs it: the client's bytes unless a stage changed it."""
    if body is None:
        return b""
    if type(body) is RequestBody and body.raw is not None:
        return body.raw
    return orjson.dumps(body)


def mark_mutated(body: dict[str, Any] | None) -> None:
    """Record an in-place change of ``ctx.body`` (a plain dict put there is read as changed)."""
    if type(body) is RequestBody:
        body.mutated()

"""A config snapshot compiled for the request path.

Everything that can be worked out once per config (backend clients, the public-model table,
the ``/v1/models`` body, the header allow-list) is done here, so handlers only look things up.
"""

from __future__ import annotations

import fnmatch
import re
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson

from gateway.config import ConfigSnapshot
from gateway.core.errors import ModelNotFoundError
from gateway.core.secret_mask import backend_secrets
from gateway.core.tokens import TokenCounter
from gateway.proxy.upstream import BackendClient
from gateway.routing.health import HealthRegistry
from gateway.routing.router import Router

if TYPE_CHECKING:
    from gateway.core.pipeline import Handler

# Credentials of the client are for the gateway; they are never sent upstream.
_NEVER_FORWARD = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "host",
                            "content-length", "content-type", "transfer-encoding", "connection"})


class Runtime:
    """The compiled form of one ``ConfigSnapshot``.

    ``router`` plans each request (``routing.Router``); ``health`` is the target-health
    registry shared across reloads; ``forwarded_headers(headers)`` → the client headers the
    allow-list lets through.
    """

    def __init__(self, snapshot: ConfigSnapshot, session: aiohttp.ClientSession | None,
                 health: HealthRegistry | None = None, tokens: TokenCounter | None = None):
        self.snapshot = snapshot
        cfg = snapshot.config
        self.body_limit = cfg.server.body_limit_bytes
        self.clients = {name: BackendClient(name, b, session) for name, b in cfg.backends.items()}
        self.health = health or HealthRegistry()
        self.tokens = tokens or TokenCounter()
        self.router = Router(cfg, self.clients, self.health,
                             lambda body: self.tokens.count_prompt("chat/completions" if "messages" in body
                                                                   else "completions", body, body.get("model", "")),
                             ewma_alpha=cfg.routing.ewma_alpha)
        # Token estimates are needed on the request path only for these; load encodings early.
        self.needs_tokens = any(r.match.min_prompt_tokens is not None or r.match.max_prompt_tokens is not None
                                for r in cfg.routes) or any(
            t.context_window is not None for m in cfg.models.values() for t in m.targets) or any(
            t.context_window is not None for r in cfg.routes for t in (r.targets or ()))
        created = int(time.time())
        self.models_body = orjson.dumps({"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": m.owned_by}
            for name, m in cfg.models.items()]})
        self.model_bodies = {name: orjson.dumps({"id": name, "object": "model", "created": created,
                                                 "owned_by": m.owned_by}) for name, m in cfg.models.items()}
        patterns = [p.lower() for p in cfg.server.forward_headers]
        self._forward_re = (re.compile("|".join(fnmatch.translate(p) for p in patterns))
                            if patterns else None)
        # The secrets this config holds, masked in upstream error bodies (also partial echoes)
        # before they reach a client or a row, and in stored success bodies and spans (a
        # provider may echo the key it was sent).
        self.secrets = backend_secrets(cfg.backends)
        # The request path composed for this config from the features' active stages
        # (``gateway.app``): ``request_path`` for a client's request, ``step_path`` for one made
        # in-process (a chain step). Set before the runtime is made current.
        self.request_path: Handler
        self.step_path: Handler
        self.stages: tuple = ()  # the active stages of those paths, outermost first
        self.finishers: tuple = ()  # the active features' finishers, run when a request ends
        # What each feature compiled for this config (``Feature.compile``), by feature name.
        self.compiled: dict[str, object] = {}
        self.unknown_model = lambda name: ModelNotFoundError(
            f"The model `{name}` does not exist. Available models: {', '.join(sorted(cfg.models)) or '(none)'}.",
            param="model")

    def forwarded_headers(self, headers) -> dict[str, str] | None:
        """Client request headers allowed upstream by ``server.forward_headers`` (or None)."""
        if self._forward_re is None:
            return None
        out = {}
        for name, value in headers.items():
            low = name.lower()
            if low not in _NEVER_FORWARD and self._forward_re.match(low):
                out[name] = value
        return out or None

"""A config snapshot compiled for the request path.

Everything that can be worked out once per config (backend clients, the public-model table,
the ``/v1/models`` body, the header allow-list) is done here, so handlers only look things up.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from typing import TYPE_CHECKING

import aiohttp
import orjson

from gateway.config import ConfigSnapshot
from gateway.core.errors import ModelNotFoundError
from gateway.core.secret_mask import backend_secrets
from gateway.core.tokens import TokenCounter, prompt_tokens_upper_bound
from gateway.proxy.upstream import BackendClient
from gateway.routing.health import HealthRegistry
from gateway.routing.router import Router

if TYPE_CHECKING:
    from gateway.core.pipeline import Handler

# Credentials of the client are for the gateway; they are never sent upstream.
_NEVER_FORWARD = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "host",
                            "content-length", "content-type", "transfer-encoding", "connection"})


def count_threshold(cfg) -> int | None:
    """The smallest cheap bound at which routing may need a real token count: a rule's
    ``min_prompt_tokens`` (the bound reaching it), ``max_prompt_tokens`` or a target's
    ``context_window`` (the bound passing it). ``None``: no rule or target ever counts."""
    points = [r.match.min_prompt_tokens for r in cfg.routes if r.match.min_prompt_tokens is not None]
    points += [r.match.max_prompt_tokens + 1 for r in cfg.routes if r.match.max_prompt_tokens is not None]
    points += [t.context_window + 1 for m in cfg.models.values() for t in m.targets if t.context_window is not None]
    points += [t.context_window + 1 for r in cfg.routes for t in (r.targets or ()) if t.context_window is not None]
    return min(points, default=None)


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
        self.upload_limit = cfg.server.upload_limit_bytes  # multipart forms: streamed, so they may be larger
        self.clients = {name: BackendClient(name, b, session) for name, b in cfg.backends.items()}
        self.health = health or HealthRegistry()
        self.tokens = tokens or TokenCounter()
        self.router = Router(cfg, self.clients, self.health,
                             lambda body: self.tokens.count_prompt("chat/completions" if "messages" in body
                                                                   else "completions", body, body.get("model", "")),
                             ewma_alpha=cfg.routing.ewma_alpha)
        # The smallest cheap bound (prompt bound + max_tokens) at which a rule or a context window
        # may need a real count; None: routing never counts. Below it the bound settles everything.
        self.count_from = count_threshold(cfg)
        created = self.models_created = int(time.time())
        self.model_entries = {name: {"id": name, "object": "model", "created": created, "owned_by": m.owned_by}
                              for name, m in cfg.models.items()}  # OpenAI's Model objects, in config order
        self.models_body = orjson.dumps({"object": "list", "data": list(self.model_entries.values())})
        self.model_bodies = {name: orjson.dumps(entry) for name, entry in self.model_entries.items()}
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
        # Model-less requests a stage answers itself though ``passthrough:`` routes their path
        # nowhere, as ``"METHOD path"`` (below /v1/; set by a feature's ``compile``: the stored
        # responses of translated turns): read and sent through the stages, not refused as an
        # unknown URL.
        self.own_paths: re.Pattern[str] | None = None
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

    async def load_tokenizer(self, body: dict) -> None:
        """Load, on a thread, the encoding routing will count ``body`` with, when its cheap bound
        says a count may be needed (so the count in ``Router.plan`` never loads on the event loop)."""
        model = body.get("model") or ""
        if self.count_from is None or self.tokens.ready(model):
            return
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        if prompt_tokens_upper_bound(body) + (limit if isinstance(limit, int) else 0) >= self.count_from:
            await asyncio.to_thread(self.tokens.load, model)

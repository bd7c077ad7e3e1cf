"""A config snapshot compiled for the request path.

Everything that can be worked out once per config (backend clients, the public-model table,
the ``/v1/models`` body, the header allow-list) is done here, so handlers only look things up.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass

import aiohttp
import orjson

from gateway.config import ConfigSnapshot
from gateway.errors import ModelNotFoundError
from gateway.upstream import BackendClient

# Credentials of the client are for the gateway; they are never sent upstream.
_NEVER_FORWARD = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie", "host",
                            "content-length", "content-type", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where a public model is served: the backend client and the upstream model name."""

    public_name: str
    client: BackendClient
    upstream_model: str


class Runtime:
    """The compiled form of one ``ConfigSnapshot``.

    ``resolve(model)`` → ``ResolvedModel`` or ``ModelNotFoundError`` (404, listing the public
    models). ``forwarded_headers(headers)`` → the client headers the allow-list lets through.
    """

    def __init__(self, snapshot: ConfigSnapshot, session: aiohttp.ClientSession | None):
        self.snapshot = snapshot
        cfg = snapshot.config
        self.body_limit = cfg.server.body_limit_bytes
        self.clients = {name: BackendClient(name, b, session) for name, b in cfg.backends.items()}
        self.models: dict[str, ResolvedModel] = {}
        for public, model in cfg.models.items():
            target = model.targets[0]
            self.models[public] = ResolvedModel(public, self.clients[target.backend], target.model or public)
        created = int(time.time())
        self.models_body = orjson.dumps({"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": m.owned_by}
            for name, m in cfg.models.items()]})
        self.model_bodies = {name: orjson.dumps({"id": name, "object": "model", "created": created,
                                                 "owned_by": m.owned_by}) for name, m in cfg.models.items()}
        patterns = [p.lower() for p in cfg.server.forward_headers]
        self._forward_re = (re.compile("|".join(fnmatch.translate(p) for p in patterns))
                            if patterns else None)
        self._known = ", ".join(sorted(self.models)) or "(none configured)"

    def resolve(self, model: str) -> ResolvedModel:
        """The target of public model ``model``; raises ``ModelNotFoundError`` (404)."""
        resolved = self.models.get(model)
        if resolved is None:
            raise ModelNotFoundError(
                f"The model `{model}` does not exist. Available models: {self._known}.", param="model")
        return resolved

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

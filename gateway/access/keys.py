"""Virtual keys: how they are made, presented and compiled into per-key policy.

A key is ``sk-gw-`` + 43 URL-safe characters; the config stores only its SHA-256. A client
presents it as ``Authorization: Bearer``, ``api-key`` or ``x-api-key``. ``AccessPolicy`` is
one config's keys compiled for the request path (look-up by hash, model and endpoint globs
with small memo tables), used by the access stage (``gateway.access.auth``) and the CLI.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import secrets

from gateway.access.limits import LimitSpec
from gateway.config import ConfigSnapshot
from gateway.config.access import VirtualKey, all_keys, auth_mode
from gateway.core.errors import AuthenticationError
from gateway.core.pricing import PriceTable

KEY_PREFIX = "sk-gw-"

__all__ = ["KEY_PREFIX", "AccessPolicy", "Grant", "KeyPolicy", "hash_key", "new_key", "presented_key"]


def new_key() -> str:
    """A new random virtual key (``sk-gw-`` + 43 URL-safe characters, 256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 stored in the config for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(headers) -> str:
    """The key a client sent: ``Authorization: Bearer …``, else ``api-key``, else ``x-api-key``."""
    if headers is None:
        return ""
    auth = headers.get("Authorization")
    if auth:
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return (headers.get("api-key") or headers.get("x-api-key") or "").strip()


class KeyPolicy:
    """A ``VirtualKey`` compiled for the request path."""

    __slots__ = ("key_id", "tenant", "metadata", "spec", "limited", "_patterns", "_allowed", "disabled",
                 "endpoints", "read_endpoints", "_endpoint_ok", "admin", "_collections")

    def __init__(self, key: VirtualKey, admin: bool = False):
        self.admin = admin  # the admin key, on stored-object paths (``AccessPolicy.authenticate``)
        self.key_id = key.key_id
        self.tenant = key.tenant
        self.metadata = dict(key.metadata) if key.metadata else None
        budget = key.budget_usd
        self.spec = LimitSpec(key.key_id, key.rpm, key.tpm, key.max_concurrent,
                              budget.day if budget else None, budget.month if budget else None)
        self.limited = self.spec.any
        self._patterns = tuple(key.models)
        self._allowed: dict[str, bool] = {}
        self.disabled = key.disabled
        self.endpoints = key.endpoint_patterns
        self.read_endpoints = key.listed_endpoint_patterns
        self._endpoint_ok: dict[tuple[str, bool], bool] = {}
        self._collections = tuple(key.collections)

    def allows(self, model: str) -> bool:
        ok = self._allowed.get(model)
        if ok is None:
            ok = any(fnmatch.fnmatchcase(model, p) for p in self._patterns)
            if len(self._allowed) < 4096:
                self._allowed[model] = ok
        return ok

    def allows_endpoint(self, endpoint: str, post: bool = True) -> bool:
        """Whether the path below ``/v1/`` matches one of the key's ``endpoints`` globs; for any
        method but POST (``post=False``), one it lists itself (not through ``default``)."""
        ok = self._endpoint_ok.get((endpoint, post))
        if ok is None:
            ok = any(fnmatch.fnmatchcase(endpoint, p) for p in (self.endpoints if post else self.read_endpoints))
            if len(self._endpoint_ok) < 1024:
                self._endpoint_ok[endpoint, post] = ok
        return ok

    def allows_collection(self, name: str) -> bool:
        """Whether the retrieval collection ``name`` matches one of the key's ``collections``
        globs (its tenant's and the shared collections only: ``gateway.retrieval``)."""
        return self.admin or any(fnmatch.fnmatchcase(name, p) for p in self._collections)


class Grant:
    """What the access stage granted one request (``ctx.access``): the key and its reservation."""

    __slots__ = ("key", "tokens", "reserved", "decision")

    def __init__(self, key: KeyPolicy, tokens: int = 0, reserved: bool = False, decision=None):
        self.key = key
        self.tokens = tokens
        self.reserved = reserved
        self.decision = decision


class AccessPolicy:
    """One config's keys and settings, compiled."""

    def __init__(self, snapshot: ConfigSnapshot):
        cfg = snapshot.config
        self.snapshot = snapshot
        self.mode = auth_mode(cfg)
        self.keys = [KeyPolicy(k) for k in all_keys(cfg)]
        self.by_hash = {k.sha256: p for k, p in zip(all_keys(cfg), self.keys)}
        # The admin key reaches every stored object (files, batches…) on the paths that name no
        # model: as a key of no model, every path, no limits, and the ownership checks waived.
        admin_key = cfg.server.admin_key
        self._admin_hash = hashlib.sha256(admin_key.encode()).digest() if admin_key else None
        self._admin = KeyPolicy(VirtualKey(tenant="admin", id="admin", sha256=hash_key(admin_key), models=[],
                                           endpoints=["*"]), admin=True) if admin_key else None
        self.limits = cfg.limits
        self.any_limits = any(p.limited for p in self.keys)
        self.prices = PriceTable(cfg.pricing)
        self.model_names = list(cfg.models)
        self._models = frozenset(cfg.models)
        # Rules with targets of their own serve the names their ``match.model`` glob accepts.
        self._routed = tuple(r.match.model or "*" for r in cfg.routes if r.targets)

    @property
    def admin_policy(self) -> KeyPolicy:
        """The admin as a ``KeyPolicy``: what in-process calls made for the admin run as
        (``gateway.access.auth.delegate``), with or without an admin key (local admin requests)."""
        if self._admin is not None:
            return self._admin
        return KeyPolicy(VirtualKey(tenant="admin", id="admin", sha256="0" * 64, models=[], endpoints=["*"]),
                         admin=True)

    def model_exists(self, model: str) -> bool:
        """Whether ``model`` names something this config serves (a public model, or a name a
        routing rule with its own targets accepts): a key refused for a model that does not
        exist is told so (404), not that it may not use it (403)."""
        return model in self._models or any(fnmatch.fnmatchcase(model, p) for p in self._routed)

    def authenticate(self, headers, admin_ok: bool = False) -> KeyPolicy:
        """The key ``headers`` present; ``admin_ok``: the admin key too (a request naming no
        model, on a ``passthrough:`` path)."""
        token = presented_key(headers)
        if not token:
            raise AuthenticationError(
                "You didn't provide an API key. Send your gateway key in an Authorization header "
                "(Authorization: Bearer YOUR_KEY).", code="invalid_api_key")
        digest = hashlib.sha256(token.encode())
        key = self.by_hash.get(digest.hexdigest())
        if key is None and admin_ok and self._admin_hash is not None and \
                hmac.compare_digest(digest.digest(), self._admin_hash):
            return self._admin  # type: ignore[return-value]  # (set with the hash)
        if key is None or key.disabled:
            # Never repeat the key, not even masked: the message may end up in client logs.
            raise AuthenticationError("Incorrect API key provided. Ask your gateway admin for a valid key.")
        return key

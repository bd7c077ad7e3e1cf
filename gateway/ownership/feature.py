"""Stored-object ownership as a gateway feature: the stage (``gateway.ownership.stage``) on the
path of a config with keys and ``auth.stored_objects: owned`` (the default), the ledger it
reads (``gateway.ownership.ledger``: the limits' Redis, else the cache's, else SQLite in the
data folder), and ``POST /admin/objects``, which adopts objects the ledger does not know::

    {"tenant": "team-a", "ids": ["file-abc", "batch_123"]}   → {"tenant": "team-a", "adopted": 2}

for a tenant some key of the config has (else 400 ``unknown_tenant``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web

from gateway.config.access import auth_mode
from gateway.core.errors import GatewayError, InvalidRequestError, ServiceUnavailableError
from gateway.core.feature import Feature, Routes
from gateway.ownership.ledger import Ledger, RedisLedger, SqliteLedger
from gateway.ownership.stage import OwnershipStage

LEDGER_FILE = "objects.sqlite3"
_JSON = "application/json"


def _where(config, data_dir: str | None) -> tuple:
    """Where ``config`` keeps the ledger: ``("redis", url, prefix, ttl)`` or ``("sqlite", path, ttl)``."""
    ttl = config.auth.stored_objects_ttl_days * 86400
    cache = config.cache
    url = config.limits.redis_url or (cache.redis_url if cache.store == "redis" else None)
    if url:
        return "redis", url, config.limits.key_prefix, ttl
    return "sqlite", config.telemetry.resolved_data_dir(data_dir) / LEDGER_FILE, ttl


def _build(where: tuple) -> Ledger:
    if where[0] == "redis":
        return RedisLedger(where[1], where[2], where[3])
    return SqliteLedger(Path(where[1]), where[2])


class OwnershipFeature(Feature):
    """The ledger (one per place it lives; a reload that moves it opens a new one) and its stage."""

    name = "ownership"

    def __init__(self, data_dir: str | None = None):
        self._data_dir = data_dir
        self.ownership = OwnershipStage()
        self._where: tuple | None = None
        self._retired: list[Ledger] = []
        self._tenants: frozenset[str] = frozenset()  # the config's keys' tenants

    def stage(self, runtime):
        config = runtime.snapshot.config
        return self.ownership if auth_mode(config) == "keys" and config.auth.stored_objects == "owned" else None

    def activate(self, runtime) -> None:
        self._tenants = frozenset(key.tenant for key in runtime.snapshot.config.keys)
        where = _where(runtime.snapshot.config, self._data_dir)
        if where != self._where:  # requests in flight may still use the old one: closed at stop
            if self.ownership.ledger is not None:
                self._retired.append(self.ownership.ledger)
            self._where, self.ownership.ledger = where, _build(where)

    def routes(self, routes: Routes) -> None:
        routes.admin_post("/admin/objects", self._adopt)

    async def _adopt(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        tenant = body.get("tenant") if isinstance(body, dict) else None
        ids = body.get("ids") if isinstance(body, dict) else None
        ledger = self.ownership.ledger
        try:
            if not isinstance(tenant, str) or not tenant or not isinstance(ids, list) or not ids or \
                    not all(isinstance(i, str) and i for i in ids):
                raise InvalidRequestError('Send {"tenant": "<tenant>", "ids": ["<object id>", ...]}.')
            if tenant not in self._tenants:  # a typo would hand the objects to no one who can use them
                raise InvalidRequestError(f"Unknown tenant {tenant!r}: no key of the config has it. Add its key "
                                          "first, then adopt.", param="tenant", code="unknown_tenant")
            if ledger is None:
                raise GatewayError("The ownership ledger is not open yet.")
            try:
                await ledger.record(ids, tenant)
            except Exception as exc:
                raise ServiceUnavailableError(f"The ownership ledger could not be written ({type(exc).__name__}).") \
                    from None
        except GatewayError as exc:
            return web.Response(status=exc.status, body=exc.body(), content_type=_JSON)
        return web.json_response({"tenant": tenant, "adopted": len(ids)})

    async def stop(self, app) -> None:
        await self.ownership.drain()
        ledgers = [*self._retired, *([self.ownership.ledger] if self.ownership.ledger is not None else [])]
        self._retired, self.ownership.ledger = [], None
        await asyncio.gather(*(ledger.close() for ledger in ledgers), return_exceptions=True)


__all__ = ["LEDGER_FILE", "OwnershipFeature"]

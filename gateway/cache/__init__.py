"""Exact-match response cache: memory or Redis, stream replay, single flight, per-request control.

``CacheFeature`` (a ``gateway.core.feature.Feature``) plugs it into the gateway: its stage is the
``CacheStage`` (kept as ``app[CACHE]``), listed in ``gateway.app`` after access, prompts and
plugins so the key is computed on the request as it will be sent, and only for a config where
some model caches (otherwise requests never meet it); each config's ``CachePolicy`` is compiled
when the config is, and the store it needs opened or swapped then, never on the request path;
``GET /admin/cache`` shows counters and store state. Given the gateway's ``ProxyHandlers``, the
stage also gets its semantic layer (``semantic.py``: questions embedded through the gateway's
own embeddings route, entries in the telemetry store).

Modules: ``policy`` (what is cached, keys, ``Cache-Control``), ``entry`` (a cached answer and
its wire format), ``convert`` (stream ⇄ JSON, usage chunk on/off), ``stores`` (memory LRU,
Redis), ``flight`` (single flight), ``semantic`` (near questions), ``stage`` (the stage). See
docs/cache.md.
"""

from __future__ import annotations

from aiohttp import web

from gateway.cache.entry import CacheEntry
from gateway.cache.policy import CachePolicy, RequestControl
from gateway.cache.stage import CacheStage
from gateway.cache.stores import CacheStats, MemoryStore, RedisStore
from gateway.core.feature import Feature, Routes

CACHE = web.AppKey("cache", CacheStage)

__all__ = ["CACHE", "CacheEntry", "CacheFeature", "CachePolicy", "CacheStage", "CacheStats", "MemoryStore",
           "RedisStore", "RequestControl"]


class CacheFeature(Feature):
    """The cache's stage, per-config policy, store lifecycle and admin view."""

    name = "cache"

    def __init__(self, app: web.Application, handlers=None):
        self.cache = app[CACHE] = CacheStage()
        if handlers is not None:
            from gateway.cache.semantic import SemanticLookup
            from gateway.telemetry import QUERY_LANES, SINK

            self.cache.semantic = SemanticLookup(handlers, lambda: app.get(SINK), lambda: app.get(QUERY_LANES),
                                                 self.cache.stats)

    def compile(self, runtime) -> None:
        runtime.compiled[self.name] = CachePolicy(runtime.snapshot.config)

    def stage(self, runtime):
        return self.cache if runtime.compiled[self.name].any_enabled else None

    def activate(self, runtime) -> None:
        self.cache.use(runtime.compiled[self.name])

    def routes(self, routes: Routes) -> None:
        cache = self.cache

        async def admin_cache(request: web.Request) -> web.Response:
            return web.json_response(cache.describe())

        routes.admin_get("/admin/cache", admin_cache)

    async def start(self, app: web.Application) -> None:
        await self.cache.start()

    async def stop(self, app: web.Application) -> None:
        await self.cache.close()

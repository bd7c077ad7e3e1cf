"""Exact-match response cache: memory or Redis, stream replay, single flight, per-request control.

``setup_cache(app, snapshot, stages)`` wires it into the application: a ``CacheStage`` (kept
as ``app[CACHE]``) placed in the stage list as kind ``cache``, which ``StageList`` keeps after
access, prompts and plugins, so the key is computed on the request as it will be sent; its
store opened and closed through ``cleanup_ctx``; and
``GET /admin/cache`` (counters, store state; behind the admin check like every ``/admin`` path).

Modules: ``policy`` (what is cached, keys, ``Cache-Control``), ``entry`` (a cached answer and
its wire format), ``convert`` (stream ⇄ JSON, usage chunk on/off), ``stores`` (memory LRU,
Redis), ``flight`` (single flight), ``stage`` (the stage). See docs/cache.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.auth import check_admin
from gateway.cache.entry import CacheEntry
from gateway.cache.policy import CachePolicy, RequestControl
from gateway.cache.stage import CacheStage
from gateway.cache.stores import CacheStats, MemoryStore, RedisStore
from gateway.config import ConfigSnapshot
from gateway.pipeline import StageList

CACHE = web.AppKey("cache", CacheStage)

__all__ = ["CACHE", "CacheEntry", "CachePolicy", "CacheStage", "CacheStats", "MemoryStore", "RedisStore",
           "RequestControl", "setup_cache"]


def setup_cache(app: web.Application, snapshot: ConfigSnapshot, stages: StageList) -> CacheStage:
    """Install the cache on ``app``; ``stages`` is the app's stage list (``app[STAGES]``).

    The stage goes in as kind ``cache`` (last in ``STAGE_ORDER``: after every stage that may
    change the request, whenever those register). Returns the stage.
    """
    stage = CacheStage()
    app[CACHE] = stage
    stages.place(stage, "cache")

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await stage.start(CachePolicy(snapshot.config))
        yield
        await stage.close()

    app.cleanup_ctx.append(lifecycle)

    async def admin_cache(request: web.Request) -> web.Response:
        denied = check_admin(request, snapshot.config.server.admin_key)
        if denied is not None:
            return denied
        return web.json_response(stage.describe())

    app.router.add_get("/admin/cache", admin_cache)
    return stage

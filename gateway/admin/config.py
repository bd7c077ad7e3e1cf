"""``GET /admin/config``: the config in force (secrets masked), its hash, load time and the last
reload error, as a gateway feature (``gateway.core.feature``), behind the one admin check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.admin.public_config import public_config
from gateway.config import ConfigSnapshot
from gateway.core.feature import Feature, Routes

__all__ = ["ConfigAdmin"]


class ConfigAdmin(Feature):
    """``runtime()``: the ``Runtime`` in force; ``watcher()``: the ``ConfigWatcher``, or ``None``
    for a config that is not a file (then the start-up snapshot is described)."""

    name = "config-admin"

    def __init__(self, snapshot: ConfigSnapshot, runtime: Callable[[], Any], watcher: Callable[[], Any]):
        self._snapshot = snapshot
        self._runtime = runtime
        self._watcher = watcher
        self._started_at = time.time()

    def routes(self, routes: Routes) -> None:
        routes.admin_get("/admin/config", self.admin_config)

    async def admin_config(self, request: web.Request) -> web.Response:
        watcher = self._watcher()
        rt = self._runtime()
        snapshot = self._snapshot
        status = watcher.status() if watcher is not None else {
            "config_hash": snapshot.content_hash, "source": snapshot.source, "loaded_at": self._started_at,
            "reloads": 0, "last_error": None}
        status["config"] = public_config(rt.snapshot.config) if rt is not None else None
        return web.json_response(status)

"""Admin views of routing: ``GET /admin/backends`` (targets, circuit state, EWMAs, in-flight).

Behind the one admin check every ``/admin`` path gets (``gateway.access.feature``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from gateway.config import ConfigSnapshot
from gateway.core.feature import Feature, Routes
from gateway.routing.health import HealthRegistry


class Runtime(Protocol):
    """What these views read of the compiled config in force (``gateway.proxy.runtime.Runtime``):
    routing does not import the proxy layer above it."""

    @property
    def snapshot(self) -> ConfigSnapshot: ...


def backends_handler(runtime: Callable[[], Runtime | None], health: HealthRegistry):
    """Build the handler: each configured backend with its type, and every target's live state
    (``circuit``: closed/open/half_open, ``inflight``, ``ewma_ttft_ms``/``ewma_latency_ms`` in
    ms, ``requests``/``failures`` counted by this process)."""

    async def backends(request: web.Request) -> web.Response:
        rt = runtime()
        cfg = rt.snapshot.config if rt is not None else None
        body = {
            "config_hash": rt.snapshot.content_hash if rt is not None else None,
            "backends": [{"name": name, "type": b.type, "base_url": b.base_url}
                         for name, b in (cfg.backends.items() if cfg else ())],
            "targets": [state.snapshot() for state in health.all()],
        }
        return web.json_response(body)

    return backends


class RoutingAdmin(Feature):
    """``GET /admin/backends`` as a gateway feature (``runtime()``: the ``Runtime`` in force)."""

    name = "routing-admin"

    def __init__(self, runtime: Callable[[], Runtime | None], health: HealthRegistry):
        self._handler = backends_handler(runtime, health)

    def routes(self, routes: Routes) -> None:
        routes.admin_get("/admin/backends", self._handler)

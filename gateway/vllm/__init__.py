"""vLLM fleets: metrics scraping (load snapshots, health gating through the circuit breakers),
managed local servers, and ``GET /admin/vllm``. The ``vllm-load`` strategy that reads the
snapshots lives in ``gateway.routing.vllm_load``; docs/vllm.md describes the whole.

``FleetFeature`` plugs a ``Fleet`` into the gateway (``gateway.core.feature``): started first and
stopped last (after the config watcher), synced with every config made current, and its admin
view. It adds nothing to the request path: routing reads the fleet's load snapshots.
"""

from __future__ import annotations

from aiohttp import web

from gateway.config import ConfigSnapshot
from gateway.core.feature import Feature, Routes
from gateway.routing.health import HealthRegistry
from gateway.vllm.fleet import Fleet

FLEET = web.AppKey("vllm_fleet", Fleet)

__all__ = ["FLEET", "FleetFeature"]


class FleetFeature(Feature):
    """The vLLM fleet. ``data_dir``: the gateway's data folder (managed servers log to
    ``<data_dir>/vllm/<backend>.log`` by default); ``launch_servers``: start the servers of
    ``launch:`` blocks (False in ``--workers`` processes); ``manage_adapters``: load and unload
    the config's adapters on the servers (False in ``eval run``'s gateway)."""

    name = "vllm"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, health: HealthRegistry,
                 *, data_dir: str | None = None, launch_servers: bool = True,
                 manage_adapters: bool = True):
        log_dir = snapshot.config.telemetry.resolved_data_dir(data_dir) / "vllm"
        self.fleet = app[FLEET] = Fleet(health, log_dir, launch_servers=launch_servers,
                                          manage_adapters=manage_adapters)

    def activate(self, runtime) -> None:
        self.fleet.sync(runtime.snapshot.config)

    def routes(self, routes: Routes) -> None:
        fleet = self.fleet

        async def admin_vllm(request: web.Request) -> web.Response:
            return web.json_response(fleet.status())

        routes.admin_get("/admin/vllm", admin_vllm)

    async def start(self, app: web.Application) -> None:
        await self.fleet.start()

    async def stop(self, app: web.Application) -> None:
        await self.fleet.stop()

"""vLLM fleets: metrics scraping (load snapshots, health gating through the circuit breakers),
managed local servers, and ``GET /admin/vllm``. The ``vllm-load`` strategy that reads the
snapshots lives in ``gateway.routing.vllm_load``; docs/vllm.md describes the whole.

``install_vllm(app, ...)`` wires a ``Fleet`` into an application: started and stopped with it
(``cleanup_ctx``, registered before the upstream session so it stops after the config watcher),
synced with every config made current (``INSTALL_HOOKS``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.config import ConfigSnapshot
from gateway.routing.health import HealthRegistry
from gateway.vllm.fleet import Fleet

FLEET = web.AppKey("vllm_fleet", Fleet)


def install_vllm(app: web.Application, snapshot: ConfigSnapshot, health: HealthRegistry, install_hooks: list,
                 *, data_dir: str | None = None, launch_servers: bool = True) -> Fleet:
    """Create the fleet, hook it into ``app`` and return it. ``data_dir``: the gateway's data
    folder (managed servers log to ``<data_dir>/vllm/<backend>.log`` by default)."""
    log_dir = snapshot.config.telemetry.resolved_data_dir(data_dir) / "vllm"
    fleet = Fleet(health, log_dir, launch_servers=launch_servers)
    app[FLEET] = fleet

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await fleet.start()
        yield
        await fleet.stop()

    app.cleanup_ctx.append(lifecycle)
    hook: Callable = lambda runtime: fleet.sync(runtime.snapshot.config)  # noqa: E731
    install_hooks.append(hook)

    async def admin_vllm(request: web.Request) -> web.Response:
        return web.json_response(fleet.status())

    app.router.add_get("/admin/vllm", admin_vllm)
    return fleet

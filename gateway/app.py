"""``build_app``: routes, shared resources and their start/stop.

Shared objects live on the application under typed ``web.AppKey``s: the upstream
``ClientSession`` and the ``RuntimeHolder`` whose ``current`` is the compiled config the
handlers read (a later hot reload swaps it atomically).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gateway.cache import setup_cache
from gateway.chains import install_chains
from gateway.auth import install_access, public_config
from gateway.config import ConfigSnapshot
from gateway.config.watcher import ConfigWatcher
from gateway.context import RequestContext
from gateway.dashboard import install_dashboard
from gateway.observability import install_observability
from gateway.telemetry import install_telemetry
from gateway.handlers import ProxyHandlers
from gateway.http_hygiene import secure_headers
from gateway.pipeline import StageList
from gateway.prompts import install_prompts
from gateway.routing.admin import backends_handler
from gateway.routing.health import HealthRegistry
from gateway.routing.shared_circuit import SharedCircuits
from gateway.runtime import Runtime
from gateway.tokens import TokenCounter
from gateway.upstream import create_session
from gateway.vllm import install_vllm


class RuntimeHolder:
    """Holds the ``Runtime`` in force; ``current`` is replaced whole, never mutated."""

    __slots__ = ("current",)

    def __init__(self, current: Runtime | None = None):
        self.current = current


SESSION = web.AppKey("session", aiohttp.ClientSession)
RUNTIME = web.AppKey("runtime", RuntimeHolder)
FINISHERS = web.AppKey("finishers", list)
HEALTH = web.AppKey("health", HealthRegistry)
TOKENS = web.AppKey("tokens", TokenCounter)
WATCHER = web.AppKey("watcher", ConfigWatcher)
STAGES = web.AppKey("stages", list)
INSTALL_HOOKS = web.AppKey("install_hooks", list)  # called with every Runtime made current


def build_app(snapshot: ConfigSnapshot, *, data_dir: str | None = None,
              launch_servers: bool = True) -> web.Application:
    """Build the gateway application for a validated config snapshot.

    The upstream session and the compiled runtime are created on start-up and closed on
    shutdown (``cleanup_ctx``). Callables appended to ``app[FINISHERS]`` receive every
    finished ``RequestContext`` (telemetry hooks in here). ``data_dir`` overrides where embedded
    telemetry data lives (``telemetry.data_dir``; see ``gateway.telemetry``).
    ``launch_servers``: start the vLLM servers of ``launch:`` blocks (False in ``--workers``
    processes; see ``gateway.vllm``).
    """
    app = web.Application(client_max_size=snapshot.config.server.body_limit_bytes, handler_args={})
    app.on_response_prepare.append(secure_headers)  # no Server header, nosniff everywhere
    started_at = time.time()
    holder = RuntimeHolder()
    app[RUNTIME] = holder
    finishers: list[Callable[[RequestContext], None]] = []
    app[FINISHERS] = finishers
    app[HEALTH] = health = HealthRegistry()
    app[TOKENS] = tokens = TokenCounter()
    install_hooks: list[Callable[[Runtime], None]] = []
    app[INSTALL_HOOKS] = install_hooks

    async def install(new: ConfigSnapshot) -> None:
        """Compile ``new`` and make it current in one assignment (in-flight requests keep theirs)."""
        runtime = Runtime(new, app[SESSION], health, tokens)
        if runtime.needs_tokens:  # routing counts prompt tokens: load the encodings before serving
            await asyncio.to_thread(tokens.count_text, "warm up", "gpt-4o")
            await asyncio.to_thread(tokens.count_text, "warm up", "gpt-4")
        health.retain(runtime.router.target_keys)
        access.update(new)  # keys, limits, plugins; raises (config refused) before anything is swapped
        holder.current = runtime
        for hook in install_hooks:
            hook(runtime)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = session = create_session()
        shared = None
        if snapshot.config.routing.redis_url:  # circuit state shared by all instances
            shared = SharedCircuits(snapshot.config.routing.redis_url, health)
            health.on_new = shared.attach
            shared.start()
        await install(snapshot)
        watcher = None
        if Path(snapshot.source).is_file():
            watcher = ConfigWatcher(snapshot.source, snapshot, install, snapshot.config.server.reload_interval_s)
            app[WATCHER] = watcher
            watcher.start()
        yield
        if watcher is not None:
            await watcher.stop()
        holder.current = None
        if shared is not None:
            await shared.stop()
        await session.close()

    # vLLM fleets: scrapers and managed servers, synced on every install; registered first so
    # they stop after the config watcher.
    install_vllm(app, snapshot, health, install_hooks, data_dir=data_dir, launch_servers=launch_servers)
    app.cleanup_ctx.append(upstream_session)

    def finish(ctx: RequestContext) -> None:
        for hook in finishers:
            hook(ctx)
        # Done: drop what only the request path needs, so a queued context (telemetry keeps it
        # until its row is built) does not keep the request's object graph alive for the GC.
        ctx.request = ctx.runtime = ctx.target_state = ctx.capture = ctx.on_bytes = None

    handlers = ProxyHandlers(lambda: holder.current, finish)
    install_chains(handlers)  # chain models: steps run in-process through the handlers (gateway.chains)
    # Request stages, kept in STAGE_ORDER (access → prompts → plugins → cache) whenever each
    # registers; composed when the app starts and again when a reload adds one.
    stages = StageList()
    app[STAGES] = stages
    # Access control (keys, limits) and plugins: registered only when a config needs them;
    # also the one check guarding every /admin path.
    access = install_access(app, snapshot, stages, lambda: handlers.set_stages(stages), tokens)
    install_prompts(app, snapshot, stages, lambda: holder.current, install_hooks, data_dir=data_dir)

    async def compose_stages(app: web.Application) -> None:
        handlers.set_stages(stages)

    app.on_startup.append(compose_stages)
    # The cache: kind "cache", last in STAGE_ORDER (its key covers the request as the other stages left it).
    setup_cache(app, snapshot, stages)

    async def readyz(request: web.Request) -> web.Response:
        session = request.app.get(SESSION)
        ready = holder.current is not None and session is not None and not session.closed
        return web.json_response({"status": "ready" if ready else "starting",
                                  "config_hash": holder.current.snapshot.content_hash if ready else None},
                                 status=200 if ready else 503)

    # Telemetry sink (a finisher) and /admin/* routes, registered before the catch-all route.
    install_telemetry(app, snapshot, finishers, data_dir=data_dir, tokens=tokens, install_hooks=install_hooks)
    # GET /dashboard and /admin/dashboard/* (ops page, drift), reading the telemetry store.
    install_dashboard(app, snapshot, lambda: holder.current, data_dir=data_dir)
    # Traces, GET /metrics, the access log: a request hook and a finisher (docs/observability.md).
    install_observability(app, snapshot, handlers, finishers, install_hooks, lambda: holder.current, health,
                          lambda: app.get(WATCHER))

    async def admin_config(request: web.Request) -> web.Response:
        """The config in force (secrets masked), its hash, load time and the last reload error."""
        watcher = request.app.get(WATCHER)
        rt = holder.current
        status = watcher.status() if watcher is not None else {
            "config_hash": snapshot.content_hash, "source": snapshot.source, "loaded_at": started_at,
            "reloads": 0, "last_error": None}
        status["config"] = public_config(rt.snapshot.config) if rt is not None else None
        return web.json_response(status)

    r = app.router
    r.add_get("/admin/config", admin_config)
    r.add_get("/admin/backends", backends_handler(lambda: holder.current, health))
    r.add_get("/healthz", handlers.healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/v1/models", handlers.list_models)
    r.add_get("/v1/models/{model:.+}", handlers.get_model)
    # [\s\S], not ".": a path with an encoded line break must still reach these handlers (and
    # get their 404 in OpenAI's shape), not aiohttp's plain-text one.
    r.add_route("*", r"/v1/{endpoint:[\s\S]+}", handlers.proxy)
    r.add_route("*", r"/{tail:[\s\S]*}", handlers.not_found)
    return app

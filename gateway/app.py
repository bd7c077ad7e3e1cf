"""``build_app``: the composition root. Every feature, and the order a request meets them, is here.

A feature (``gateway.core.feature.Feature``) contributes a request stage, finishers, work on each new
config, routes and a start/stop; nothing hooks into a request any other way. This module lists
the features once and composes, for each compiled config, the path a request takes through
their active stages (a feature that is off for that config is simply not in it).

Shared objects live on the application under typed ``web.AppKey``s: the upstream
``ClientSession`` and the ``RuntimeHolder`` whose ``current`` is the compiled config the
handlers read. A config — the first one and every hot reload — is compiled in one step
(``install``): the ``Runtime``, each feature's ``compile`` (any may refuse it), the composed
paths; then it is made current in one assignment and each feature's ``activate`` runs.
Requests already running keep the runtime (and path) they started with.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.access.feature import AccessFeature, PluginsFeature
from gateway.admin.config import ConfigAdmin
from gateway.cache import CacheFeature
from gateway.cache.conversations import ConversationsFeature
from gateway.chains import ChainsFeature
from gateway.config import ConfigSnapshot
from gateway.config.watcher import ConfigWatcher
from gateway.core.context import RequestContext
from gateway.core.feature import Feature, Routes, active_stages
from gateway.core.pipeline import compose
from gateway.core.tokens import TokenCounter
from gateway.dashboard import DashboardFeature
from gateway.inbound.anthropic.models import wants_anthropic
from gateway.observability import ObservabilityFeature
from gateway.ownership import OwnershipFeature
from gateway.prompts import PromptsFeature
from gateway.proxy.handlers import RESPONSE_STARTED, ProxyHandlers
from gateway.proxy.http_hygiene import secure_headers
from gateway.proxy.runtime import Runtime
from gateway.proxy.upstream import create_session
from gateway.retrieval import CollectionsFeature
from gateway.routing.admin import RoutingAdmin
from gateway.routing.health import HealthRegistry
from gateway.routing.shared_circuit import SharedCircuits
from gateway.telemetry import TelemetryFeature
from gateway.vllm import FleetFeature


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
FEATURES = web.AppKey("features", tuple)


def build_app(snapshot: ConfigSnapshot, *, data_dir: str | None = None,
              launch_servers: bool = True, manage_adapters: bool = True,
              ingest: str = "thread") -> web.Application:
    """Build the gateway application for a validated config snapshot.

    The upstream session and the compiled runtime are created on start-up and closed on
    shutdown. Each finished ``RequestContext`` goes to the finishers of the features active in
    its config, then to the callables in ``app[FINISHERS]`` (empty unless an embedder or a test
    adds one). ``data_dir`` overrides where embedded
    telemetry data lives (``telemetry.data_dir``; see ``gateway.telemetry``).
    ``launch_servers``: start the vLLM servers of ``launch:`` blocks (False in ``--workers``
    processes and ``eval run``; see ``gateway.vllm``). ``manage_adapters``: load and unload the
    config's LoRA adapters on its vLLM servers (False in ``eval run``). ``ingest``: where the
    request log is read into the store (``"thread"``: here; ``"process"``: ``serve``'s ingester
    process; see ``gateway.telemetry``).
    """
    app = web.Application(client_max_size=snapshot.config.server.body_limit_bytes, handler_args={})
    holder = RuntimeHolder()
    app[RUNTIME] = holder
    app[HEALTH] = health = HealthRegistry()
    app[TOKENS] = tokens = TokenCounter()

    def runtime() -> Runtime | None:
        return holder.current

    def serving_runtime() -> Runtime:
        rt = holder.current
        assert rt is not None  # requests are served only after start-up compiled a runtime
        return rt

    def finish(ctx: RequestContext) -> None:
        rt = ctx.runtime
        if rt is not None:
            for hook in rt.finishers:
                hook(ctx)
        for hook in extra_finishers:
            hook(ctx)
        # Done: drop what only the request path needs, so whatever keeps the context a while
        # (the recent-requests record) does not keep the request's object graph alive for the GC.
        ctx.request = ctx.runtime = ctx.target_state = ctx.capture = ctx.on_bytes = None

    handlers = ProxyHandlers(serving_runtime, finish)

    # --- the features --------------------------------------------------------------------------
    fleet = FleetFeature(app, snapshot, health, data_dir=data_dir, launch_servers=launch_servers,
                        manage_adapters=manage_adapters)
    access = AccessFeature(app, snapshot, tokens)
    ownership = OwnershipFeature(data_dir=data_dir)
    telemetry = TelemetryFeature(app, snapshot, data_dir=data_dir, tokens=tokens, ingest=ingest)
    prompts = PromptsFeature(app, snapshot, runtime, telemetry.sink)
    plugins = PluginsFeature(access)
    cache = CacheFeature(app, handlers)
    conversations = ConversationsFeature()
    # routes only (no stage: other requests never meet it); its retriever serves chains' retrieve steps too
    collections = CollectionsFeature(app, handlers, runtime, telemetry.database)
    chains = ChainsFeature(handlers, collections.retriever)
    observability = ObservabilityFeature(app, snapshot, runtime, health, lambda: app.get(WATCHER))
    dashboard = DashboardFeature(app, snapshot, access.layer.admin_key, runtime, data_dir=data_dir)
    access.layer.admin_session = dashboard.admits  # the dashboard's cookie, where it may stand in for the key

    # --- the request's path, outermost first ---------------------------------------------------
    # observability (wraps everything, even a request refused while it is read)
    #   → the key (access.gate: 401 before the body is read or judged)
    #   → read the request (handlers.read_request: body, JSON, model)
    #   → access (keys, limits) → ownership (a tenant reaches its own stored files, batches…)
    #   → telemetry (refuses when the request log is full and
    #     when_full is reject; otherwise not in the path) → prompts (render) → plugins (see the final request)
    #   → conversations (a /v1/responses turn on a translating target: previous_response_id)
    #   → cache (keys the request as it will be sent) → chains (a chain model runs its steps)
    #   → handlers.forward: route, attempts, relay.
    outer: tuple[Feature, ...] = (observability,)
    inner: tuple[Feature, ...] = (access, ownership, telemetry, prompts, plugins, conversations, cache, chains)

    # Every feature, in the order they compile, activate and start (stopped in reverse). The
    # fleet starts first and stops last, after the config watcher; telemetry's finisher (the
    # request's durable record) runs before any other; plugins (their paths) and access compile
    # first of those that may refuse a config, prompts before chains (a chain step names a prompt).
    features: tuple[Feature, ...] = (fleet, telemetry, plugins, access, ownership, prompts, cache, conversations,
                                     collections, chains, observability, dashboard,
                                     ConfigAdmin(snapshot, runtime, lambda: app.get(WATCHER)),
                                     RoutingAdmin(runtime, health))
    app[FEATURES] = features
    extra_finishers: list[Callable[[RequestContext], None]] = []
    app[FINISHERS] = extra_finishers

    async def install(new: ConfigSnapshot) -> None:
        """Compile ``new`` and make it current in one assignment. A feature that raises in
        ``compile`` refuses it: nothing is swapped and the config in force stays."""
        rt = Runtime(new, app[SESSION], health, tokens)
        compiled: list[Feature] = []
        try:
            for feature in features:
                feature.compile(rt)
                compiled.append(feature)
        except BaseException:
            for feature in compiled:
                feature.discard(rt)
            raise
        front, stages = active_stages(outer, rt), active_stages(inner, rt)
        rt.stages = (*front, *stages)
        gate = access.gate(rt)
        rt.request_path = compose([*front, *([gate] if gate else []), handlers.read_request, *stages],
                                  handlers.forward)
        rt.step_path = compose(rt.stages, handlers.forward)  # in-process requests: nothing to read
        rt.finishers = tuple(f for feature in features for f in feature.finishers(rt))
        health.retain(rt.router.target_keys)
        holder.current = rt
        for feature in features:  # no await from the swap to the last activate
            feature.activate(rt)

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

    # Start-up: the fleet, then the session and the first config, then the other features.
    app.cleanup_ctx.append(_lifecycle(fleet))
    app.cleanup_ctx.append(upstream_session)
    for feature in features:
        if feature is not fleet:
            app.cleanup_ctx.append(_lifecycle(feature))

    # --- HTTP: one middleware, the response hooks, the routes ----------------------------------
    app.middlewares.append(access.middleware)  # CORS preflights, the one admin check, /v1 guards
    # What every answer carries, in this order: no Server header and nosniff, CORS for a listed
    # origin, a used prompt's headers, x-request-id. Plain functions run by one hook: aiohttp
    # awaits each hook of its own, a coroutine per hook and response.
    response_hooks = (secure_headers, access.layer.guard.browser.add_cors_headers, prompts.add_headers,
                      _request_id_header)

    async def prepare_response(request: web.Request, response: web.StreamResponse) -> None:
        request[RESPONSE_STARTED] = True  # a failure after this cannot answer with another response
        for hook in response_hooks:
            hook(request, response)

    app.on_response_prepare.append(prepare_response)

    routes = Routes(app.router)
    for feature in features:
        feature.routes(routes)

    async def readyz(request: web.Request) -> web.Response:
        session = request.app.get(SESSION)
        current = holder.current
        ready = current is not None and session is not None and not session.closed
        config_hash = current.snapshot.content_hash if ready and current is not None else None
        if not ready:
            return web.json_response({"status": "starting", "config_hash": config_hash}, status=503)
        degraded = telemetry.degraded()  # e.g. the request log cannot be written, or is far behind
        if degraded:
            # Refusing traffic (when_full: reject) is not ready; still serving with a reason is.
            refusing = telemetry.sink is not None and not telemetry.sink.accepting
            return web.json_response({"status": "degraded", "reason": degraded, "config_hash": config_hash},
                                     status=503 if refusing else 200)
        return web.json_response({"status": "ready", "config_hash": config_hash})

    r = app.router
    r.add_get("/healthz", handlers.healthz)
    r.add_get("/health", handlers.healthz)  # the path LiteLLM and Portkey users probe
    r.add_get("/readyz", readyz)
    r.add_get("/v1/models", handlers.list_models)
    r.add_get("/v1/models/{model:.+}", handlers.get_model)
    # [\s\S], not ".": a path with an encoded line break must still reach these handlers (and
    # get their 404 in OpenAI's shape), not aiohttp's plain-text one.
    r.add_route("*", r"/v1/{endpoint:[\s\S]+}", handlers.proxy)
    r.add_route("*", r"/{tail:[\s\S]*}", handlers.not_found)
    return app


def _lifecycle(feature: Feature):
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await feature.start(app)
        yield
        await feature.stop(app)

    return lifecycle


def _request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries ``x-request-id`` (the caller's, else a new one): the proxy sets
    its own; this covers the rest (model lookups, health, 404s, admin, aiohttp's errors).
    Anthropic's API names it ``request-id``, which its SDKs read (``message._request_id``):
    answers on its paths carry both (``/v1/models`` too when asked in its shape)."""
    headers = response.headers
    if "x-request-id" not in headers:
        headers["x-request-id"] = (request.headers.get("x-request-id") or str(uuid.uuid4()))[:128]
    if request.path.startswith("/v1/messages") or wants_anthropic(request.path, request.headers):
        headers["request-id"] = headers["x-request-id"]

"""Observability beyond ClickHouse: OpenTelemetry traces, Prometheus metrics, structured logs.

``ObservabilityFeature`` plugs the ``observability:`` settings into the gateway
(``gateway.core.feature``):

- the outermost request stage, before the request is even read: the in-flight gauge, the
  trace ids (tracing on), the request's context for log lines;
- one finisher that runs when the response has ended: request metrics, spans, the access
  line — built from the ``RequestContext``, so the stage never waits for the response;
- ``GET /metrics`` (its own access rule, see ``MetricsSettings``);
- start/stop of the tracer provider (flushes queued spans on shutdown) and of the metrics
  refresher.

With everything off the stage is not in the request path at all. A failure in any of these
never fails a request: it is logged (once per kind) and dropped.

Tracing and metrics settings take effect at start-up; a reload that changes them is applied
for the access-log switch and prices, and logged as needing a restart for the rest.
Modules: ``tracing`` (ids, propagation, spans), ``genai`` (semantic-convention values),
``metrics`` (Prometheus), ``logs`` (formatters, access line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.config import ConfigSnapshot
from gateway.core.context import RequestContext
from gateway.core.feature import Feature, Routes
from gateway.core.pricing import PriceTable
from gateway.observability.logs import CURRENT, AccessLog, configure_logging

log = logging.getLogger("gateway.observability")

__all__ = ["OBSERVABILITY", "Observability", "ObservabilityFeature", "configure_logging"]


class Observability:
    """The observability parts of one application (``app[OBSERVABILITY]``): ``tracing``
    (``Tracing`` or ``None``), ``metrics`` (``GatewayMetrics`` or ``None``), ``access``."""

    def __init__(self, snapshot: ConfigSnapshot, runtime: Callable[[], Any], health, watcher: Callable[[], Any],
                 sink: Callable[[], Any], admin_key: Callable[[], str | None],
                 fleet: Callable[[], Any] = lambda: None):
        o = snapshot.config.observability
        self.settings = o
        self.tracing = None
        self.metrics = None
        if o.tracing.enabled:
            from gateway.observability.tracing import Tracing, check_available
            check_available()
            redact = None
            spec = snapshot.config.telemetry.bodies.redact
            if o.tracing.capture_content and spec:  # captured content is redacted as rows are
                from gateway.telemetry.values import load_hook
                redact = load_hook(spec)
            self.tracing = Tracing(o.tracing, redact)
        if o.metrics.enabled:
            from gateway.observability.metrics import GatewayMetrics

            def models():
                rt = runtime()
                return rt.snapshot.config.models if rt is not None else snapshot.config.models
            self.metrics = GatewayMetrics(o.metrics, models=models, health=health, sink=sink, watcher=watcher,
                                          admin_key=admin_key, prices=PriceTable(snapshot.config.pricing),
                                          fleet=fleet)
            self.metrics.set_config_hash(snapshot.content_hash)
        self.access = AccessLog(o.logging.access_log)
        self._failed: set[str] = set()

    # --- hooks ---------------------------------------------------------------------------------
    def on_request(self, ctx: RequestContext, request: web.Request) -> None:
        try:
            CURRENT.set(ctx)
            if self.metrics is not None:
                self.metrics.request_started()
            if self.tracing is not None:
                self.tracing.start_request(ctx, request)
        except Exception:  # observability never fails a request
            self._fail("request start")

    def finish(self, ctx: RequestContext) -> None:
        if self.metrics is not None:
            try:
                self.metrics.observe(ctx)
            except Exception:
                self._fail("metrics")
        if self.tracing is not None:
            try:
                self.tracing.finish(ctx)
            except Exception:
                self._fail("tracing")
        if self.access.enabled:
            try:
                self.access.write(ctx)
            except Exception:
                self._fail("access log")
        CURRENT.set(None)

    def _fail(self, what: str) -> None:
        if what not in self._failed:  # once per kind: a bug must not flood the log
            self._failed.add(what)
            log.exception("observability: %s failed (further failures of this kind are not logged)", what)

    def reloaded(self, runtime) -> None:
        """A new config is in force: the access-log switch and prices follow it; tracing and
        metrics changes wait for a restart."""
        new = runtime.snapshot.config.observability
        if self.metrics is not None:
            self.metrics.prices = PriceTable(runtime.snapshot.config.pricing)
            self.metrics.set_config_hash(runtime.snapshot.content_hash)
        self.access.enabled = new.logging.access_log
        if new.tracing != self.settings.tracing or new.metrics != self.settings.metrics:
            log.warning("observability.tracing / observability.metrics changed: they take effect at the next restart")


OBSERVABILITY = web.AppKey("observability", Observability)


class ObservabilityFeature(Feature):
    """The outermost stage (request start: in-flight gauge, trace ids, log context), the
    finisher (metrics, spans, the access line), ``GET /metrics`` and the tracer and metrics
    start/stop. ``runtime()``: the ``Runtime`` in force; ``health``: the ``HealthRegistry``;
    ``watcher()``: the ``ConfigWatcher`` (or ``None``)."""

    name = "observability"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, runtime: Callable[[], Any], health,
                 watcher: Callable[[], Any]):
        from gateway.telemetry import SINK
        from gateway.vllm import FLEET

        def admin_key() -> str | None:
            rt = runtime()
            return (rt.snapshot if rt is not None else snapshot).config.server.admin_key

        self.obs = app[OBSERVABILITY] = Observability(snapshot, runtime, health, watcher, lambda: app.get(SINK),
                                                      admin_key, lambda: app.get(FLEET))
        self._json_logs = snapshot.config.observability.logging.format == "json"
        on_request = self.obs.on_request

        def observe(ctx: RequestContext, call_next):
            # Nothing to do after the answer (the finisher is), so no coroutine: the request's
            # stack keeps no frame of this stage (``gateway.core.pipeline``).
            on_request(ctx, ctx.request)
            return call_next(ctx)

        self.observe = observe

    def _on(self, runtime) -> bool:
        obs = self.obs
        return (obs.tracing is not None or obs.metrics is not None or self._json_logs
                or runtime.snapshot.config.observability.logging.access_log)

    def stage(self, runtime):
        return self.observe if self._on(runtime) else None

    def finishers(self, runtime):
        # With the stage or without it: the in-flight gauge and the log context it sets are
        # settled here, for the same config's requests.
        return (self.obs.finish,) if self._on(runtime) else ()

    def activate(self, runtime) -> None:
        self.obs.reloaded(runtime)

    def routes(self, routes: Routes) -> None:
        if self.obs.metrics is not None:
            routes.get("/metrics", self.obs.metrics.handle)

    async def start(self, app: web.Application) -> None:
        if self.obs.tracing is not None:
            self.obs.tracing.start()
        if self.obs.metrics is not None:
            self.obs.metrics.start()

    async def stop(self, app: web.Application) -> None:
        if self.obs.metrics is not None:
            await self.obs.metrics.stop()
        if self.obs.tracing is not None:
            await asyncio.to_thread(self.obs.tracing.stop)

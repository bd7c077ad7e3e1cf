"""Observability beyond ClickHouse: OpenTelemetry traces, Prometheus metrics, structured logs.

``install_observability`` wires the ``observability:`` settings into an application:

- a request hook (``ProxyHandlers.on_request``) that runs first for every proxied request:
  the in-flight gauge, the trace ids (tracing on), the request's context for log lines;
- one finisher (``app[FINISHERS]``) that runs when the response has ended: request metrics,
  spans, the access line — built from the ``RequestContext``, never by wrapping the request;
- ``GET /metrics`` (its own access rule, see ``MetricsSettings``);
- start/stop of the tracer provider (flushes queued spans on shutdown) and of the metrics
  refresher.

With everything off the request path pays one ``None`` check. A failure in any of these
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
from gateway.context import RequestContext
from gateway.observability.logs import CURRENT, AccessLog, configure_logging
from gateway.pricing import PriceTable

log = logging.getLogger("gateway.observability")

__all__ = ["OBSERVABILITY", "Observability", "configure_logging", "install_observability"]


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


def install_observability(app: web.Application, snapshot: ConfigSnapshot, handlers, finishers: list,
                          install_hooks: list, runtime: Callable[[], Any], health, watcher: Callable[[], Any]) -> Observability:
    """Register the request hook, the finisher, ``GET /metrics`` and the start/stop hooks on
    ``app`` (before its catch-all route). ``runtime()`` returns the ``Runtime`` in force,
    ``health`` is the ``HealthRegistry``, ``watcher()`` the ``ConfigWatcher`` (or ``None``)."""
    from gateway.telemetry import SINK

    def admin_key() -> str | None:
        rt = runtime()
        return (rt.snapshot if rt is not None else snapshot).config.server.admin_key

    try:
        from gateway.vllm import FLEET
    except ImportError:  # pragma: no cover - a build without the vLLM fleet module
        FLEET = None

    obs = Observability(snapshot, runtime, health, watcher, lambda: app.get(SINK), admin_key,
                        (lambda: app.get(FLEET)) if FLEET is not None else (lambda: None))
    app[OBSERVABILITY] = obs
    o = snapshot.config.observability
    if obs.tracing is not None or obs.metrics is not None or o.logging.format == "json" or o.logging.access_log:
        handlers.on_request = obs.on_request
    finishers.append(obs.finish)
    install_hooks.append(obs.reloaded)
    if obs.metrics is not None:
        app.router.add_get("/metrics", obs.metrics.handle)

    async def lifecycle(app: web.Application):
        if obs.tracing is not None:
            obs.tracing.start()
        if obs.metrics is not None:
            obs.metrics.start()
        yield
        if obs.metrics is not None:
            await obs.metrics.stop()
        if obs.tracing is not None:
            await asyncio.to_thread(obs.tracing.stop)

    app.cleanup_ctx.append(lifecycle)
    return obs

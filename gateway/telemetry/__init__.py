"""Telemetry: every proxied request becomes a row in ClickHouse (a server, or embedded chDB).

The serving process only records: ``TelemetryFeature`` makes ``RequestLog.emit`` the first
finisher of every request (one durable append to this process's request log), and serves the
telemetry ``/admin/*`` endpoints. Rows are built and inserted by the ingester
(``gateway.ingest``): in a process of its own under ``serve`` (``ingest="process"``), or on a
thread of this process for the demo, the tests and embedders (``ingest="thread"``).

Modules: ``facts`` (the record a request leaves), ``request_log`` (the serving side of the
log), ``log`` (segments, framing, checkpoints), ``record`` (the row), ``clickhouse``
(connections, inserts, read-only queries), ``schema`` (migrations), ``queries`` (saved
queries, read-only checks), ``lanes`` (ops queries: limits, concurrency, cancellation),
``recent`` (which request belongs to whom, for feedback).

Set ``telemetry.enabled: false`` or the environment variable ``LLM_GATEWAY_TELEMETRY=off`` to
run without any of it.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from gateway.config import ConfigSnapshot, environment
from gateway.core.errors import ServiceUnavailableError
from gateway.core.feature import Feature, Routes
from gateway.core.tokens import TokenCounter
from gateway.store.discovery import StoreLocator
from gateway.telemetry.admin import AdminAPI
from gateway.telemetry.clickhouse import parse_dsn
from gateway.telemetry.lanes import QueryLanes
from gateway.telemetry.recent import RecentRequests
from gateway.telemetry.request_log import RequestLog

_log = logging.getLogger("gateway.telemetry")  # not "log": that is the subpackage gateway.telemetry.log

SINK = web.AppKey("telemetry_sink", RequestLog)
QUERY_LANES = web.AppKey("telemetry_query_lanes", QueryLanes)
RECENT = web.AppKey("telemetry_recent_requests", RecentRequests)
TELEMETRY_ENV = environment.TELEMETRY

__all__ = ["SINK", "QUERY_LANES", "RECENT", "RequestLog", "TelemetryFeature", "telemetry_enabled"]


def telemetry_enabled(snapshot: ConfigSnapshot) -> bool:
    """``telemetry.enabled`` unless ``LLM_GATEWAY_TELEMETRY`` is ``off``/``0``/``false``/``no``."""
    env = (environment.read(TELEMETRY_ENV) or "").strip().lower()
    return snapshot.config.telemetry.enabled and env not in ("off", "0", "false", "no")


class TelemetryFeature(Feature):
    """The request log (its ``emit`` and the recent-requests record are finishers; none with
    telemetry off), the ingester when it runs here, the query lanes, and the telemetry admin
    routes. ``data_dir`` overrides ``telemetry.data_dir``. ``ingest``: ``"thread"`` runs the
    ingester on a thread of this process (it then owns the store here); ``"process"`` leaves it
    to another process (``serve``'s supervised ingester, or ``llm-gateway ingest``), and reads
    of the embedded store go to that process over HTTP."""

    name = "telemetry"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, *,
                 data_dir: str | os.PathLike | None = None, tokens: TokenCounter | None = None,
                 ingest: str = "thread"):
        t = snapshot.config.telemetry
        ddir = t.resolved_data_dir(str(data_dir) if data_dir else None)
        dsn = t.resolved_dsn(ddir)
        target = parse_dsn(dsn, t.clickhouse.database)  # fail at build time on a malformed DSN
        self.database = target.database  # the tables' database, as the query lanes' connections use it
        # With the ingester in another process, the embedded store is read over HTTP from it
        # (its store.json names the port); with the ingester here, chDB is opened here anyway.
        self.locator = StoreLocator(ddir) if target.kind == "chdb" and ingest != "thread" else None
        self.lanes = app[QUERY_LANES] = QueryLanes(t.clickhouse, dsn, t.queries,
                                                   locate=self.locator.url if self.locator else None)
        self.sink: RequestLog | None = None
        self.recent: RecentRequests | None = None
        self.ingester = None
        if telemetry_enabled(snapshot):
            if ingest == "thread":
                from gateway.ingest.local import LocalIngester

                self.ingester = LocalIngester(snapshot, ddir, dsn, tokens)
            self.sink = app[SINK] = RequestLog(t.log.resolved_dir(ddir), t, ingester=self.ingester)
            self.recent = app[RECENT] = RecentRequests()  # who may score which request (/v1/feedback)
        self._full_is_fatal = t.log.when_full == "reject"
        self._api = AdminAPI(lambda: self.sink, lambda: self.lanes, t.queries_dir)

    def stage(self, runtime):
        if self.sink is None or not self._full_is_fatal:
            return None
        sink = self.sink

        async def refuse_unlogged(ctx, call_next):
            if not sink.accepting:  # when_full: reject — serve nothing that cannot be logged
                raise ServiceUnavailableError("the gateway's request log is full: requests are refused until "
                                              "it drains (telemetry.log.when_full: reject)", code="request_log_full",
                                              headers={"Retry-After": "1"})
            return await call_next(ctx)

        return refuse_unlogged

    def finishers(self, runtime):
        return () if self.sink is None or self.recent is None else (self.sink.emit, self.recent.record)

    def activate(self, runtime) -> None:
        if self.ingester is not None:  # rows follow the config in force (prices, secrets, bodies)
            self.ingester.use(runtime.snapshot)

    def degraded(self) -> str | None:
        return self.sink.degraded() if self.sink is not None else None

    def routes(self, routes: Routes) -> None:
        self._api.routes(routes)

    async def start(self, app: web.Application) -> None:
        if self.sink is not None:
            await asyncio.to_thread(self.sink.open)
            _log.info("telemetry: request log %s", self.sink.root)
        if self.ingester is not None:
            await asyncio.to_thread(self.ingester.start)

    async def stop(self, app: web.Application) -> None:
        if self.ingester is not None and self.sink is not None:  # what this process served is in the store
            await asyncio.to_thread(self.sink.flush, self.ingester.shutdown_timeout_s)
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        if self.ingester is not None:
            await asyncio.to_thread(self.ingester.stop)
        await asyncio.to_thread(self.lanes.close)

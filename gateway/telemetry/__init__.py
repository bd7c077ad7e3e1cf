"""Telemetry: every proxied request becomes a row in ClickHouse (a server, or embedded chDB).

``TelemetryFeature`` plugs it into the gateway (``gateway.core.feature``): a ``TelemetrySink`` whose
``emit`` is a finisher (started and stopped with the app; shutdown flushes or spools), and the
telemetry ``/admin/*`` endpoints (``gateway.telemetry.admin``).

Modules: ``record`` (the row), ``sink`` (queue, writer thread, spool/replay), ``spool``
(batch files), ``clickhouse`` (connections, inserts, read-only queries), ``schema``
(migrations), ``queries`` (saved queries, read-only checks), ``lanes`` (ops queries: limits,
concurrency, cancellation), ``recent`` (which request belongs to whom, for feedback).

Set ``telemetry.enabled: false`` or the environment variable ``LLM_GATEWAY_TELEMETRY=off`` to
run without a sink.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.config import ConfigSnapshot, environment
from gateway.core.feature import Feature, Routes
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.store.availability import embedded_available
from gateway.store.discovery import StoreLocator
from gateway.telemetry.admin import AdminAPI
from gateway.telemetry.clickhouse import ClickHouseStore, parse_dsn
from gateway.telemetry.lanes import QueryLanes
from gateway.telemetry.recent import RecentRequests
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.sink import TelemetrySink
from gateway.telemetry.spool import Spool

if TYPE_CHECKING:
    from gateway.store.http_interface import ClickHouseHTTPInterface

# (not ``log``: importing the ``gateway.telemetry.log`` package rebinds that name on this module)
logger = logging.getLogger("gateway.telemetry")

SINK = web.AppKey("telemetry_sink", TelemetrySink)
QUERY_LANES = web.AppKey("telemetry_query_lanes", QueryLanes)
RECENT = web.AppKey("telemetry_recent_requests", RecentRequests)
TELEMETRY_ENV = environment.TELEMETRY
STARTUP_WAIT_S = 3.0

__all__ = ["SINK", "QUERY_LANES", "RECENT", "TelemetrySink", "build_sink", "embedded_store_conflict",
           "TelemetryFeature", "telemetry_enabled"]


def telemetry_enabled(snapshot: ConfigSnapshot) -> bool:
    """``telemetry.enabled`` unless ``LLM_GATEWAY_TELEMETRY`` is ``off``/``0``/``false``/``no``."""
    env = (environment.read(TELEMETRY_ENV) or "").strip().lower()
    return snapshot.config.telemetry.enabled and env not in ("off", "0", "false", "no")


def embedded_store_conflict(snapshot: ConfigSnapshot, workers: int, data_dir: str | None = None) -> str | None:
    """Why ``--workers > 1`` cannot run with this telemetry store, or ``None`` when it can.

    chDB lets one process open a directory, so several workers need a ClickHouse server (each
    worker then writes its own batches) or telemetry off.
    """
    t = snapshot.config.telemetry
    if workers <= 1 or not telemetry_enabled(snapshot):
        return None
    if not t.resolved_dsn(t.resolved_data_dir(data_dir)).startswith("chdb://"):
        return None
    return (f"--workers {workers} needs a ClickHouse server for telemetry: the embedded chDB store can be "
            "opened by one process only. Set telemetry.clickhouse.dsn (http://…), or run one worker.")


def build_sink(snapshot: ConfigSnapshot, *, data_dir: str | os.PathLike | None = None,
               tokens: TokenCounter | None = None) -> TelemetrySink:
    """A (not yet started) sink for ``snapshot``'s ``telemetry`` settings.

    ``data_dir`` overrides ``telemetry.data_dir``. ``tokens``: a shared ``TokenCounter``.
    Raises ``ValueError`` for an unusable DSN or redaction hook.
    """
    cfg = snapshot.config
    t = cfg.telemetry
    ddir = t.resolved_data_dir(str(data_dir) if data_dir else None)
    dsn = t.resolved_dsn(ddir)
    store = ClickHouseStore(t.clickhouse, dsn)
    builder = RowBuilder(config_hash=snapshot.content_hash, instance=socket.gethostname(),
                         prices=PriceTable(cfg.pricing), tokens=tokens or TokenCounter(),
                         bodies=t.bodies, error_message_max=t.error_message_max)
    return TelemetrySink(store, builder, Spool(t.resolved_spool_dir(ddir)), t, display=store.target.display)


class TelemetryFeature(Feature):
    """The sink (its ``emit`` and the recent-requests record are finishers; none with telemetry
    off), the query lanes, their start/stop, and the telemetry admin routes. ``tokens``: the
    shared ``TokenCounter``; ``data_dir`` overrides ``telemetry.data_dir``."""

    name = "telemetry"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, *,
                 data_dir: str | os.PathLike | None = None, tokens: TokenCounter | None = None):
        t = snapshot.config.telemetry
        ddir = t.resolved_data_dir(str(data_dir) if data_dir else None)
        dsn = t.resolved_dsn(ddir)
        target = parse_dsn(dsn, t.clickhouse.database)  # fail at build time on a malformed DSN
        # The embedded store is read over HTTP from the process that owns it (store.json names it).
        self.locator = StoreLocator(ddir) if target.kind == "chdb" else None
        self.lanes = app[QUERY_LANES] = QueryLanes(t.clickhouse, dsn, t.queries,
                                                   locate=self.locator.url if self.locator else None)
        self._served: ClickHouseHTTPInterface | None = None  # the embedded store served from here (``start``)
        self.sink: TelemetrySink | None = None
        self.recent: RecentRequests | None = None
        if telemetry_enabled(snapshot):
            self.sink = app[SINK] = build_sink(snapshot, data_dir=ddir, tokens=tokens)
            self.recent = app[RECENT] = RecentRequests()  # who may score which request (/v1/feedback)
        self._api = AdminAPI(lambda: self.sink, lambda: self.lanes, t.queries_dir)

    def finishers(self, runtime):
        return () if self.sink is None or self.recent is None else (self.sink.emit, self.recent.record)

    def activate(self, runtime) -> None:
        if self.sink is not None and self.sink.builder is not None:  # rows mask the config's secrets
            self.sink.builder.secrets = runtime.secrets

    def routes(self, routes: Routes) -> None:
        self._api.routes(routes)

    async def start(self, app: web.Application) -> None:
        sink = self.sink
        if sink is not None:
            await asyncio.to_thread(sink.start)
            # Give the store a moment to connect and migrate before serving (chDB's engine start
            # holds the GIL for a while); never required: rows queue and spool meanwhile.
            await asyncio.to_thread(sink.ready.wait, STARTUP_WAIT_S)
            logger.info("telemetry: rows go to %s (database %s), spool %s", sink.display,
                        sink.store.database, Path(sink.spool.root))
            if (self.locator is not None and sink.store.target.kind == "chdb" and self.locator.find() is None
                    and embedded_available()):  # (without chDB the sink says how to get it)
                self._served = await asyncio.to_thread(self._serve_embedded, sink.store.target.path)

    async def stop(self, app: web.Application) -> None:
        if self.sink is not None:
            await asyncio.to_thread(self.sink.close)
        await asyncio.to_thread(self.lanes.close)
        if self._served is not None:
            await asyncio.to_thread(self._served.stop)

    def _serve_embedded(self, path: str) -> ClickHouseHTTPInterface | None:
        """While the sink writes the embedded store from this process, this process owns chDB:
        serve it to its own readers over HTTP (read-only), as the ingester will once it owns it."""
        from gateway.store.http_interface import ClickHouseHTTPInterface

        try:
            served = ClickHouseHTTPInterface(path, readonly=True).start()
        except Exception as exc:  # another process holds it: the sink says so, readers look for store.json
            logger.warning("telemetry: cannot serve the embedded store %s to this process's readers: %s", path, exc)
            return None
        assert self.locator is not None
        self.locator.explicit = served.url
        return served

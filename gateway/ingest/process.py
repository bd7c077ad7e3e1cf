"""The ingester as a process: ``llm-gateway ingest``, and what ``serve`` supervises.

It owns the store. With a ClickHouse server DSN it inserts over HTTP. With the embedded
default it opens chDB here — the only process that does — and serves it to the serving
processes, the dashboard and the CLI over ClickHouse's HTTP interface on a loopback port
(``gateway.store``), so a crash or a heavy ops query in the engine never takes a serving
process with it. Without the ``embedded`` extra it says how to make the records queryable and
waits: the records stay in the request log and are ingested once it can.

It follows the config file (prices, redaction, body logging) as the serving processes do, and
stops cleanly on SIGTERM/SIGINT (the batch in flight is finished or left pending, never half
committed).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from gateway.config import ConfigSnapshot
from gateway.config.loader import ConfigError, load_config
from gateway.core.tokens import TokenCounter
from gateway.ingest.builder import row_builder
from gateway.ingest.ingester import Ingester
from gateway.store.availability import embedded_available, not_queryable_message

log = logging.getLogger("gateway.ingest")

RELOAD_EVERY_S = 2.0


class _Builder:
    """The current ``RowBuilder``, rebuilt when the config file's content changes."""

    def __init__(self, snapshot: ConfigSnapshot):
        self.snapshot = snapshot
        self.tokens = TokenCounter()
        self.current = row_builder(snapshot, self.tokens)

    def __call__(self):
        return self.current

    def reload(self) -> None:
        source = self.snapshot.source
        if not source or not Path(source).is_file():
            return
        try:
            new = load_config(source)
        except (ConfigError, OSError) as exc:
            log.warning("ingest: config change not applied (%s)", str(exc).splitlines()[0])
            return
        if new.content_hash != self.snapshot.content_hash:
            self.current = row_builder(new, self.tokens)
            self.snapshot = new
            log.info("ingest: config %s applied", new.content_hash)


def open_store(snapshot: ConfigSnapshot, data_dir: Path):
    """The store the ingester inserts into: the embedded one (started, serving HTTP) or a client
    of the configured server. ``None`` when the embedded engine is not installed."""
    t = snapshot.config.telemetry
    dsn = t.resolved_dsn(data_dir)
    if dsn.startswith("chdb://"):
        if not embedded_available():
            return None
        from gateway.store.embedded import StoreServer

        return StoreServer(data_dir, settings=t.clickhouse, chdb_dir=dsn[len("chdb://"):]).start()
    from gateway.telemetry.clickhouse import ClickHouseStore

    return ClickHouseStore(t.clickhouse, dsn)


def run(snapshot: ConfigSnapshot, data_dir: str | None = None, *, stop: threading.Event | None = None) -> int:
    """Ingest until SIGTERM/SIGINT (or ``stop``). Returns the exit code."""
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    root = t.log.resolved_dir(ddir)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    store = open_store(snapshot, ddir)
    if store is None:
        log.warning("ingest: %s", not_queryable_message())
        stop.wait()
        return 0
    try:
        builder = _Builder(snapshot)
        ingester = Ingester(root, store, builder, batch_rows=t.batch_rows, interval_s=t.flush_interval_ms / 1000,
                            retry_initial_s=t.retry_initial_ms / 1000, retry_max_s=t.retry_max_ms / 1000,
                            target=store.target.display)
    except BaseException:
        store.close()
        raise
    ingester.start()
    log.info("ingest: reading %s into %s", root, store.target.display)
    try:
        while not stop.wait(RELOAD_EVERY_S):
            builder.reload()
    finally:
        ingester.stop(timeout=t.shutdown_timeout_s)
        store.close()
    return 0

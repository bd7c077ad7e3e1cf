"""The ingester on a thread of the serving process: for the demo, the tests and embedders of
``build_app`` (``serve`` runs it in a process of its own instead). The store is then opened in
this process, as before the request log existed: embedded chDB or a server's client.

Several gateways built in one process on one data folder share its log; the first one's
ingester reads it and the others' wait as standbys, taking over when it stops."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConfigSnapshot
from gateway.core.tokens import TokenCounter
from gateway.ingest.builder import row_builder
from gateway.ingest.ingester import Ingester
from gateway.telemetry.clickhouse import ClickHouseStore


class LocalIngester:
    """An ``Ingester`` of ``data_dir``'s request log into ``dsn``, following the config in force."""

    def __init__(self, snapshot: ConfigSnapshot, data_dir: Path, dsn: str, tokens: TokenCounter | None = None):
        t = snapshot.config.telemetry
        self.tokens = tokens or TokenCounter()
        self.builder = row_builder(snapshot, self.tokens)
        self.store = ClickHouseStore(t.clickhouse, dsn)
        self.shutdown_timeout_s = t.shutdown_timeout_s
        self.ingester = Ingester(t.log.resolved_dir(data_dir), self.store, lambda: self.builder,
                                 batch_rows=t.batch_rows, interval_s=t.flush_interval_ms / 1000,
                                 retry_initial_s=t.retry_initial_ms / 1000, retry_max_s=t.retry_max_ms / 1000,
                                 target=self.store.target.display, standby=True)

    def use(self, snapshot: ConfigSnapshot) -> None:
        """Rows of records ingested from now on follow ``snapshot`` (prices, redaction, secrets)."""
        self.builder = row_builder(snapshot, self.tokens)

    def wake(self) -> None:
        self.ingester.wake()

    def stats(self) -> dict:
        return self.ingester.stats()

    def start(self) -> None:
        """Connect to the store (chDB's engine start holds the GIL for a while: better before
        serving than during) and start ingesting. A store that is down is retried with backoff;
        records wait in the log meanwhile."""
        self.ingester.step()  # connects (or notes why not: then retried with backoff)
        self.ingester.start()

    def stop(self) -> None:
        self.ingester.stop(self.shutdown_timeout_s)
        self.store.close()

"""The embedded store of one data folder, owned by one process and served to the others.

``StoreServer(data_dir)`` opens chDB on ``<data_dir>/clickhouse`` (or the directory given),
brings the telemetry schema up to date (``ClickHouseStore.ensure``: the same migrations a
ClickHouse server gets), takes inserts in-process (``insert``: what the ingester calls, with
the batch's deduplication token), and serves reads over ClickHouse's HTTP interface on a
loopback port (``gateway.store.http_interface``) from a thread with its own event loop. While it
serves, ``<data_dir>/store.json`` names its URL for the readers (``gateway.store.discovery``).

The HTTP interface is read-only unless ``writable=True``: the owner writes in-process, and
whoever can reach the port can read the telemetry but not change or drop it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from pathlib import Path

from gateway.config.telemetry import ClickHouseSettings
from gateway.store.availability import require_embedded
from gateway.store.discovery import remove_discovery, write_discovery
from gateway.store.engine import DEFAULT_THREADS
from gateway.store.http_interface import ClickHouseHTTPInterface
from gateway.telemetry.clickhouse import ClickHouseStore, chdb_dir_in_use

log = logging.getLogger("gateway.store")
CHDB_SUBDIR = "clickhouse"
TMP_SUBDIR = "store-tmp"


class StoreBusy(RuntimeError):
    """Another process holds the chDB directory."""


class StoreServer:
    """``with StoreServer(data_dir) as store: store.url`` → ``http://127.0.0.1:PORT``.

    ``settings``: the ``telemetry.clickhouse`` section (database, TTL, insert settings; its DSN
    is not used). ``chdb_dir``: the engine's directory (default ``<data_dir>/clickhouse``).
    ``discovery``: write ``<data_dir>/store.json`` while serving. ``writable``: accept writes
    over HTTP too. ``threads``: read statements that run at once.
    """

    def __init__(self, data_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, *,
                 settings: ClickHouseSettings | None = None, chdb_dir: str | os.PathLike[str] | None = None,
                 discovery: bool = True, writable: bool = False, threads: int = DEFAULT_THREADS):
        self.data_dir = Path(data_dir).absolute()
        self.chdb_dir = Path(chdb_dir).absolute() if chdb_dir else self.data_dir / CHDB_SUBDIR
        self.settings = settings or ClickHouseSettings()
        self.discovery = discovery
        self.http = ClickHouseHTTPInterface(self.chdb_dir, host=host, port=port, readonly=not writable,
                                            threads=threads, tmp_dir=str(self.data_dir / TMP_SUBDIR))
        self._store = ClickHouseStore(self.settings, f"chdb://{self.chdb_dir}")
        self._insert_lock = threading.Lock()
        self._started = False

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def database(self) -> str:
        """The database of the telemetry tables."""
        return self._store.database

    @property
    def migrated(self) -> list[int]:
        """The schema versions applied when the store opened."""
        return self._store.migrated

    def start(self) -> StoreServer:
        """Open the engine, migrate, listen, and write the discovery file. Raises
        ``EmbeddedUnavailable`` without chDB and ``StoreBusy`` when another process holds it."""
        if self._started:
            return self
        require_embedded()
        busy = StoreBusy(f"the embedded store {self.chdb_dir} is held by another process")
        # (the lock is this process's own when chDB already runs here: then opening tells)
        if "chdb" not in sys.modules and chdb_dir_in_use(str(self.chdb_dir)):
            raise busy
        shutil.rmtree(self.data_dir / TMP_SUBDIR, ignore_errors=True)  # a killed owner's staged inserts
        try:
            self.http.engine.open()  # before the migrations: the engine then starts once, here
        except RuntimeError:
            if chdb_dir_in_use(str(self.chdb_dir)):
                raise busy from None
            raise
        try:
            self._store.ensure()
            self.http.start()
        except BaseException:
            self._store.close()
            self.http.stop()
            raise
        self._started = True
        if self.discovery:
            write_discovery(self.data_dir, self.url)
        log.info("store: %s served at %s (database %s)", self.chdb_dir, self.url, self.database)
        return self

    # --- the writer's interface (``gateway.ingest.Ingester``), as ``ClickHouseStore`` has it ------
    @property
    def target(self):
        return self._store.target

    def ensure(self) -> StoreServer:
        """Started (``start``) is connected: the engine is in this process."""
        return self.start()

    def reset(self) -> None:
        """Nothing to reconnect: the engine is in this process."""

    def close(self) -> None:
        self.stop()

    def insert(self, table: str, columns: tuple[str, ...] | list[str], payload: bytes, token: str) -> None:
        """Insert ``payload`` (``JSONCompactEachRow``) into ``table``, deduplicated by ``token``
        (a batch inserted again under the same token lands once). Raises on failure."""
        with self._insert_lock:
            self._store.insert(table, columns, payload, token)

    def stop(self) -> None:
        """Remove the discovery file, stop serving, and release the engine."""
        if self.discovery:
            remove_discovery(self.data_dir)
        self.http.stop()
        with self._insert_lock:
            self._store.close()
        self._started = False

    def __enter__(self) -> StoreServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

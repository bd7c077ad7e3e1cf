"""The ingester: request log → ClickHouse, exactly once.

For each serving process's log (a *writer*), the ingester reads records from the position it
last committed, builds their rows, and inserts them. Exactly once, across crashes of either
side, rests on three rules:

1. Before inserting, the batch's range (start, record count) and its insert deduplication
   token are saved in the writer's checkpoint as *pending*.
2. The committed position moves past the batch only after every table's insert was
   acknowledged.
3. A restarted ingester first re-inserts a pending batch — the very same records, the very
   same token — so an insert that landed before the crash is deduplicated by the store and
   one that did not lands now.

Fully ingested segments that their writer has closed are deleted, so the log's disk use
follows the store. While the store is down the ingester retries with exponential backoff and
the log holds the records (bounded by ``telemetry.log.max_bytes``).

The loop runs on a thread: in its own process (``llm-gateway ingest``, or supervised by
``serve``) or inside a gateway built by ``build_app`` for the demo and the tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.ingest.rows import TableRows, build_rows
from gateway.telemetry.insert_isolating import insert_isolating
from gateway.telemetry.log import Checkpoint, LogReader, Pending, Position
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.values import encode_rows

log = logging.getLogger("gateway.ingest")

CHECKPOINTS = ".ingest"


class Ingester:
    """Tail ``root`` (a request log folder), insert into ``store``.

    ``store``: ``ensure()``, ``insert(table, columns, payload, token)``, ``reset()``, ``close()``
    (``ClickHouseStore`` or the embedded ``StoreServer``). ``builder``: returns the current
    ``RowBuilder`` (the config may change while the ingester runs). ``batch_rows``: most records
    per insert; ``interval_s``: the pause when there is nothing to read.
    """

    def __init__(self, root: Path, store: Any, builder: Callable[[], RowBuilder], *, batch_rows: int = 1000,
                 interval_s: float = 1.0, retry_initial_s: float = 0.5, retry_max_s: float = 30.0):
        self.root = Path(root)
        self.reader = LogReader(self.root)
        self.store = store
        self.builder = builder
        self.batch_rows = batch_rows
        self.interval_s = interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._checkpoints: dict[str, Checkpoint] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = retry_initial_s
        self._retry_at = 0.0
        self.store_up = False
        self.last_error = ""
        # counters
        self.records = 0
        self.rows = 0
        self.batches = 0
        self.rejected = 0  # rows the store refused even alone (written as minimal rows)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gateway-ingester", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        """Ingest until ``stop()``; a pass that moved records is followed at once by another."""
        while not self._stop.is_set():
            try:
                moved = self.step()
            except Exception:  # never let the loop die
                log.exception("ingest: loop error")
                moved = 0
            if moved:
                continue
            now = time.monotonic()
            wait = self.interval_s if self.store_up else max(0.05, self._retry_at - now)
            self._wake.wait(min(wait, self.interval_s))
            self._wake.clear()

    # --- one pass ------------------------------------------------------------------------------
    def step(self) -> int:
        """One pass over every writer: at most one batch each. Returns the records committed."""
        if not self.store_up and time.monotonic() < self._retry_at:
            return 0
        moved = 0
        for writer in self.reader.writers():
            try:
                moved += self._ingest_writer(writer)
            except _StoreDown:
                return moved
        return moved

    def _checkpoint(self, writer: str) -> Checkpoint:
        cp = self._checkpoints.get(writer)
        if cp is None:
            cp = self._checkpoints[writer] = Checkpoint(self.root / CHECKPOINTS / f"{writer}.json")
            cp.load()
        return cp

    def _ingest_writer(self, writer: str) -> int:
        cp = self._checkpoint(writer)
        pending = cp.pending
        if pending is not None:  # a batch that may or may not have landed: redo it exactly
            records = self.reader.read(writer, pending.start, max_records=pending.count)
            if len(records) != pending.count:
                log.error("ingest: pending batch of %s shrank from %d to %d records on re-read", writer,
                          pending.count, len(records))
            token = pending.token
        else:
            records = self.reader.read(writer, cp.position, max_records=self.batch_rows)
            if not records:
                self._tidy(writer, cp)
                return 0
            start = records[0][0]
            token = f"{writer}:{start.segment}:{start.offset}:{len(records)}"
            cp.pending = Pending(start=start, end=records[-1][1], count=len(records), token=token)
            cp.save()
        if records:
            self._insert(build_rows(self.builder(), [payload for _s, _e, payload in records]), token)
            end: Position = records[-1][1]
        else:
            end = cp.pending.end if cp.pending is not None else cp.position
        cp.position = end
        cp.pending = None
        cp.save()
        self.records += len(records)
        self.batches += 1
        self._tidy(writer, cp)
        return len(records)

    def _insert(self, tables: dict[str, TableRows], token: str) -> None:
        try:
            for table, tr in tables.items():
                payload_rows = tr.rows

                def insert(rows: list[list[Any]], suffix: str, _table: str = table, _tr: TableRows = tr) -> None:
                    self.store.insert(_table, _tr.columns, encode_rows(rows), token + suffix)

                rejected = insert_isolating(insert, payload_rows, self.builder(), table)
                self.rejected += rejected
                self.rows += len(payload_rows)
        except Exception as exc:
            self._failed(exc)
            raise _StoreDown from exc
        if not self.store_up:
            log.info("ingest: store reachable; inserting")
        self.store_up = True
        self._backoff = self.retry_initial_s

    def _failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.store_up or self._backoff == self.retry_initial_s:
            log.warning("ingest: store unavailable (%s); records stay in the log, retrying in %.1f s",
                        self.last_error, self._backoff)
        self.store_up = False
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    def _tidy(self, writer: str, cp: Checkpoint) -> None:
        """Delete the writer's closed segments the committed position has passed; forget a
        dead writer whose log is fully ingested."""
        for segment in self.reader.segments(writer):
            if segment >= cp.position.segment:
                break
            if self.reader.closed(writer, segment):
                self.reader.delete(writer, segment)
        if not self.reader.alive(writer) and self.reader.drained(writer, cp.position):
            self.reader.forget(writer)
            cp.remove()
            self._checkpoints.pop(writer, None)

    # --- for the serving side and /admin -------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "rows": self.rows, "batches": self.batches, "rejected_rows": self.rejected,
                "store_up": self.store_up, "last_error": self.last_error}


class _StoreDown(Exception):
    """An insert failed: stop this pass, retry after the backoff."""

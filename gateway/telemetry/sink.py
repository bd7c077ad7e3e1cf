"""The sink: a non-blocking queue in front of a writer thread, with a disk spool behind it.

``emit(ctx)`` runs on the event loop and only appends to a ``deque`` (no lock, no I/O). The
writer thread wakes every ``flush_interval_ms`` (or as soon as ``batch_rows`` are queued),
builds rows, and inserts them as one batch per table. When an insert fails the batch is
spooled to disk and the store is retried with exponential backoff; spooled batches are
replayed oldest-first once inserts succeed again, and at start-up. While the store is down
new batches go straight to the spool. If the queue grows past ``queue_max`` (a store that
hangs), a spill thread moves rows from the queue to the spool, so memory stays bounded and
nothing blocks. A row is dropped only when the spool write itself fails (disk failure):
counted in ``dropped`` and logged at ERROR.

Shutdown (``close``): new rows are no longer accepted in memory, the writer flushes what is
queued, and whatever cannot be written before the deadline (including a batch stuck in an
insert) is spooled. A batch spooled that way may also have landed: its replay is then
deduplicated by the batch's insert token.
"""


from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from gateway.config.telemetry import TelemetrySettings
from gateway.telemetry.columns import ATTEMPT_COLUMN_NAMES, REQUEST_COLUMN_NAMES
from gateway.telemetry.facts import as_facts
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.sink_writer import PendingRows, SinkWriter
from gateway.telemetry.spool import Batch, Part, Spool
from gateway.telemetry.values import encode_rows

log = logging.getLogger("gateway.telemetry")

REQUESTS = "llm_requests"
ATTEMPTS = "llm_attempts"


class TelemetrySink(SinkWriter):
    """Queue + writer thread + spool (the threads' code is ``SinkWriter``'s).

    ``store``: an object with ``ensure()``, ``insert(table, columns, payload, token)`` and
    ``close()`` (``ClickHouseStore``). ``builder``: a ``RowBuilder``. ``spool``: a ``Spool``
    (opened by ``start``). ``settings``: the ``telemetry`` config. ``display``: the store's
    DSN without secrets, for ``stats()``.
    """

    def __init__(self, store: Any, builder: RowBuilder | None, spool: Spool, settings: TelemetrySettings,
                 display: str = ""):
        self.store = store
        self.builder = builder
        self.spool = spool
        self.settings = settings
        self.display = display
        self._queue: deque = deque()
        self._batch_rows = settings.batch_rows
        self._queue_max = settings.queue_max
        self._wake_at = min(settings.batch_rows, settings.queue_max)
        self._interval = settings.flush_interval_ms / 1000
        self._wake = threading.Event()
        self._spill = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._settled_cv = threading.Condition(self._lock)
        self.ready = threading.Event()  # set after the first connection attempt (either outcome)
        self._writer: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._closed = False
        self._deadline: float | None = None
        self._inflight: Batch | None = None
        self._pending = PendingRows()  # prepared (encoded) rows not yet sealed into a batch
        self._flush_requested = False
        # store state
        self._up = False
        self._retry_at = 0.0
        self._backoff = settings.retry_initial_ms / 1000
        # counters (emitted: event loop only; the rest under _lock)
        self.emitted = 0
        self._settled = 0  # rows taken off the queue and written, spooled or dropped
        self.written = 0
        self.spooled = 0
        self.replayed = 0
        self.dropped = 0
        self.batches_written = 0
        self.insert_failures = 0
        self.last_error = ""
        self.last_error_at = 0.0

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Open the spool and start the writer and spill threads."""
        self.spool.open()
        self._writer = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._spiller = threading.Thread(target=self._run_spill, name="telemetry-spill", daemon=True)
        self._writer.start()
        self._spiller.start()

    def emit(self, ctx: Any) -> None:
        """Hand a finished request over (event loop; never blocks, never raises)."""
        if self._closed:
            self._late(ctx)
            return
        q = self._queue
        q.append(ctx)
        self.emitted += 1
        n = len(q)
        if n >= self._wake_at:
            if n > self._queue_max:
                self._spill.set()
            elif not self._wake.is_set():
                self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row emitted before the call is written or spooled; ``False`` on
        timeout. (Blocking: call it from a thread, not the event loop.)"""
        target = self.emitted
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flush_requested = True
        self._wake.set()
        with self._settled_cv:
            while self._settled < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled_cv.wait(min(left, 0.05))
                if self._settled < target:
                    self._wake.set()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop: flush within ``timeout`` seconds (default ``shutdown_timeout_s``), spool the
        rest, release the store and the spool. Blocking; idempotent."""
        if self._closed:
            return
        timeout = self.settings.shutdown_timeout_s if timeout is None else timeout
        self._deadline = time.monotonic() + timeout
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._spill.set()
        writer_done = True
        if self._writer is not None:
            self._writer.join(timeout)
            writer_done = not self._writer.is_alive()
        if self._spiller is not None:
            self._spiller.join(max(1.0, timeout))
        if not writer_done:
            log.warning("telemetry: store did not take the last rows within %.1f s; spooling them", timeout)
            with self._lock:
                inflight = self._inflight
                pending, self._pending = self._pending, PendingRows()
            if inflight is not None:
                self._spool_batch(inflight)
            if pending.rows:
                self._spool_batch(pending.seal())
        self._spool_queue()
        if writer_done:
            try:
                self.store.close()
            except Exception:
                log.debug("telemetry: closing the store failed", exc_info=True)
        self.spool.close()
        log.info("telemetry closed: %s", self._summary())

    # --- stats -----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters for ``/admin/telemetry`` (rows unless named otherwise)."""
        with self._lock:
            return {
                "emitted": self.emitted, "written": self.written, "spooled": self.spooled,
                "replayed": self.replayed, "dropped": self.dropped, "queue_depth": len(self._queue),
                "spool_files": self.spool.files, "spool_rows": self.spool.rows,
                "batches_written": self.batches_written, "insert_failures": self.insert_failures,
                "store": "up" if self._up else "down", "target": self.display,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at or None,
            }

    def _summary(self) -> str:
        s = self.stats()
        return ", ".join(f"{k} {s[k]}" for k in ("emitted", "written", "spooled", "replayed", "dropped",
                                                   "spool_files"))

    # --- batches ---------------------------------------------------------------------
    def _take(self, limit: int) -> list:
        q = self._queue
        items = []
        pop = q.popleft
        try:
            for _ in range(limit):
                items.append(pop())
        except IndexError:
            pass
        return items

    def _make_batch(self, items: list) -> Batch:
        builder = self.builder
        assert builder is not None  # only a sink of other tables (no request rows) has none
        requests, attempts = [], []
        keep_text = builder.bodies.response
        for ctx in items:
            try:  # through the facts record, as the log will carry it
                facts = as_facts(ctx, keep_text=keep_text)
                row = builder.request_row(facts)
                attempts.extend(builder.attempt_rows(facts, row[0]))
            except Exception as exc:  # a bug must not lose the request: log a minimal row
                log.exception("telemetry: could not build the row of request %s", getattr(ctx, "request_id", "?"))
                row = builder.fallback_row(ctx, exc)
            requests.append(row)
        parts = [Part(REQUESTS, REQUEST_COLUMN_NAMES, encode_rows(requests), len(requests))]
        if attempts:
            parts.append(Part(ATTEMPTS, ATTEMPT_COLUMN_NAMES, encode_rows(attempts), len(attempts)))
        return Batch.new(parts)

    def _insert(self, batch: Batch) -> None:
        for part in batch.parts:
            self.store.insert(part.table, part.columns, part.payload, f"{batch.token}:{part.table}")

    def _settle(self, batch: Batch, how: str, rows: int | None = None) -> bool:
        """Mark ``batch`` settled; returns False when someone else settled it first."""
        with self._lock:
            first = not batch.settled
            batch.settled = True
            n = batch.rows if rows is None else rows
            if how == "written":
                self.written += n
                self.batches_written += 1
            elif how == "spooled" and first:
                self.spooled += n
            elif how == "dropped" and first:
                self.dropped += n
            if first:
                self._settled += n
                self._settled_cv.notify_all()
            if self._inflight is batch:
                self._inflight = None
            return first

    def _spool_batch(self, batch: Batch) -> None:
        if batch.settled:
            return
        try:
            self.spool.write(batch)
        except OSError as exc:
            self._settle(batch, "dropped")
            log.error("telemetry: DROPPED %d rows: the spool write failed (%s: %s); %d rows dropped so far",
                      batch.rows, type(exc).__name__, exc, self.dropped)
            return
        self._settle(batch, "spooled")

    def _spool_queue(self) -> None:
        while self._queue:
            self._spool_batch(self._make_batch(self._take(self._batch_rows)))

    def _late(self, ctx: Any) -> None:
        """A row emitted after close: straight to the spool (shutdown edge only); a later start
        adopts the file."""
        self.emitted += 1
        try:
            if self.spool.dir is None:
                self.spool.open()
            self._spool_batch(self._make_batch([ctx]))
        except Exception:
            log.exception("telemetry: could not spool a late row")

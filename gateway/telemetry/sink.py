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
from gateway.telemetry.record import ATTEMPT_COLUMN_NAMES, REQUEST_COLUMN_NAMES, RowBuilder, encode_rows, scrub_secrets
from gateway.telemetry.spool import Batch, Part, Spool

log = logging.getLogger("gateway.telemetry")

REQUESTS = "llm_requests"
ATTEMPTS = "llm_attempts"
_ADOPT_EVERY_S = 30.0
_REPLAY_BUDGET_S = 2.0
_PREPARE_EVERY_S = 0.05


class _Pending:
    """Encoded rows waiting for their batch: parts merged by (table, columns)."""

    __slots__ = ("parts", "rows", "since", "kind")

    def __init__(self):
        self.parts: dict[tuple[str, tuple[str, ...]], list] = {}
        self.rows = 0
        self.since = 0.0
        self.kind: type[Batch] = Batch

    def add(self, batch: Batch) -> None:
        if not self.rows:
            self.since = time.monotonic()
            self.kind = type(batch)
        for p in batch.parts:
            slot = self.parts.setdefault((p.table, p.columns), [[], 0])
            slot[0].append(p.payload)
            slot[1] += p.rows
        self.rows += batch.rows

    def seal(self) -> Batch:
        return self.kind.new([Part(table, columns, b"".join(chunks), rows)
                              for (table, columns), (chunks, rows) in self.parts.items()])


class TelemetrySink:
    """Queue + writer thread + spool.

    ``store``: an object with ``ensure()``, ``insert(table, columns, payload, token)`` and
    ``close()`` (``ClickHouseStore``). ``builder``: a ``RowBuilder``. ``spool``: a ``Spool``
    (opened by ``start``). ``settings``: the ``telemetry`` config. ``display``: the store's
    DSN without secrets, for ``stats()``.
    """

    def __init__(self, store: Any, builder: RowBuilder, spool: Spool, settings: TelemetrySettings,
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
        self._pending = _Pending()  # prepared (encoded) rows not yet sealed into a batch
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
                pending, self._pending = self._pending, _Pending()
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
        requests, attempts = [], []
        for ctx in items:
            try:
                row = builder.request_row(ctx)
                attempts.extend(builder.attempt_rows(ctx, row[0]))
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

    def _failed(self, exc: BaseException, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.insert_failures += 1
            was_up = self._up
            self._up = False
            self.last_error = scrub_secrets(f"{type(exc).__name__}: {exc}")[:500]
            self.last_error_at = time.time()
            self._retry_at = now + self._backoff
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self.settings.retry_max_ms / 1000)
        log_fn = log.warning if was_up or self.insert_failures == 1 else log.debug
        log_fn("telemetry: %s failed (%s); spooling, next try in %.1f s", what, self.last_error, delay)

    def _succeeded(self) -> None:
        with self._lock:
            if not self._up and self.insert_failures:
                log.info("telemetry: store %s is reachable again", self.display)
            self._up = True
            self._backoff = self.settings.retry_initial_ms / 1000

    def _store_allowed(self, now: float) -> bool:
        return self._up or now >= self._retry_at

    def _write(self, batch: Batch) -> None:
        now = time.monotonic()
        past_deadline = self._deadline is not None and now > self._deadline
        if past_deadline or not self._store_allowed(now):
            self._spool_batch(batch)
            return
        with self._lock:
            self._inflight = batch
        try:
            self._insert(batch)
        except Exception as exc:
            self._failed(exc, "insert")
            self._spool_batch(batch)
            return
        self._succeeded()
        self._settle(batch, "written")

    # --- the writer thread -----------------------------------------------------------
    def _run(self) -> None:
        try:
            self.store.ensure()
            self._succeeded()
        except Exception as exc:
            self._failed(exc, "connecting to the store")
        self.ready.set()
        next_adopt = time.monotonic() + _ADOPT_EVERY_S
        while True:
            now = time.monotonic()
            if len(self._queue) < self._batch_rows and not self._stop.is_set() and not self._flush_requested:
                # Wake to prepare rows soon after they arrive (finished requests are freed quickly,
                # which keeps the garbage collector's work on the event loop small), to seal a
                # batch when it is due, and to replay as soon as the store may be tried.
                timeout = _PREPARE_EVERY_S if self._queue else self._interval
                if self._pending.rows:
                    timeout = min(timeout, self._pending.since + self._interval - now)
                if self.spool.files:
                    timeout = min(timeout, 0.0 if self._up else self._retry_at - now)
                self._wake.wait(max(0.0, timeout))
            self._wake.clear()
            stopping = self._stop.is_set()
            with self._lock:
                flush_now, self._flush_requested = self._flush_requested, False
            try:
                self._prepare()
                now = time.monotonic()
                if self._pending.rows and (flush_now or stopping or now >= self._pending.since + self._interval):
                    self._write(self._seal())
                if not stopping:
                    self._replay()
                    if now >= next_adopt:
                        next_adopt = now + _ADOPT_EVERY_S
                        self.spool.adopt()
            except Exception:  # never let the writer die
                log.exception("telemetry: writer loop error")
                time.sleep(0.1)
            if stopping and not self._queue and not self._pending.rows:
                return

    def _prepare(self) -> None:
        """Turn queued requests into encoded rows (``_pending``); write each full batch."""
        while self._queue:
            items = self._take(self._batch_rows - self._pending.rows)
            if not items:
                return
            part = self._make_batch(items)
            with self._lock:
                self._pending.add(part)
            if self._pending.rows >= self._batch_rows:
                self._write(self._seal())

    def _seal(self) -> Batch:
        """The pending rows as one batch with a fresh deduplication token."""
        with self._lock:
            pending, self._pending = self._pending, _Pending()
            batch = pending.seal()
            self._inflight = batch
        return batch

    def _replay(self) -> None:
        if not self.spool.files:
            return
        if not self._store_allowed(time.monotonic()):
            return
        started = time.monotonic()
        for path in self.spool.pending():
            try:
                batch = self.spool.read(path)
            except (OSError, ValueError) as exc:
                dest = self.spool.quarantine(path)
                log.error("telemetry: unreadable spool file moved to %s (%s)", dest, exc)
                continue
            try:
                self._insert(batch)
            except Exception as exc:
                self._failed(exc, "replaying the spool")
                return
            self._succeeded()
            self.spool.remove(path)
            with self._lock:
                self.replayed += batch.rows
            if time.monotonic() - started > _REPLAY_BUDGET_S or len(self._queue) >= self._batch_rows:
                return  # let new rows through; the rest is replayed on the next round

    # --- the spill thread ------------------------------------------------------------
    def _run_spill(self) -> None:
        low = self._queue_max // 2
        while True:
            self._spill.wait()
            self._spill.clear()
            if self._stop.is_set():
                return
            spilled = 0
            while len(self._queue) > low:
                items = self._take(min(self._batch_rows, len(self._queue) - low))
                if not items:
                    break
                self._spool_batch(self._make_batch(items))
                spilled += len(items)
            if spilled:
                log.warning("telemetry: queue over %d rows; spilled %d rows to the spool", self._queue_max, spilled)

"""The writer thread's half of the telemetry sink: preparing queued requests into encoded rows,
sealing them into batches, inserting (or spooling on failure, with backoff while the store is
down), replaying the spool, and the spill thread that keeps the queue bounded.

``SinkWriter`` is a mixin of ``TelemetrySink`` (``gateway.telemetry.sink``): the queue, locks,
counters and settings it works on are the sink's, set up in its ``__init__``; this module only
holds the code that runs on the writer and spill threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from gateway.telemetry.scrub import scrub_secrets
from gateway.telemetry.spool import Batch, Part, Spool

log = logging.getLogger("gateway.telemetry")

_ADOPT_EVERY_S = 30.0
_REPLAY_BUDGET_S = 2.0
_PREPARE_EVERY_S = 0.05


class PendingRows:
    """Encoded rows waiting for their batch: parts merged by (table, columns)."""

    __slots__ = ("parts", "rows", "since", "kind")

    def __init__(self) -> None:
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


class SinkWriter:
    """The writer and spill threads' methods of ``TelemetrySink`` (see the module docstring)."""

    # Set up by TelemetrySink.__init__; declared for readers and type checkers.
    store: Any
    settings: Any
    display: str
    spool: Spool
    ready: threading.Event
    _queue: deque
    _batch_rows: int
    _queue_max: int
    _interval: float
    _wake: threading.Event
    _spill: threading.Event
    _stop: threading.Event
    _lock: threading.Lock
    _deadline: float | None
    _inflight: Batch | None
    _pending: PendingRows
    _flush_requested: bool
    _up: bool
    _retry_at: float
    _backoff: float
    insert_failures: int
    replayed: int
    last_error: str
    last_error_at: float

    if TYPE_CHECKING:  # TelemetrySink's own methods, called from these threads
        def _take(self, limit: int) -> list: ...
        def _make_batch(self, items: list) -> Batch: ...
        def _insert(self, batch: Batch) -> None: ...
        def _settle(self, batch: Batch, how: str, rows: int | None = None) -> bool: ...
        def _spool_batch(self, batch: Batch) -> None: ...

    # --- the store's health ------------------------------------------------------------
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
            pending, self._pending = self._pending, PendingRows()
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

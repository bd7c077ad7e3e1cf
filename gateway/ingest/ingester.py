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
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.ingest.claim import IngesterBusy, claim_log
from gateway.ingest.rows import REQUESTS, TableRows, build_rows
from gateway.telemetry.facts_insert import insert_rows
from gateway.telemetry.log import Checkpoint, LogReader, Pending, WriterState
from gateway.telemetry.log.reader import Position
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.scrub import scrub_secrets
from gateway.telemetry.values import encode_rows

log = logging.getLogger("gateway.ingest")

CHECKPOINT = Path(".ingest") / "checkpoint.json"  # under the log root, beside the writers' folders
STATUS = Path(".ingest") / "status.json"  # what /admin/telemetry of every serving process shows
STATUS_EVERY_S = 0.5
MAX_BATCH_BYTES = 8 << 20


class Ingester:
    """Tail ``root`` (a request log folder), insert into ``store``.

    ``store``: ``ensure()``, ``insert(table, columns, payload, token)``, ``reset()``, ``close()``
    (``ClickHouseStore`` or the embedded ``StoreServer``). ``builder``: returns the current
    ``RowBuilder`` (the config may change while the ingester runs). ``batch_rows``: most records
    per insert; ``interval_s``: the pause when there is nothing to read. ``standby``: when another
    ingester holds the log, wait for it to let go (checking every ``interval_s``) instead of
    refusing: for gateways built in one process on one data folder, whose records the holder
    ingests meanwhile (they share the log).
    """

    def __init__(self, root: Path, store: Any, builder: Callable[[], RowBuilder], *, batch_rows: int = 1000,
                 interval_s: float = 1.0, retry_initial_s: float = 0.5, retry_max_s: float = 30.0,
                 target: str = "", standby: bool = False):
        self.root = Path(root)
        self.reader = LogReader(self.root)
        self.store = store
        self.builder = builder
        self.batch_rows = batch_rows
        self.interval_s = interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.standby = standby
        self.checkpoint = Checkpoint(self.root / CHECKPOINT)
        self.states: dict[str, WriterState] = {}
        self._lock_fd: int | None = None
        self._claim_at = 0.0
        self._claim()  # raises IngesterBusy unless standby: one ingester per log
        self._status_failed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = retry_initial_s
        self._full_batch = False
        self._drain_s = 0.0
        self._retry_at = 0.0
        self.store_up = False
        self.last_error = ""
        self.target = target  # the store, for people (no secrets)
        self._status_path = self.root / STATUS
        self._status_at = 0.0
        # counters
        self.records = 0
        self.rows = 0
        self.batches = 0
        self.rejected = 0  # rows the store refused even alone (written as minimal rows)
        self.failures = 0  # failed connections and inserts

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gateway-ingester", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after ingesting what the log holds now, for up to ``timeout`` s (what is left
        waits in the log for the next start)."""
        self._drain_s = timeout
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout + 5)
        self.close()

    def close(self) -> None:
        """Release the log (another ingester may take it)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def wake(self) -> None:
        self._wake.set()

    def _claim(self) -> bool:
        """Take the log (then read where the last holder stopped); ``False`` while a standby waits."""
        self._claim_at = time.monotonic()
        try:
            self._lock_fd = claim_log(self.root)
        except IngesterBusy:
            if not self.standby:
                raise
            return False
        self.states = self.checkpoint.load()
        self._reserve()  # room to commit even once the log has filled its disk
        return True

    def run(self) -> None:
        """Ingest until ``stop()``. A pass that filled a batch is followed at once by another;
        otherwise the next waits ``interval_s`` (or a ``wake()``), so inserts stay large and few."""
        while not self._stop.is_set():
            try:
                self.step()
                self._publish()
            except Exception:  # never let the loop die
                log.exception("ingest: loop error")
            if self._full_batch:
                continue
            idle = self.store_up or self._lock_fd is None
            wait = self.interval_s if idle else max(0.05, self._retry_at - time.monotonic())
            self._wake.wait(min(wait, self.interval_s))
            self._wake.clear()
        deadline = time.monotonic() + self._drain_s
        while time.monotonic() < deadline and self.store_up:
            try:
                if not self.step():
                    break
            except Exception:
                log.exception("ingest: error while draining at stop")
                break
        self._publish(force=True)

    # --- one pass ------------------------------------------------------------------------------
    def step(self) -> int:
        """One pass over every writer: at most one batch each. Returns the records committed."""
        self._full_batch = False
        if self._lock_fd is None and (time.monotonic() - self._claim_at < self.interval_s or not self._claim()):
            return 0  # a standby: the holder ingests this log
        if not self.store_up:
            if time.monotonic() < self._retry_at:
                return 0
            try:
                self.store.ensure()  # connect and migrate before the first batch, and after a failure
            except Exception as exc:
                self._failed(exc)
                return 0
            self._up()
        moved = 0
        for writer in self.reader.writers():
            try:
                moved += self._ingest_writer(writer)
            except _StoreDown:
                return moved
        return moved

    def _ingest_writer(self, writer: str) -> int:
        state = self.states.get(writer) or WriterState(Position.origin())
        pending = state.pending
        if pending is not None:  # a batch that may or may not have landed: redo it exactly
            records = self.reader.read_range(writer, pending.start, pending.end)
            next_position = pending.end
        else:
            got = self.reader.read(writer, state.position, max_records=self.batch_rows, max_bytes=MAX_BATCH_BYTES)
            if not got:
                if got.next != state.position:  # past an empty closed segment or a torn tail
                    self._commit(writer, WriterState(got.next))
                self._tidy(writer, got.next)
                return 0
            records, next_position = list(got), got.next
            pending = Pending.for_records(writer, records)
            self._commit(writer, WriterState(state.position, pending))
        if records:
            self._insert(build_rows(self.builder(), [r.payload for r in records]), pending.token)
        self._commit(writer, WriterState(next_position))
        self.records += len(records)
        self.batches += 1
        self._full_batch = self._full_batch or len(records) >= self.batch_rows
        self._tidy(writer, next_position)
        return max(1, len(records))

    def _commit(self, writer: str, state: WriterState) -> None:
        self.states[writer] = state
        self.checkpoint.save(self.states)

    def _insert(self, tables: dict[str, TableRows], token: str) -> None:
        builder = self.builder()
        try:
            for table, tr in tables.items():
                def insert(rows: list[list[Any]], tok: str, _table: str = table, _cols=tr.columns) -> None:
                    self.store.insert(_table, _cols, encode_rows(rows), tok)

                # The same token for each table: deduplication is per table.
                done = insert_rows(insert, tr.rows, token, builder.rejected_row if table == REQUESTS else None)
                self.rows += done.inserted + done.stand_ins
                self.rejected += done.stand_ins + done.lost
        except Exception as exc:
            self._failed(exc)
            raise _StoreDown from exc

    def _up(self) -> None:
        if self.last_error:
            log.info("ingest: the store is reachable again; inserting")
        self.store_up = True
        self.last_error = ""
        self._backoff = self.retry_initial_s

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = scrub_secrets(f"{type(exc).__name__}: {exc}")[:300]
        if self.store_up or self._backoff == self.retry_initial_s:
            log.warning("ingest: store unavailable (%s); records stay in the log, retrying in %.1f s",
                        self.last_error, self._backoff)
        self.store_up = False
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    def _tidy(self, writer: str, position: Position) -> None:
        """Delete the writer's closed segments before ``position`` (all committed); forget a dead
        writer whose log is fully ingested."""
        segments = self.reader.segments(writer)
        deleted = False
        for segment in segments:
            if segment >= position.segment:
                break
            deleted = self.reader.delete(writer, segment) or deleted
        if deleted:
            self._reserve()  # taken back first, before the log's writers fill the room again
        if self.reader.alive(writer):
            return
        last = segments[-1] if segments else None
        if last is None or (last == position.segment and position.offset >= self.reader.size(writer, last)):
            if last is not None:
                self.reader.delete(writer, last)
            if self.reader.remove_writer(writer):
                self.states.pop(writer, None)
                self.checkpoint.save(self.states)

    # --- for the serving side and /admin -------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        if self._lock_fd is None:  # a standby: the holder's counters
            try:
                return {**orjson.loads(self._status_path.read_bytes()), "standby": os.getpid()}
            except (OSError, orjson.JSONDecodeError):
                return {"store": "unknown", "standby": os.getpid()}
        return {"store": "up" if self.store_up else "down", "target": self.target, "last_error": self.last_error,
                "records": self.records, "rows": self.rows, "batches": self.batches, "rejected_rows": self.rejected,
                "failures": self.failures, "skipped_bytes": self.reader.skipped_bytes, "pid": os.getpid(),
                "at": time.time()}

    def _publish(self, force: bool = False) -> None:
        """Write ``stats()`` where the serving processes read it (at most every STATUS_EVERY_S)."""
        now = time.monotonic()
        if self._lock_fd is None or (now - self._status_at < STATUS_EVERY_S and not force):
            return
        self._status_at = now
        tmp = self._status_path.with_name(f".status.tmp-{os.getpid()}")
        try:
            self._status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(orjson.dumps(self.stats()))
            os.replace(tmp, self._status_path)
        except OSError as exc:  # e.g. the log's disk is full: the counters wait, ingesting goes on
            tmp.unlink(missing_ok=True)
            if not self._status_failed:
                log.warning("ingest: cannot publish the ingester's status (%s); retrying", exc)
            self._status_failed = True
            return
        self._status_failed = False

    def _reserve(self) -> None:
        try:
            self.checkpoint.keep_reserve()
        except OSError as exc:
            log.warning("ingest: cannot reserve room for the checkpoint (%s)", exc)


class _StoreDown(Exception):
    """An insert failed: stop this pass, retry after the backoff."""

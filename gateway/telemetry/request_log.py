"""The serving process's side of telemetry: one durable record per request, nothing more.

``emit(ctx)`` is the first finisher of every request: it encodes the request's facts
(``facts.encode_request``) and appends them to this process's request log
(``LogWriter.append``: one ``write()`` into the page cache, so the record survives a
``kill -9`` of this process the moment ``emit`` returns). Rows are built and inserted by the
ingester, in another process (``gateway.ingest``) or, for the demo and the tests, on a thread
of this one. ``emit_row`` does the same for the prompt-version and feedback tables.

``flush(timeout)`` waits until the ingester has committed everything this process wrote so
far (it reads the ingester's checkpoint of this writer), which is what "the row is in the
store" means to the admin flush endpoint and the tests.
"""

from __future__ import annotations

import collections
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.config.telemetry import TelemetrySettings
from gateway.telemetry import facts
from gateway.telemetry.log import Checkpoint, LogWriter, Position

log = logging.getLogger("gateway.telemetry")

CHECKPOINT = Path(".ingest") / "checkpoint.json"  # the ingester's committed positions, under the log root
STATUS = Path(".ingest") / "status.json"  # the ingester's counters and store state
MAX_MARKS = 512  # lag marks kept while records wait; beyond, thinned (the oldest is always kept)


class RequestLog:
    """A ``LogWriter`` with the request encoder in front and the ingester's progress behind.

    ``ingester``: the ingester when it runs on a thread of this process (a flush wakes it);
    ``None`` when it runs in another process, which polls and publishes its counters in a file.
    """

    def __init__(self, root: Path, settings: TelemetrySettings, *, ingester: Any = None):
        self.root = Path(root)
        self.settings = settings
        self.writer = LogWriter(self.root, settings.log, reserve_dir=(self.root / CHECKPOINT).parent)
        self._ingester = ingester
        self._keep_text = bool(settings.bodies.response)
        self._checkpoint: Checkpoint | None = None
        # (writer position, when) as successive polls saw them while records wait for the
        # ingester; the first mark past the committed position dates the oldest waiting record.
        self._marks: collections.deque[tuple[Position, float]] = collections.deque()
        # Records made before ``open`` (the prompt versions of the first config, recorded when it
        # is compiled, before the features start), written when it opens.
        self._early: list[bytes] | None = []

    def open(self) -> None:
        self.writer.open()
        self._checkpoint = Checkpoint(self.root / CHECKPOINT)
        early, self._early = self._early, None
        for payload in early or ():
            self.writer.append(payload)

    def close(self) -> None:
        self.writer.close()

    @property
    def accepting(self) -> bool:
        """False when the log is full under ``when_full: reject`` (serve nothing unlogged)."""
        return self.writer.accepting

    # --- the request path (event loop) ---------------------------------------------------------
    def emit(self, ctx: Any) -> None:
        keep_text = self._keep_text or not ctx.usage.reported()
        self.writer.append(facts.encode_request(ctx, keep_text=keep_text))

    def emit_row(self, table: str, columns: tuple[str, ...], row: list[Any]) -> None:
        payload = facts.encode_table_row(table, columns, row)
        if self._early is not None:
            self._early.append(payload)
        else:
            self.writer.append(payload)

    # --- progress ------------------------------------------------------------------------------
    def ingested(self) -> bool:
        """Whether the ingester has committed every record this process wrote."""
        return self._committed() is None

    def _committed(self) -> Position | None:
        """``None`` when everything this process wrote is ingested; else the ingester's committed
        position in this writer's log (the origin when it has none yet)."""
        if self._checkpoint is None or not self.writer.written:
            return None
        try:
            state = self._checkpoint.load().get(self.writer.writer_id)
        except (OSError, ValueError):
            return Position.origin()
        if state is None:
            return Position.origin()
        if state.pending is None and state.position >= self.writer.position():
            return None
        return state.position

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` s for the ingester to commit what was written so far."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ingested():
                return True
            if time.monotonic() >= deadline:
                return False
            if self._ingester is not None:
                self._ingester.wake()
            time.sleep(0.02)

    def degraded(self) -> str | None:
        """Why ``/readyz`` should say degraded, or ``None``."""
        reason = self.writer.degraded_reason()
        if reason:
            return reason
        lag = self.lag_s()
        if lag is not None and lag > self.settings.log.lag_degraded_s:
            return f"request log: the ingester is {lag:.0f} s behind"
        return None

    def lag_s(self) -> float | None:
        """How long the oldest record not yet ingested has been waiting, as seen by successive
        polls (``/readyz``, ``/admin/telemetry``); ``None`` when everything written is ingested.

        Each poll notes where the log ends (a mark); the oldest waiting record was written before
        the first mark past the ingester's committed position, so the lag is that mark's age (to
        within one poll interval). Under steady load records are always waiting, but none for
        long: the lag stays small as long as the ingester keeps passing the marks."""
        committed = self._committed()
        marks = self._marks
        if committed is None:
            marks.clear()
            return None
        now = time.monotonic()
        while marks and marks[0][0] <= committed:
            marks.popleft()
        head = self.writer.position()
        if not marks or marks[-1][0] != head:
            marks.append((head, now))
            if len(marks) > MAX_MARKS:  # a long outage: keep the oldest and every other one after it
                kept = list(marks)
                marks.clear()
                marks.extend(kept[:1] + kept[1::2])
        return now - marks[0][1]

    def stats(self) -> dict[str, Any]:
        """The log's counters (``LogWriter.stats``), whether everything is ingested, the lag, and
        the ingester's counters when it runs in this process."""
        out = dict(self.writer.stats())
        out["lag_s"] = self.lag_s()
        out["ingested"] = out["lag_s"] is None
        if self._ingester is not None:
            out["ingester"] = self._ingester.stats()
        else:
            try:
                out["ingester"] = orjson.loads((self.root / STATUS).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                out["ingester"] = None  # not started yet (or not here: an external ingester elsewhere)
        return out

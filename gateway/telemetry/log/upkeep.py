"""The request log writer's background thread: the work ``append`` must not do.

Every tick (``TICK_S``, or the fsync interval when shorter) it fsyncs the active segment if the
``interval`` policy is due and something was written, closes a segment that has held records
for ``segment_age_s`` (an idle writer's segment must still close, or the ingester could never
delete it), fsyncs and closes the fds of closed segments, fsyncs the folder after a new
segment, re-measures the log root every ``RESCAN_S``, and reopens a segment after a failed
write. Under ``fsync: never`` it fsyncs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.telemetry.log.writer import LogWriter

log = logging.getLogger("gateway.telemetry.log")

TICK_S = 0.1
RESCAN_S = 0.5


class Upkeep:
    """Runs ``writer``'s periodic work on a daemon thread until ``stop()``."""

    def __init__(self, writer: LogWriter):
        self.writer = writer
        settings = writer.settings
        self.interval_s = settings.fsync_interval_ms / 1000 if settings.fsync == "interval" else None
        self.tick_s = min(TICK_S, self.interval_s) if self.interval_s else TICK_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"request-log-{writer.writer_id}", daemon=True)
        self.ticks = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        next_sync = next_scan = time.monotonic()
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            try:
                if self.interval_s is not None and now >= next_sync:
                    next_sync = now + self.interval_s
                    self.writer.sync_active()
                self.writer.rotate_if_old(now)
                self.writer.drain_retired()
                self.writer.sync_dir()
                if now >= next_scan:
                    next_scan = now + RESCAN_S
                    self.writer.rescan()
                self.writer.retry_after_failure(now)
            except Exception:  # a bug here must not end the thread: the next tick tries again
                log.exception("request log upkeep failed")
            self.ticks += 1


__all__ = ["RESCAN_S", "TICK_S", "Upkeep"]

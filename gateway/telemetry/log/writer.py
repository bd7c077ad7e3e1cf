"""``LogWriter``: one serving process's appends to the request log.

``append`` runs on the event loop at the end of every request, so it does one ``os.write`` of
the frame on an ``O_APPEND`` fd and nothing slow: the record is then in the page cache, which
survives a ``kill -9`` of the process. It never raises; it answers True when the record was
written and False when it is lost (the log is full, or the disk failed), and counts every loss.

A background thread (``gateway.telemetry.log.upkeep``) does the rest: the ``interval`` fsyncs,
closing a segment that has been open ``segment_age_s`` (so an idle writer's records become
deletable), fsyncing and closing the fds of closed segments, re-measuring the whole log root
every ``RESCAN_S`` (other writers and the ingester change it), and reopening a segment after a
failed write once the disk has room again.

One ``threading.Lock`` guards the fd and the segment bookkeeping, because the thread rotates
segments too; it is uncontended on the hot path, and the thread never fsyncs while holding it.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from gateway.config.telemetry import LogSettings
from gateway.telemetry.log import layout
from gateway.telemetry.log.framing import encode_frame
from gateway.telemetry.log.reader import Position
from gateway.telemetry.log.reserve import RESUME_FREE_BYTES, free_bytes, keep_reserve
from gateway.telemetry.log.upkeep import Upkeep

log = logging.getLogger("gateway.telemetry.log")

RETRY_S = 1.0          # after a failed write, wait this long before opening a fresh segment
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
sync_fd = getattr(os, "fdatasync", os.fsync)  # data and size; the name is made durable by fsync_dir

_monotonic = time.monotonic
_write = os.write


class LogWriter:
    """Appends framed records to ``<root>/<writer_id>/*.seg``; see the module docstring. Create
    and open it in the process that appends (after any fork): the lock and the thread are its.

    ``reserve_dir``: the ingester's checkpoint folder, whose room reserve
    (``gateway.telemetry.log.reserve``) the writer creates when it opens and leaves in place
    when it resumes after a full disk."""

    def __init__(self, root: Path, settings: LogSettings, writer_id: str | None = None,
                 reserve_dir: Path | None = None):
        self.root = Path(root)
        self.reserve_dir = reserve_dir
        self.settings = settings
        self.writer_id = layout.check_writer_id(writer_id or layout.default_writer_id())
        self.dir = self.root / self.writer_id
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None           # the active segment (None: not open, failed or closed)
        self._segment: str | None = None
        self._sequence = 0                    # number of the next segment to create
        self._seg_bytes = 0
        self._seg_first_at = 0.0              # monotonic time of the active segment's first record
        self._segment_max = settings.segment_bytes
        self._age = settings.segment_age_s
        self._max = settings.max_bytes
        self._always = settings.fsync == "always"
        self._reject = settings.when_full == "reject"
        # (fd, unsynced writes) of closed segments, for the upkeep thread to fsync and close:
        # only that thread closes fds, so it can fsync the active fd without the lock.
        self._retired: list[tuple[int, bool]] = []
        self._dirty = False                   # written since the last fsync of the active fd
        self._dir_dirty = False               # a segment was created since the folder's last fsync
        self._own = 0                         # bytes this writer put under root (torn ones too)
        self._base = 0                        # root bytes at the last rescan, less self._own then
        self._refused = 0                     # size of the last record refused for room (0: not full)
        self._last = 0                        # size of the last record written: the next one's likely size
        self._error: str | None = None
        self._retry_at = 0.0
        self._opened = False
        self._closed = False
        self.written = 0
        self.lost = 0
        self.lost_full = 0
        self.lost_error = 0
        self.fsyncs = 0
        self.segments_opened = 0
        self._upkeep: Upkeep | None = None

    # ---- life cycle -------------------------------------------------------------------------

    def open(self) -> LogWriter:
        """Create the writer's folder, lock it for this writer's lifetime, open the first segment
        and start the upkeep thread. Raises ``OSError``/``RuntimeError`` when the folder cannot
        be created or another live writer holds it; a first segment that cannot be created only
        makes the writer degraded (it retries)."""
        if self._opened:
            return self
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)  # records hold request bodies: owner only
        self._reserve_in_place()  # before any record: the ingester can commit on a full disk
        self._lock_fd = layout.lock_writer_dir(self.dir)
        existing = layout.list_segments(self.dir)
        self._sequence = int(existing[-1]) + 1 if existing else 0
        with self._lock:
            try:
                self._start_segment()
            except OSError as exc:
                self._fail(f"cannot open a segment: {_describe(exc)}")
        if self.settings.fsync != "never":
            layout.fsync_dir(self.root)
        self._base = layout.root_bytes(self.root)
        self._opened = True
        self._upkeep = Upkeep(self)
        self._upkeep.start()
        return self

    def close(self) -> None:
        """Stop the thread, fsync what was written (unless ``fsync: never``), close the segment
        (an empty one is removed) and release the lock: the reader then sees every segment of
        this writer as closed. Appends after this are counted as lost."""
        if self._closed or not self._opened:
            self._closed = True
            return
        if self._upkeep is not None:
            self._upkeep.stop()
        with self._lock:
            self._closed = True
            fd, self._fd = self._fd, None
            if fd is not None:
                if self._seg_bytes == 0 and self._segment is not None:
                    _unlink(layout.segment_path(self.dir, self._segment))
                self._retired.append((fd, self._dirty))
        self.drain_retired()
        self.sync_dir()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> LogWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the hot path -----------------------------------------------------------------------

    def append(self, payload: bytes) -> bool:
        """Write one record; True when written, False when lost (and counted). Never raises."""
        try:
            frame = encode_frame(payload)
        except (ValueError, TypeError) as exc:
            log.warning("request log: record refused: %s", exc)
            self.lost += 1
            self.lost_error += 1
            return False
        n = len(frame)
        with self._lock:
            if self._base + self._own + n > self._max:
                self._refused = n
                self.lost += 1
                self.lost_full += 1
                return False
            if self._seg_bytes and (self._seg_bytes + n > self._segment_max
                                    or _monotonic() - self._seg_first_at >= self._age):
                self._rotate()
            fd = self._fd
            if fd is None:
                self.lost += 1
                self.lost_error += 1
                return False
            done = 0
            try:
                done = _write(fd, frame)
                while 0 < done < n:  # short (the disk filling up): write the rest, or learn why not
                    more = _write(fd, memoryview(frame)[done:])
                    if not more:
                        break
                    done += more
            except OSError as exc:
                self._write_failed(f"write failed: {_describe(exc)}", done)
                return False
            except Exception as exc:  # the request must never see it
                self._write_failed(f"write failed: {exc!r}", done)
                return False
            if done != n:
                self._write_failed(f"short write ({done} of {n} bytes)", done)
                return False
            if not self._seg_bytes:
                self._seg_first_at = _monotonic()
            self._seg_bytes += n
            self._own += n
            self._last = n
            self.written += 1
            if self._always:
                try:
                    sync_fd(fd)
                    self.fsyncs += 1
                except OSError as exc:
                    # the record is in the file (the ingester reads it), so it is not lost; but
                    # after a failed fsync the segment cannot be trusted to reach the disk
                    self._abandon(f"fsync failed: {_describe(exc)}", dirty=False)
            else:
                self._dirty = True
        return True

    # ---- state for the serving process --------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """False under ``when_full: reject`` while the log is full (a record the size of the
        last one would not fit) or cannot be written: the caller answers 503 rather than serve a
        request it could not log. Always True under ``serve``."""
        return not self._reject or (self._fd is not None and not self.full)

    @property
    def full(self) -> bool:
        """A record was refused for room, or one the size of the last would not fit."""
        return bool(self._refused) or self._base + self._own + self._last > self._max

    def degraded_reason(self) -> str | None:
        """Why records are (or may be) lost now, in a few words; None when the log is fine."""
        if self._error:
            return f"request log: {self._error}"
        if self.full:
            action = "requests are refused" if self._reject else "records are dropped"
            return f"request log full (~{self._base + self._own} of {self._max} bytes): {action}"
        return None

    def position(self) -> Position:
        """Where the next record will start: the ingester has read everything written so far
        once its committed position for this writer reaches it."""
        return Position(self._segment or "", self._seg_bytes)

    def stats(self) -> dict[str, Any]:
        return {"writer_id": self.writer_id, "written": self.written, "lost": self.lost,
                "lost_full": self.lost_full, "lost_error": self.lost_error, "bytes": self._own,
                "log_bytes": self._base + self._own, "max_bytes": self._max, "full": self.full,
                "accepting": self.accepting, "error": self._error, "segments": self.segments_opened,
                "segment": self._segment, "fsyncs": self.fsyncs}

    # ---- used by the upkeep thread ----------------------------------------------------------

    def sync_active(self) -> None:
        """fsync the active segment if it was written since the last time (``interval``)."""
        if not self._dirty:
            return
        self._dirty = False
        fd = self._fd
        if fd is None:
            return  # it was retired meanwhile; drain_retired syncs it
        try:
            sync_fd(fd)
            self.fsyncs += 1
        except OSError as exc:
            with self._lock:
                if self._fd == fd:
                    self._abandon(f"fsync failed: {_describe(exc)}", dirty=False)

    def drain_retired(self) -> None:
        """fsync (unless ``never``) and close the fds of closed segments."""
        with self._lock:
            retired, self._retired = self._retired, []
        for fd, dirty in retired:
            try:
                if dirty and self.settings.fsync != "never":
                    sync_fd(fd)
                    self.fsyncs += 1
            except OSError as exc:
                log.error("request log: fsync of a closed segment failed: %s", _describe(exc))
            finally:
                os.close(fd)

    def sync_dir(self) -> None:
        """fsync the writer's folder when a segment was created since (unless ``never``)."""
        if self._dir_dirty and self.settings.fsync != "never":
            self._dir_dirty = False
            try:
                layout.fsync_dir(self.dir)
            except OSError as exc:
                log.error("request log: fsync of %s failed: %s", self.dir, _describe(exc))

    def rotate_if_old(self, now: float) -> None:
        """Close the active segment once it has held records for ``segment_age_s``."""
        if self._seg_bytes and now - self._seg_first_at >= self._age:
            with self._lock:
                if self._fd is not None and self._seg_bytes and now - self._seg_first_at >= self._age:
                    self._rotate()

    def rescan(self) -> None:
        """Re-measure the whole root (other writers add to it, the ingester deletes from it),
        and clear ``full`` once the refused record would fit again."""
        own_then = self._own
        self._base = layout.root_bytes(self.root) - own_then
        if self._refused and self._base + self._own + self._refused <= self._max:
            self._refused = 0
            log.warning("request log has room again; records are written")

    def retry_after_failure(self, now: float) -> None:
        """After a failed write: open a fresh segment once ``RETRY_S`` passed and the disk has room."""
        if self._fd is not None or self._closed or not self._error or now < self._retry_at:
            return
        free = free_bytes(self.dir)  # None: let the open itself say what is wrong
        if self.reserve_dir is None:
            room = free is None or free >= min(self._segment_max, 64 * 1024)
        else:  # leave the room the ingester freed to commit, and its reserve back in place first
            room = free is None or (free >= RESUME_FREE_BYTES and self._reserve_in_place())
        if not room:
            self._retry_at = now + RETRY_S
            return
        with self._lock:
            if self._fd is not None or self._closed:
                return
            try:
                self._start_segment()
            except OSError as exc:
                self._fail(f"cannot open a segment: {_describe(exc)}")
                return
            log.warning("request log writable again (segment %s)", self._segment)
            self._error = None

    def _reserve_in_place(self) -> bool:
        """The ingester's room reserve exists (created now if needed); False only for lack of
        room. Another failure (permissions) is logged and does not hold the writer back."""
        if self.reserve_dir is None:
            return True
        try:
            return keep_reserve(self.reserve_dir)
        except OSError as exc:
            log.warning("request log: cannot keep the ingester's room reserve in %s: %s", self.reserve_dir,
                        _describe(exc))
            return True

    # ---- segments (called with self._lock held) ---------------------------------------------

    def _start_segment(self) -> None:
        name = layout.segment_name(self._sequence)
        fd = os.open(layout.segment_path(self.dir, name), _OPEN_FLAGS, 0o600)
        self._sequence += 1
        self.segments_opened += 1
        self._fd, self._segment = fd, name
        self._seg_bytes = 0
        self._dirty = False
        self._dir_dirty = True
        if self._always:
            # the new name must be durable before a record in it is acknowledged
            self.sync_dir()

    def _rotate(self) -> None:
        """Close the active segment by creating the next one. This happens after the last write
        to the old one, so a reader that sees the next segment knows the old one is final."""
        old, dirty = self._fd, self._dirty
        try:
            self._start_segment()
        except OSError as exc:
            self._fd = None
            self._fail(f"cannot open a new segment: {_describe(exc)}")
        if old is not None:
            self._retired.append((old, dirty))

    def _write_failed(self, reason: str, torn: int) -> None:
        """Count the lost record and abandon the segment (a torn frame may end it: the reader
        skips it once a later segment exists)."""
        self.lost += 1
        self.lost_error += 1
        self._own += torn
        if self._seg_bytes == 0 and torn == 0 and self._segment is not None:
            _unlink(layout.segment_path(self.dir, self._segment))  # empty: nothing to read in it
        self._abandon(reason, dirty=self._dirty)

    def _abandon(self, reason: str, dirty: bool) -> None:
        """Stop writing the active segment; the upkeep thread opens a fresh one later."""
        fd, self._fd = self._fd, None
        if fd is not None:
            self._retired.append((fd, dirty))
        self._fail(reason)

    def _fail(self, reason: str) -> None:
        if self._error is None:
            log.error("request log: %s; records are lost until it recovers (retry in %.0f s)", reason, RETRY_S)
        self._error = reason
        self._retry_at = _monotonic() + RETRY_S


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"{name} ({exc.strerror or exc})"


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


__all__ = ["LogWriter", "RETRY_S"]

"""``LogReader``: the ingester's view of the request log.

It tails every writer folder under the root from a ``Position`` (segment, byte offset). One
``read`` returns whole records of one segment only, so a batch is named by
``(writer, segment, start offset, end offset)`` — the insert's deduplication token.

Whether a segment is *closed* is decided before its bytes are read (see ``layout``): in an
open segment an incomplete or bad frame at the end is a record still being written, so the
reader stops there and tries again later; in a closed segment it is a torn or corrupt record
(a writer killed mid-write, a failed write, a power loss), so the rest of that segment is
skipped and counted in ``skipped_segments``/``skipped_bytes``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gateway.telemetry.log import layout
from gateway.telemetry.log.framing import HEADER_SIZE, Stop, scan_frames

log = logging.getLogger("gateway.telemetry.log")


@dataclass(frozen=True, order=True)
class Position:
    """A place in one writer's log: ``offset`` bytes into ``segment`` (a segment name, 20 digits).
    ``Position("", 0)`` is before the first segment."""

    segment: str
    offset: int

    @classmethod
    def origin(cls) -> Position:
        return cls("", 0)


class Record(NamedTuple):
    """One record: its frame spans ``start`` to ``end`` (both in the same segment)."""

    start: Position
    end: Position
    payload: bytes


class Records(list[Record]):
    """The records of one ``read`` (a list), and ``next``: where the following read starts. ``next``
    moves on even when no record came back (past an empty closed segment, or a skipped torn
    tail), so save it in the checkpoint whether or not there were records."""

    def __init__(self, records: list[Record], next: Position):
        super().__init__(records)
        self.next = next


class LogReader:
    """Reads the segments of every writer under ``root``; deletes the ones it is done with."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.skipped_segments = 0   # closed segments whose tail was torn or corrupt
        self.skipped_bytes = 0      # bytes of them that held no readable record

    # ---- what is there ----------------------------------------------------------------------

    def writers(self) -> list[str]:
        """The writer folders under the root, by name."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())

    def alive(self, writer_id: str) -> bool:
        """True while the writer's process holds its lock (it may still write its last segment)."""
        return layout.is_locked(self._dir(writer_id) / layout.LOCK_NAME)

    def segments(self, writer_id: str) -> list[str]:
        """The writer's segment names, oldest first."""
        return layout.list_segments(self._dir(writer_id))

    def closed(self, writer_id: str, segment: str) -> bool:
        """True when ``segment`` will never be written again: a later segment exists or the
        writer is dead."""
        return any(s > segment for s in self.segments(writer_id)) or not self.alive(writer_id)

    def size(self, writer_id: str, segment: str) -> int:
        """Bytes in the segment now (0 when it is gone)."""
        try:
            return os.stat(layout.segment_path(self._dir(writer_id), segment)).st_size
        except FileNotFoundError:
            return 0

    def backlog(self, writer_id: str, position: Position) -> int:
        """Bytes of the writer's segments at or after ``position`` (what is left to read)."""
        total = 0
        for seg in self.segments(writer_id):
            if seg >= position.segment:
                total += max(0, self.size(writer_id, seg) - (position.offset if seg == position.segment else 0))
        return total

    # ---- reading ----------------------------------------------------------------------------

    def read(self, writer_id: str, position: Position, max_records: int = 1000,
             max_bytes: int = 4 << 20) -> Records:
        """Up to ``max_records`` whole records (about ``max_bytes``, but at least one whatever its
        size) from ``position``, all of one segment. Moves to the next segment when this one is
        closed and read to its end."""
        pos = position
        while True:
            segments = self.segments(writer_id)
            if pos.segment not in segments:
                later = [s for s in segments if s > pos.segment]
                if not later:
                    return Records([], pos)
                pos = Position(later[0], 0)  # the segment was not there yet, or is gone
                continue
            is_closed = self.closed(writer_id, pos.segment)  # before reading: see the module docstring
            got = self._read_segment(writer_id, pos, max_records, max_bytes)
            if got:
                return got
            size = self.size(writer_id, pos.segment)
            if not is_closed:
                return got  # at the end of the open segment, or at a record still being written
            if pos.offset < size:
                self._skip(writer_id, pos, size)
            later = [s for s in segments if s > pos.segment]
            if not later:
                return Records([], Position(pos.segment, max(size, pos.offset)))
            pos = Position(later[0], 0)

    def read_range(self, writer_id: str, start: Position, end: Position) -> list[Record]:
        """Exactly the records from ``start`` to ``end`` (one segment): a pending batch re-read
        after a restart, to be inserted again with the same token."""
        if start.segment != end.segment or end.offset < start.offset:
            raise ValueError(f"not a range of one segment: {start} to {end}")
        data = self._bytes(writer_id, start, end.offset - start.offset)
        scan = scan_frames(data, start.offset)
        if scan.end != end.offset:
            raise ValueError(f"the log no longer holds whole records from {start} to {end}")
        return [Record(Position(start.segment, s), Position(start.segment, e), p) for s, e, p in scan.frames]

    def _read_segment(self, writer_id: str, pos: Position, max_records: int, max_bytes: int) -> Records:
        data = self._bytes(writer_id, pos, max(max_bytes, HEADER_SIZE))
        scan = scan_frames(data, pos.offset, max_records)
        if not scan.frames and scan.stop is Stop.INCOMPLETE and scan.needed > len(data):
            # one record larger than max_bytes: read it whole
            data = self._bytes(writer_id, pos, scan.needed)
            scan = scan_frames(data, pos.offset, 1)
        records = [Record(Position(pos.segment, s), Position(pos.segment, e), p) for s, e, p in scan.frames]
        return Records(records, Position(pos.segment, scan.end))

    def _bytes(self, writer_id: str, pos: Position, count: int) -> bytes:
        try:
            with open(layout.segment_path(self._dir(writer_id), pos.segment), "rb") as f:
                f.seek(pos.offset)
                return f.read(count)
        except FileNotFoundError:
            return b""

    def _skip(self, writer_id: str, pos: Position, size: int) -> None:
        self.skipped_segments += 1
        self.skipped_bytes += size - pos.offset
        log.warning("request log: %s/%s holds a torn or corrupt record at byte %d; skipped its last %d bytes",
                    writer_id, pos.segment, pos.offset, size - pos.offset)

    # ---- cleaning up ------------------------------------------------------------------------

    def delete(self, writer_id: str, segment: str) -> bool:
        """Remove a closed segment (after its records are in the store). Refuses (False) a
        segment that may still be written."""
        if not self.closed(writer_id, segment):
            return False
        try:
            layout.segment_path(self._dir(writer_id), segment).unlink()
        except FileNotFoundError:
            pass
        return True

    def remove_writer(self, writer_id: str) -> bool:
        """Remove a dead writer's folder once it holds no segment. The lock is held while its file
        is unlinked, so a writer reopening the same folder meanwhile retries (see ``LogWriter``)."""
        folder = self._dir(writer_id)
        try:
            fd = layout.try_lock(folder / layout.LOCK_NAME)
        except FileNotFoundError:
            fd = None
            if layout.list_segments(folder):
                return False
            return _rmdir(folder)
        if fd is None:
            return False  # alive
        try:
            if layout.list_segments(folder):
                return False
            (folder / layout.LOCK_NAME).unlink(missing_ok=True)
            return _rmdir(folder)
        finally:
            os.close(fd)

    def stats(self) -> dict[str, int]:
        return {"skipped_segments": self.skipped_segments, "skipped_bytes": self.skipped_bytes}

    def _dir(self, writer_id: str) -> Path:
        return self.root / layout.check_writer_id(writer_id)


def _rmdir(folder: Path) -> bool:
    try:
        folder.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False  # something else appeared in it
    return True


__all__ = ["LogReader", "Position", "Record", "Records"]

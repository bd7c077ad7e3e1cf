"""The ingester's checkpoint: how far each writer's records are in the store.

Per writer it keeps the committed ``position`` (everything before it was inserted and
acknowledged) and, at most, one ``pending`` batch: a range about to be inserted with its
deduplication token. The ingester saves the pending batch before the insert and the new
position (with no pending batch) after the acknowledgement, so after a crash it re-reads exactly
that range (``LogReader.read_range``) and inserts it again with the same token — the store keeps
it once — before it goes on.

A save is atomic: the file is written beside the old one, fsynced, renamed over it, and the
folder fsynced, so a crash or power loss leaves the old checkpoint or the new one, never a mix.

The checkpoint shares its filesystem with the log, which may fill it: a save that fails for room
uses the reserve (``gateway.telemetry.log.reserve``) once ``keep_reserve()`` asked for one.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.telemetry.log.layout import fsync_dir
from gateway.telemetry.log.reader import Position, Record
from gateway.telemetry.log.reserve import keep_reserve, release_reserve

VERSION = 1


def batch_token(writer_id: str, start: Position, end: Position) -> str:
    """The insert deduplication token of the records from ``start`` to ``end`` (one segment)."""
    return f"{writer_id}:{start.segment}:{start.offset}-{end.offset}"


@dataclass(frozen=True)
class Pending:
    """A batch sent (or about to be sent) to the store and not yet acknowledged."""

    start: Position
    end: Position
    token: str

    @classmethod
    def for_records(cls, writer_id: str, records: Sequence[Record]) -> Pending:
        """The pending batch of ``records`` (from one ``LogReader.read``), with its token."""
        if not records:
            raise ValueError("a batch needs at least one record")
        start, end = records[0].start, records[-1].end
        return cls(start, end, batch_token(writer_id, start, end))


@dataclass(frozen=True)
class WriterState:
    """One writer's committed position and pending batch."""

    position: Position
    pending: Pending | None = None


class Checkpoint:
    """The checkpoint file at ``path`` (its folder is created on the first save)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._reserve: bool | None = None  # None: no reserve wanted (readers); False: wanted, not held

    def load(self) -> dict[str, WriterState]:
        """Writer id → state ({} when there is no checkpoint yet). Raises ``ValueError`` for a
        file this code did not write."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            if doc.get("v") != VERSION:
                raise ValueError(f"unknown version {doc.get('v')!r}")
            return {wid: _state(entry) for wid, entry in doc["writers"].items()}
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint {self.path} is malformed: {exc}") from exc

    def save(self, states: Mapping[str, WriterState]) -> None:
        """Replace the checkpoint with ``states``, atomically and durably. On a full filesystem
        the reserve (if kept) gives the room."""
        doc = {"v": VERSION, "writers": {wid: _entry(state) for wid, state in sorted(states.items())}}
        data = json.dumps(doc, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._write(data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self._release_reserve():
                raise
            self._write(data)
        if self._reserve is False:
            self.keep_reserve()

    def keep_reserve(self) -> bool:
        """Hold the reserve beside the checkpoint from now on (the ingester calls it when it starts
        and after deleting segments); False while the filesystem has no room for it (a later save
        tries again)."""
        if not self._reserve:
            self._reserve = keep_reserve(self.path.parent)
        return self._reserve

    def _release_reserve(self) -> bool:
        """Delete the reserve to make room; False when none was wanted or none was there."""
        if self._reserve is None:
            return False
        self._reserve = False
        return release_reserve(self.path.parent)

    def _write(self, data: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            _unlink(tmp)  # a failed save leaves no half-written file (nor its blocks) behind
            raise
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _pos(value: Sequence[Any]) -> Position:
    segment, offset = value
    if not isinstance(segment, str) or not isinstance(offset, int):
        raise TypeError(f"not a position: {value!r}")
    return Position(segment, offset)


def _state(entry: dict[str, Any]) -> WriterState:
    pending = entry.get("pending")
    return WriterState(_pos(entry["position"]), None if pending is None else Pending(
        _pos(pending["start"]), _pos(pending["end"]), str(pending["token"])))


def _entry(state: WriterState) -> dict[str, Any]:
    out: dict[str, Any] = {"position": [state.position.segment, state.position.offset]}
    if state.pending is not None:
        p = state.pending
        out["pending"] = {"start": [p.start.segment, p.start.offset], "end": [p.end.segment, p.end.offset],
                          "token": p.token}
    return out


__all__ = ["Checkpoint", "Pending", "WriterState", "batch_token"]

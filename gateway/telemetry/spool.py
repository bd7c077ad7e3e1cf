"""The disk spool: batches that could not be inserted wait here, one file per batch.

A file holds one JSON header line and then the batch's insert payloads byte for byte::

    {"v": 1, "token": "…", "created": 1717000000.123, "rows": 1000,
     "parts": [{"table": "llm_requests", "columns": [...], "rows": 1000, "bytes": 812345}, …]}\\n
    <llm_requests payload: JSONCompactEachRow bytes><llm_attempts payload …>

Replaying sends exactly the bytes that failed, with the same insert deduplication token, so
every type round-trips (the server parses the same text) and a batch that did land the first
time is not inserted twice. File names start with the creation time in nanoseconds, so
sorting by name replays oldest-first. Writes are atomic (temporary file, ``fsync``, rename).

Several processes may share a spool root (``--workers``): each owns a sub-folder locked with
``flock``. A folder whose lock can be taken belongs to a process that died (even by
``kill -9``); its files are adopted, i.e. moved into the live process's folder and replayed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

log = logging.getLogger("gateway.telemetry")

SUFFIX = ".batch"
_LOCK = ".lock"


@dataclass
class Part:
    """One table's share of a batch: ``payload`` is ``JSONCompactEachRow`` bytes of ``rows``
    rows with ``columns``."""

    table: str
    columns: tuple[str, ...]
    payload: bytes
    rows: int


@dataclass
class Batch:
    """Rows inserted together under one deduplication ``token`` (a hex string)."""

    token: str
    parts: list[Part]
    created: float = field(default_factory=time.time)
    settled: bool = False  # written or spooled (whoever got there first)

    @property
    def rows(self) -> int:
        """Rows of the first part (``llm_requests``: the request count)."""
        return self.parts[0].rows if self.parts else 0

    @classmethod
    def new(cls, parts: list[Part]) -> Batch:
        """A batch with a fresh random token."""
        return cls(token=uuid.uuid4().hex, parts=parts)


def encode_batch(batch: Batch) -> bytes:
    """The spool file bytes of ``batch``."""
    header = {"v": 1, "token": batch.token, "created": batch.created, "rows": batch.rows,
              "parts": [{"table": p.table, "columns": list(p.columns), "rows": p.rows, "bytes": len(p.payload)}
                        for p in batch.parts]}
    return orjson.dumps(header) + b"\n" + b"".join(p.payload for p in batch.parts)


def decode_batch(data: bytes) -> Batch:
    """Parse spool file bytes; raises ``ValueError`` when the file is malformed."""
    nl = data.find(b"\n")
    if nl < 0:
        raise ValueError("spool file has no header line")
    try:
        header = orjson.loads(data[:nl])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"bad spool header: {exc}") from None
    if header.get("v") != 1:
        raise ValueError(f"unknown spool file version {header.get('v')!r}")
    pos = nl + 1
    parts = []
    for p in header["parts"]:
        end = pos + int(p["bytes"])
        if end > len(data):
            raise ValueError("spool file is truncated")
        parts.append(Part(p["table"], tuple(p["columns"]), data[pos:end], int(p["rows"])))
        pos = end
    return Batch(token=header["token"], parts=parts, created=float(header.get("created", 0.0)))


class Spool:
    """One process's spool folder under ``root``.

    ``open()`` creates and locks the folder and adopts orphans; ``write(batch)`` stores a
    batch (raises ``OSError`` when the disk fails); ``pending()`` lists files oldest-first;
    ``read(path)`` / ``remove(path)``; ``adopt()`` takes over folders of dead processes;
    ``close()`` unlocks (and removes the folder when empty). ``files`` / ``rows``: pending
    totals. Safe to call from several threads.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.dir: Path | None = None
        self._lock_fd: int | None = None
        self._mutex = threading.Lock()
        self._rows: dict[str, int] = {}
        self._seq = 0

    # --- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        """Create ``root/<host>-<pid>-<rand>/``, lock it, adopt orphaned files."""
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        d = self.root / name
        d.mkdir()
        fd = os.open(d / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir, self._lock_fd = d, fd
        self.adopt()

    def close(self) -> None:
        """Release the folder; remove it when nothing is pending (else a later start adopts it)."""
        if self.dir is None:
            return
        with self._mutex:
            empty = not any(self.dir.glob("*" + SUFFIX))
            try:
                if empty:
                    for leftover in self.dir.iterdir():
                        leftover.unlink()
                    self.dir.rmdir()
            except OSError:
                pass
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            self.dir = None

    def adopt(self) -> int:
        """Move files of dead processes' folders (and loose files in ``root``) into ours;
        returns how many files were adopted."""
        if self.dir is None:
            return 0
        moved = 0
        for loose in self.root.glob("*" + SUFFIX):  # files dropped into root by hand
            moved += self._take(loose)
        for other in self.root.iterdir():
            if other == self.dir or not other.is_dir() or other.name == "corrupt":
                continue
            try:
                fd = os.open(other / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # its owner is alive
            try:
                for f in sorted(other.glob("*" + SUFFIX)):
                    moved += self._take(f)
                for leftover in other.iterdir():
                    try:
                        leftover.unlink()
                    except OSError:
                        pass
                other.rmdir()
            except OSError:
                log.warning("telemetry spool: could not adopt %s fully", other, exc_info=True)
            finally:
                os.close(fd)
        if moved:
            log.warning("telemetry spool: adopted %d batch file(s) left by an earlier process", moved)
        return moved

    def _take(self, path: Path) -> int:
        assert self.dir is not None
        try:
            target = self.dir / path.name
            os.replace(path, target)
        except OSError:
            return 0
        with self._mutex:
            self._rows[target.name] = self._peek_rows(target)
        return 1

    @staticmethod
    def _peek_rows(path: Path) -> int:
        try:
            with open(path, "rb") as f:
                return int(orjson.loads(f.readline()).get("rows", 0))
        except (OSError, ValueError, orjson.JSONDecodeError):
            return 0

    # --- batches -------------------------------------------------------------------------
    def write(self, batch: Batch) -> Path:
        """Store ``batch`` durably; returns its path. Raises ``OSError`` on disk failure."""
        if self.dir is None:
            raise OSError("telemetry spool is not open")
        with self._mutex:
            self._seq += 1
            seq = self._seq
        name = f"{time.time_ns():020d}-{seq:06d}-{batch.token}{SUFFIX}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}"
        data = encode_batch(batch)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        os.close(fd)
        os.replace(tmp, final)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        with self._mutex:
            self._rows[name] = batch.rows
        return final

    def pending(self) -> list[Path]:
        """Spooled batch files, oldest first."""
        if self.dir is None:
            return []
        return sorted(self.dir.glob("*" + SUFFIX))

    def read(self, path: Path) -> Batch:
        """Load a spooled batch (raises ``OSError`` / ``ValueError``)."""
        return decode_batch(path.read_bytes())

    def remove(self, path: Path) -> None:
        """Delete a replayed (or unreadable) batch file."""
        path.unlink(missing_ok=True)
        with self._mutex:
            self._rows.pop(path.name, None)

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable file aside (``<root>/corrupt/``) so it stops blocking replay."""
        dest_dir = self.root / "corrupt"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / path.name
        os.replace(path, dest)
        with self._mutex:
            self._rows.pop(path.name, None)
        return dest

    @property
    def files(self) -> int:
        with self._mutex:
            return len(self._rows)

    @property
    def rows(self) -> int:
        with self._mutex:
            return sum(self._rows.values())

"""The request log on disk, shared by its writers and its reader.

::

    <root>/<writer_id>/.lock                       flock-ed by the live writer for its lifetime
    <root>/<writer_id>/00000000000000000000.seg    segments, numbered in the order they were opened
    <root>/<writer_id>/00000000000000000001.seg    the highest number is the one being written

A segment is *closed* (final, never written again) once a later segment exists in its folder
or its writer is dead: the writer creates the next segment only after its last write to the
previous one, and a writer whose ``.lock`` can be locked by someone else is gone (even after
``kill -9``: the kernel drops a dead process's locks).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import time
from pathlib import Path

SUFFIX = ".seg"
LOCK_NAME = ".lock"
_SEGMENT = re.compile(r"^\d{20}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def segment_name(sequence: int) -> str:
    """The name (without ``.seg``) of a writer's ``sequence``-th segment: 20 digits, so names sort
    in order."""
    return f"{sequence:020d}"


def segment_path(writer_dir: Path, segment: str) -> Path:
    return writer_dir / (segment + SUFFIX)


def list_segments(writer_dir: Path) -> list[str]:
    """The segment names in ``writer_dir``, oldest first ([] when the folder is gone)."""
    try:
        names = os.listdir(writer_dir)
    except FileNotFoundError:
        return []
    return sorted(n[:-len(SUFFIX)] for n in names if n.endswith(SUFFIX) and _SEGMENT.match(n[:-len(SUFFIX)]))


def default_writer_id() -> str:
    """``<hostname>-<pid>-<start ms>``: unique per process start on a host."""
    host = _UNSAFE.sub("_", socket.gethostname()).strip("._") or "host"
    return f"{host}-{os.getpid()}-{int(time.time() * 1000)}"


def check_writer_id(writer_id: str) -> str:
    """``writer_id`` when it can name a folder under the root (no separator, no leading dot)."""
    if not writer_id or writer_id.startswith(".") or _UNSAFE.search(writer_id):
        raise ValueError(f"writer id {writer_id!r} must be letters, digits, '.', '_' or '-' and not start with '.'")
    return writer_id


def try_lock(lock_path: Path) -> int | None:
    """An fd holding an exclusive ``flock`` on ``lock_path``, or ``None`` when someone holds it.
    Raises ``FileNotFoundError`` when the file is gone."""
    fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def lock_writer_dir(writer_dir: Path, attempts: int = 50) -> int:
    """Create ``writer_dir`` and return an fd holding the flock of its ``.lock`` (for the writer's
    lifetime). A reader removing a dead writer's empty folder holds that lock for a moment and
    unlinks the file, so retry (about a second) until the locked file is the one at the path;
    raises ``RuntimeError`` when another live writer holds it."""
    lock_path = writer_dir / LOCK_NAME
    for _ in range(attempts):
        writer_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # records hold request bodies
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # the folder was removed between the two calls
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            time.sleep(0.02)
            continue
        try:
            here, mine = os.stat(lock_path), os.fstat(fd)
            if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RuntimeError(f"request log folder {writer_dir} is held by another live writer")


def is_locked(lock_path: Path) -> bool:
    """True when a live process holds the ``flock`` of ``lock_path`` (False when the file is gone)."""
    try:
        fd = try_lock(lock_path)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)  # closing releases the lock we just took
    return False


def root_bytes(root: Path) -> int:
    """Total size of every segment of every writer under ``root`` (files vanishing meanwhile are
    skipped: the ingester deletes while we count)."""
    total = 0
    try:
        writers = list(os.scandir(root))
    except FileNotFoundError:
        return 0
    for writer in writers:
        if writer.name.startswith("."):
            continue
        try:
            entries = list(os.scandir(writer.path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.endswith(SUFFIX):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    continue
    return total


def fsync_dir(path: Path) -> None:
    """Make the names in ``path`` (a new segment, a rename) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["LOCK_NAME", "SUFFIX", "check_writer_id", "default_writer_id", "fsync_dir", "is_locked",
           "list_segments", "lock_writer_dir", "root_bytes", "segment_name", "segment_path", "try_lock"]

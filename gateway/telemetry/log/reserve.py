"""Room kept on the log's filesystem for the ingester's checkpoint.

The checkpoint lives on the log's filesystem, and the log may fill that filesystem to the last
byte (the store was down long enough). The ingester must still be able to save its checkpoint,
or it could never commit, and so never delete, what fills the disk. So a file of
``RESERVE_BYTES`` is kept in the checkpoint's folder:

- whoever opens the log first creates it (the serving process's writer when it opens, the
  ingester when it starts);
- a checkpoint save that fails for room deletes it and tries again, and the ingester puts it
  back after it deleted segments (``Checkpoint``, ``gateway.ingest.ingester``);
- a writer that stopped on a full disk resumes only once ``RESUME_FREE_BYTES`` are free *and*
  the reserve is back in place (it puts it back itself when there is room), so it never takes the
  room the ingester freed to commit.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

RESERVE_BYTES = 64 * 1024
RESERVE_NAME = ".reserve"
RESUME_FREE_BYTES = 2 * RESERVE_BYTES


def keep_reserve(folder: Path) -> bool:
    """Make sure ``folder/.reserve`` holds ``RESERVE_BYTES``; False when the filesystem has no
    room for it now (nothing is left behind then). Other ``OSError``s are raised."""
    path = Path(folder) / RESERVE_NAME
    try:
        if path.stat().st_size >= RESERVE_BYTES:
            return True
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(bytes(RESERVE_BYTES))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        release_reserve(folder)
        return False
    return True


def release_reserve(folder: Path) -> bool:
    """Delete the reserve to make room; False when there was none."""
    try:
        (Path(folder) / RESERVE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True


def free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``folder``'s filesystem (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


__all__ = ["RESERVE_BYTES", "RESERVE_NAME", "RESUME_FREE_BYTES", "free_bytes", "keep_reserve", "release_reserve"]

"""One ingester per request log.

Two ingesters reading the same log would cut different batches from the same records, so
their deduplication tokens would differ and every row would be inserted twice. The ingester
therefore holds an exclusive ``flock`` on ``<log dir>/.ingest/ingester.lock`` for its lifetime
(the kernel drops it when the process dies, even on ``kill -9``); a second one is refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK = Path(".ingest") / "ingester.lock"


class IngesterBusy(RuntimeError):
    """Another live ingester reads this log."""


def claim_log(root: Path) -> int:
    """An fd holding the log's ingester lock (close it to release). Raises ``IngesterBusy``."""
    path = Path(root) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise IngesterBusy(f"another ingester (pid {holder}) reads the request log {root}: "
                               "one ingester per log (two would insert every row twice)") from None
        raise
    try:  # who holds it, for the refusal's message; never a reason to fail (the disk may be full)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    return fd

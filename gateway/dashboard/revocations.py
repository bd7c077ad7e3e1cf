"""Dashboard sessions ended by "Sign out" before they expire.

A session cookie is valid on its own (a MAC over its id and expiry), so signing out has to be
remembered, or a copy of the cookie would keep working: the session's id and expiry are kept
in memory and appended to ``<data_dir>/dashboard/revoked-sessions``, which is re-read whenever it
changes, so every ``--workers`` process and a restarted gateway refuse the cookie too. Entries
are forgotten once their session would have expired anyway. The file holds no secret: a
session id is worth nothing without its MAC.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger("gateway.dashboard")
_COMPACT_LINES = 1000


class Revocations:
    """Revoked session ids (``path``: the shared file, or ``None`` for memory only)."""

    def __init__(self, path: Path | None):
        self._path = path
        self._ids: dict[str, int] = {}  # id → expiry (epoch s)
        self._seen: tuple | None = None  # the file's (inode, size, mtime) when last read
        self._lines = 0

    def revoke(self, sid: str, expiry: int) -> None:
        self._refresh()
        self._ids[sid] = expiry
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._lines >= _COMPACT_LINES:
                self._rewrite()
            else:
                with open(self._path, "a", encoding="ascii") as f:
                    f.write(f"{expiry} {sid}\n")
                self._lines += 1
        except OSError as exc:
            log.warning("could not record a dashboard sign-out in %s (%s): it holds in this process only",
                        self._path, type(exc).__name__)

    def revoked(self, sid: str) -> bool:
        self._refresh()
        return sid in self._ids

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            st = os.stat(self._path)
        except OSError:
            return
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen == self._seen:
            return
        try:
            text = self._path.read_text(encoding="ascii", errors="replace")
        except OSError:
            return
        now = time.time()
        ids = {sid: e for sid, e in self._ids.items() if e >= now}
        lines = text.splitlines()
        for line in lines:
            expiry, _, sid = line.partition(" ")
            if sid and expiry.isdigit() and int(expiry) >= now:
                ids[sid] = int(expiry)
        self._ids, self._seen, self._lines = ids, seen, len(lines)

    def _rewrite(self) -> None:
        """Replace the file by its live entries (atomically: other processes read it any time)."""
        path = self._path
        assert path is not None  # only a file-backed list is rewritten
        now = time.time()
        live = {sid: e for sid, e in self._ids.items() if e >= now}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{e} {sid}\n" for sid, e in live.items()), encoding="ascii")
        os.replace(tmp, path)
        self._ids, self._lines, self._seen = live, len(live), None


__all__ = ["Revocations"]

"""A config file held for a read-modify-write: the file a symlink names (a Kubernetes ConfigMap
mount is a chain of links; replacing the link itself would leave the target, which the gateway
reads, unchanged), locked exclusively so that two commands editing it at once run one after the
other (neither loses the other's change), written atomically beside the target (the gateway's
watcher never sees half a file) with the file's BOM and line endings as they were.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FileEditError(ValueError):
    """The file cannot be edited (say why; nothing was written)."""


class HeldFile:
    """The locked target's text (LF line breaks, no BOM) and how to write it back as the file was."""

    def __init__(self, path: Path, raw: bytes) -> None:
        self.path = path
        self.original = raw
        self._bom = raw.startswith(codecs.BOM_UTF8)
        try:
            text = raw[len(codecs.BOM_UTF8) if self._bom else 0:].decode("utf-8")
        except UnicodeDecodeError:
            raise FileEditError(f"{path}: not UTF-8 text (edit it by hand)") from None
        crlf = text.count("\r\n")
        if crlf and crlf != text.count("\n"):
            raise FileEditError(f"{path}: mixed line endings (CRLF and LF); make them one kind first")
        self._newline = "\r\n" if crlf else "\n"
        self.text = text.replace("\r\n", "\n")
        self._trailing_newline = self.text.endswith("\n")

    def write(self, text: str) -> None:
        if not self._trailing_newline and text.endswith("\n"):
            text = text[:-1]
        data = (codecs.BOM_UTF8 if self._bom else b"") + text.replace("\n", self._newline).encode("utf-8")
        write_atomically(self.path, data)

    def restore(self) -> None:
        write_atomically(self.path, self.original)


@contextmanager
def held(path: Path) -> Iterator[HeldFile]:
    """``path`` (links followed) read under an exclusive lock, held until the block ends."""
    target = path.resolve()
    if not target.is_file():
        raise FileEditError(f"{path}: not a file")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        via = f" (the link {path} points there)" if target != path.absolute() else ""
        raise FileEditError(f"{target}: its folder {target.parent} is not writable{via}; "
                            "the file was not changed (edit the source it comes from)")
    # The lock is on the file itself. An edit replaces the file (a new inode), so a command that
    # waited on the old one locks again until it holds the file the path names now.
    while True:
        fd = os.open(target, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_ino == os.stat(target).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield HeldFile(target, target.read_bytes())
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` (a regular file, not a link) with ``data``, keeping its permissions."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["FileEditError", "HeldFile", "held", "write_atomically"]

"""How readers find the embedded store: ``<data_dir>/store.json`` names the URL it serves.

The process that owns the store writes ``{"url": …, "pid": …}`` when it starts serving
(atomically: a reader sees the old file or the new one, never half of one) and removes it when
it stops. A reader takes the file only while its process is alive, so a store that was killed
is not reported as running; it reads the file again each time it connects, so a store restarted
on another port is found. Nothing here imports chDB: the serving process uses this module.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import orjson

DISCOVERY_NAME = "store.json"


class StoreNotRunning(ConnectionError):
    """No process serves the embedded store of a data folder."""


def discovery_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / DISCOVERY_NAME


def write_discovery(data_dir: str | os.PathLike[str], url: str) -> Path:
    """Record that this process serves the store of ``data_dir`` at ``url``."""
    path = discovery_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".store-", suffix=".json.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({"url": url, "pid": os.getpid()}))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def read_discovery(data_dir: str | os.PathLike[str]) -> dict | None:
    """``{"url", "pid"}`` of the live process serving ``data_dir``'s store, else ``None``."""
    try:
        found = orjson.loads(discovery_path(data_dir).read_bytes())
        url, pid = found["url"], int(found["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not _alive(pid):
        return None
    return {"url": url, "pid": pid}


def remove_discovery(data_dir: str | os.PathLike[str]) -> None:
    """Remove the discovery file if it names this process (a successor's file stays)."""
    path = discovery_path(data_dir)
    try:
        if int(orjson.loads(path.read_bytes())["pid"]) != os.getpid():
            return
        path.unlink()
    except (OSError, ValueError, KeyError, TypeError):
        return


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class StoreLocator:
    """Where a reader finds the embedded store: ``url`` when given (a supervisor that started
    the store passes it), else ``data_dir``'s discovery file, read at each ``url()`` call."""

    def __init__(self, data_dir: str | os.PathLike[str], url: str | None = None):
        self.data_dir = Path(data_dir)
        self.explicit = url

    def find(self) -> str | None:
        """The store's base URL, or ``None`` when no store serves the data folder."""
        if self.explicit:
            return self.explicit
        found = read_discovery(self.data_dir)
        return found["url"] if found else None

    def url(self) -> str:
        """The store's base URL. Raises ``StoreNotRunning``."""
        found = self.find()
        if found is None:
            raise StoreNotRunning(
                f"the embedded telemetry store is not running (no live {discovery_path(self.data_dir)}): "
                "it is served by the process that owns it (the ingester, or `llm-gateway store`)")
        return found

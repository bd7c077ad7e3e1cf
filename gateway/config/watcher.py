"""Hot reload: watch the config file, validate a change, swap it in atomically.

The watcher polls the file's content, and that of the prompt and chain files it names (every
``server.reload_interval_s``), and reloads at once on SIGHUP. A valid change is handed to
``apply`` — the gateway's one compile step (``gateway.app``): a new runtime, every feature's
``compile`` (any may refuse the config: a prompt, chain or plugin that does not compile is a
``ConfigError`` there), then one assignment that makes it current; requests already running
keep the runtime they started with. An invalid or refused change keeps the running config and
logs the path-qualified error (also shown at ``/admin/config``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.config.loader import ConfigError, ConfigSnapshot, load_config, watched_files

log = logging.getLogger("gateway.config")


class ConfigWatcher:
    """Reloads ``path`` when its content changes.

    ``apply(snapshot)`` (async) installs a new valid snapshot. ``status()`` → dict with the
    active hash, its load time (epoch s), the last error (or None) and the reload count.
    """

    def __init__(self, path: str, current: ConfigSnapshot, apply: Callable[[ConfigSnapshot], Awaitable[None]],
                 interval_s: float):
        self.path = Path(path)
        self.current = current
        self._apply = apply
        self.interval_s = interval_s
        self.loaded_at = time.time()
        self.last_error: str | None = None
        self.reloads = 0
        self._digest = self._read_digest()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def _read_digest(self) -> str | None:
        try:
            h = hashlib.sha256(self.path.read_bytes())
        except OSError:
            return None
        for extra in watched_files(self.current):  # prompt and chain files
            try:
                h.update(extra.name.encode() + b"\0" + extra.read_bytes())
            except OSError:
                h.update(extra.name.encode() + b"\0?")
        return h.hexdigest()

    async def reload(self, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``). Returns True when a new config was applied."""
        async with self._lock:
            digest = self._read_digest()
            if digest is None or (digest == self._digest and not force):
                return False
            self._digest = digest
            if not self.path.read_bytes().strip():
                # An empty file is a half-written save far more often than an intent to serve
                # nothing: keep the running config.
                return self._reject(f"{self.path}: the file is empty")
            try:
                snapshot = load_config(self.path)
            except ConfigError as exc:
                return self._reject(str(exc))
            if snapshot.content_hash == self.current.content_hash and not force:
                # Back to the config in force (an invalid edit undone): nothing to apply, and
                # the earlier error no longer describes the file.
                if self.last_error is not None:
                    log.info("config file %s is valid again (hash %s, unchanged)", self.path, snapshot.content_hash)
                self.last_error = None
                return False
            try:
                await self._apply(snapshot)
            except ConfigError as exc:  # a prompt, chain or plugin path a feature could not compile
                return self._reject(str(exc))
            except Exception as exc:  # e.g. a plugin that cannot be built: refused as a whole
                return self._reject(f"{self.path}: {type(exc).__name__}: {exc}")
            self.current = snapshot
            self.loaded_at = time.time()
            self.last_error = None
            self.reloads += 1
            log.info("config reloaded from %s: hash %s", self.path, snapshot.content_hash)
            return True

    def _reject(self, why: str) -> bool:
        self.last_error = why
        log.error("config change rejected; keeping hash %s\n%s", self.current.content_hash, why)
        return False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.reload()
            except Exception:  # never let a bad reload kill the watcher
                log.exception("config reload failed")

    def start(self) -> None:
        """Start polling (if ``interval_s`` > 0) and listen for SIGHUP (main thread only)."""
        loop = asyncio.get_running_loop()
        if self.interval_s > 0:
            self._task = loop.create_task(self._poll())
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload(force=True)))
        except (RuntimeError, ValueError):  # not the main thread (tests, demo): polling only
            pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (RuntimeError, ValueError):
            pass

    def status(self) -> dict:
        return {"config_hash": self.current.content_hash, "source": str(self.path), "loaded_at": self.loaded_at,
                "reloads": self.reloads, "last_error": self.last_error}

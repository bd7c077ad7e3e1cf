"""``serve`` keeps one ingester process running beside its serving processes.

The ingester is started as ``llm-gateway ingest`` (same config, same data folder) and
restarted, with a growing pause, whenever it exits while the gateway runs: it resumes from its
committed position, so a crash loses and duplicates nothing. It is told the supervising
process's pid and exits by itself when that process is gone (a ``kill -9`` of ``serve`` must
not leave an orphan holding the embedded store).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

log = logging.getLogger("gateway.ingest")

RESTART_INITIAL_S = 0.5
RESTART_MAX_S = 10.0


class IngesterSupervisor:
    """Run ``llm-gateway ingest`` for ``config_path`` / ``data_dir`` until ``stop()``."""

    def __init__(self, config_path: str | None, data_dir: str | None, *, log_level: str | None = None,
                 log_format: str | None = None):
        args = [sys.executable, "-m", "gateway"]
        if log_level:
            args += ["--log-level", log_level]
        if log_format:
            args += ["--log-format", log_format]
        args += ["ingest", "--parent-pid", str(os.getpid())]
        if config_path:
            args += ["--config", config_path]
        if data_dir:
            args += ["--data-dir", data_dir]
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-ingest-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)

    def _run(self) -> None:
        pause = RESTART_INITIAL_S
        while not self._stop.is_set():
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            if self._stop.is_set():
                return
            log.error("ingest: the ingester process exited (code %s); restarting in %.1f s", code, pause)
            if self._stop.wait(pause):
                return
            pause = min(pause * 2, RESTART_MAX_S)
            self.restarts += 1
            self._spawn()

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Poll ``ready()`` for up to ``timeout`` s (e.g. the embedded store's discovery file)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() >= deadline or self._stop.is_set():
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the ingester and wait for it (it finishes or parks its current batch)."""
        self._stop.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

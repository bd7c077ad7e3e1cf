"""Managed vLLM servers: start one from a backend's ``launch:`` block, restart it with backoff
when it exits, stop it on shutdown.

The server runs in its own session (process group: vLLM forks an engine core and workers), so
stopping signals the whole group: SIGTERM, then SIGKILL after ``stop_timeout_s``. It is
started through a two-line wrapper that asks the kernel to SIGTERM it if the gateway dies
(``PR_SET_PDEATHSIG``), so a killed gateway leaves no server holding a GPU. Output goes to a
log file per server. Traffic waits for ``/health``: the backend's scraper keeps it out of
rotation until then, and the supervisor marks it down the moment the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.adapters import Adapter
from gateway.config.models import Backend
from gateway.config.vllm import VllmLaunch

log = logging.getLogger("gateway.vllm")

# Runs under the launch python: die with the parent (the gateway's event-loop thread), then
# become the vLLM server (same pid, so the process group and signals stay simple).
_WRAPPER = ("import ctypes, os, signal, sys\n"
            "try:\n ctypes.CDLL(None).prctl(1, signal.SIGTERM)\nexcept Exception:\n pass\n"
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])\n")


# vLLM serves /v1/load_lora_adapter only with this set: the reconciler loads new versions there.
LORA_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def launch_argv(backend: Backend, launch: VllmLaunch, adapters: Mapping[str, Adapter] | None = None) -> list[str]:
    """The server's command line (without the wrapper). ``adapters``: the LoRA adapters it
    serves (its config's ``adapters`` of its base model): LoRA is enabled, with a rank and
    slot count that hold them, and they are loaded at start (``--lora-modules name=path``)."""
    url = urlsplit(backend.base_url or "")
    argv = [launch.python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", launch.model, "--host", url.hostname or "127.0.0.1", "--port", str(url.port)]
    if launch.served_model_name:
        argv += ["--served-model-name", launch.served_model_name]
    if adapters:
        argv += ["--enable-lora", "--max-lora-rank", str(max(a.max_rank for a in adapters.values())),
                 "--max-loras", str(len(adapters)),
                 "--lora-modules", *(f"{name}={a.path}" for name, a in sorted(adapters.items()))]
    return argv + list(launch.args)


class ManagedServer:
    """Supervises one server. ``on_exit(reason)`` is called when the process exits unasked;
    ``healthy()`` says whether the scraper has seen it healthy (for the startup deadline and
    to reset the backoff). ``state``: starting | running | backoff | failed | stopped."""

    def __init__(self, name: str, backend: Backend, launch: VllmLaunch, log_path: Path,
                 on_exit: Callable[[str], None], healthy: Callable[[], bool],
                 adapters: Mapping[str, Adapter] | None = None):
        self.name = name
        self.launch = launch
        self.argv = launch_argv(backend, launch, adapters)
        self.env = dict(launch.env, **LORA_ENV) if adapters else dict(launch.env)
        self.log_path = log_path
        self._on_exit = on_exit
        self._healthy = healthy
        self.state = "starting"
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.started_at: float | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"vllm-launch-{self.name}")

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **self.env)
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} llm-gateway starts: "
                       f"{' '.join(self.argv[:3])} --model {self.launch.model} ...\n".encode())
            logf.flush()
            return await asyncio.create_subprocess_exec(
                self.argv[0], "-c", _WRAPPER, *self.argv[1:], stdin=asyncio.subprocess.DEVNULL,
                stdout=logf, stderr=asyncio.subprocess.STDOUT, env=env, cwd=self.launch.cwd,
                start_new_session=True)

    async def _supervise(self) -> None:
        launch = self.launch
        backoff = launch.backoff_initial_s
        while not self._stopping:
            self.state = "starting"
            try:
                proc = self._proc = await self._spawn()
            except OSError as exc:
                log.error("vLLM backend %r: cannot start %s: %s", self.name, self.argv[0], exc)
                code, reason = None, f"cannot start: {exc}"
            else:
                self.pid = proc.pid
                self.started_at = time.monotonic()
                log.info("vLLM backend %r: started pid %d (log %s)", self.name, proc.pid, self.log_path)
                code, reason, was_healthy = await self._watch(proc)
                if was_healthy:
                    backoff = launch.backoff_initial_s
            if self._stopping:
                break
            self.last_exit = code
            self._on_exit(reason)
            log.warning("vLLM backend %r: %s; log %s", self.name, reason, self.log_path)
            if not launch.restart:
                self.state = "failed"
                return
            self.state = "backoff"
            await asyncio.sleep(backoff)
            backoff = min(launch.backoff_max_s, max(backoff * 2, 0.1))
            self.restarts += 1

    async def _watch(self, proc) -> tuple[int | None, str, bool]:
        """Wait for the process to exit (or kill it when it misses the startup deadline)."""
        deadline = time.monotonic() + self.launch.startup_timeout_s
        healthy = False
        waiter = asyncio.ensure_future(proc.wait())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=0.25)
                if done:
                    code = waiter.result()
                    _killpg(proc.pid, signal.SIGKILL)  # what it left of its group (engine core, workers)
                    return code, f"process exited with code {code}", healthy
                if not healthy and self._healthy():
                    healthy = True
                    self.state = "running"
                if not healthy and time.monotonic() > deadline:
                    await self._terminate(proc)
                    return proc.returncode, (f"not healthy within {self.launch.startup_timeout_s:g} s; "
                                             "killed"), False
        finally:
            if not waiter.done():
                waiter.cancel()

    async def _terminate(self, proc) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_timeout_s``."""
        if proc.returncode is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.launch.stop_timeout_s)
            except TimeoutError:
                log.warning("vLLM backend %r: no exit %gs after SIGTERM; SIGKILL", self.name,
                            self.launch.stop_timeout_s)
        _killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (engine core, workers)
        if proc.returncode is None:
            await proc.wait()

    async def stop(self) -> None:
        """Stop supervising and stop the server."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._proc is not None:
            await self._terminate(self._proc)
            self.last_exit = self._proc.returncode
        self.state = "stopped"

    def status(self) -> dict:
        state = "running" if self.state == "starting" and self._proc is not None and self._proc.returncode is None \
            and self._healthy() else self.state
        return {"state": state, "pid": self.pid if self.state not in ("stopped", "failed") else None,
                "model": self.launch.model, "restarts": self.restarts, "last_exit": self.last_exit,
                "uptime_s": (round(time.monotonic() - self.started_at, 1)
                             if self.started_at is not None and state in ("starting", "running") else None),
                "log_file": str(self.log_path)}


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

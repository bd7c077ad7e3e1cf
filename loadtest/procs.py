"""Server processes for the benchmark: start (pinned to cores with ``taskset``), wait until
ready, measure CPU time and RSS of the whole process tree, stop.

CPU per request is read from the kernel's accounting of the server's process tree (user +
system time of every thread and child, via psutil), before and after the measured window,
so it includes the gateway's helper threads and any workers. The ingester process that
``serve`` supervises (``llm-gateway ingest``, and anything it starts) is counted apart: the
serving processes' CPU and RSS are what the targets bound; the ingester's is reported beside.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil


async def serve_until_signal() -> None:
    """Wait on the running loop until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse_cpus(text: str | None) -> set[int] | None:
    """``"0"``, ``"0,1"``, ``"2-3"`` → a set of CPU numbers (None for None/empty)."""
    if not text:
        return None
    cpus: set[int] = set()
    for part in str(text).split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pin_self(cpus: set[int] | None, nice: int = 0) -> None:
    """Pin this process (the load generator) to ``cpus`` (same effect as ``taskset -c``) and
    set its nice value (negative values need root)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _is_ingester(p: psutil.Process) -> bool:
    try:
        argv = p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "ingest" in argv[2:] and "gateway" in argv


def split_tree(proc: psutil.Process) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(serving processes, ingester processes) of a gateway's tree: an ``llm-gateway ingest``
    child and its descendants are the ingester's, everything else serves."""
    tree = _tree(proc)
    ingest: list[psutil.Process] = []
    for p in tree[1:]:
        if _is_ingester(p):
            try:
                ingest += [p, *p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    pids = {p.pid for p in ingest}
    return [p for p in tree if p.pid not in pids], ingest


def ingester_pids(pid: int) -> list[int]:
    """The pids of the ingester part of ``pid``'s tree (empty when it has none)."""
    try:
        return [p.pid for p in split_tree(psutil.Process(pid))[1]]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def tree_cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in _tree(proc):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def tree_rss_bytes(proc: psutil.Process) -> int:
    total = 0
    for p in _tree(proc):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class ProcessProbe:
    """Measures a server process tree over a window: ``start()`` … ``stop()`` →
    ``{"cpu_s", "rss_mib"}`` of the serving processes, plus ``ingest_cpu_s`` and
    ``ingest_rss_mib`` when the tree holds an ingester. Used by the generator at the window's
    exact edges (an ingester restarted within the window counts from zero)."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self._cpu0 = 0.0
        self._ingest0: dict[int, float] = {}

    def start(self) -> None:
        serving, ingest = split_tree(self.proc)
        self._cpu0 = cpu_seconds(serving)
        self._ingest0 = {p.pid: cpu_seconds([p]) for p in ingest}

    def stop(self) -> dict[str, Any]:
        serving, ingest = split_tree(self.proc)
        out: dict[str, Any] = {"cpu_s": round(cpu_seconds(serving) - self._cpu0, 4),
                               "rss_mib": round(rss_bytes(serving) / 2**20, 1)}
        if ingest or self._ingest0:
            used = sum(cpu_seconds([p]) - self._ingest0.get(p.pid, 0.0) for p in ingest)
            out["ingest_cpu_s"] = round(used, 4)
            out["ingest_rss_mib"] = round(rss_bytes(ingest) / 2**20, 1)
        return out


class ManagedProcess:
    """A server the benchmark starts and stops.

    ``argv`` runs under ``taskset -c CPUS`` when ``cpus`` is given. Output goes to
    ``log_path``. ``ready_url`` is polled until it answers 200.
    """

    def __init__(self, name: str, argv: list[str], *, url: str, ready_url: str, cpus: str | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None, cwd: str | None = None,
                 nice: int = 0):
        self.name = name
        self.nice = nice
        self.argv = argv
        self.url = url
        self.ready_url = ready_url
        self.cpus = cpus
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> ManagedProcess:
        argv = list(self.argv)
        if self.cpus is not None:
            if shutil.which("taskset"):
                argv = ["taskset", "-c", str(self.cpus), *argv]
            else:  # pragma: no cover - util-linux is everywhere we run
                cpus = parse_cpus(self.cpus)
                self._preexec = lambda: os.sched_setaffinity(0, cpus)
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        env = {**os.environ, **(self.env or {})}
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                      preexec_fn=getattr(self, "_preexec", None), start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before it was ready"
                                   f"{self._log_tail()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {self.ready_url} within {timeout:g}s ({last})"
                           f"{self._log_tail()}")

    def _log_tail(self) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return ""
        return "\n--- log tail ---\n" + Path(self.log_path).read_text(errors="replace")[-2000:]

    def probe(self) -> ProcessProbe:
        return ProcessProbe(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()


def python_argv(*args: str) -> list[str]:
    """``[sys.executable, *args]``: run with this interpreter (no PATH assumptions)."""
    return [sys.executable, *args]


def cpu_seconds_by_core(cpus: set[int]) -> tuple[float, float]:
    """(busy, steal) CPU seconds so far on ``cpus``, from ``/proc/stat`` (Linux; zeros elsewhere)."""
    busy = steal = 0.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu") or not line[3].isdigit():
                    continue
                name, *values = line.split()
                if int(name[3:]) in cpus:
                    v = [int(x) for x in values[:8]]
                    busy += v[0] + v[1] + v[2] + v[5] + v[6]   # user nice system irq softirq
                    steal += v[7]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return busy / hz, steal / hz


class CoreProbe:
    """Busy and stolen time on the server's cores over a window. Minus the server's own CPU
    time, busy time is other work on those cores (noise: other processes of the machine)."""

    def __init__(self, cpus: set[int]):
        self.cpus = cpus
        self._t0 = 0.0
        self._b0 = self._s0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._b0, self._s0 = cpu_seconds_by_core(self.cpus)

    def stop(self) -> dict[str, float]:
        wall = (time.perf_counter() - self._t0) * len(self.cpus)
        busy, steal = cpu_seconds_by_core(self.cpus)
        return {"core_busy_s": round(busy - self._b0, 3), "core_steal_s": round(steal - self._s0, 3),
                "core_wall_s": round(wall, 3)}

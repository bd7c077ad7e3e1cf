"""What the bench measures around each step's window: the server's CPU and RSS
(``procs.ProcessProbe``), the load side's CPU share (was the generator the bottleneck?) and how
busy the server cores were with other work (``core_noise``)."""

from __future__ import annotations

import os
from time import perf_counter
from typing import Any

import psutil

from loadtest.procs import CoreProbe, ProcessProbe


class LoadSideProbe:
    """CPU use of the load side (this process + the fake upstream) over a window, as a share
    of the load cores: near 1.0 per core means the generator may have limited the result."""

    def __init__(self, pids: list[int], ncores: int):
        self._procs = [psutil.Process(p) for p in pids]
        self._ncores = max(1, ncores)
        self._t0 = 0.0
        self._cpu0 = 0.0

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs:
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def start(self) -> None:
        self._t0 = perf_counter()
        self._cpu0 = self._cpu()

    def stop(self) -> float:
        wall = perf_counter() - self._t0
        return round((self._cpu() - self._cpu0) / wall / self._ncores, 3) if wall > 0 else 0.0


class Probes:
    """The probe handed to the generator: the server's (if any), the load side's, and the
    server cores' (how much of them other work took: ``core_noise``)."""

    def __init__(self, server: ProcessProbe | None, load: LoadSideProbe, cores: CoreProbe | None):
        self.server = server
        self.load = load
        self.cores = cores

    def start(self) -> None:
        self.load.start()
        if self.cores:
            self.cores.start()
        if self.server:
            self.server.start()

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = self.server.stop() if self.server else {}
        out["load_util"] = self.load.stop()
        if self.cores:
            c = self.cores.stop()
            if c["core_wall_s"] > 0:
                own = out.get("cpu_s", 0.0) if self.server else 0.0
                out["core_noise"] = round(max(0.0, c["core_busy_s"] - own) / c["core_wall_s"], 3)
                out["core_steal"] = round(c["core_steal_s"] / c["core_wall_s"], 3)
        out["loadavg_1m"] = round(os.getloadavg()[0], 2)
        return out

"""What a load step is (``Step``), what it records (``Recorder``: counters and raw samples in
compact arrays) and the JSON-ready result it becomes (``step_result``: HDR histograms and their
percentiles). ``Probe``: what the bench hands a step to measure the server over the window."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from loadtest import stats
from loadtest.httpclient import Result


class Probe(Protocol):
    def start(self) -> None: ...
    def stop(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Step:
    mode: str                 # "open" | "closed"
    duration_s: float
    warmup_s: float = 1.0
    rate: float = 0.0         # open loop: requests/s
    concurrency: int = 32     # closed loop: requests in flight
    max_connections: int = 512  # open loop: connections the generator may open
    spin_ms: float = 0.0      # open loop: busy-yield this close to each due time (see above)
    drain_s: float = 30.0     # how long to wait for in-flight requests after the window
    max_requests: int = 0     # closed loop: end the window early after this many completions (soak)


class Recorder:
    """Per-step counters and raw samples (microseconds in compact arrays)."""

    def __init__(self) -> None:
        self.active = False
        self.completed = 0          # every completion, warm-up included (for the progress bar)
        self.failed = 0
        self.ok = 0
        self.streams = 0
        self.errors: Counter[str] = Counter()
        self.missing_done = 0
        self.events = 0
        self.nbytes = 0
        self.latency = array("q")
        self.ttfb = array("q")
        self.itl = array("q")
        self.lag = array("q")

    def record(self, t_start: float, res: Result) -> None:
        if res.status >= 400:
            self.errors[f"http_{res.status}"] += 1
            return
        if res.gaps is not None:
            self.streams += 1
            self.events += res.events
            if res.sse_error:
                self.errors["sse_error_event"] += 1
                return
            if not res.done:
                self.missing_done += 1
                self.errors["missing_done"] += 1
                return
            self.ttfb.append(int((res.t_first - t_start) * 1e6))
            if res.gaps:
                self.itl.extend([int(g * 1e6) for g in res.gaps])
        self.ok += 1
        self.nbytes += res.nbytes
        self.latency.append(int((res.t_end - t_start) * 1e6))

    def error(self, kind: str) -> None:
        self.failed += 1
        if self.active:
            self.errors[kind] += 1


def step_result(step: Step, rec: Recorder, meta: dict, engine: str) -> dict[str, Any]:
    """The JSON-ready result of one step."""
    window = meta["window_s"]
    lat = stats.histogram_of(rec.latency)
    out: dict[str, Any] = {
        "mode": step.mode,
        "engine": engine,
        "offered_rps": step.rate if step.mode == "open" else None,
        "concurrency": step.concurrency if step.mode == "closed" else None,
        "duration_s": round(window, 3),
        "warmup_s": step.warmup_s,
        "requests": rec.ok + sum(rec.errors.values()),
        "ok": rec.ok,
        "errors": dict(rec.errors),
        "streams": rec.streams,
        "missing_done": rec.missing_done,
        "sse_events": rec.events,
        "body_bytes": rec.nbytes,
        "throughput_rps": round(rec.ok / window, 1) if window > 0 else 0.0,
        "latency_ms": stats.summary(lat),
        "histograms": {"latency": stats.encode(lat)},
    }
    if rec.streams:
        ttfb = stats.histogram_of(rec.ttfb)
        itl = stats.histogram_of(rec.itl)
        out["ttfb_ms"] = stats.summary(ttfb)
        out["itl_ms"] = stats.summary(itl)
        out["histograms"]["ttfb"] = stats.encode(ttfb)
        out["histograms"]["itl"] = stats.encode(itl)
    if step.mode == "open":
        out["dispatch_lag_ms"] = stats.summary(stats.histogram_of(rec.lag))
    if meta.get("stuck"):
        out["stuck_at_end"] = meta["stuck"]
    if meta.get("server") is not None:
        server = dict(meta["server"])
        cpu = server.get("cpu_s")
        if cpu is not None and rec.ok:
            server["cpu_ms_per_req"] = round(cpu * 1000 / rec.ok, 4)
            server["cpu_util"] = round(cpu / window, 3) if window > 0 else None
        if server.get("ingest_cpu_s") is not None and rec.ok:
            server["ingest_cpu_ms_per_req"] = round(server["ingest_cpu_s"] * 1000 / rec.ok, 4)
        out["server"] = server
    return out

"""Closed-loop and open-loop load runs, recorded into HDR histograms.

Closed loop: ``concurrency`` workers, each on its own keep-alive connection, send the next
request as soon as the previous answer is complete. Throughput is the completions whose end
falls inside the measured window, divided by its length; latency is send → last byte.

Open loop: arrivals follow a Poisson process at ``rate`` requests/s whatever the server does.
Each arrival takes an idle connection (or opens one, up to ``max_connections``; past that it
waits), and its latency is measured from its *scheduled* send time, so time spent queued in
the generator or behind a slow server is counted, not hidden (no coordinated omission).
The lag between the scheduled and the actual send is recorded too (``dispatch_lag_ms``): it
tells how precisely the generator kept the schedule. The dispatcher sleeps on the loop's timer,
which has millisecond resolution (p50 lag ~0.25 ms here); the lag is the same for every target,
so it cancels out of added latency. ``spin_ms`` > 0 busy-yields that close to each due time
(p50 lag ~0.03 ms) but, on a core shared with the fake upstream, it hurts the tail (the
spinning process holds the core the upstream needs), so it is off by default.

A step = ``warmup_s`` unmeasured seconds, then ``duration_s`` measured seconds. A ``probe``
(``start()`` / ``stop() -> dict``) is called exactly at the window's edges: the bench uses it
to read the server's CPU time and RSS over the window.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol

import aiohttp

from loadtest import stats
from loadtest.httpclient import Result, Target, make_engine
from loadtest.scenario import RequestFactory, Scenario

_NET_ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, aiohttp.ClientError, ValueError)


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


async def _sleep_until(t: float, spin_s: float = 0.0) -> None:
    delay = t - perf_counter()
    if delay > spin_s + 0.0005:
        await asyncio.sleep(delay - spin_s)
    if spin_s:
        while perf_counter() < t:
            await asyncio.sleep(0)


class _Progress:
    """A tqdm bar over a step's seconds (silent when stderr is not a terminal or tqdm is missing)."""

    def __init__(self, label: str, total_s: float, rec: Recorder, enabled: bool):
        self._bar = None
        self._rec = rec
        self._task: asyncio.Task | None = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=round(total_s, 1), desc=label, unit="s", leave=False, file=sys.stderr,
                         disable=None, bar_format="{desc}: {bar} {n:.0f}/{total:.0f}s {postfix}")

    async def _tick(self, t0: float) -> None:
        last_n, last_t = 0, t0
        while True:
            await asyncio.sleep(0.5)
            now = perf_counter()
            rec = self._rec
            rps = (rec.completed - last_n) / (now - last_t)
            last_n, last_t = rec.completed, now
            self._bar.n = min(now - t0, self._bar.total)
            self._bar.set_postfix_str(f"{rps:,.0f} req/s, {rec.failed + sum(rec.errors.values())} errors")

    def start(self) -> None:
        if self._bar is not None:
            self._task = asyncio.get_running_loop().create_task(self._tick(perf_counter()))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._bar is not None:
            self._bar.close()


async def _closed(engine, factory: RequestFactory, step: Step, rec: Recorder, probe: Probe | None) -> dict:
    state = {"stop": False}
    conns = []

    async def worker() -> None:
        conn = None
        while not state["stop"]:
            if conn is None or not conn.alive:
                try:
                    conn = await engine.connect()
                    conns.append(conn)
                except _NET_ERRORS as exc:
                    rec.error(f"connect:{type(exc).__name__}")
                    conn = None
                    await asyncio.sleep(0.05)
                    continue
            stream, body = factory.next()
            t = perf_counter()
            try:
                res = await conn.request(stream, body)
            except _NET_ERRORS as exc:
                rec.error(type(exc).__name__)
                conn.close()
                conn = None
                continue
            rec.completed += 1
            if rec.active:
                rec.record(t, res)
            if step.max_requests and rec.completed >= step.max_requests:
                state["stop"] = True

    t0 = perf_counter()
    ws = t0 + step.warmup_s
    we = ws + step.duration_s
    workers = [asyncio.ensure_future(worker()) for _ in range(step.concurrency)]
    await _sleep_until(ws)
    if probe:
        probe.start()
    t_ws = perf_counter()
    rec.active = True
    if step.max_requests:
        while not state["stop"] and perf_counter() < we:
            await asyncio.sleep(0.02)
    else:
        await _sleep_until(we)
    rec.active = False
    t_we = perf_counter()
    server = probe.stop() if probe else None
    state["stop"] = True
    _, stuck = await asyncio.wait(workers, timeout=step.drain_s)
    for task in stuck:
        task.cancel()
    for conn in conns:
        conn.close()
    return {"window_s": t_we - t_ws, "server": server, "stuck": len(stuck)}


async def _open(engine, factory: RequestFactory, step: Step, rec: Recorder, probe: Probe | None,
                seed: int) -> dict:
    idle: list = []
    waiters: deque[asyncio.Future] = deque()
    opened = {"n": 0}
    all_conns = []
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)

    async def acquire():
        while idle:
            conn = idle.pop()
            if conn.alive:
                return conn
            opened["n"] -= 1
        if opened["n"] < step.max_connections:
            opened["n"] += 1
            try:
                conn = await engine.connect()
            except BaseException:
                opened["n"] -= 1
                raise
            all_conns.append(conn)
            return conn
        fut = loop.create_future()
        waiters.append(fut)
        return await fut

    def release(conn) -> None:
        if not conn.alive:
            opened["n"] -= 1
            return
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        idle.append(conn)

    t0 = perf_counter() + 0.005
    ws = t0 + step.warmup_s
    we = ws + step.duration_s

    async def fire(ts: float) -> None:
        stream, body = factory.next()
        try:
            conn = await acquire()
        except _NET_ERRORS as exc:
            if ws <= ts < we:
                rec.error(f"connect:{type(exc).__name__}")
            return
        t_send = perf_counter()
        try:
            res = await conn.request(stream, body)
        except _NET_ERRORS as exc:
            conn.close()
            release(conn)
            if ws <= ts < we:
                rec.error(type(exc).__name__)
            return
        release(conn)
        rec.completed += 1
        if ws <= ts < we:
            rec.lag.append(int((t_send - ts) * 1e6))
            rec.record(ts, res)

    pending: set[asyncio.Task] = set()
    spin = step.spin_ms / 1000
    next_t = t0
    started = False
    while next_t < we:
        await _sleep_until(next_t, spin)
        if not started and next_t >= ws:
            started = True
            if probe:
                probe.start()
            t_ws = perf_counter()
            rec.active = True
        task = loop.create_task(fire(next_t))
        pending.add(task)
        task.add_done_callback(pending.discard)
        next_t += rng.expovariate(step.rate)
    if not started:  # a window with no arrival at all (very low rate)
        if probe:
            probe.start()
        t_ws = ws
    await _sleep_until(we)
    t_we = perf_counter()
    rec.active = False
    server = probe.stop() if probe else None
    stuck = 0
    if pending:
        _, left = await asyncio.wait(set(pending), timeout=step.drain_s)
        stuck = len(left)
        for task in left:
            task.cancel()
        if left:
            rec.errors["timeout_after_window"] += len(left)
    for conn in all_conns:
        conn.close()
    # Arrivals were scheduled over the nominal window, whatever the dispatcher's lateness.
    return {"window_s": step.duration_s, "server": server, "stuck": stuck,
            "probe_window_s": round(t_we - t_ws, 4)}


async def run_step(target: Target, factory: RequestFactory, step: Step, *, engine: str = "raw",
                   probe: Probe | None = None, progress: bool = True, label: str = "",
                   seed: int = 1) -> dict[str, Any]:
    """Run one step against ``target`` and return its result dict (see ``step_result``)."""
    rec = Recorder()
    eng = make_engine(engine, target, step.max_connections if step.mode == "open" else step.concurrency)
    what = f"{step.rate:g} req/s" if step.mode == "open" else f"c={step.concurrency}"
    bar = _Progress(f"{label or target.url} {step.mode} {what}", step.warmup_s + step.duration_s, rec, progress)
    bar.start()
    try:
        if step.mode == "closed":
            meta = await _closed(eng, factory, step, rec, probe)
        else:
            meta = await _open(eng, factory, step, rec, probe, seed)
    finally:
        bar.close()
        await eng.close()
    return step_result(step, rec, meta, engine)


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
        out["server"] = server
    return out


def steps_for(scenario: Scenario) -> list[Step]:
    """The steps a scenario describes: one closed step, or one open step per rate."""
    if scenario.mode == "closed":
        return [Step("closed", scenario.duration_s, scenario.warmup_s, concurrency=scenario.concurrency)]
    return [Step("open", scenario.duration_s, scenario.warmup_s, rate=float(r)) for r in scenario.rates]


def run_scenario(url: str, scenario: Scenario, *, engine: str = "raw", probe: Probe | None = None,
                 progress: bool = True, api_key: str = "sk-loadtest", steps: list[Step] | None = None) -> dict:
    """Run every step of ``scenario`` against ``url`` (``http://HOST:PORT/v1``) on uvloop."""
    target = Target.parse(url, scenario.endpoint, api_key)
    factory = RequestFactory(scenario)
    results = []

    async def main() -> None:
        for i, step in enumerate(steps or steps_for(scenario)):
            results.append(await run_step(target, factory, step, engine=engine, probe=probe,
                                          progress=progress, label=scenario.name, seed=scenario.seed + i))

    run_async(main())
    return {"tool": "llm-gateway-bench", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": {"url": url, "endpoint": scenario.endpoint}, "scenario": scenario.to_dict(),
            "steps": results}


def run_async(coro):
    """Run ``coro`` on a fresh uvloop event loop (asyncio's if uvloop is missing)."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)

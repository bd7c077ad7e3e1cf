"""Closed loop: ``concurrency`` workers, each on its own keep-alive connection, send the next
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

``closed_loop`` and ``open_loop`` run one step's window with an engine (``loadtest.httpclient``)
and record into a ``Recorder``; ``generator.run_step`` picks one.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import deque
from time import perf_counter

import aiohttp

from loadtest.recording import Probe, Recorder, Step
from loadtest.scenario import RequestFactory

_NET_ERRORS = (OSError, ConnectionError, asyncio.TimeoutError, aiohttp.ClientError, ValueError)


async def _sleep_until(t: float, spin_s: float = 0.0) -> None:
    delay = t - perf_counter()
    if delay > spin_s + 0.0005:
        await asyncio.sleep(delay - spin_s)
    if spin_s:
        while perf_counter() < t:
            await asyncio.sleep(0)


class Progress:
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


async def closed_loop(engine, factory: RequestFactory, step: Step, rec: Recorder, probe: Probe | None) -> dict:
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


async def open_loop(engine, factory: RequestFactory, step: Step, rec: Recorder, probe: Probe | None,
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
